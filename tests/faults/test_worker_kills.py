"""Worker processes killed in the middle of a callback: by SIGKILL, and by the OOM killer's
stand-in (a memory cap on the worker's processes) while a peer streams gigabytes.

SPEC §9.6: escalation and expiry are never lost or doubled, and stay punctual, when a worker is
killed mid-task; outbound calls have total time and size limits (10 s, 64 KiB read), so that no
worker process grows past 300 MB however much a peer sends. §3, §8: every attempt is recorded,
and a committed callback is delivered even across restarts (at-least-once).
"""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.faults import figures, harness, peers, procs
from tests.support import live

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.faults]


def test_a_worker_killed_mid_callback_loses_no_timer_and_no_callback(scene):
    """The pool processes sending callbacks are SIGKILLed while the peer holds their POSTs,
    as timers fall due: the timers punctual and run once; each killed attempt was on record
    before its POST went out; every callback is delivered afterwards (the peer answers each
    delivery's second POST), within 75 s."""
    stack = scene.stack
    peer = peers.CallbackPeer(peers.HOLD_FIRST)
    try:
        plan = harness.decide_at_once(scene.api, scene.person, peer.url, 3)
        with ThreadPoolExecutor(1) as side:
            timing = side.submit(harness.create_timed, scene.api)
            senders = live.wait_until(
                lambda: procs.connected_to(stack.worker.process.pid, peer.port), timeout=15
            )
            time.sleep(0.3)  # mid-callback: the POST is out, its answer held
            for pid in senders:
                os.kill(pid, signal.SIGKILL)
            time.sleep(0.5)
            problems = [p for p in harness.callback_problems(stack.db, plan, peer)
                        if "held its connection" not in p]  # fmt: skip
            timed = timing.result()
        timers = harness.wait_for_timers(stack.db, timed)
        problems += timers.problems() + harness.final_state_problems(stack.db, plan)
        if not problems:  # else it fails anyway: no need to wait for the lease
            try:
                live.wait_until(
                    lambda: {d.status for d in stack.db.deliveries(list(plan))} == {"delivered"},
                    timeout=harness.REDELIVERY_WAIT,
                    interval=0.5,
                )
            except AssertionError:
                late = stack.db.deliveries(list(plan))
                problems.append(f"callbacks not delivered {harness.REDELIVERY_WAIT:.0f} s "
                                f"after the kill: {late}")  # fmt: skip
        problems += [p for p in harness.callback_problems(stack.db, plan, peer)
                     if p not in problems]  # fmt: skip
        answered = {r.delivery for r in peer.received if r.answered}
    finally:
        peer.close()
    figures.record("worker SIGKILLed mid-callback", timers, api=scene.api,
                   others=(scene.person,), watchdog=stack.watchdog,
                   note=f"killed {len(senders)} sending processes; "
                        f"{len(answered)}/3 callbacks answered after")  # fmt: skip
    harness.judge(problems, stack, [scene.api, scene.person])


def test_a_callback_server_streaming_gigabytes_grows_no_worker_past_300_mb(scene):
    """A peer answers 200 and sends bytes as fast as loopback carries them, with each worker
    process capped at 300 MB (past it the watchdog kills it, as the OOM killer would): no
    process reaches the cap; the timers punctual; no attempt past 10 s."""
    stack = scene.stack
    peer = peers.CallbackPeer(peers.FLOOD)
    try:
        plan = harness.decide_at_once(scene.api, scene.person, peer.url, 3)
        timers = harness.wait_for_timers(stack.db, harness.create_timed(scene.api))
        problems = timers.problems() + harness.final_state_problems(stack.db, plan)
        problems += harness.callback_problems(stack.db, plan, peer)
    finally:
        peer.close()
    peak = stack.watchdog.peak
    if peak >= harness.WORKER_RSS_LIMIT:
        problems.append(f"a worker process reached {peak / procs.MB:.0f} MB: "
                        f"{stack.watchdog.peak_command}")  # fmt: skip
    figures.record("callback server floods (300 MB cap)", timers, api=scene.api,
                   others=(scene.person,), watchdog=stack.watchdog,
                   note=f"{len(stack.watchdog.kills)} processes killed at the cap")  # fmt: skip
    harness.judge(problems, stack, [scene.api, scene.person])
