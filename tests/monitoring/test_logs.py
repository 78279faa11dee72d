"""JSON logs (SPEC §12): one object per line, with the request id, agent, person and audit
sequence where they apply."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from oversight import logs
from tests.conftest import client_for
from tests.support.live import BASE_DIR


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """What Django's request logger writes, formatted as the json format formats it, at the
    moment it is logged (inside the request's context)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    logger = logging.getLogger("django.request")
    logger.addHandler(handler)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_page_request_logs_a_line_with_its_request_id_and_person(db, make_user, json_lines):
    person = make_user("reviewer-ann")
    response = client_for(person).get("/no-such-page/", headers={"X-Request-ID": "edge-123.a"})
    assert response.status_code == 404
    assert response["X-Request-ID"] == "edge-123.a"
    (line,) = lines(json_lines)
    assert line["level"] == "WARNING"
    assert line["logger"] == "django.request"
    assert line["message"] == "Not Found: /no-such-page/"
    assert line["request_id"] == "edge-123.a"
    assert line["user"] == "reviewer-ann"
    assert "agent" not in line
    assert line["time"].endswith("+00:00")


@pytest.mark.parametrize("sent", [None, "", "x" * 129, "two words", 'quote"d', "new\nline"])
def test_a_missing_or_strange_request_id_is_replaced_by_a_fresh_one(db, client, sent):
    headers = {} if sent is None else {"X-Request-ID": sent}
    first = client.get("/healthz", headers=headers)["X-Request-ID"]
    second = client.get("/healthz", headers=headers)["X-Request-ID"]
    assert first != second
    assert len(first) == 32
    assert int(first, 16) >= 0


def test_an_agent_api_call_logs_the_agent(db, api, make_agent, json_lines):
    agent = make_agent("deploy-bot")
    response = api(agent.key).get(f"/api/v1/approval-requests/{uuid.uuid4()}")
    assert response.status_code == 404
    ident = response["X-Request-ID"]
    (line,) = lines(json_lines)
    assert line["agent"] == "deploy-bot"
    assert line["request_id"] == ident
    assert "user" not in line


def test_a_line_after_an_audit_event_carries_its_sequence(db, new_request):
    logs.begin(request_id="req-1")
    request = new_request()
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "created %s", (request.pk,), None)
    line = json.loads(logs.JsonFormatter().format(record))
    sequence = logs.current().audit_sequence
    assert sequence is not None
    assert line["audit_sequence"] == sequence > 0
    assert line["request_id"] == "req-1"
    assert line["message"] == f"created {request.pk}"
    logs.end()


def test_a_task_carries_the_request_id_of_the_request_that_queued_it():
    logs.begin(request_id="req-42")
    headers: dict[str, Any] = {}
    logs.task_headers(headers)
    logs.end()
    task = SimpleNamespace(name="approvals.tasks.deliver", request=SimpleNamespace(id="t-1"))
    setattr(task.request, logs.TASK_HEADER, headers[logs.TASK_HEADER])
    logs.task_started(task)
    assert (logs.current().request_id, logs.current().task) == ("req-42", task.name)
    beat = SimpleNamespace(name="tick", request=SimpleNamespace(id="t-2"))
    logs.task_started(beat)  # queued by beat: its own id
    assert logs.current().request_id == "t-2"
    logs.end()


def test_the_json_format_setting_makes_every_line_a_json_object():
    """The setting end to end: a process started with it logs JSON lines (and an exception's
    traceback inside its line)."""
    code = (
        "import logging; log = logging.getLogger('oversight.test'); log.warning('hello %s', 'x')\n"
        "try:\n    1 / 0\nexcept ZeroDivisionError:\n    log.exception('failed')\n"
    )
    env = {
        **os.environ,
        "OVERSIGHT_LOG_FORMAT": "json",
        "DJANGO_SETTINGS_MODULE": "oversight.settings",
    }
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    parsed = [json.loads(line) for line in done.stderr.splitlines() if line.strip()]
    assert [line["message"] for line in parsed] == ["hello x", "failed"]
    assert parsed[0]["logger"] == "oversight.test"
    assert "ZeroDivisionError" in parsed[1]["exception"]


def test_an_unknown_log_format_stops_the_process():
    env = {**os.environ, "OVERSIGHT_LOG_FORMAT": "xml"}
    done = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode != 0
    assert "OVERSIGHT_LOG_FORMAT" in done.stderr
