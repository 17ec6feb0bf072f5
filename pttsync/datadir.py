"""The data directory: one peer's identity and store on disk.

```
DIR/                  mode 0700
├── identity.key      Ed25519 private key, PEM PKCS#8, mode 0600
├── node.lock         held (flock) by whoever writes the store: a node, gen, sync --local
└── store.sqlite3     the SQLite store (plus its -wal and -shm files)
```

One writer per directory: a running node holds `node.lock` for as long as it
runs, and a command that writes the store directly takes it for as long as
it writes (`DataDir.writer`).  The kernel drops a flock when its process
dies, even by kill -9, so a crash never leaves the directory locked.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from .core.identity import Identity
from .core.lifecycle.replica import found_topic
from .core.store.sqlite import SqliteStore
from .core.topic import DEFAULT_EXPIRY, TopicInfo, new_topic
from .errors import BusyError, DataDirError, UsageError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from .core.store import Store

log = logging.getLogger(__name__)

KEY_FILE = "identity.key"
STORE_FILE = "store.sqlite3"
LOCK_FILE = "node.lock"


@contextlib.contextmanager
def lock_dir(path: Path) -> Iterator[None]:
    """Hold `path/node.lock` exclusively; BusyError at once if someone else holds it."""
    fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BusyError(f"a node is already running on {path}") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)


class DataDir:
    """A peer's data directory.  Opening it checks nothing until you ask."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.key_path = self.path / KEY_FILE
        self.store_path = self.path / STORE_FILE

    @classmethod
    def init(
        cls,
        path: Path | str,
        *,
        topic_name: str,
        now: int,
        nonce: bytes,
        topic: TopicInfo | None = None,
        expiry: int | None = None,
    ) -> tuple[DataDir, Identity, TopicInfo]:
        """Make a new identity and a topic in a new (or empty) directory.

        The topic is a new one created by the new identity (with `expiry`, the
        nanoseconds a pending oplog may wait for its signatures, if given), or
        `topic` (an existing topic, joined: `pttsync init --topic-of`).

        Raises:
            DataDirError: the directory already holds a peer, or is not a directory.
        """
        d = cls(path)
        if d.path.exists() and not d.path.is_dir():
            raise DataDirError(f"{d.path} exists and is not a directory")
        if d.key_path.exists() or d.store_path.exists():
            raise DataDirError(f"{d.path} is already a pttsync data directory")
        try:
            d.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise DataDirError(f"cannot create {d.path}: {exc.strerror}") from None
        identity = Identity.generate()
        founding = topic is None
        if topic is None:
            topic = new_topic(
                identity,
                name=topic_name,
                create_time=now,
                nonce=nonce,
                expiry=DEFAULT_EXPIRY if expiry is None else expiry,
            )
        identity.save(d.key_path)
        try:
            with SqliteStore.open(d.store_path, create=True) as store:
                if founding:
                    found_topic(store, identity, topic)
                else:
                    store.add_topic(topic)
        except BaseException:
            # Leave no half-made directory behind: init can simply be run again.
            for leftover in (d.store_path, d.key_path):
                for suffix in ("", "-wal", "-shm"):
                    leftover.with_name(leftover.name + suffix).unlink(missing_ok=True)
            raise
        log.info("initialised %s: peer %s, topic %s", d.path, identity.text, topic.topic_id.hex())
        return d, identity, topic

    def check(self) -> None:
        """Raise DataDirError unless this is a complete pttsync data directory."""
        if not self.path.is_dir():
            raise DataDirError(
                f"no pttsync data directory at {self.path} (run: pttsync init --data {self.path})"
            )
        missing = [p.name for p in (self.key_path, self.store_path) if not p.exists()]
        if len(missing) == 2:
            raise DataDirError(
                f"{self.path} is not a pttsync data directory"
                f" (run: pttsync init --data {self.path})"
            )
        if missing:
            raise DataDirError(f"{self.path} is incomplete: {missing[0]} is missing")

    def identity(self) -> Identity:
        self.check()
        return Identity.load(self.key_path)

    def topic(self, text: str | None = None) -> TopicInfo:
        """A topic of this directory's store (see `select_topic`)."""
        with self.open_store() as store:
            return select_topic(store, text)

    @contextlib.contextmanager
    def writer(self, fix: str, *, synchronous: str = "FULL") -> Iterator[Store]:
        """The store, opened to write while no node runs on the directory.

        Raises:
            BusyError: a node runs on it (or another command writes it); the
                message ends with `fix`, what to do instead.
        """
        self.check()
        with contextlib.ExitStack() as stack:
            try:  # only the lock's refusal is said again, with the fix
                stack.enter_context(lock_dir(self.path))
            except BusyError:
                raise BusyError(
                    f"a node is running on {self.path} (or another command is writing it): {fix}"
                ) from None
            yield stack.enter_context(self.open_store(synchronous=synchronous))

    def open_store(self, *, synchronous: str = "FULL", quarantine: bool = False) -> Store:
        """The directory's store.  `quarantine` is for the node that runs on it: records
        found damaged on disk are set aside for sync to replace (core/store/integrity.py)."""
        self.check()
        return SqliteStore.open(self.store_path, synchronous=synchronous, quarantine=quarantine)


def select_topic(store: Store, text: str | None) -> TopicInfo:
    """The topic named by a hex ID or unique hex prefix, or the first topic if None.

    Raises:
        UsageError: the text matches no topic, or more than one.
    """
    topics = store.topics()
    if not topics:
        raise UsageError("this store holds no topic")
    if text is None:
        return topics[0]
    wanted = text.strip().lower()
    matches = [t for t in topics if t.topic_id.hex().startswith(wanted)]
    if not matches:
        raise UsageError(f"no topic {text!r} in this store")
    if len(matches) > 1:
        raise UsageError(f"topic prefix {text!r} is ambiguous")
    return matches[0]
