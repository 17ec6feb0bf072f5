"""A ToDo list shared by two peers: the Japanese seed's app, on pttsync's documents.

    python examples/todo.py

Alice founded the list (she is its master); Bob is a member, so his writes
are pending until Alice's peer co-signs them in a sync round.  The script
walks through:

1. creating, listing, completing and deleting tasks on both peers;
2. a conflict: both edit the same task while apart.  Nothing is lost (the
   seed's last-writer-wins dropped one edit silently): both versions show,
   and Alice resolves them with a merge;
3. a pending write that expires: Bob deletes a task while Alice is away
   for two hours; the delete is never co-signed, so it is rolled back and
   the task comes back.

Bob's changes are printed by a watcher task (`pttsync.watch`), the way an
application's UI would follow them.  Time is a virtual clock, so the run
is the same every time and takes a moment.
"""

from __future__ import annotations

import itertools
from typing import Any

import trio
import trio.testing

import pttsync

HOUR = 3600 * 10**9


class TodoList:
    """Tasks as documents `task/<peer>-<n>` holding `{"title": str, "done": bool}`.

    Keys carry the peer's name, so two peers never pick the same key for two
    different tasks (the seed's `max(id) + 1` did, and then lost one).
    """

    def __init__(self, name: str, docs: pttsync.DocumentStore, clock: Clock) -> None:
        self.name, self.docs, self.clock = name, docs, clock
        self._ids = itertools.count(1)

    def add(self, title: str) -> str:
        key = f"task/{self.name}-{next(self._ids)}"
        self.docs.put(key, {"title": title, "done": False}, now=self.clock.tick())
        return key

    def edit(self, key: str, **changes: Any) -> None:
        task = self.docs.get(key)
        if task is None or not task.exists:
            raise KeyError(f"no task {key}")
        self.docs.put(key, {**task.value, **changes}, now=self.clock.tick())

    def complete(self, key: str) -> None:
        self.edit(key, done=True)

    def remove(self, key: str) -> None:
        self.docs.delete(key, now=self.clock.tick())

    def show(self) -> None:
        print(f"  {self.name}'s list:")
        for doc in self.docs.items(prefix="task/"):
            mark = "x" if doc.value["done"] else " "
            flags = " (pending)" if doc.pending else ""
            flags += f" (conflict: {len(doc.conflicts)} other version)" if doc.in_conflict else ""
            print(f"    [{mark}] {doc.value['title']:<16} {doc.key}{flags}")


class Clock:
    """Virtual time: one millisecond per write, jumps on demand."""

    def __init__(self, start: int) -> None:
        self.now = start

    def tick(self) -> int:
        self.now += 10**6
        return self.now

    def jump(self, ns: int) -> None:
        self.now += ns


class Peer:
    def __init__(self, name: str, identity: pttsync.Identity, replica: pttsync.Replica) -> None:
        self.name, self.identity = name, identity
        self.docs = pttsync.DocumentStore(replica)


def sync(a: Peer, b: Peer, clock: Clock) -> None:
    report = pttsync.sync_local(
        a.docs.replica.store,
        b.docs.replica.store,
        a.docs.replica.topic_id,
        peer_a=a.identity.peer_id,
        peer_b=b.identity.peer_id,
        now=clock.tick(),
        replica_a=a.docs.replica,
        replica_b=b.docs.replica,
    )
    assert report.converged
    print(f"  -- {a.name} and {b.name} synced ({len(report.rounds)} round)")


async def watch_bob(bob: Peer, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    with pttsync.watch(bob.docs) as changes:
        task_status.started()
        async for change in changes:
            value = change.state.value if change.state is not None else None
            why = f" ({change.reason})" if change.reason else ""
            print(f"  >> bob sees {change.kind.value}: {change.key} -> {value}{why}")


async def main() -> None:
    clock = Clock(pttsync.parse_iso("2026-01-05T09:00Z"))
    alice_id, bob_id = pttsync.Identity.generate(), pttsync.Identity.generate()
    topic = pttsync.new_topic(alice_id, name="todo", create_time=clock.tick(), nonce=bytes(16))
    alice_store, bob_store = pttsync.Store.memory(), pttsync.Store.memory()
    alice = Peer("alice", alice_id, pttsync.found_topic(alice_store, alice_id, topic))
    bob_store.add_topic(topic)
    bob = Peer("bob", bob_id, pttsync.Replica(bob_store, topic.topic_id, identity=bob_id))
    alice.docs.replica.set_role(bob_id.peer_id, pttsync.Role.MEMBER, now=clock.tick())
    a_list, b_list = TodoList("alice", alice.docs, clock), TodoList("bob", bob.docs, clock)

    async with trio.open_nursery() as nursery:
        await nursery.start(watch_bob, bob)

        async def step(title: str) -> None:
            await trio.testing.wait_all_tasks_blocked()  # let the watcher print
            print(f"\n== {title}")

        await step("1. Alice adds two tasks; Bob gets them by sync")
        milk = a_list.add("buy milk")
        report = a_list.add("write report")
        sync(alice, bob, clock)
        await step("Bob adds a task: pending until Alice's peer co-signs it")
        call = b_list.add("call mom")
        b_list.show()
        sync(bob, alice, clock)
        await step("After the sync")
        b_list.show()

        await step("2. Apart, both edit 'buy milk': Alice completes it, Bob renames it")
        a_list.complete(milk)
        b_list.edit(milk, title="buy oat milk")
        sync(bob, alice, clock)
        await step("Both edits are valid versions of one task: a conflict, shown on both")
        for side in (alice, bob):
            for doc in side.docs.conflicts():
                shown = doc.value
                others = [v.value for v in doc.conflicts]
                print(f"  {side.name}: {doc.key} shows {shown}, also kept: {others}")
        a_list.docs.resolve(milk, {"title": "buy oat milk", "done": True}, now=clock.tick())
        sync(alice, bob, clock)
        await step("Alice resolved it with a merge")
        b_list.show()

        await step("3. Alice is away for two hours; Bob deletes 'write report'")
        b_list.remove(report)
        b_list.show()
        clock.jump(2 * HOUR)
        rolled = pttsync.handle_failed(bob.docs.replica, clock.tick())
        await step(f"The delete expired unsigned: {len(rolled)} write rolled back")
        b_list.show()

        await step("Alice comes back, completes 'call mom' and deletes 'write report' herself")
        a_list.complete(call)
        a_list.remove(report)
        sync(alice, bob, clock)
        await step("Both lists are the same")
        a_list.show()
        b_list.show()
        same = [d.value for d in alice.docs.items()] == [d.value for d in bob.docs.items()]
        print(f"\n  identical on both peers: {same}")
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main)
