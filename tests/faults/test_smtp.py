"""An SMTP server that accepts connections and stalls cannot jam the timers, and loses no email
(SPEC §9.6 "SMTP that stalls"; §8: email to the tier's people on a new request and on an
escalation, through the outbox, so that a committed one is delivered even across failures)."""

from __future__ import annotations

import contextlib
import re

import pytest

from tests.faults import figures, harness
from tests.support import live

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.faults]


def mails(stack: harness.Stack) -> list[tuple[str, str, str]]:
    """(recipient, request id, subject) of every message the SMTP server passed on."""
    found = []
    for recipients, message in list(stack.smtp.sink.messages):
        payloads = [part.get_payload(decode=True) for part in message.walk()]
        text = "".join(p.decode() for p in payloads if isinstance(p, bytes))
        for request_id in set(re.findall(r"/requests/([0-9a-f-]{36})/", text)):
            found += [(to, request_id, str(message["Subject"])) for to in recipients]
    return found


def test_timers_stay_punctual_while_smtp_stalls_and_every_email_arrives_once_after(scene, cast):
    """While the SMTP server accepts connections and says nothing: escalations and expiries
    punctual, no 5xx. Once it answers again: each email still worth sending (its request still
    pending) reaches its person exactly once, within 45 s; none is given up."""
    stack, lead = scene.stack, cast.lead.email
    stack.smtp.stall()
    try:
        waiting = [i for i in (scene.api.create(timeout_seconds=3600) for _ in range(3)) if i]
        timed = harness.create_timed(scene.api)
        timers = harness.wait_for_timers(stack.db, timed)
    finally:
        stack.smtp.resume()
    held = stack.smtp.held

    def told() -> set[str]:
        delivered = {i for i, kind, status in stack.db.emails(waiting)
                     if kind == "created" and status == "delivered"}  # fmt: skip
        return delivered & {i for to, i, _ in mails(stack) if to == lead}

    with contextlib.suppress(AssertionError):  # judged below
        live.wait_until(lambda: told() == set(waiting), timeout=45, interval=0.25)
    sent = mails(stack)
    problems = timers.problems()
    if not held:
        problems.append("nothing tried to send while the server stalled")
    if lost := set(waiting) - told():
        problems.append(f"new-request emails not delivered 45 s after the stall: {sorted(lost)}")
    if doubled := sorted({m for m in sent if sent.count(m) > 1}):
        problems.append(f"emails sent twice: {doubled[:3]}")
    if given_up := [row for row in stack.db.emails([*waiting, *timed]) if row[2] == "failed"]:
        problems.append(f"emails given up: {given_up[:3]}")
    figures.record("SMTP server stalls", timers, api=scene.api, watchdog=stack.watchdog,
                   note=f"{held} SMTP connections held while it stalled")  # fmt: skip
    harness.judge(problems, stack, [scene.api])
