"""pttsync: a peer-to-peer oplog sync engine after PTT.ai's PIP-11.

The public API is exactly what this module re-exports.  The layers:

* `pttsync.core`: the sans-I/O core (records, Merkle tree, store); no trio,
  no sockets, no wall clock.
* the shell (CLI, and later the network node and simulation) around it.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .core.identity import Identity as Identity
from .core.identity import parse_peer_id as parse_peer_id
from .core.identity import peer_id_text as peer_id_text
from .core.identity import verify_signature as verify_signature
from .core.merkle import Leaf as Leaf
from .core.merkle import Level as Level
from .core.merkle import MerkleTree as MerkleTree
from .core.merkle import Node as Node
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
from .core.store import Store as Store
from .core.store import StoredOplog as StoredOplog
from .core.store import TopicInfo as TopicInfo
from .core.timeutil import parse_iso as parse_iso
from .core.timeutil import to_iso as to_iso
from .core.topic import new_topic as new_topic
from .datadir import DataDir as DataDir
from .errors import DataDirError as DataDirError
from .errors import IdentityError as IdentityError
from .errors import IntegrityError as IntegrityError
from .errors import InvalidOplogError as InvalidOplogError
from .errors import LocalError as LocalError
from .errors import MalformedOplogError as MalformedOplogError
from .errors import OversizeError as OversizeError
from .errors import PttsyncError as PttsyncError
from .errors import RemoteProtocolError as RemoteProtocolError
from .errors import SignatureError as SignatureError
from .errors import StoreError as StoreError
from .errors import TimestampError as TimestampError
from .errors import UsageError as UsageError
