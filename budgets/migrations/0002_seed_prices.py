"""The starting price table (¢ per million tokens): the seed document's models at its prices
(October 2024), and the mainstream models of late 2025. Admins add newer versions in admin;
this migration never changes a row that exists."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.db import migrations

SEED_DOCUMENT = datetime(2024, 10, 1, tzinfo=UTC)
MAINSTREAM = datetime(2025, 9, 1, tzinfo=UTC)

# model: (input, output, cached input or None when the model has no cache discount)
PRICES: dict[datetime, dict[str, tuple[str, str, str | None]]] = {
    SEED_DOCUMENT: {
        "gpt-4": ("3000", "6000", None),
        "gpt-4-turbo": ("1000", "3000", None),
        "gpt-3.5-turbo": ("50", "150", None),
        "claude-3-5-sonnet": ("300", "1500", "30"),
        "claude-3-haiku": ("25", "125", "3"),
    },
    MAINSTREAM: {
        "gpt-5": ("125", "1000", "12.5"),
        "gpt-5-mini": ("25", "200", "2.5"),
        "gpt-5-nano": ("5", "40", "0.5"),
        "gpt-4.1": ("200", "800", "50"),
        "gpt-4.1-mini": ("40", "160", "10"),
        "gpt-4.1-nano": ("10", "40", "2.5"),
        "gpt-4o": ("250", "1000", "125"),
        "gpt-4o-mini": ("15", "60", "7.5"),
        "o1": ("1500", "6000", "750"),
        "o3": ("200", "800", "50"),
        "o4-mini": ("110", "440", "27.5"),
        "claude-opus-4-1": ("1500", "7500", "150"),
        "claude-opus-4": ("1500", "7500", "150"),
        "claude-sonnet-4-5": ("300", "1500", "30"),
        "claude-sonnet-4": ("300", "1500", "30"),
        "claude-3-7-sonnet": ("300", "1500", "30"),
        "claude-haiku-4-5": ("100", "500", "10"),
        "claude-3-5-haiku": ("80", "400", "8"),
        "gemini-2.5-pro": ("125", "1000", "12.5"),
        "gemini-2.5-flash": ("30", "250", "3"),
        "gemini-2.5-flash-lite": ("10", "40", "1"),
    },
}


def seed(apps: Any, schema_editor: Any) -> None:
    ModelPrice = apps.get_model("budgets", "ModelPrice")
    for effective_from, models in PRICES.items():
        for model, (input_price, output_price, cached) in models.items():
            ModelPrice.objects.get_or_create(
                model=model,
                effective_from=effective_from,
                defaults={
                    "input_cents_per_mtok": Decimal(input_price),
                    "output_cents_per_mtok": Decimal(output_price),
                    "cached_input_cents_per_mtok": Decimal(cached) if cached else None,
                },
            )


class Migration(migrations.Migration):
    dependencies = [("budgets", "0001_initial")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
