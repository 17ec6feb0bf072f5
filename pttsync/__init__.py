"""pttsync: a peer-to-peer oplog sync engine after PTT.ai's PIP-11.

The public API is exactly what this module re-exports.  The layers:

* `pttsync.core`: the sans-I/O core; no trio, no sockets, no wall clock.
  Records lie flat in it (the oplog, the Merkle tree, a topic); above them
  `core.store` (the `Store` protocol; `Store` here is its SQLite
  implementation, `MemoryStore` the simulator's), `core.lifecycle` (a
  `Replica` is a topic's governance and write path; `OplogHandler` runs
  PIP-11's Handle steps), `core.sync` (`Requester` and `Receiver`, driven
  by `receive(message, now) -> messages` over a `SyncContext`) and
  `core.documents` (a `DocumentStore` over a replica is the application's API).
* the shell around it: the network node (`open_node`, `serve_node`,
  `Node`, over a `TcpNetwork` or a `MemoryNetwork`), the CLI, the
  in-process `sync_local` and `watch`.
* `pttsync.clients`, for programs that do not run trio: `Client` (blocking)
  and `AsyncClient` (asyncio) talk to a running node's control socket;
  `start_node` runs a node in a background thread (a `NodeHandle`).
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# A library logs and leaves the handlers to the program (the CLI sets its own):
# without this, a program that configures no logging got Python's last-resort
# handler, and `simulate(...)` printed every simulated peer's join warnings.
logging.getLogger(__name__).addHandler(logging.NullHandler())

# The public API, loaded on first use (PEP 562): `import pttsync.signer` in a
# signing worker, or any one command, no longer imports the network, the
# simulator and trio (0.64 s -> 0.06 s here).  NAME: "module" or "module:attr".
_EXPORTS: dict[str, str] = {
    "AsyncClient": ".clients.aio",
    "Client": ".clients.blocking",
    "NodeHandle": ".clients.embed",
    "start_node": ".clients.embed",
    "DocState": ".core.documents.derive",
    "Merged": ".core.documents.derive",
    "Resolver": ".core.documents.derive",
    "Version": ".core.documents.derive",
    "Change": ".core.documents.docstore",
    "ChangeKind": ".core.documents.docstore",
    "DocumentStore": ".core.documents.docstore",
    "Write": ".core.documents.docstore",
    "WriteStatus": ".core.documents.docstore",
    "Identity": ".core.identity",
    "parse_peer_id": ".core.identity",
    "peer_id_text": ".core.identity",
    "verify_signature": ".core.identity",
    "Governance": ".core.lifecycle.governance",
    "Role": ".core.lifecycle.governance",
    "HandleResult": ".core.lifecycle.handle",
    "OplogHandler": ".core.lifecycle.handle",
    "handle_failed": ".core.lifecycle.pending",
    "Replica": ".core.lifecycle.replica",
    "found_topic": ".core.lifecycle.replica",
    "Leaf": ".core.merkle",
    "Level": ".core.merkle",
    "MerkleNode": ".core.merkle",
    "MerkleTree": ".core.merkle",
    "Draft": ".core.oplog",
    "Oplog": ".core.oplog",
    "OplogStatus": ".core.oplog",
    "Signature": ".core.oplog",
    "SignKind": ".core.oplog",
    "cosign": ".core.oplog",
    "create_oplog": ".core.oplog",
    "draft_oplog": ".core.oplog",
    "finish_oplog": ".core.oplog",
    "verify_oplog": ".core.oplog",
    "decode_oplog": ".core.oplogcodec",
    "encode_oplog": ".core.oplogcodec",
    "BatchResult": ".core.store",
    "FailedOplog": ".core.store",
    "StoredOplog": ".core.store",
    "MemoryStore": ".core.store.memory",
    "Store": ".core.store.sqlite:SqliteStore",
    "MAX_FRAME_SIZE": ".core.sync.frames",
    "FrameReader": ".core.sync.frames",
    "encode_frame": ".core.sync.frames",
    "Message": ".core.sync.messages",
    "decode_message": ".core.sync.msgcodec",
    "encode_message": ".core.sync.msgcodec",
    "Receiver": ".core.sync.receiver",
    "Requester": ".core.sync.requester",
    "SyncConfig": ".core.sync.session",
    "SyncContext": ".core.sync.session",
    "SyncStats": ".core.sync.session",
    "parse_iso": ".core.timeutil",
    "to_iso": ".core.timeutil",
    "Quorum": ".core.topic",
    "TopicInfo": ".core.topic",
    "new_topic": ".core.topic",
    "DataDir": ".datadir",
    "BusyError": ".errors",
    "ConnectionLostError": ".errors",
    "DataDirError": ".errors",
    "HandshakeError": ".errors",
    "HandshakeTimeoutError": ".errors",
    "IdentityError": ".errors",
    "IntegrityError": ".errors",
    "InvalidOplogError": ".errors",
    "LocalError": ".errors",
    "MalformedOplogError": ".errors",
    "NodeNotRunningError": ".errors",
    "NotAuthorizedError": ".errors",
    "OversizeError": ".errors",
    "PttsyncError": ".errors",
    "RemoteProtocolError": ".errors",
    "SelfConnectionError": ".errors",
    "SignatureError": ".errors",
    "SimulationError": ".errors",
    "StoreError": ".errors",
    "TimestampError": ".errors",
    "UsageError": ".errors",
    "LocalSyncReport": ".localsync",
    "sync_local": ".localsync",
    "wait_until": ".net.changes",
    "NodeConfig": ".net.config",
    "MemoryNetwork": ".net.network",
    "Network": ".net.network",
    "TcpNetwork": ".net.network",
    "Node": ".net.node",
    "open_node": ".net.serve",
    "serve_node": ".net.serve",
    "SimConfig": ".sim",
    "SimReport": ".sim",
    "simulate": ".sim",
    "Stopped": ".sim",
    "Stopper": ".sim",
    "Watch": ".watching",
    "WatchOverflowError": ".watching",
    "watch": ".watching",
}
"""Every public name, and where it lives.  `Store` is the default store, on SQLite
(`pttsync.core.store.Store` is the protocol it implements)."""

__all__ = [
    "MAX_FRAME_SIZE",
    "AsyncClient",
    "BatchResult",
    "BusyError",
    "Change",
    "ChangeKind",
    "Client",
    "ConnectionLostError",
    "DataDir",
    "DataDirError",
    "DocState",
    "DocumentStore",
    "Draft",
    "FailedOplog",
    "FrameReader",
    "Governance",
    "HandleResult",
    "HandshakeError",
    "HandshakeTimeoutError",
    "Identity",
    "IdentityError",
    "IntegrityError",
    "InvalidOplogError",
    "Leaf",
    "Level",
    "LocalError",
    "LocalSyncReport",
    "MalformedOplogError",
    "MemoryNetwork",
    "MemoryStore",
    "Merged",
    "MerkleNode",
    "MerkleTree",
    "Message",
    "Network",
    "Node",
    "NodeConfig",
    "NodeHandle",
    "NodeNotRunningError",
    "NotAuthorizedError",
    "Oplog",
    "OplogHandler",
    "OplogStatus",
    "OversizeError",
    "PttsyncError",
    "Quorum",
    "Receiver",
    "RemoteProtocolError",
    "Replica",
    "Requester",
    "Resolver",
    "Role",
    "SelfConnectionError",
    "SignKind",
    "Signature",
    "SignatureError",
    "SimConfig",
    "SimReport",
    "SimulationError",
    "Stopped",
    "Stopper",
    "Store",
    "StoreError",
    "StoredOplog",
    "SyncConfig",
    "SyncContext",
    "SyncStats",
    "TcpNetwork",
    "TimestampError",
    "TopicInfo",
    "UsageError",
    "Version",
    "Watch",
    "WatchOverflowError",
    "Write",
    "WriteStatus",
    "cosign",
    "create_oplog",
    "decode_message",
    "decode_oplog",
    "draft_oplog",
    "encode_frame",
    "encode_message",
    "encode_oplog",
    "finish_oplog",
    "found_topic",
    "handle_failed",
    "new_topic",
    "open_node",
    "parse_iso",
    "parse_peer_id",
    "peer_id_text",
    "serve_node",
    "simulate",
    "start_node",
    "sync_local",
    "to_iso",
    "verify_oplog",
    "verify_signature",
    "wait_until",
    "watch",
]  # the keys of _EXPORTS (tests/test_api.py checks)

if TYPE_CHECKING:
    from .clients.aio import AsyncClient as AsyncClient
    from .clients.blocking import Client as Client
    from .clients.embed import NodeHandle as NodeHandle
    from .clients.embed import start_node as start_node
    from .core.documents.derive import DocState as DocState
    from .core.documents.derive import Merged as Merged
    from .core.documents.derive import Resolver as Resolver
    from .core.documents.derive import Version as Version
    from .core.documents.docstore import Change as Change
    from .core.documents.docstore import ChangeKind as ChangeKind
    from .core.documents.docstore import DocumentStore as DocumentStore
    from .core.documents.docstore import Write as Write
    from .core.documents.docstore import WriteStatus as WriteStatus
    from .core.identity import Identity as Identity
    from .core.identity import parse_peer_id as parse_peer_id
    from .core.identity import peer_id_text as peer_id_text
    from .core.identity import verify_signature as verify_signature
    from .core.lifecycle.governance import Governance as Governance
    from .core.lifecycle.governance import Role as Role
    from .core.lifecycle.handle import HandleResult as HandleResult
    from .core.lifecycle.handle import OplogHandler as OplogHandler
    from .core.lifecycle.pending import handle_failed as handle_failed
    from .core.lifecycle.replica import Replica as Replica
    from .core.lifecycle.replica import found_topic as found_topic
    from .core.merkle import Leaf as Leaf
    from .core.merkle import Level as Level
    from .core.merkle import MerkleNode as MerkleNode
    from .core.merkle import MerkleTree as MerkleTree
    from .core.oplog import Draft as Draft
    from .core.oplog import Oplog as Oplog
    from .core.oplog import OplogStatus as OplogStatus
    from .core.oplog import Signature as Signature
    from .core.oplog import SignKind as SignKind
    from .core.oplog import cosign as cosign
    from .core.oplog import create_oplog as create_oplog
    from .core.oplog import draft_oplog as draft_oplog
    from .core.oplog import finish_oplog as finish_oplog
    from .core.oplog import verify_oplog as verify_oplog
    from .core.oplogcodec import decode_oplog as decode_oplog
    from .core.oplogcodec import encode_oplog as encode_oplog
    from .core.store import BatchResult as BatchResult
    from .core.store import FailedOplog as FailedOplog
    from .core.store import StoredOplog as StoredOplog
    from .core.store.memory import MemoryStore as MemoryStore
    from .core.store.sqlite import SqliteStore as Store
    from .core.sync.frames import MAX_FRAME_SIZE as MAX_FRAME_SIZE
    from .core.sync.frames import FrameReader as FrameReader
    from .core.sync.frames import encode_frame as encode_frame
    from .core.sync.messages import Message as Message
    from .core.sync.msgcodec import decode_message as decode_message
    from .core.sync.msgcodec import encode_message as encode_message
    from .core.sync.receiver import Receiver as Receiver
    from .core.sync.requester import Requester as Requester
    from .core.sync.session import SyncConfig as SyncConfig
    from .core.sync.session import SyncContext as SyncContext
    from .core.sync.session import SyncStats as SyncStats
    from .core.timeutil import parse_iso as parse_iso
    from .core.timeutil import to_iso as to_iso
    from .core.topic import Quorum as Quorum
    from .core.topic import TopicInfo as TopicInfo
    from .core.topic import new_topic as new_topic
    from .datadir import DataDir as DataDir
    from .errors import BusyError as BusyError
    from .errors import ConnectionLostError as ConnectionLostError
    from .errors import DataDirError as DataDirError
    from .errors import HandshakeError as HandshakeError
    from .errors import HandshakeTimeoutError as HandshakeTimeoutError
    from .errors import IdentityError as IdentityError
    from .errors import IntegrityError as IntegrityError
    from .errors import InvalidOplogError as InvalidOplogError
    from .errors import LocalError as LocalError
    from .errors import MalformedOplogError as MalformedOplogError
    from .errors import NodeNotRunningError as NodeNotRunningError
    from .errors import NotAuthorizedError as NotAuthorizedError
    from .errors import OversizeError as OversizeError
    from .errors import PttsyncError as PttsyncError
    from .errors import RemoteProtocolError as RemoteProtocolError
    from .errors import SelfConnectionError as SelfConnectionError
    from .errors import SignatureError as SignatureError
    from .errors import SimulationError as SimulationError
    from .errors import StoreError as StoreError
    from .errors import TimestampError as TimestampError
    from .errors import UsageError as UsageError
    from .localsync import LocalSyncReport as LocalSyncReport
    from .localsync import sync_local as sync_local
    from .net.changes import wait_until as wait_until
    from .net.config import NodeConfig as NodeConfig
    from .net.network import MemoryNetwork as MemoryNetwork
    from .net.network import Network as Network
    from .net.network import TcpNetwork as TcpNetwork
    from .net.node import Node as Node
    from .net.serve import open_node as open_node
    from .net.serve import serve_node as serve_node
    from .sim import SimConfig as SimConfig
    from .sim import SimReport as SimReport
    from .sim import Stopped as Stopped
    from .sim import Stopper as Stopper
    from .sim import simulate as simulate
    from .watching import Watch as Watch
    from .watching import WatchOverflowError as WatchOverflowError
    from .watching import watch as watch


def __getattr__(name: str) -> Any:
    """Import a public name on first use, then keep it in the module."""
    spec = _EXPORTS.get(name)
    if spec is None:
        raise AttributeError(f"module 'pttsync' has no attribute {name!r}")
    module, _, attr = spec.partition(":")
    value = getattr(importlib.import_module(module, __name__), attr or name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
