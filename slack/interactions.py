"""What a click in Slack does, once its signature is verified (`slack.views`): a thin door
onto the same services as the browser (SPEC §9.10), which decide everything.

- **Approve** → `approve_request` as the Slack user's person, bound to the arguments' hash the
  message showed (the button carries it): arguments changed since are refused, not approved.
- **Reject** → a modal asking for the reason (`views.open`, at once: Slack's `trigger_id` is
  valid for 3 s, so this one call is not sent through the outbox); its submission →
  `reject_request`, and a refusal is shown in the modal, under the reason.
- **Open** → nothing to do (a link button; Slack reports its clicks too).

A refusal by a service (not allowed to decide, agent paused, expired, voted already, ...) goes
back to the person as a message only they see, with the service's own words. A Slack user who
is not linked to a person is linked by confirmed email where that is safe, else told how to
link (`slack.services`).
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.urls import reverse

from accounts.models import User
from approvals import services as approvals
from approvals.models import ApprovalRequest
from slack import blocks, delivery, services, web
from slack.models import SlackLink

logger = logging.getLogger(__name__)

USERS_INFO_SECONDS = 1.0  # all of a click's own calls must end within Slack's 3 s
VIEWS_OPEN_SECONDS = 1.5


class Malformed(Exception):
    """Not the payload Slack sends for our messages."""


def handle(payload: dict[str, Any]) -> dict[str, Any] | None:
    """Act on one verified interaction; returns the JSON to answer Slack with, if any."""
    try:
        kind = payload["type"]
        if kind == "block_actions":
            _action(payload)
            return None
        if kind == "view_submission" and payload["view"]["callback_id"] == blocks.REJECT_MODAL:
            return _reject_submitted(payload)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise Malformed(f"{type(exc).__name__}: {exc}") from exc
    return None  # other kinds (a modal closed, a shortcut) need nothing


def _who(payload: dict[str, Any]) -> tuple[str, str]:
    user = payload["user"]
    team = (payload.get("team") or {}).get("id") or user.get("team_id") or ""
    return str(user["id"]), str(team)


def _action(payload: dict[str, Any]) -> None:
    action = payload["actions"][0]
    action_id = action["action_id"]
    if action_id not in (blocks.APPROVE, blocks.REJECT):
        return  # Open, or a button of another app's
    slack_user, team = _who(payload)
    channel = str((payload.get("channel") or {}).get("id") or payload["container"]["channel_id"])
    person = person_for(slack_user, team)
    if person is None:
        delivery.reply(
            channel_id=channel, slack_user_id=slack_user, text=how_to_link(slack_user, team)
        )
        return
    if action_id == blocks.APPROVE:
        request_id, _, seen = str(action["value"]).partition(":")
        _approve(uuid.UUID(request_id), person, seen, channel=channel, slack_user=slack_user)
    else:
        _open_reject_modal(payload, str(action["value"]), channel=channel, slack_user=slack_user)


def _approve(
    request_id: uuid.UUID, person: User, seen: str, *, channel: str, slack_user: str
) -> None:
    try:
        outcome = approvals.approve_request(
            request_id=request_id, reviewer=person, seen_params_sha256=seen or None
        )
    except approvals.ApprovalError as exc:
        text = f"Not approved: {exc.message}"
    except ApprovalRequest.DoesNotExist:
        text = "Not approved: this request no longer exists."
    else:
        if outcome.decided:
            return  # the message itself is updated (the outbox's update)
        text = (
            "Your approval is recorded. This request needs "
            f"{outcome.request.required_approvals} approvals from different people."
        )
    delivery.reply(channel_id=channel, slack_user_id=slack_user, text=blocks.escape(text))


def _open_reject_modal(
    payload: dict[str, Any], request_id: str, *, channel: str, slack_user: str
) -> None:
    uuid.UUID(request_id)  # a malformed value is the payload's fault
    try:
        web.call(
            "views.open",
            {
                "trigger_id": payload["trigger_id"],
                "view": blocks.reject_modal(request_id, channel_id=channel),
            },
            timeout=VIEWS_OPEN_SECONDS,
        )
    except web.SlackError as exc:
        logger.warning("could not open the reject modal: %s", exc)
        page = settings.OVERSIGHT_BASE_URL + reverse("approvals:detail", args=[request_id])
        delivery.reply(
            channel_id=channel,
            slack_user_id=slack_user,
            text=f"Slack did not open the form for the reason; reject on <{page}|its page>.",
        )


def _reject_submitted(payload: dict[str, Any]) -> dict[str, Any] | None:
    view = payload["view"]
    meta = json.loads(view["private_metadata"])
    request_id = uuid.UUID(meta["request_id"])
    reason = view["state"]["values"][blocks.REASON_BLOCK][blocks.REASON_INPUT].get("value") or ""
    slack_user, team = _who(payload)
    person = person_for(slack_user, team)
    if person is None:
        return _modal_error(
            "Your Slack account is not linked to an Oversight person. "
            + how_to_link(slack_user, team, mrkdwn=False)
        )
    try:
        approvals.reject_request(request_id=request_id, reviewer=person, reason=str(reason))
    except approvals.ApprovalError as exc:
        return _modal_error(f"Not rejected: {exc.message}")
    except ApprovalRequest.DoesNotExist:
        return _modal_error("Not rejected: this request no longer exists.")
    return None  # the modal closes; the message is updated (the outbox's update)


def _modal_error(text: str) -> dict[str, Any]:
    return {"response_action": "errors", "errors": {blocks.REASON_BLOCK: text[:2000]}}


def person_for(slack_user: str, team: str) -> User | None:
    """The person a Slack user acts as: linked already, or now by confirmed email."""
    link = SlackLink.objects.select_related("user").filter(slack_user_id=slack_user).first()
    if link is not None:
        return link.user
    if not settings.OVERSIGHT_SLACK_LINK_BY_EMAIL:
        return None
    profile = user_profile(slack_user)
    if profile is None:
        return None
    created = services.link_by_email(slack_user_id=slack_user, team_id=team, profile=profile)
    return created.user if created is not None else None


def user_profile(slack_user: str) -> dict[str, Any] | None:
    """Slack's `users.info` answer (`user`) for a Slack user, within a click's time, or None
    when Slack did not give it (logged)."""
    try:
        info = web.call("users.info", {"user": slack_user}, form=True, timeout=USERS_INFO_SECONDS)
    except web.SlackError as exc:
        logger.warning("users.info for %s failed: %s", slack_user, exc)
        return None
    return info.get("user") or {}


def how_to_link(slack_user: str, team: str, *, mrkdwn: bool = True) -> str:
    token = services.link_token(slack_user_id=slack_user, team_id=team)
    url = f"{settings.OVERSIGHT_BASE_URL}{reverse('slack:link')}?{urlencode({'token': token})}"
    where = f"<{url}|this link>" if mrkdwn else url
    return (
        "Oversight does not know who you are yet: your Slack account is not linked to an "
        f"Oversight person. Open {where} within {services.LINK_LASTS}, sign in to Oversight "
        "and confirm; then click again."
    )
