"""`oversight.cache.TimedCache`: the process-local copy of rows a few seconds of staleness
cannot hurt (escalation routes, model prices, budgets)."""

from __future__ import annotations

from oversight.cache import TimedCache


def counting_loader() -> tuple[list[int], TimedCache[int]]:
    loads: list[int] = []

    def load() -> int:
        loads.append(len(loads) + 1)
        return loads[-1]

    return loads, TimedCache(60, load)


def test_it_loads_once_while_fresh_and_again_after_forget():
    loads, cache = counting_loader()
    assert [cache.get(), cache.get()] == [1, 1]
    cache.forget()
    assert cache.get() == 2
    assert loads == [1, 2]


def test_it_loads_again_once_its_copy_is_older_than_its_seconds():
    loads, cache = counting_loader()
    cache.get()
    cache.seconds = 0
    assert cache.get() == 2
    assert loads == [1, 2]
