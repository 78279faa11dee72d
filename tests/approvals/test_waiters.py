"""The waiter hub's shared reads (approvals.waiters.WaiterHub.read): the waiters one change
wakes share one database read, and no waiter gets a read older than the change it heard."""

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
        with hub.watch("r1", "agent"), hub.watch("r1", "agent"), hub.watch("r1", "agent"):
            reads = [asyncio.ensure_future(hub.read("r1", "agent", store.load)) for _ in range(3)]
            await settle()
            store.gate.set()
            assert await asyncio.gather(*reads) == [0, 0, 0]
        assert store.reads == 1

    asyncio.run(scenario())


def test_a_waiter_that_heard_a_later_change_does_not_take_an_older_read() -> None:
    async def scenario() -> None:
        hub, store = WaiterHub(), Store()
        with hub.watch("r1", "agent"), hub.watch("r1", "agent"):
            first = asyncio.ensure_future(hub.read("r1", "agent", store.load))
            await settle()  # its read has started and sees version 0
            store.version = 1  # the request changes, and the message arrives
            heard(hub, "r1")
            second = asyncio.ensure_future(hub.read("r1", "agent", store.load))
            await settle()
            store.gate.set()
            assert (await first, await second) == (0, 1)
        assert store.reads == 2

    asyncio.run(scenario())


def test_reads_are_not_shared_between_agents_or_requests() -> None:
    async def scenario() -> None:
        hub, store = WaiterHub(), Store()
        with hub.watch("r1", "a"), hub.watch("r1", "b"), hub.watch("r2", "a"):
            reads = [
                asyncio.ensure_future(hub.read(request_id, agent, store.load))
                for request_id, agent in (("r1", "a"), ("r1", "b"), ("r2", "a"))
            ]
            await settle()
            store.gate.set()
            await asyncio.gather(*reads)
        assert store.reads == 3

    asyncio.run(scenario())


def test_a_waiter_hanging_up_does_not_cancel_the_read_the_others_wait_for() -> None:
    async def scenario() -> None:
        hub, store = WaiterHub(), Store()
        with hub.watch("r1", "agent"), hub.watch("r1", "agent"):
            leaver = asyncio.ensure_future(hub.read("r1", "agent", store.load))
            stayer = asyncio.ensure_future(hub.read("r1", "agent", store.load))
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
        with hub.watch("r1", "agent"):
            assert await hub.read("r1", "agent", store.load) == 0
            store.version = 1
            assert await hub.read("r1", "agent", store.load) == 1
        assert store.reads == 2
        assert not hub._reads
        assert not hub._heard

    asyncio.run(scenario())
