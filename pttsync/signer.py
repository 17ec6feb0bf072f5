"""Signing in a worker process, so bulk work can sign and store at once.

Ed25519 signing is the floor of `pttsync gen`'s cost.  Threads cannot
overlap it with the rest of the work: the signer thread needs the GIL back
after every signature and waits behind the Python that encodes and stores.
A worker process has its own interpreter, so signing runs truly in parallel.

The worker loads the key itself from the key file (with the same checks as
`Identity.load`): the private key never crosses a pipe.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import TYPE_CHECKING

from .core.identity import Identity
from .errors import IdentityError, PttsyncError

if TYPE_CHECKING:
    from types import TracebackType

_worker_identity: Identity | None = None


def _load(key_path: str, parent: int) -> None:
    global _worker_identity  # noqa: PLW0603 - one identity per worker process
    _worker_identity = Identity.load(Path(key_path))
    threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()


def _exit_with(parent: int) -> None:
    """End this worker when its parent is gone (even killed with -9): the worker holds
    an end of its own task pipe, so it would otherwise wait on it forever."""
    while os.getppid() == parent:
        time.sleep(PARENT_POLL)
    os._exit(0)


PARENT_POLL = 0.5
"""Seconds between a worker's looks at its parent."""


def _sign(messages: list[bytes]) -> list[bytes]:
    if _worker_identity is None:
        raise IdentityError("signer worker has no key")
    return [_worker_identity.sign(m) for m in messages]


class ProcessSigner:
    """A `SignBatch` backed by one worker process holding the same key.

    Use as a context manager; `peer_id` is checked against the worker's key
    on the first batch, so a mismatched key file fails loudly.
    """

    def __init__(self, key_path: Path, identity: Identity) -> None:
        self._identity = identity
        self._pool = ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_load,
            initargs=(str(key_path), os.getpid()),
        )
        self._checked = False

    def __call__(self, messages: list[bytes]) -> Future[list[bytes]]:
        if not self._checked:
            # One real signature, checked here: the worker must hold our key.
            probe = self._submit([b"pttsync/signer-probe"]).result()[0]
            if probe != self._identity.sign(b"pttsync/signer-probe"):
                raise IdentityError("the signer process loaded a different key")
            self._checked = True
        return self._submit(messages)

    def _submit(self, messages: list[bytes]) -> Future[list[bytes]]:
        """Submit to the worker; its failures come back as PttsyncError."""
        result: Future[list[bytes]] = Future()
        try:
            inner = self._pool.submit(_sign, messages)
        except BrokenProcessPool as exc:
            result.set_exception(PttsyncError(f"the signer process died: {exc}"))
            return result

        def relay(done: Future[list[bytes]]) -> None:
            exc = done.exception()
            if exc is None:
                result.set_result(done.result())
            elif isinstance(exc, PttsyncError):
                result.set_exception(exc)
            else:
                result.set_exception(PttsyncError(f"the signer process failed: {exc!r}"))

        inner.add_done_callback(relay)
        return result

    def close(self) -> None:
        try:
            self._pool.shutdown(wait=True, cancel_futures=True)
        except RuntimeError:
            # A signal (Ctrl-C; SIGTERM, which the CLI delivers as one) cut the pool's
            # start short: CPython's pool spawns its worker, then starts the thread that
            # manages it, and a KeyboardInterrupt raised while that thread starts leaves
            # one that shutdown cannot join ("cannot join thread before it is
            # started").  Nothing manages the worker then: it is ended here.
            for process in list((self._pool._processes or {}).values()):
                process.kill()
                process.join()

    def __enter__(self) -> ProcessSigner:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
