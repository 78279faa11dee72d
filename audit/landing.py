"""What the compliance landing page (`/audit/`) shows at a glance (SPEC §4): the integrity
status, the latest signed checkpoint, this week's report figures, the last exports and the SIEM
streams' state."""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.utils import timezone

from audit import checkpoints, reports
from audit.events import EventType
from audit.models import AuditEvent, ChainVerification, Checkpoint
from audit.selectors import latest_verification

LAST_EXPORTS = 5


@dataclass(frozen=True)
class Landing:
    verification: ChainVerification | None
    checkpoint: Checkpoint | None
    head_sequence: int | None  # the newest event, to say how far the checkpoint lags
    report: reports.Report  # this week so far
    exports: list[AuditEvent]
    siem: list[dict[str, Any]]

    @property
    def checkpoint_root(self) -> str:
        """The checkpoint's root hash in base64, as the signed note and its JSON write it."""
        return (
            base64.b64encode(bytes(self.checkpoint.root_hash)).decode() if self.checkpoint else ""
        )

    @property
    def events_after_checkpoint(self) -> int:
        return max((self.head_sequence or 0) - (self.checkpoint.size if self.checkpoint else 0), 0)


def landing(*, now: dt.datetime | None = None) -> Landing:
    now = now or timezone.now()
    return Landing(
        verification=latest_verification(),
        checkpoint=checkpoints.latest(),
        head_sequence=AuditEvent.objects.order_by("-sequence")
        .values_list("sequence", flat=True)
        .first(),
        report=reports.build(reports.week_of(now), now=now),
        exports=list(
            AuditEvent.objects.filter(event_type=EventType.EXPORT_MADE).order_by("-sequence")[
                :LAST_EXPORTS
            ]
        ),
        siem=siem_status(),
    )


def siem_status() -> list[dict[str, Any]]:
    """The SIEM streams' state (`audit.siem.status`); empty when streaming is not configured
    (or not part of this build)."""
    try:
        from audit import siem
    except ImportError:
        return []
    status = getattr(siem, "status", None)
    return list(status()) if callable(status) else []
