"""Pages for people. The request page shows everything a reviewer needs to decide."""

from __future__ import annotations

import json
import uuid

from django.http import HttpResponse
from django.shortcuts import get_object_or_404, render

from accounts.decorators import role_required
from accounts.models import Role
from accounts.types import AuthenticatedHttpRequest
from approvals import rules
from approvals.models import ApprovalRequest, Status


@role_required(Role.APPROVER, Role.MANAGER, Role.COMPLIANCE)
def detail(request: AuthenticatedHttpRequest, request_id: uuid.UUID) -> HttpResponse:
    approval = get_object_or_404(
        ApprovalRequest.objects.select_related("agent", "agent__owner", "decided_by"), pk=request_id
    )
    votes = approval.votes.select_related("voter").order_by("created_at")
    status = Status.EXPIRED if approval.is_overdue() else approval.status
    context = {
        "approval": approval,
        "status": status,
        "votes": votes,
        "params_json": json.dumps(approval.params, indent=2, sort_keys=True, ensure_ascii=False),
        "modified_json": (
            json.dumps(approval.modified_params, indent=2, sort_keys=True, ensure_ascii=False)
            if approval.modified_params is not None
            else ""
        ),
        "refusal": rules.refusal_to_decide(request.user, approval),
    }
    return render(request, "approvals/detail.html", context)
