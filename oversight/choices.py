"""Choices whose declaration order is a ranking (tiers, risk levels)."""

from __future__ import annotations

from django.db import models


class RankedChoices(models.TextChoices):
    """Declare members lowest first; `rank` is the position in that order."""

    @classmethod
    def rank(cls, value: str) -> int:
        """0 for the lowest; raises ValueError for an unknown value."""
        return list(cls.values).index(value)

    @classmethod
    def at_or_above(cls, value: str) -> list[str]:
        return list(cls.values)[cls.rank(value) :]

    @classmethod
    def at_or_below(cls, value: str) -> list[str]:
        return list(cls.values)[: cls.rank(value) + 1]

    @classmethod
    def highest(cls, *values: str) -> str:
        return max(values, key=cls.rank)
