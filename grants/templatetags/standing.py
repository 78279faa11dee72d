"""`{% grant_choice approval %}`: the standing-approval choice inside the request page's Approve
form. After a refused approval the page answers the POST itself, so the choice is shown again
as the person made it (bound to the POST), with what was wrong."""

from __future__ import annotations

from typing import Any

from django import template

from approvals.models import ApprovalRequest
from grants.forms import GrantForm
from grants.services import refusal_for_request

register = template.Library()


@register.inclusion_tag("grants/_grant_choice.html", takes_context=True)
def grant_choice(context: template.Context, approval: ApprovalRequest) -> dict[str, Any]:
    request = context["request"]
    refusal = refusal_for_request(approval)
    if refusal:
        return {"refusal": refusal, "form": None}
    posted = request.method == "POST" and "grant-kind" in request.POST
    form = GrantForm(request.POST if posted else None, params=approval.effective_params)
    if posted:
        form.is_valid()
    return {"form": form, "refusal": "", "open": posted and form.chosen}
