"""Reporting costs in tests."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from budgets import services
from tests.approvals.test_races import run_together

THREADS = 20  # the test process's connection pool holds 20


def run_in_waves(calls: Sequence[Callable[[], Any]], threads: int = THREADS) -> list[Any]:
    """Run `calls` on `threads` threads that start together (each with its own connection),
    each thread running its share in turn; a call's exception is its result."""

    def attempt(call: Callable[[], Any]) -> Any:
        try:
            return call()
        except Exception as exc:
            return exc

    def run_share(share: Sequence[Callable[[], Any]]) -> list[Any]:
        return [attempt(call) for call in share]

    shares = [calls[index::threads] for index in range(threads)]
    nested = run_together([functools.partial(run_share, share) for share in shares])
    return [result for share in nested for result in share]


def report(
    agent: Any, model: str = "gpt-4", input_tokens: int = 1000, output_tokens: int = 0, **kw: Any
) -> services.CostOutcome:
    """One gpt-4 call of 1000 input tokens costs exactly 3 cents."""
    return services.record_cost(
        agent=agent, model=model, input_tokens=input_tokens, output_tokens=output_tokens, **kw
    )
