"""`{{ cents|dollars }}`: Decimal cents as dollars ($1,234.56; small amounts keep 4 places)."""

from __future__ import annotations

from decimal import Decimal

from django import template

from budgets import selectors

register = template.Library()


@register.filter
def dollars(cents: Decimal | int | None) -> str:
    return "—" if cents is None else selectors.dollars(cents)
