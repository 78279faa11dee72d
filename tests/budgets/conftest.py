"""Helpers for the budgets tests: budgets and cost reports through the services."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import pytest
from django.apps import apps

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
def _seeded_prices(request: pytest.FixtureRequest) -> None:
    """Transactional tests end with a flush that empties the price table its migration seeded;
    put the seeded prices back for every budgets test that uses the database."""
    marker = request.node.get_closest_marker("django_db")
    transactional = "transactional_db" in request.fixturenames or bool(
        marker and marker.kwargs.get("transaction")
    )
    if not transactional and "db" not in request.fixturenames and marker is None:
        return
    request.getfixturevalue("transactional_db" if transactional else "db")
    importlib.import_module("budgets.migrations.0002_seed_prices").seed(apps, None)
