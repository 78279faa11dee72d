"""The waiter hub's shared reads (approvals.waiters.WaiterHub.read): the waiters one change
wakes share one database read, and no waiter gets a read older than its own arrival or than
the change it heard."""

from __future__ import annotations

import asyncio

from approvals.waiters import WaiterHub


class Store:
    """A stand-in for the database row: its version, and how many reads were made."""

    def __init__(self) -> None:
        self.version = 0
        self.reads = 0
        self.gate = asyncio.Event()

    async def load(self) -> int:
        self.reads += 1
        seen = self.version  # what the read sees: the row as it was when it started
        await self.gate.wait()
        return seen


async def settle() -> None:
    """Let every task started so far run up to its next wait."""
    for _ in range(5):
        await asyncio.sleep(0)


def heard(hub: WaiterHub, request_id: str) -> None:
    """What the hub's subscriber does with a change message."""
    hub._heard[request_id] += 1


def test_waiters_woken_by_one_change_share_one_read() -> None:
    async def scenario() -> None:
        hub, store = WaiterHub(), Store()
        with (
            hub.watch("r1", "a") as one,
            hub.watch("r1", "a") as two,
            hub.watch("r1", "a") as three,
        ):
            reads = [asyncio.ensure_future(hub.read(w, store.load)) for w in (one, two, three)]
            await settle()
            store.gate.set()
            assert await asyncio.gather(*reads) == [0, 0, 0]
        assert store.reads == 1

    asyncio.run(scenario())


def test_a_waiter_that_heard_a_later_change_does_not_take_an_older_read() -> None:
    async def scenario() -> None:
        hub, store = WaiterHub(), Store()
        with hub.watch("r1", "a") as one, hub.watch("r1", "a") as two:
            first = asyncio.ensure_future(hub.read(one, store.load))
            await settle()  # its read has started and sees version 0
            store.version = 1  # the request changes, and the message arrives
            heard(hub, "r1")
            second = asyncio.ensure_future(hub.read(two, store.load))
            await settle()
            store.gate.set()
            assert (await first, await second) == (0, 1)
        assert store.reads == 2

    asyncio.run(scenario())


def test_a_waiter_that_came_after_a_read_started_does_not_take_it() -> None:
    # The last waiter hangs up while its read is in flight (the hub forgets the changes heard);
    # the request is decided; the agent asks again: it must not get the read from before.
    async def scenario() -> None:
        hub, store = WaiterHub(), Store()
        with hub.watch("r1", "a") as leaving:
            gone = asyncio.ensure_future(hub.read(leaving, store.load))
            await settle()
            gone.cancel()
            await settle()
        store.version = 1  # decided; nobody here is watching, so no change is counted
        with hub.watch("r1", "a") as again:
            answer = asyncio.ensure_future(hub.read(again, store.load))
            await settle()
            store.gate.set()
            assert await answer == 1
        assert store.reads == 2

    asyncio.run(scenario())


def test_reads_are_not_shared_between_agents_or_requests() -> None:
    async def scenario() -> None:
        hub, store = WaiterHub(), Store()
        with (
            hub.watch("r1", "a") as one,
            hub.watch("r1", "b") as two,
            hub.watch("r2", "a") as three,
        ):
            reads = [asyncio.ensure_future(hub.read(w, store.load)) for w in (one, two, three)]
            await settle()
            store.gate.set()
            await asyncio.gather(*reads)
        assert store.reads == 3

    asyncio.run(scenario())


def test_a_waiter_hanging_up_does_not_cancel_the_read_the_others_wait_for() -> None:
    async def scenario() -> None:
        hub, store = WaiterHub(), Store()
        with hub.watch("r1", "a") as one, hub.watch("r1", "a") as two:
            leaver = asyncio.ensure_future(hub.read(one, store.load))
            stayer = asyncio.ensure_future(hub.read(two, store.load))
            await settle()
            leaver.cancel()  # its client went away
            await settle()
            store.gate.set()
            assert await stayer == 0
            assert leaver.cancelled()
        assert store.reads == 1

    asyncio.run(scenario())


def test_a_finished_read_is_not_handed_out_again() -> None:
    async def scenario() -> None:
        hub, store = WaiterHub(), Store()
        store.gate.set()
        with hub.watch("r1", "a") as watch:
            assert await hub.read(watch, store.load) == 0
            store.version = 1
            assert await hub.read(watch, store.load) == 1
        assert store.reads == 2
        assert not hub._reads
        assert not hub._heard

    asyncio.run(scenario())


def test_waiters_that_come_during_a_read_share_the_next_one() -> None:
    async def scenario() -> None:
        hub, store = WaiterHub(), Store()
        with hub.watch("r1", "a") as first:
            early = asyncio.ensure_future(hub.read(first, store.load))
            await settle()  # a read in flight, seeing version 0
            store.version = 1
            with hub.watch("r1", "a") as two, hub.watch("r1", "a") as three:
                late = [asyncio.ensure_future(hub.read(w, store.load)) for w in (two, three)]
                await settle()
                assert store.reads == 1  # they wait for it to end, then read once, together
                store.gate.set()
                assert await early == 0
                assert await asyncio.gather(*late) == [1, 1]
        assert store.reads == 2

    asyncio.run(scenario())
