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
"""

from __future__ import annotations

__version__ = "0.1.0"

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
from .core.store.sqlite import SqliteStore as _SqliteStore
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
from .errors import SignatureError as SignatureError
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
from .sim import simulate as simulate
from .watch import Watch as Watch
from .watch import WatchOverflowError as WatchOverflowError
from .watch import watch as watch

Store = _SqliteStore
"""The default store, on SQLite (`pttsync.core.store.Store` is the protocol it implements)."""
