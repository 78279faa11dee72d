"""Slack's outbox (SPEC §8): the Web API calls that tell Slack about requests, written in the
transaction of the change and sent after it commits (`oversight.outbox`: lease, backoff, sweep).

- **post** (`chat.postMessage`): a new request, to its first tier's channel; after an
  escalation, to the new tier's channel too. The message is composed when sent, from the request
  as it is then; a request that is no longer pending by then is not posted (nobody needs
  asking). The message's `ts` is kept (`SlackMessage`) to update it later.
- **update** (`chat.update`): the request was escalated or reached its final state anywhere (the
  browser, Slack, the API, a timer): every message of it is redrawn in place, the buttons gone
  once it is final. A post that was composed before such a change and recorded after it makes an
  update of its own (see `_record_post`), so no message is left showing an old state.
- **reply** (`chat.postEphemeral`): an answer to one person's click (refused, or what happens
  next). Worth sending for a few minutes only.

Posts and updates are sent by beat's sweep, every timer tick (an agent's create is spared a
broker round trip; a Slack message a second or two later is no loss); replies also get a task
on commit, as someone is looking at the message. Delivery is at-least-once: a post repeated
after a worker died mid-send is skipped when its message was recorded, otherwise posted again.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import timedelta

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from approvals import signals
from approvals.models import ApprovalRequest
from oversight import outbox, redis_clients
from oversight.cache import TimedCache
from oversight.celery import app as celery_app
from oversight.outbox import DeliveryStatus
from slack import blocks, web
from slack.models import CallKind, SlackChannel, SlackDelivery, SlackInteraction, SlackMessage

logger = logging.getLogger(__name__)

REPLY_WORTH = timedelta(minutes=5)  # a reply later than this answers nobody
# A signature is accepted up to 5 minutes either side of its timestamp, so it must be remembered
# 10 minutes after it came; a little more for the clocks' differences.
REPLAY_MEMORY = timedelta(minutes=15)
DELIVER_TASK = "slack.tasks.deliver"

# The channels change rarely (an admin edits them) and every create reads one: each process
# keeps them for a few seconds, so a new channel applies to requests created after that.
_channels = TimedCache(5.0, lambda: dict(SlackChannel.objects.values_list("tier", "channel_id")))


def channel_for(tier: str) -> str | None:
    return _channels.get().get(tier)


def forget_channels() -> None:
    """Drop this process's cached channels (after a change, and in tests)."""
    _channels.forget()


# --- written in the change's transaction ----------------------------------------------------


def request_changed(request: ApprovalRequest, kind: str) -> None:
    """The outbox rows for a request's change (`approvals.signals.request_changed`), in its
    transaction. Nothing when Slack is off; nothing for a request never posted."""
    if not settings.OVERSIGHT_SLACK_BOT_TOKEN:
        return
    rows: list[SlackDelivery] = []
    posted = None
    if kind != signals.CREATED:
        # Only requests posted somewhere have messages to update.
        posted = set(
            SlackDelivery.objects.filter(request=request, kind=CallKind.POST).values_list(
                "channel_id", flat=True
            )
        )
        if posted:
            rows.append(SlackDelivery(kind=CallKind.UPDATE, request=request))
    if kind in (signals.CREATED, signals.ESCALATED, signals.REROUTED):
        channel = channel_for(request.current_tier)
        if channel and channel not in (posted or ()):
            rows.append(SlackDelivery(kind=CallKind.POST, request=request, channel_id=channel))
    if rows:
        SlackDelivery.objects.bulk_create(rows)


def reply(*, channel_id: str, slack_user_id: str, text: str) -> SlackDelivery:
    """Tell one person something in the channel they clicked in (only they see it); sent after
    commit, at once."""
    item = SlackDelivery.objects.create(
        kind=CallKind.REPLY, channel_id=channel_id, slack_user_id=slack_user_id, text=text
    )
    transaction.on_commit(lambda: _queue(item.pk), robust=True)
    return item


def _queue(item_id: uuid.UUID) -> None:
    if not redis_clients.answers():
        return  # the sweep sends it
    try:
        celery_app.send_task(DELIVER_TASK, args=(str(item_id),))
    except Exception:  # broker down: the row is due now, and the sweep takes it
        redis_clients.breaker.failed()
        logger.warning("could not queue Slack delivery %s; the sweep will", item_id)


# --- sent by the outbound workers -------------------------------------------------------------

# What a successful call leaves to record, in the transaction that settles the row.
type Record = Callable[[], None]


def deliver(item_id: uuid.UUID) -> str:
    """Attempt one due row; returns its status afterwards ('skipped' if not due or leased)."""
    item = outbox.take_lease(SlackDelivery, item_id)
    if item is None:
        return "skipped"
    error = ""
    final = ""
    record: Record | None = None
    interrupted: SoftTimeLimitExceeded | None = None
    try:  # network I/O outside any transaction
        final, record = _SENDERS[CallKind(item.kind)](item)
    except SoftTimeLimitExceeded as exc:
        error, interrupted = "stopped at the task's time limit", exc
    except web.SlackError as exc:
        error = str(exc)[:2000]
    with transaction.atomic():
        settled = outbox.settle(SlackDelivery, item_id, error=error, status=final)
        settled.last_error = error
        settled.save(update_fields=["last_error"])
        if record is not None and not error:
            record()
    if interrupted is not None:
        raise interrupted
    return settled.status


def _load(request_id: uuid.UUID | None) -> ApprovalRequest | None:
    if request_id is None:
        return None
    return (
        ApprovalRequest.objects.select_related("agent", "decided_by").filter(pk=request_id).first()
    )


def _post(item: SlackDelivery) -> tuple[str, Record | None]:
    request = _load(item.request_id)
    if request is None or not request.is_pending or request.is_overdue():
        return DeliveryStatus.SKIPPED, None  # decided meanwhile: nobody needs asking
    if SlackMessage.objects.filter(request=request, channel_id=item.channel_id).exists():
        return DeliveryStatus.SKIPPED, None  # posted by an attempt that never reported back
    answer = web.call("chat.postMessage", {"channel": item.channel_id, **blocks.message(request)})
    ts = str(answer.get("ts", ""))
    if not ts:
        raise web.SlackError("chat.postMessage: no ts in the answer")
    return "", lambda: _record_post(request, item.channel_id, ts)


def _record_post(request: ApprovalRequest, channel: str, ts: str) -> None:
    """Keep the message's ts. Locked, the request cannot change between this look and the
    commit; a change made since the message was composed gets an update of its own (its own
    update, if any, may have found no message to redraw yet)."""
    SlackMessage.objects.get_or_create(request=request, channel_id=channel, defaults={"ts": ts})
    now = (
        ApprovalRequest.objects.select_for_update()
        .filter(pk=request.pk)
        .values_list("status", "escalated_at", "current_params_sha256", "current_tier")
        .get()
    )
    shown = (request.status, request.escalated_at, request.current_params_sha256)
    if now[:3] != shown or now[3] != request.current_tier:
        SlackDelivery.objects.create(kind=CallKind.UPDATE, request=request)


def _update(item: SlackDelivery) -> tuple[str, Record | None]:
    request = _load(item.request_id)
    if request is None:
        return DeliveryStatus.SKIPPED, None
    content = blocks.message(request)
    for message in SlackMessage.objects.filter(request=request).order_by("pk"):
        # Every message each time: an update is idempotent, and a retry redraws them all.
        web.call("chat.update", {"channel": message.channel_id, "ts": message.ts, **content})
    return "", None


def _reply(item: SlackDelivery) -> tuple[str, Record | None]:
    if timezone.now() - item.created_at > REPLY_WORTH:
        return DeliveryStatus.SKIPPED, None
    web.call(
        "chat.postEphemeral",
        {"channel": item.channel_id, "user": item.slack_user_id, "text": item.text},
    )
    return "", None


_SENDERS: dict[CallKind, Callable[[SlackDelivery], tuple[str, Record | None]]] = {
    CallKind.POST: _post,
    CallKind.UPDATE: _update,
    CallKind.REPLY: _reply,
}


def sweep() -> int:
    """Beat: send what is due, and forget interactions past the replay window."""
    SlackInteraction.objects.filter(received_at__lt=timezone.now() - REPLAY_MEMORY).delete()
    return outbox.sweep(SlackDelivery, deliver)
