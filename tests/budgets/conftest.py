"""Helpers for the budgets tests: budgets and cost reports through the services."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from budgets import services
from budgets.models import Budget


@pytest.fixture
def make_budget(db: None) -> Callable[..., Budget]:
    def make(
        *, agent: Any = None, team: str = "", period: str = "daily", limit_cents: int = 1000, **kw
    ) -> Budget:
        scope = "agent" if agent is not None else "team" if team else "global"
        return services.set_budget(
            scope=scope, agent=agent, team=team, period=period, limit_cents=limit_cents, **kw
        )

    return make


@pytest.fixture(autouse=True)
def _prices(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("django_db") or "db" in request.fixturenames:
        request.getfixturevalue("seeded_prices")
