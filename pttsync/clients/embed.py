"""`pttsync.start_node`: a node inside this process, for a program that does not run trio.

    node = pttsync.start_node("/srv/peer", listen="0.0.0.0:7400")   # returns once it is up
    node.put("todo/1", {"title": "buy milk"})                     # a pttsync.Client's calls
    node.stop()                                                   # or `with start_node(...)`

The node runs `serve_node` in a background thread with its own `trio.run`,
as `pttsync run --data DIR` would in its own process; the handle talks to
it through its control socket (a `NodeHandle` is a `pttsync.Client`), so
it is as usable from any thread as a Client is.  `stop()` cancels the
node, waits for its thread and so for its store to be closed; a program
that forgets to stop it is stopped at exit (atexit), cleanly too.
"""

from __future__ import annotations

import atexit
import functools
import logging
import threading
from contextlib import suppress
from typing import TYPE_CHECKING

import trio

from ..core.identity import peer_id_text
from ..errors import PttsyncError, UsageError
from ..net.config import NodeConfig
from ..net.serve import serve_node
from .blocking import DEFAULT_TIMEOUT, Client

if TYPE_CHECKING:
    import os
    from collections.abc import Sequence

    from ..net.node import Node

log = logging.getLogger(__name__)

_running: set[NodeHandle] = set()
_running_lock = threading.Lock()


def start_node(
    data_dir: str | os.PathLike[str],
    *,
    listen: str | None = None,
    join: Sequence[str] = (),
    config: NodeConfig | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> NodeHandle:
    """Run a node on `data_dir` in a background thread; a handle on it once it is up.

    `listen` ("host:port", port 0 picks a free one) and `join` (addresses
    to bootstrap from) override the same settings of `config`.  `timeout`
    bounds the start, the stop, and each call of the handle.

    Raises:
        UsageError: a bad setting, a node already running on `data_dir`,
            or an address that cannot be bound.
        DataDirError, IdentityError: `data_dir` is not a usable data
            directory (`pttsync init` makes one).
        PttsyncError: the node did not start within `timeout` seconds.
    """
    cfg = config or NodeConfig()
    if listen is not None:
        cfg = cfg.replace(listen=listen)
    if join:
        cfg = cfg.replace(join=tuple(join))
    if not cfg.control:
        raise UsageError("start_node's handle uses the node's control socket: keep control on")
    handle = NodeHandle(data_dir, cfg, timeout=timeout)
    handle._start()
    return handle


class NodeHandle(Client):
    """A node running in a background thread (made by `start_node`).

    It is a `pttsync.Client` of that node: `put`, `get`, `list`, `watch`,
    `status`, `members`...  `peer_id` and `listen_address` say who and where
    it is.  `stop()` (or the end of a `with` block) stops it.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        config: NodeConfig,
        *,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        super().__init__(data_dir, timeout=timeout)
        self.config = config
        self.peer_id = ""
        """The node's peer ID (text)."""
        self.listen_address: str | None = None
        """Where it accepts peers ("host:port"), or None."""
        self.error: BaseException | None = None
        """What the node failed with, if it stopped on its own."""
        self._thread = threading.Thread(
            target=self._run, name=f"pttsync node {self.data_dir}", daemon=True
        )
        self._up = threading.Event()
        self._lock = threading.Lock()
        self._stopping = False
        self._token: trio.lowlevel.TrioToken | None = None
        self._scope: trio.CancelScope | None = None

    def __enter__(self) -> NodeHandle:
        return self

    @property
    def running(self) -> bool:
        """The node's thread runs (it may be stopping)."""
        return self._thread.is_alive()

    # -- the node's thread -----------------------------------------------------------------

    def _start(self) -> None:
        with _running_lock:
            _running.add(self)
        self._thread.start()
        if not self._up.wait(self.timeout):
            self._stop(quietly=True)
            raise PttsyncError(
                f"the node on {self.data_dir} did not start within {self.timeout:g} s"
            )
        if self.error is not None:
            self._stop(quietly=True)
            raise self.error
        log.info(
            "node %s running on %s in thread %r", self.peer_id, self.data_dir, self._thread.name
        )

    def _run(self) -> None:
        try:
            trio.run(self._serve)
        except BaseException as exc:  # the node failed: kept for start_node, and said
            self.error = _sole(exc)
            if self._up.is_set():
                log.error("the node on %s stopped with an error", self.data_dir, exc_info=exc)
        finally:
            self._up.set()

    async def _serve(self) -> None:
        with trio.CancelScope() as scope:
            with self._lock:
                self._token, self._scope = trio.lowlevel.current_trio_token(), scope
                if self._stopping:
                    scope.cancel()
            async with trio.open_nursery() as nursery:
                start = functools.partial(serve_node, self.data_dir, config=self.config)
                try:
                    node: Node = await nursery.start(start)
                except Exception as exc:  # the start's error, for start_node to raise as is
                    self.error = _sole(exc)
                    return
                self.peer_id = peer_id_text(node.peer_id)
                self.listen_address = node.listen_address
                self._up.set()

    # -- stopping ------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop the node and wait until it stopped and closed its store (idempotent).

        Raises:
            PttsyncError: it did not stop within the handle's timeout.
        """
        self._stop(quietly=False)

    def close(self) -> None:
        """`stop()`: the end of a `with` block stops the node."""
        self.stop()

    def _stop(self, *, quietly: bool) -> None:
        super().close()  # its watches first: the node ends them anyway
        with self._lock:
            self._stopping = True
            token, scope = self._token, self._scope
        if token is not None and scope is not None:
            with suppress(trio.RunFinishedError):
                token.run_sync_soon(scope.cancel)
        if self._thread is not threading.current_thread() and self._thread.ident is not None:
            self._thread.join(self.timeout)
        if self._thread.is_alive():
            if quietly:
                log.error("the node on %s did not stop within %g s", self.data_dir, self.timeout)
                return
            raise PttsyncError(
                f"the node on {self.data_dir} did not stop within {self.timeout:g} s"
            )
        with _running_lock:
            _running.discard(self)


def _sole(exc: BaseException) -> BaseException:
    """A group of one error (a nursery wraps what fails in it) as that error."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


@atexit.register
def _stop_all() -> None:
    """At exit, stop the nodes the program left running (their threads are daemons)."""
    with _running_lock:
        handles = list(_running)
    for handle in handles:
        log.info("stopping the node on %s at exit", handle.data_dir)
        handle._stop(quietly=True)
