"""Time as people read it on the dashboard: `{{ seconds|duration }}` (4m 05s, 2h 10m),
`{{ fraction|percent }}`, `{{ moment|ago }}` (3 hours ago)."""

from __future__ import annotations

from datetime import datetime

from django import template
from django.utils.timesince import timesince

from oversight import text

register = template.Library()


register.filter("duration", text.duration)


@register.filter
def percent(fraction: float | None) -> str:
    return "—" if fraction is None else f"{fraction * 100:.1f} %"


@register.filter
def ago(moment: datetime | None) -> str:
    """'3 hours ago' rather than Django's '3 hours, 12 minutes': one unit reads at a glance."""
    if moment is None:
        return "never"
    return f"{timesince(moment, depth=1)} ago"
