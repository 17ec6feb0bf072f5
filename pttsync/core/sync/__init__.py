"""Sync: a PIP-11 round as two sans-I/O state machines over a topic's tree and its messages.

Exports `Requester`, `Receiver`, the `SyncContext` they share, the message types
with `encode_message`/`decode_message`, and the frames that carry them.
"""

from __future__ import annotations

from .frames import MAX_FRAME_SIZE, FrameReader, encode_frame
from .messages import Message, MsgType
from .msgcodec import decode_message, encode_message
from .receiver import Receiver
from .requester import Requester
from .session import SyncConfig, SyncContext, SyncStats

__all__ = [
    "MAX_FRAME_SIZE",
    "FrameReader",
    "Message",
    "MsgType",
    "Receiver",
    "Requester",
    "SyncConfig",
    "SyncContext",
    "SyncStats",
    "decode_message",
    "encode_frame",
    "encode_message",
]
