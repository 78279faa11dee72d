"""Time as people read it on the dashboard: `{{ seconds|duration }}` (4m 05s, 2h 10m),
`{{ fraction|percent }}`, `{{ moment|ago }}` (3 hours ago)."""

from __future__ import annotations

from datetime import datetime

from django import template
from django.utils.timesince import timesince

register = template.Library()


@register.filter
def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    whole = round(seconds)
    if whole >= 86400:
        return f"{whole // 86400}d {whole % 86400 // 3600}h"
    if whole >= 3600:
        return f"{whole // 3600}h {whole % 3600 // 60:02d}m"
    if whole >= 60:
        return f"{whole // 60}m {whole % 60:02d}s"
    return f"{whole}s"


@register.filter
def percent(fraction: float | None) -> str:
    return "—" if fraction is None else f"{fraction * 100:.1f} %"


@register.filter
def ago(moment: datetime | None) -> str:
    """'3 hours ago' rather than Django's '3 hours, 12 minutes': one unit reads at a glance."""
    if moment is None:
        return "never"
    return f"{timesince(moment, depth=1)} ago"
