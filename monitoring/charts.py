"""Small server-rendered SVG bar charts for the monitoring page: one bar per day, the
threshold as a dashed line; the page puts a table of the same numbers beside each."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

WIDTH = 600
HEIGHT = 90


@dataclass(frozen=True)
class Bar:
    day: date
    value: float | None
    label: str
    x: float
    y: float
    width: float
    height: float
    breach: bool


@dataclass(frozen=True)
class Chart:
    bars: list[Bar]
    threshold_y: float | None
    top_label: str
    width: int = WIDTH
    height: int = HEIGHT


def chart(
    days: list[date],
    values: list[float | None],
    *,
    label: str = "{:.0f}",
    threshold: float | None = None,
    breach: str = "",
) -> Chart:
    """Bars scaled to the largest value (or the threshold, if larger). `breach` is "above" or
    "below": which side of the threshold a bar is marked on."""
    top = max([v for v in values if v is not None] + [threshold or 0.0, 0.0])
    scale = (HEIGHT - 4) / top if top else 0.0
    slot = WIDTH / max(len(days), 1)
    bars = []
    for index, (day, value) in enumerate(zip(days, values, strict=True)):
        height = (value or 0.0) * scale
        crossed = (
            value is not None
            and threshold is not None
            and (
                (breach == "above" and value > threshold)
                or (breach == "below" and value < threshold)
            )
        )
        bars.append(
            Bar(
                day=day,
                value=value,
                label="no data" if value is None else label.format(value),
                x=round(index * slot + 1, 1),
                y=round(HEIGHT - height, 1),
                width=round(max(slot - 2, 1), 1),
                height=round(height, 1),
                breach=crossed,
            )
        )
    threshold_y = None if threshold is None or not top else round(HEIGHT - threshold * scale, 1)
    data = any(value is not None for value in values)
    return Chart(bars=bars, threshold_y=threshold_y, top_label=label.format(top) if data else "")
