"""Slack hears of requests' changes through `approvals.signals` (approvals does not import
Slack): the receiver writes outbox rows in the change's transaction, nothing else."""

from __future__ import annotations

from typing import Any

from django.dispatch import receiver

from approvals.models import ApprovalRequest
from approvals.signals import request_changed
from slack import delivery


@receiver(request_changed, dispatch_uid="slack.request_changed")
def _request_changed(sender: Any, *, request: ApprovalRequest, kind: str, **kwargs: Any) -> None:
    delivery.request_changed(request, kind)
