"""Starting a node the trio way: `serve_node(..., task_status)` and `open_node(...)`.

    async with trio.open_nursery() as nursery:
        node = await nursery.start(serve_node, "/tmp/a")

    async with open_node("/tmp/a", listen="127.0.0.1:7400", join=["10.0.0.2:7400"]) as node:
        await node.put("greeting", "hello")

A node on a data directory holds an exclusive lock on `DIR/node.lock`
(flock: the kernel drops it when the process dies, even by kill -9), so
two nodes can never share one store.  The store is closed when the node
stops; SQLite's journal makes a store left by a crash open cleanly.
"""

from __future__ import annotations

import contextlib
import functools
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import trio

from ..datadir import DataDir, lock_dir
from ..errors import UsageError
from .config import NodeConfig
from .node import Node

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence
    from pathlib import Path

    from ..core.identity import Identity
    from ..core.store import Store
    from .network import Network


async def serve_node(
    data: Path | str | None = None,
    *,
    store: Store | None = None,
    identity: Identity | None = None,
    config: NodeConfig | None = None,
    network: Network | None = None,
    task_status: trio.TaskStatus[Node] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run a node until cancelled; `task_status.started(node)` once it is listening.

    Give a data directory (`data`), or a `store` and an `identity` (a node
    with no data directory has no control socket).

    Raises:
        UsageError: neither was given, the directory is locked by another
            node, or the listen address cannot be bound.
        DataDirError, IdentityError: the data directory is not usable.
    """
    with contextlib.ExitStack() as stack:
        data_path = None
        if data is not None:
            d = DataDir(data)
            d.check()
            stack.enter_context(lock_dir(d.path))
            identity = d.identity()
            store = stack.enter_context(d.open_store(quarantine=True))
            data_path = d.path
        elif store is None or identity is None:
            raise UsageError("serve_node needs a data directory, or a store and an identity")
        node = Node(identity, store, config=config, network=network, data_path=data_path)
        try:
            await node.run(task_status=task_status)
        finally:
            node.close()


@asynccontextmanager
async def open_node(
    data: Path | str | None = None,
    *,
    listen: str | None = None,
    join: Sequence[str] = (),
    store: Store | None = None,
    identity: Identity | None = None,
    config: NodeConfig | None = None,
    network: Network | None = None,
) -> AsyncIterator[Node]:
    """A running node for the body of an `async with`; stopped (cleanly) at its end.

    `listen` and `join` override the same settings of `config`.
    """
    cfg = config or NodeConfig()
    if listen is not None:
        cfg = cfg.replace(listen=listen)
    if join:
        cfg = cfg.replace(join=tuple(join))
    async with trio.open_nursery() as nursery:
        start = functools.partial(
            serve_node, data, store=store, identity=identity, config=cfg, network=network
        )
        node: Node = await nursery.start(start)
        try:
            yield node
        finally:
            nursery.cancel_scope.cancel()
