"""The Block Kit of a request's Slack message, and of the reject modal.

A pending request shows what an approver needs to decide (action, agent, risk, urgency,
justification, arguments, deadline) and three buttons: Approve (bound to the hash of the
arguments shown), Reject (opens a modal for the reason) and Open (the request's page). Once
final, the message says how it ended, by whom, and has no buttons left.

Everything the agent wrote is escaped (`&`, `<`, `>`): an agent must not make the message
mention @channel or show a link of its choosing. Long fields are cut to Block Kit's limits.
"""

from __future__ import annotations

import json
from typing import Any

from accounts.models import Tier
from agents.models import AgentStatus
from approvals.models import ApprovalRequest, Status
from approvals.representation import page_url

APPROVE = "oversight_approve"
REJECT = "oversight_reject"
OPEN = "oversight_open"
REJECT_MODAL = "oversight_reject_modal"
REASON_BLOCK = "reason"
REASON_INPUT = "reason_input"

PARAMS_CHARS = 1500
JUSTIFICATION_CHARS = 1000

_ENDING = {
    Status.APPROVED: ":white_check_mark: *Approved*",
    Status.REJECTED: ":x: *Rejected*",
    Status.EXPIRED: ":hourglass: *Expired*",
    Status.CANCELLED: ":no_entry_sign: *Cancelled*",
}


def escape(text: str) -> str:
    """Slack's three control characters, escaped as Slack asks."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _code(text: str, limit: int) -> str:
    # Cut after escaping (which lengthens it), so the block always closes; a ``` in the agent's
    # text would end it early.
    return "```" + _cut(escape(text).replace("```", "`\u200b`\u200b`"), limit) + "```"


def _date(moment: Any) -> str:
    """Shown in each reader's own time zone; the ISO form where Slack cannot."""
    return f"<!date^{int(moment.timestamp())}^{{date_short_pretty}} {{time}}|{moment.isoformat()}>"


def button_value(request: ApprovalRequest) -> str:
    """Approve's value: the request and the hash of the arguments shown with it."""
    return f"{request.pk}:{request.current_params_sha256}"


def message(request: ApprovalRequest) -> dict[str, Any]:
    """`text` (the notification's fallback) and `blocks` of the request's message, as it is now.
    `request` has its agent and decider loaded."""
    action = escape(_cut(request.action, 150))
    agent = escape(request.agent.name)
    pending = request.is_pending and not request.is_overdue()
    text = f"{'Approval needed' if pending else 'Approval request'}: {action} ({agent})"
    params = json.dumps(request.effective_params, indent=2, sort_keys=True)
    changed = request.modified_params is not None
    heading = "*Arguments (changed by an approver)*" if changed else "*Arguments*"
    blocks: list[dict[str, Any]] = [
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": _cut(f"*{action}*\nAgent *{agent}*", 3000)},
        },
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": f"*Risk*\n{request.risk_level}"},
                {"type": "mrkdwn", "text": f"*Urgency*\n{request.urgency}"},
                {"type": "mrkdwn", "text": f"*Tier*\n{Tier(request.current_tier).label}"},
                {"type": "mrkdwn", "text": f"*Decide by*\n{_date(request.expires_at)}"},
            ],
        },
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": "*Justification*\n"
                + escape(_cut(request.justification, JUSTIFICATION_CHARS)),
            },
        },
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": f"{heading}\n{_code(params, PARAMS_CHARS)}",
            },
        },
    ]
    context = [f"Arguments sha256 `{request.current_params_sha256[:16]}…`"]
    if request.escalated_at is not None:
        context.append(
            f"Escalated to {Tier(request.current_tier).label} {_date(request.escalated_at)}"
            + (" (top of the ranking: flagged)" if request.escalation_flagged else "")
        )
    if request.required_approvals > 1:
        context.append(f"Needs {request.required_approvals} approvals from different people")
    frozen = pending and request.agent.status != AgentStatus.ACTIVE
    if frozen:
        why = f" ({escape(_cut(request.agent.status_reason, 200))})"
        context.append(
            f"Frozen: agent {agent} is {request.agent.get_status_display().lower()}"
            + (why if request.agent.status_reason else "")
            + "; no vote until it runs again"
        )
    blocks.append(
        {"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(context)}]}
    )
    if frozen:
        blocks.append(
            {
                "type": "actions",
                "block_id": "decide",
                "elements": [
                    {
                        "type": "button",
                        "action_id": OPEN,
                        "text": {"type": "plain_text", "text": "Open"},
                        "url": page_url(request),
                    }
                ],
            }
        )
    elif pending:
        blocks.append(
            {
                "type": "actions",
                "block_id": "decide",
                "elements": [
                    {
                        "type": "button",
                        "action_id": APPROVE,
                        "text": {"type": "plain_text", "text": "Approve"},
                        "style": "primary",
                        "value": button_value(request),
                    },
                    {
                        "type": "button",
                        "action_id": REJECT,
                        "text": {"type": "plain_text", "text": "Reject"},
                        "style": "danger",
                        "value": str(request.pk),
                    },
                    {
                        "type": "button",
                        "action_id": OPEN,
                        "text": {"type": "plain_text", "text": "Open"},
                        "url": page_url(request),
                    },
                ],
            }
        )
    else:
        status = Status.EXPIRED if request.is_overdue() else Status(request.status)
        ending = _ENDING[status]
        if request.decided_by is not None and status in (Status.APPROVED, Status.REJECTED):
            ending += f" by {escape(request.decided_by.display_name)}"
        if request.decision_reason and status != Status.APPROVED:
            ending += ": " + escape(_cut(request.decision_reason, 500))
        ending += f" · <{page_url(request)}|Open>"
        text = f"{status.label}: {action} ({agent})"
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": ending}})
    return {"text": text, "blocks": blocks}


def reject_modal(request_id: str, *, channel_id: str) -> dict[str, Any]:
    """The modal asking for a rejection's reason (`views.open`)."""
    return {
        "type": "modal",
        "callback_id": REJECT_MODAL,
        "private_metadata": json.dumps({"request_id": request_id, "channel_id": channel_id}),
        "title": {"type": "plain_text", "text": "Reject the request"},
        "submit": {"type": "plain_text", "text": "Reject"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            {
                "type": "input",
                "block_id": REASON_BLOCK,
                "label": {
                    "type": "plain_text",
                    "text": "Why? The agent and the audit trail see it.",
                },
                "element": {
                    "type": "plain_text_input",
                    "action_id": REASON_INPUT,
                    "multiline": True,
                    "max_length": 2000,
                },
            }
        ],
    }
