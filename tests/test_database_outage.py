"""PostgreSQL unreachable (SPEC §1 health, §9, issue 19): the API answers 503 with Retry-After
(never a 500, never after a long wait), the pages a plain 503, /readyz names the database, and
everything resumes on its own when the server is back.

The web server is a real process whose connections go through a TCP proxy in front of the
test database (tests.support.tcpproxy): cutting the proxy resets every connection and refuses
new ones, as a server that went away does, without touching the shared server.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from django.db import connection

from approvals.models import ApprovalRequest
from audit.models import AuditEvent
from oversight import outage
from tests.conftest import api_stack_client
from tests.support import live
from tests.support.tcpproxy import TcpProxy

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="a PostgreSQL server to cut off"
)

CREATE = {"action": "read_file", "params": {"path": "/srv/a"}, "risk_level": "low",
          "justification": "outage drill"}  # fmt: skip


def _timed(call: Callable[[], httpx.Response]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_with_the_database_cut_off_agents_get_503_with_retry_after_and_it_resumes_by_itself(
    tmp_path, make_agent, approvers
):
    settings = connection.settings_dict
    proxy = TcpProxy(tmp_path, settings["HOST"] or "127.0.0.1", int(settings["PORT"] or 5432))
    proxy.start()
    database_url = live.test_database_url().replace(
        f":{settings['PORT'] or 5432}/", f":{proxy.port}/"
    )
    web = live.start_web(tmp_path, DATABASE_URL=database_url)
    try:
        agent = make_agent()
        api = httpx.Client(
            base_url=web.url, timeout=30, headers={"Authorization": f"Bearer {agent.key}"}
        )
        person = live.logged_in(web.url, approvers["lead"].username, timeout=30)
        request_id = api.post("/api/v1/approval-requests", json=CREATE).json()["id"]
        calls: dict[str, Callable[[], httpx.Response]] = {
            "create": lambda: api.post("/api/v1/approval-requests", json=CREATE),
            "check": lambda: api.post(
                "/api/v1/guardrails/check", json={"action": "read_file", "params": {}}
            ),
            "read": lambda: api.get(f"/api/v1/approval-requests/{request_id}"),
            "long-poll": lambda: api.get(f"/api/v1/approval-requests/{request_id}?wait=1"),
            "list": lambda: api.get("/api/v1/approval-requests"),
            "cost report": lambda: api.post(
                "/api/v1/costs", json={"model": "gpt-4o", "input_tokens": 10, "output_tokens": 5}
            ),
            "inbox page": lambda: person.get("/"),
            "request page": lambda: person.get(f"/requests/{request_id}/"),
        }
        assert {name: call().status_code for name, call in calls.items()} == {
            "create": 201, "check": 200, "read": 200, "long-poll": 200, "list": 200,
            "cost report": 201, "inbox page": 200, "request page": 200,
        }  # fmt: skip
        created_before = ApprovalRequest.objects.filter(agent=agent.agent).count()

        proxy.cut()
        slowest = 0.0
        for name, call in calls.items():
            response, took = _timed(call)
            slowest = max(slowest, took)
            if name == "check":
                # An allowed check needs no database: its key comes from the process's copy,
                # which Redis verifies (agents.keyring); nothing can change it meanwhile.
                assert response.status_code == 200, response.text
                continue
            assert response.status_code == 503, (name, response.status_code, response.text)
            assert response.headers["Retry-After"] == str(outage.RETRY_AFTER_SECONDS), name
            if name.endswith("page"):
                assert "cannot reach its database" in response.text
            else:
                assert response.json()["error"]["code"] == "database_unavailable", name
        ready = httpx.get(f"{web.url}/readyz", timeout=30)
        assert (ready.status_code, ready.json()["down"]) == (503, ["database"])
        assert slowest < 2.5, f"a call took {slowest:.1f} s to be refused"

        proxy.restore()
        back = time.monotonic()
        live.wait_until(lambda: calls["read"]().status_code == 200, timeout=10, interval=0.1)
        resumed_after = time.monotonic() - back
        statuses = {name: call().status_code for name, call in calls.items()}
        assert statuses == {
            "create": 201, "check": 200, "read": 200, "long-poll": 200, "list": 200,
            "cost report": 201, "inbox page": 200, "request page": 200,
        }, statuses  # fmt: skip
        assert resumed_after < 3, f"resumed {resumed_after:.1f} s after the database returned"
        assert httpx.get(f"{web.url}/readyz", timeout=30).status_code == 200
        # Two creates before the outage, one after: the refused one left nothing behind.
        assert ApprovalRequest.objects.filter(agent=agent.agent).count() == created_before + 1

        # A restart while nothing used the database: every connection the pool held idle is
        # dead. None is handed out: not one call fails.
        proxy.cut()
        proxy.restore()
        statuses = {name: call().status_code for name, call in calls.items()}
        assert set(statuses.values()) <= {200, 201}, statuses
        log = web.proc.output()
        assert "Traceback" not in log, log[-3000:]
        assert "Service Unavailable: /api/v1/costs (the database does not answer" in log
    finally:
        web.proc.stop()
        proxy.stop()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_web_process_started_while_the_database_is_down_refuses_at_once_then_serves(
    tmp_path, make_agent
):
    settings = connection.settings_dict
    proxy = TcpProxy(tmp_path, settings["HOST"] or "127.0.0.1", int(settings["PORT"] or 5432))
    proxy.start()
    proxy.cut()
    database_url = live.test_database_url().replace(
        f":{settings['PORT'] or 5432}/", f":{proxy.port}/"
    )
    web = live.start_web(tmp_path, DATABASE_URL=database_url)
    try:
        api = httpx.Client(
            base_url=web.url, timeout=30, headers={"Authorization": f"Bearer {make_agent().key}"}
        )
        refused, took = _timed(lambda: api.get("/api/v1/approval-requests"))
        assert refused.status_code == 503, refused.text
        assert took < 2.5, f"the first call waited {took:.1f} s to be refused"
        proxy.restore()
        live.wait_until(lambda: api.get("/api/v1/approval-requests").status_code == 200, timeout=5)
    finally:
        web.proc.stop()
        proxy.stop()


@pytest.mark.django_db(transaction=True)
def test_a_create_whose_connection_dies_before_commit_answers_503_and_leaves_nothing(make_agent):
    """The server ends the connection after the request row was inserted, before commit: the
    agent is told 503 and to retry, and neither the request nor its audit event exist."""
    agent = make_agent()
    client = api_stack_client()
    client.raise_request_exception = False
    killed: list[int] = []

    def die_after_the_insert(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        result = execute(sql, params, many, context)
        if not killed and sql.startswith('INSERT INTO "approvals_approvalrequest"'):
            pid = connection.connection.info.backend_pid
            with _other_connection() as other:
                other.execute("SELECT pg_terminate_backend(%s)", [pid])
            killed.append(pid)
        return result

    events_before = AuditEvent.objects.count()
    with connection.execute_wrapper(die_after_the_insert):
        response = client.post(
            "/api/v1/approval-requests",
            data=CREATE,
            content_type="application/json",
            headers={"Authorization": f"Bearer {agent.key}"},
        )
    assert killed, "the create inserted its row"
    assert response.status_code == 503, response.content
    assert response["Retry-After"] == str(outage.RETRY_AFTER_SECONDS)
    assert response.json()["error"]["code"] == "database_unavailable"
    assert not ApprovalRequest.objects.filter(agent=agent.agent).exists()
    assert AuditEvent.objects.count() == events_before
    # The next call gets a working connection.
    again = client.post(
        "/api/v1/approval-requests",
        data=CREATE,
        content_type="application/json",
        headers={"Authorization": f"Bearer {agent.key}"},
    )
    assert again.status_code == 201, again.content


def _other_connection() -> Any:
    import psycopg

    params = connection.get_connection_params()
    return psycopg.connect(
        host=params.get("host"),
        port=params.get("port"),
        user=params.get("user"),
        password=params.get("password"),
        dbname=params.get("dbname"),
        autocommit=True,
    )


def test_errors_of_a_server_that_answered_are_not_taken_for_an_outage():
    import psycopg
    from django.db import IntegrityError, OperationalError

    def wrapped(django_class: type[Exception], cause: Exception) -> Exception:
        exc = django_class(str(cause))
        exc.__cause__ = cause
        return exc

    assert outage.database_unreachable(
        wrapped(OperationalError, psycopg.OperationalError("connection refused"))
    )
    assert outage.database_unreachable(
        wrapped(OperationalError, psycopg.errors.AdminShutdown("terminating connection"))
    )
    assert not outage.database_unreachable(
        wrapped(OperationalError, psycopg.errors.DeadlockDetected("deadlock detected"))
    )
    assert not outage.database_unreachable(
        wrapped(IntegrityError, psycopg.errors.UniqueViolation("duplicate key"))
    )
    assert not outage.database_unreachable(ValueError("not a database error"))
    assert not outage.database_unreachable(None)


def test_the_page_renders_without_the_database(db, rf):
    """No context processor runs (they read the session and the person): not one query."""
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        response = outage.page_unavailable(rf.get("/"))
    assert (response.status_code, len(queries)) == (503, 0)
    assert b"cannot reach its database" in response.content


@pytest.mark.django_db
def test_the_schema_documents_the_503_of_every_call_that_needs_the_database(api):
    paths = api(None).get("/api/v1/schema/?format=json").json()["paths"]
    calls = [
        ("/api/v1/approval-requests", "post"),
        ("/api/v1/approval-requests/{id}", "get"),
        ("/api/v1/guardrails/check", "post"),
        ("/api/v1/costs", "post"),
    ]
    for path, method in calls:
        unavailable = paths[path][method]["responses"]["503"]
        assert "Retry-After" in unavailable["headers"], path
    assert "503" not in paths["/api/v1/health"]["get"]["responses"]
