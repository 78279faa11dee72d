"""Callback servers that misbehave cannot jam the timers (SPEC §9.6, §3 Callbacks, §8).

SPEC §9.6: escalation and expiry stay punctual (p99 < 1 s, §10.3) while a callback server
hangs, drips bytes or streams without end; an outbound attempt takes at most 10 s, the body
included; outbound calls run on queues and processes of their own. §3, §8: every attempt is
recorded; delivery is at-least-once, through the outbox. Each test aims the callbacks of 50
requests at one bad server and decides or cancels them at once; then, while those callbacks
are out, the agent makes 50 requests whose timers run out within seconds, and their
punctuality is measured. The baseline does the same with a server that answers at once.
"""

from __future__ import annotations

import pytest

from tests.faults import figures, harness, peers
from tests.faults.conftest import Scene
from tests.support import live

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.faults]


def run(scene: Scene, kind: str) -> None:
    stack = scene.stack
    peer = peers.CallbackPeer(kind)
    try:
        plan = harness.decide_at_once(scene.api, scene.person, peer.url, 50)
        timers = harness.wait_for_timers(stack.db, harness.create_timed(scene.api))
        problems = timers.problems() + harness.final_state_problems(stack.db, plan)
        problems += harness.callback_problems(stack.db, plan, peer)
        if kind == peers.OK:  # every callback arrives, promptly
            try:
                live.wait_until(lambda: {d.status for d in stack.db.deliveries(list(plan))}
                                == {"delivered"}, timeout=15)  # fmt: skip
            except AssertionError:
                problems.append(f"callbacks not delivered: {stack.db.deliveries(list(plan))}")
        note = (
            f"{len(plan)} callbacks: {len(peer.received)} POSTs reached the peer, "
            f"longest held {peer.longest_hold():.1f} s"
        )
    finally:
        peer.close()  # releases whatever it still holds, before the next test
    fault = "baseline (no fault)" if kind == peers.OK else f"callback server: {kind}"
    figures.record(fault, timers, api=scene.api, others=(scene.person,),
                   watchdog=stack.watchdog, note=note)  # fmt: skip
    harness.judge(problems, stack, [scene.api, scene.person])


def test_baseline_without_faults(scene):
    """The same load with a callback server that answers at once: every timer punctual and
    run once, every callback delivered, no 5xx. The faults' figures are read against these."""
    run(scene, peers.OK)


@pytest.mark.parametrize("kind", [peers.HANG, peers.DRIP, peers.STREAM, peers.ERROR, peers.RESET])
def test_timers_stay_punctual_while_a_callback_server_misbehaves(scene, kind):
    """50 callbacks to a server that hangs, drips a byte every 3 s, streams without end,
    answers 500 or resets the connection: the timers punctual and run once; every request final
    once; one outbox row each; no POST out before its attempt is on record; no attempt past
    10 s; nothing marked delivered that was not; no 5xx; no worker past 300 MB."""
    run(scene, kind)
