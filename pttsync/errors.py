"""The error taxonomy: every error says whose fault it is.

```
PttsyncError
├── LocalError            you (the caller, a CLI argument, a local file) did something wrong
│   ├── UsageError        a bad argument or value passed to the API or CLI
│   ├── DataDirError      the data directory is missing, incomplete or of the wrong kind
│   └── IdentityError     the key file is missing, unreadable, too open or malformed
├── RemoteProtocolError   a peer broke the protocol: close or penalise it, never crash
│   └── HandshakeError    the secure handshake failed: bad keys, a bad proof, too slow
├── ConnectionLostError   the link went away (nobody's fault we can tell): retry later
├── NodeNotRunningError   no node answers on the data directory's control socket
├── InvalidOplogError     an oplog record is malformed or fails verification
│   ├── MalformedOplogError   not canonical CBOR, wrong types, unknown or missing fields
│   ├── OversizeError         a field or the whole record is over its limit
│   ├── TimestampError        times out of range or out of order
│   ├── IntegrityError        the oplog ID or hash does not match the content
│   ├── SignatureError        a signature does not verify
│   └── NotAuthorizedError    the topic's governance gives no right to it
└── StoreError            the store cannot do what was asked (schema, corruption, I/O)
```

`InvalidOplogError` is neutral about blame: the same bad record may come from
a local file (the caller's fault) or from a peer (the peer's fault).  The code
that knows the source wraps it: the sync session raises `RemoteProtocolError`
with the `InvalidOplogError` as its cause, the CLI reports it as bad input.
"""

from __future__ import annotations


class PttsyncError(Exception):
    """Base class of every error pttsync raises on purpose."""


class LocalError(PttsyncError):
    """The local caller misused the API or gave bad input."""


class UsageError(LocalError, ValueError):
    """A bad argument or value was passed to the API or the CLI."""


class SimulationError(LocalError):
    """A simulation could not be carried out (not an invariant failing: the run itself)."""


class DataDirError(LocalError):
    """The data directory is missing, incomplete or not a pttsync directory."""


class BusyError(UsageError):
    """A running node (or another writing command) holds the data directory."""


class IdentityError(LocalError):
    """The identity key file is missing, unreadable, too widely readable or malformed."""


class RemoteProtocolError(PttsyncError):
    """A remote peer broke the protocol.

    The connection layer closes or penalises the peer; the node never crashes
    because of one.  `penalty` is a hint of how bad the violation was, from 1
    (a slip, such as one bad oplog in a batch) upwards.
    """

    def __init__(self, message: str, *, penalty: int = 10) -> None:
        super().__init__(message)
        self.penalty = penalty


class HandshakeError(RemoteProtocolError):
    """The secure handshake failed: garbage, a bad identity proof, or a peer too slow."""


class SelfConnectionError(HandshakeError):
    """The address dialed is this node's own: the peer presented our own peer ID."""


class HandshakeTimeoutError(HandshakeError):
    """The handshake did not finish in time: a slow or cut network as likely as a bad peer."""


class ConnectionLostError(PttsyncError):
    """The connection to a peer closed or broke.  Not a violation: dial again later."""


class NodeNotRunningError(LocalError):
    """A command needs a running node, and none answers on the data directory's socket."""


class InvalidOplogError(PttsyncError):
    """An oplog record is malformed or fails verification.

    `field` names the offending field (the CBOR key, or "" for the whole record).
    """

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.reason = message


class MalformedOplogError(InvalidOplogError):
    """Not canonical CBOR, a wrong type, an unknown field or a missing field."""


class OversizeError(InvalidOplogError):
    """A field, a list or the whole record is over its limit."""


class TimestampError(InvalidOplogError):
    """A time is out of range, or the update time does not follow the signatures."""


class IntegrityError(InvalidOplogError):
    """The oplog ID or hash does not match what the record contains."""


class SignatureError(InvalidOplogError):
    """A creator, master or device signature does not verify."""


class NotAuthorizedError(InvalidOplogError):
    """The topic's governance gives the oplog's creator or a co-signer no right to it.

    A non-member's oplog, a co-signature by a non-master, a removed member's
    new oplog, a signature made after the oplog expired.  Another peer may
    simply not know a governance change yet, so the oplog is refused on its
    own; it can come back once the governance catches up.
    """


class StoreError(PttsyncError):
    """The store cannot do what was asked: wrong schema, corruption or an I/O failure."""
