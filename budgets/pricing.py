"""Which price applies to a reported model, and what a call costs (SPEC §5).

Prices change rarely (an admin adds a version) and every cost report reads one, so each process
keeps the table for a few seconds, like the escalation routes. A new version takes effect at
its `effective_from`; a reported name matches a priced model exactly (case-insensitive) or once
a trailing date stamp is removed (`gpt-4o-2024-08-06` → `gpt-4o`,
`claude-3-5-sonnet-20241022` → `claude-3-5-sonnet`). Anything else is an unknown model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from budgets.models import COST_PLACES, ModelPrice
from oversight.cache import TimedCache

PRICE_CACHE_SECONDS = 5.0
MILLION = Decimal(1_000_000)
QUANTUM = Decimal(1).scaleb(-COST_PLACES)
# A provider's snapshot suffix: -2024-08-06, -20241022, -0613, -latest.
_SNAPSHOT = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8}|\d{4}|latest)$")
# The seed's "expensive model" hint: models at or above this input price (¢ per million tokens,
# i.e. $15 per million: gpt-4, the Opus family, o1).
EXPENSIVE_INPUT_CENTS_PER_MTOK = Decimal(1500)


@dataclass(frozen=True)
class Tokens:
    input: int
    output: int
    cached_input: int = 0


def normalise(model: str) -> str:
    return model.strip().lower()


def price_for(model: str, at: datetime) -> ModelPrice | None:
    """The price version in force at `at` for the reported model name, or None if unknown."""
    versions = _prices.get()
    name = normalise(model)
    candidates = versions.get(name) or versions.get(_SNAPSHOT.sub("", name)) or []
    # Newest first: the first version already in force applies.
    return next((price for price in candidates if price.effective_from <= at), None)


def cost_cents(price: ModelPrice | None, tokens: Tokens) -> Decimal:
    """Exact cost in cents, rounded half-up to 1e-8 cent; zero for an unknown model."""
    if price is None:
        return Decimal(0).quantize(QUANTUM)
    cached_rate = price.cached_input_cents_per_mtok
    if cached_rate is None:  # no cache discount: cached tokens are billed as input
        cached_rate = price.input_cents_per_mtok
    total = (
        tokens.input * price.input_cents_per_mtok
        + tokens.output * price.output_cents_per_mtok
        + tokens.cached_input * cached_rate
    ) / MILLION
    return total.quantize(QUANTUM, rounding=ROUND_HALF_UP)


def expensive_models() -> set[str]:
    return {
        name
        for name, versions in _prices.get().items()
        if versions and versions[0].input_cents_per_mtok >= EXPENSIVE_INPUT_CENTS_PER_MTOK
    }


def _load_prices() -> dict[str, list[ModelPrice]]:
    versions: dict[str, list[ModelPrice]] = {}
    for price in ModelPrice.objects.order_by("model", "-effective_from"):
        versions.setdefault(normalise(price.model), []).append(price)
    return versions


_prices = TimedCache(PRICE_CACHE_SECONDS, _load_prices)


def forget_prices() -> None:
    """Drop this process's cached prices (after a change, and in tests)."""
    _prices.forget()
