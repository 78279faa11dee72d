"""`{{ cents|dollars }}`: Decimal cents as dollars ($1,234.56; small amounts keep 4 places)."""

from __future__ import annotations

from decimal import Decimal

from django import template

register = template.Library()


@register.filter
def dollars(cents: Decimal | int | None) -> str:
    if cents is None:
        return "—"
    value = Decimal(cents) / 100
    if value and abs(value) < Decimal("0.01"):
        return f"${value:,.4f}"
    return f"${value:,.2f}"
