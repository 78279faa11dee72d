"""Redis stopped for 30 s, PostgreSQL restarted, each under a steady mix of creates, checks,
reads and votes (SPEC §8: with Redis down the API and pages keep working and nothing is lost;
§9.6: escalation and expiry never lost or doubled across broker loss; issue 19: with Redis
down the check's rate limit fails safe (`require_approval`, `rate_limit_unavailable`); with
PostgreSQL down the API answers 503 with Retry-After, never a 500, `/readyz` says which, and
everything resumes on its own).

These tests have a world of their own: web, worker and beat on a private PostgreSQL cluster
(migrated, its people and agent made with the provisioning commands, SPEC §11) and a private
Redis, so that stopping them touches nobody else.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.conftest import PASSWORD
from tests.faults import figures, harness, peers
from tests.faults.conftest import Scene
from tests.support import live

pytestmark = [pytest.mark.slow, pytest.mark.faults]

REDIS_OUTAGE = 30.0
POSTGRES_OUTAGE = 8.0
# After a dependency returns: how soon the timers due meanwhile must have run, and from when
# every call must succeed again.
CATCH_UP = 5.0
RESUMED_WITHIN = 3.0
LEAD = "world-lead"


@dataclass
class World:
    postgres: live.PostgresServer
    redis: live.RedisServer
    stack: harness.Stack
    api_key: str


@pytest.fixture(scope="module")
def world(django_db_setup: None, tmp_path_factory: Any) -> Iterator[World]:
    if live.postgres_bindir() is None:
        pytest.skip("needs the PostgreSQL server binaries (initdb, pg_ctl) for a private cluster")
    tmp = tmp_path_factory.mktemp("world")
    postgres = live.PostgresServer()
    redis = live.RedisServer(tmp)
    try:
        postgres.start()
        url = postgres.create_database("oversight")
        live.manage(tmp, "migrate", "--noinput", DATABASE_URL=url)
        people = [(LEAD, "team_lead"), ("world-em", "engineering_manager")]
        outputs = harness.in_parallel(
            lambda args: live.manage(tmp, *args, DATABASE_URL=url),
            [("create_agent", "world-agent")]
            + [("create_user", name, "--password", PASSWORD, "--role", "approver", "--tier", tier)
               for name, tier in people],
        )  # fmt: skip
        redis.start()
        stack = harness.start_stack(tmp, url, REDIS_URL=redis.url)
    except Exception:
        redis.stop()
        postgres.close()
        raise
    yield World(postgres, redis, stack, api_key=outputs[0].strip().splitlines()[-1])
    stack.stop()
    redis.stop()
    postgres.close()


def caught_up(db: harness.Db, ids: list[str], back: datetime) -> tuple[list[str], float]:
    """The timers of `ids` fell due while a dependency was away: each ran once, never early,
    and by CATCH_UP seconds after it returned (at `back`, the database's clock). Returns the
    problems, and how long after the return (or its deadline, if later) the slowest one ran."""
    if not ids:
        return ["no request could be made before the outage"], math.nan
    settled = max(max(t.expires_at for t in db.timers(ids)), back)
    time.sleep(max(0.0, (settled - db.now()).total_seconds() + CATCH_UP + 0.5))
    problems, worst = [], 0.0
    for request in db.timers(ids):
        for what, deadline, events in request.each():
            label = f"{what} of {request.request_id}"
            if len(events) != 1:
                problems.append(f"{label} ran {len(events)} times")
                continue
            late = (events[0] - max(deadline, back)).total_seconds()
            worst = max(worst, late)
            if events[0] < deadline:
                problems.append(f"{label} ran early")
            elif late > CATCH_UP:
                problems.append(f"{label} ran {late:.1f} s after the return")
    return problems[:5], worst


def readyz(url: str) -> tuple[int, str]:
    try:
        response = httpx.get(f"{url}/readyz", timeout=10)
    except httpx.HTTPError as exc:
        return 0, type(exc).__name__
    return response.status_code, response.text


@dataclass
class Outage:
    """What happened around a dependency's outage, under the steady mix."""

    timers: harness.Punctuality  # of the timers created after the dependency returned
    problems: list[str]
    catch_up: float  # how long after the return the timers due meanwhile ran, at most
    away: tuple[float, float]  # monotonic: from the stop until the start began
    window: tuple[float, float]  # monotonic: from the stop until RESUMED_WITHIN after the return
    ready_while_down: tuple[int, str]
    mix: harness.Mix


def go_through(
    scene: Scene, down: Callable[[], None], up: Callable[[], None], seconds: float,
    due_in: list[int],
) -> Outage:  # fmt: skip
    """Run the mix (its callbacks to a server that answers), make requests whose deadlines
    (`due_in` seconds away) fall in the outage, take the dependency away for `seconds`, bring it
    back, and make timed requests after it; then judge what is common to every outage."""
    db = scene.stack.db
    peer = peers.CallbackPeer(peers.OK)
    try:
        mix = harness.Mix(scene.api, scene.person, peer.url)
        mix.start()
        due_meanwhile = [i for i in harness.in_parallel(
            lambda t: scene.api.create(timeout_seconds=t), due_in) if i]  # fmt: skip
        down()
        down_from = time.monotonic()
        try:
            time.sleep(2)
            ready_while_down = readyz(scene.stack.web.url)
            time.sleep(max(0.0, seconds - (time.monotonic() - down_from)))
        finally:
            away = (down_from, time.monotonic())
            up()
        window = (down_from, time.monotonic() + RESUMED_WITHIN)
        back = db.now()
        time.sleep(RESUMED_WITHIN)
        timers = harness.wait_for_timers(db, harness.create_timed(scene.api, count=30))
        problems, catch_up = caught_up(db, due_meanwhile, back)
        mix.stop()
        problems += callbacks_problems(db, mix.approved)
        problems += timers.problems() + final_once(db, mix.approved)
        if (ready := readyz(scene.stack.web.url))[0] != 200:
            problems.append(f"/readyz after the return: {ready}")
    finally:
        peer.close()
    return Outage(timers, problems, catch_up, away, window, ready_while_down, mix)


def callbacks_problems(db: harness.Db, approved: list[str]) -> list[str]:
    """Every approved request's callback delivered (an attempt the outage cut short is made
    again when its lease ends), one row each."""

    def delivered() -> bool:
        rows = db.deliveries(approved)
        return len(rows) == len(approved) and {d.status for d in rows} == {"delivered"}

    try:
        live.wait_until(delivered, timeout=harness.REDELIVERY_WAIT, interval=0.5)
    except AssertionError:
        late = [d for d in db.deliveries(approved) if d.status != "delivered"]
        return [f"{len(late)} of {len(approved)} callbacks not delivered, e.g. {late[:2]}"]
    return []


def final_once(db: harness.Db, approved: list[str]) -> list[str]:
    requests, events = db.requests(approved), db.final_events(approved)
    wrong = [i for i in approved if requests[i][0] != "approved" or events[i] != 1]
    return [f"{len(wrong)} votes accepted but not approved once: {wrong[:3]}"] if wrong else []


def test_redis_stopped_for_30_s_under_load_loses_and_doubles_nothing(world):
    """Redis is stopped for 30 s under a steady mix: no 5xx, votes accepted, the rate limit
    fails safe, `/readyz` says `redis`; the timers due in the outage run once each within 5 s
    of Redis's return, those due after it are punctual; every approved request's callback is
    delivered."""
    with Scene.on(world.stack, world.api_key, LEAD) as scene:
        # Deadlines all through the outage: escalations from 5 s, expiries until 28 s.
        outage = go_through(scene, world.redis.stop, world.redis.start, REDIS_OUTAGE,
                            due_in=[10, 16, 22, 28] * 5)  # fmt: skip
    problems = outage.problems
    if outage.ready_while_down[0] != 503 or "redis" not in outage.ready_while_down[1]:
        problems.append(f"/readyz without Redis: {outage.ready_while_down}")
    redis_down = (outage.away[0] + 0.5, outage.away[1] - 0.5)  # sent and answered meanwhile
    without_redis = [answer for at, answer in outage.mix.checks
                     if redis_down[0] < at < redis_down[1]]  # fmt: skip
    unsafe = [answer for answer in without_redis if answer is None
              or "rate_limit_unavailable" not in [r["code"] for r in answer["reasons"]]
              or answer["decision"] == "allow"]  # fmt: skip
    if not without_redis:
        problems.append("no check was answered while Redis was away")
    if unsafe:
        problems.append(f"{len(unsafe)} checks without Redis did not fail safe: {unsafe[:2]}")
    figures.record("Redis stopped 30 s (timers after it)", outage.timers, api=scene.api,
                   others=(scene.person,), watchdog=world.stack.watchdog,
                   note=f"timers due in it ran <= {outage.catch_up:.1f} s after its return; "
                        f"{len(outage.mix.approved)} votes")  # fmt: skip
    harness.judge(problems, world.stack, [scene.api, scene.person])


def test_postgresql_restarted_under_load_answers_503_and_resumes_on_its_own(world):
    """PostgreSQL is stopped for 8 s and started again under a steady mix: meanwhile the API
    answers 503 with Retry-After (never another 5xx, never a hang) and `/readyz` says
    `database`; from 3 s after its return every call succeeds again, on its own; the timers due
    meanwhile run once each within 5 s of the return, those due after it are punctual; every
    approved request approved once, its callback delivered."""
    with Scene.on(world.stack, world.api_key, LEAD) as scene:
        # Deadlines from 2 s to 10 s away: most of them in the outage.
        outage = go_through(scene, world.postgres.stop, world.postgres.start, POSTGRES_OUTAGE,
                            due_in=[4, 6, 8, 10] * 5)  # fmt: skip
    problems = outage.problems
    if outage.ready_while_down[0] != 503 or "database" not in outage.ready_while_down[1]:
        problems.append(f"/readyz without PostgreSQL: {outage.ready_while_down}")
    during = [c for r in (scene.api, scene.person) for c in r.calls
              if outage.window[0] <= c.at < outage.window[1]]  # fmt: skip
    figures.record("PostgreSQL restarted (timers after)", outage.timers, api=scene.api,
                   others=(scene.person,), watchdog=world.stack.watchdog, outage=outage.window,
                   note=f"timers due in it ran <= {outage.catch_up:.1f} s after its return; "
                        f"answers meanwhile: {sorted({c.status for c in during})}")  # fmt: skip
    harness.judge(problems, world.stack, [scene.api, scene.person], outage=outage.window)
