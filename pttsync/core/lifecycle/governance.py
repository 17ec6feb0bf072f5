"""Governance: who may write in a topic, and who must co-sign, over time.

A topic's governance is a timeline built from its valid governance oplogs
(docs/pip-11/lifecycle.md has the full rules):

* The **genesis** oplog (op GENESIS), signed by the creator, repeats the
  fields the topic ID derives from; it makes the creator the first master.
* **Role** oplogs (op ROLE, object = the user, data `{"role": 0|1|2}`) make a
  user a member, a master, or nobody.  Only a master may write one, and it
  becomes valid on the masters' quorum like any other oplog.
* **Device** oplogs (op DEVICE, object = the device key, data `{"on": bool}`)
  certify a device key for the user who signed it, or withdraw it.  The
  user's own signature is the certificate: no master is asked.

A user is named by their user key (the first device's key).  Every query
takes a time, and the answer is what the timeline says at that instant:
`role_at(user, t)`, `masters_at(t)`, `user_of(key, t)`, `devices_of(user, t)`.
An event at time t counts from t on.  Events are applied in (create time,
oplog ID) order, so every peer holding the same oplogs builds the same
timeline, whatever order they arrived in.

This module holds the data and the queries.  Deciding whether an oplog is
valid (and so whether it may enter the timeline) is rules.py's job.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Any

from ...errors import MalformedOplogError, UsageError
from .. import codec
from ..identity import PEER_ID_SIZE
from ..memo import remember
from ..oplog import MAX_DATA_SIZE, create_oplog
from ..topic import Quorum, TopicInfo

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ..identity import Identity
    from ..oplog import Oplog

OP_GENESIS = 0x100
OP_ROLE = 0x101
OP_DEVICE = 0x102
GOVERNANCE_OPS = (0x100, 0x200)
"""The op codes [lo, hi) reserved for governance; documents use ops below 0x100."""

MAX_DEVICES = 16
"""Devices a user may have at once (the internal-signature limit of a record)."""


class Role(IntEnum):
    NONE = 0
    MEMBER = 1
    MASTER = 2


def is_governance_op(op: int) -> bool:
    return GOVERNANCE_OPS[0] <= op < GOVERNANCE_OPS[1]


def quorum_size(quorum: Quorum, n: int) -> int:
    """Signatures needed out of `n`: a majority (n // 2 + 1) or all of them."""
    return n if quorum is Quorum.ALL else n // 2 + 1


# ---------------------------------------------------------------------------
# Payloads.


def genesis_payload(info: TopicInfo) -> dict[str, Any]:
    return {
        "name": info.name,
        "nonce": info.nonce,
        "quorum": int(info.quorum),
        "expiry": info.expiry,
    }


def role_payload(role: Role) -> dict[str, Any]:
    return {"role": int(role)}


def device_payload(on: bool) -> dict[str, Any]:
    return {"on": on}


def _data(oplog: Oplog, keys: frozenset[str]) -> Mapping[str, Any]:
    try:
        return codec.check_keys(codec.loads(oplog.data, max_size=MAX_DATA_SIZE), keys, "payload")
    except codec.CBORFormatError as exc:
        raise MalformedOplogError(f"bad {_op_name(oplog.op)} payload: {exc}", field="d") from None


def _op_name(op: int) -> str:
    return {OP_GENESIS: "genesis", OP_ROLE: "role", OP_DEVICE: "device"}.get(op, f"op {op}")


def decode_role(oplog: Oplog) -> tuple[bytes, Role]:
    """The user and the role a ROLE oplog gives.

    Raises:
        MalformedOplogError: the object is not a peer ID, or the payload is wrong.
    """
    key = (oplog.object_id, oplog.data)
    known = _ROLES.get(key)
    return known if known is not None else remember(_ROLES, key, _decode_role(oplog), MAX_ROLES)


# A role oplog is decoded wherever governance is folded or a Hello's credentials
# are chosen: a pure function of its object and payload, so remembered (bounded).
MAX_ROLES = 65536
_ROLES: dict[tuple[bytes, bytes], tuple[bytes, Role]] = {}


def _decode_role(oplog: Oplog) -> tuple[bytes, Role]:
    if len(oplog.object_id) != PEER_ID_SIZE:
        raise MalformedOplogError("a role oplog's object is a user's peer ID", field="ob")
    data = _data(oplog, frozenset({"role"}))
    try:
        return oplog.object_id, Role(codec.get_int(data, "role", 0, 2))
    except codec.CBORFormatError as exc:
        raise MalformedOplogError(f"bad role payload: {exc}", field="d") from None


def decode_device(oplog: Oplog) -> tuple[bytes, bool]:
    """The device key a DEVICE oplog certifies (True) or withdraws (False)."""
    if len(oplog.object_id) != PEER_ID_SIZE:
        raise MalformedOplogError("a device oplog's object is a device's peer ID", field="ob")
    on = _data(oplog, frozenset({"on"}))["on"]
    if type(on) is not bool:
        raise MalformedOplogError("a device oplog's 'on' is a boolean", field="d")
    return oplog.object_id, on


def make_genesis(creator: Identity, info: TopicInfo) -> Oplog:
    """The topic's genesis oplog, signed by its creator."""
    if creator.peer_id != info.creator:
        raise UsageError("only the topic's creator can sign its genesis")
    return create_oplog(
        creator,
        topic_id=info.topic_id,
        object_id=info.topic_id,
        op=OP_GENESIS,
        create_time=info.create_time,
        value=genesis_payload(info),
    )


def check_genesis(oplog: Oplog, info: TopicInfo) -> None:
    """Raise MalformedOplogError unless `oplog` is exactly this topic's genesis."""
    if (
        oplog.creator != info.creator
        or oplog.create_time != info.create_time
        or oplog.object_id != info.topic_id
        or oplog.prev_id is not None
        or oplog.master_sigs
        or oplog.internal_sigs
        or oplog.data != codec.dumps(genesis_payload(info))
    ):
        raise MalformedOplogError("not this topic's genesis oplog", field="d")


# ---------------------------------------------------------------------------
# The timeline.


@dataclass(frozen=True, slots=True)
class _Event:
    time: int
    order: bytes  # the oplog ID: ties at one instant resolve the same way everywhere
    value: Any


def _at(events: list[_Event], t: int) -> _Event | None:
    """The last event at or before `t`."""
    i = bisect.bisect_right(events, t, key=lambda e: e.time)
    return events[i - 1] if i else None


def _insert(events: list[_Event], event: _Event) -> None:
    bisect.insort(events, event, key=lambda e: (e.time, e.order))


class Governance:
    """A topic's roles and devices over time.  Build it with `lifecycle.build_governance`."""

    def __init__(self, info: TopicInfo) -> None:
        self.info = info
        self.quorum = info.quorum
        self.expiry = info.expiry
        # The founder is master from time 0, not just from the founding: a
        # creator may bring history older than the topic (pttsync gen does).
        self._roles: dict[bytes, list[_Event]] = {info.creator: [_Event(0, b"", Role.MASTER)]}
        self._devices: dict[bytes, list[_Event]] = {}  # device -> events of (user | None)
        self._user_devices: dict[bytes, set[bytes]] = {}  # user -> devices ever certified for it
        # Users who were ever master: only their events can change the master set,
        # so masters_at stays cheap however many members a topic has.
        self._ever_masters: set[bytes] = {info.creator}
        self._masters: list[tuple[int, frozenset[bytes]]] | None = None
        self.applied: set[bytes] = set()  # the governance oplogs in the timeline

    def copy(self) -> Governance:
        """An independent copy (folding into it leaves this one as it is)."""
        other = Governance.__new__(Governance)
        other.info, other.quorum, other.expiry = self.info, self.quorum, self.expiry
        other._roles = {u: list(events) for u, events in self._roles.items()}
        other._devices = {d: list(events) for d, events in self._devices.items()}
        other._user_devices = {u: set(ds) for u, ds in self._user_devices.items()}
        other._ever_masters = set(self._ever_masters)
        other._masters = self._masters  # never mutated, only replaced
        other.applied = set(self.applied)
        return other

    # -- building ------------------------------------------------------------

    def apply(self, oplog: Oplog) -> None:
        """Add a valid governance oplog's effect at its create time.

        The caller (lifecycle.build_governance) applies oplogs in (create
        time, ID) order, each checked against the timeline before it.
        """
        t, oid = oplog.create_time, oplog.oplog_id
        if oplog.op == OP_ROLE:
            user, role = decode_role(oplog)
            _insert(self._roles.setdefault(user, []), _Event(t, oid, role))
            if role is Role.MASTER:
                self._ever_masters.add(user)
            if user in self._ever_masters:
                self._masters = None
        elif oplog.op == OP_DEVICE:
            device, on = decode_device(oplog)
            _insert(
                self._devices.setdefault(device, []), _Event(t, oid, oplog.creator if on else None)
            )
            if on:
                self._user_devices.setdefault(oplog.creator, set()).add(device)
        self.applied.add(oid)

    def can_apply_device(self, oplog: Oplog) -> str | None:
        """Why a device oplog cannot take effect now, or None if it can."""
        device, on = decode_device(oplog)
        t, user = oplog.create_time, oplog.creator
        if device == user:
            return "a user key is not its own device"
        if self.role_at(device, t) is not Role.NONE or device in self._roles:
            return "a user's key cannot be certified as a device"
        holder = self._device_user(device, t)
        if on and holder is not None and holder != user:
            return "the device is already certified for another user"
        if not on and holder != user:
            return "the device is not certified for this user"
        if on and len(self.devices_of(user, t)) >= MAX_DEVICES:
            return f"a user may have at most {MAX_DEVICES} devices"
        return None

    def can_apply_role(self, oplog: Oplog) -> str | None:
        user, _role = decode_role(oplog)
        if self._device_user(user, oplog.create_time) is not None or user in self._devices:
            return "a device key cannot be given a role"
        return None

    # -- queries ---------------------------------------------------------------

    def role_at(self, user: bytes, t: int) -> Role:
        events = self._roles.get(user)
        if not events:
            return Role.NONE
        if len(events) == 1:  # most users: admitted once
            only = events[0]
            return only.value if only.time <= t else Role.NONE
        event = _at(events, t)
        return Role.NONE if event is None else Role(event.value)

    def masters_at(self, t: int) -> frozenset[bytes]:
        """The masters at time `t`."""
        changes = self._master_changes()
        i = bisect.bisect_right(changes, t, key=lambda c: c[0])
        return changes[i - 1][1] if i else frozenset()

    def _master_changes(self) -> list[tuple[int, frozenset[bytes]]]:
        if self._masters is None:
            users = sorted(self._ever_masters)
            times = sorted({e.time for u in users for e in self._roles.get(u, ())})
            self._masters = []
            for t in times:
                masters = frozenset(u for u in users if self.role_at(u, t) is Role.MASTER)
                if not self._masters or self._masters[-1][1] != masters:
                    self._masters.append((t, masters))
        return self._masters

    def _device_user(self, device: bytes, t: int) -> bytes | None:
        events = self._devices.get(device)
        event = _at(events, t) if events else None
        return None if event is None else event.value

    def user_of(self, key: bytes, t: int) -> bytes | None:
        """The user (member or master at `t`) that signing key `key` speaks for at `t`."""
        if self.role_at(key, t) is not Role.NONE:
            return key
        user = self._device_user(key, t)
        if user is not None and self.role_at(user, t) is not Role.NONE:
            return user
        return None

    def devices_of(self, user: bytes, t: int) -> frozenset[bytes]:
        """The user's key and every device certified for the user at `t`."""
        devices = {d for d in self._user_devices.get(user, ()) if self._device_user(d, t) == user}
        return frozenset({user, *devices})

    def members(self, t: int) -> dict[bytes, Role]:
        """Every user with a role at `t`."""
        roles = {u: self.role_at(u, t) for u in self._roles}
        return {u: r for u, r in roles.items() if r is not Role.NONE}
