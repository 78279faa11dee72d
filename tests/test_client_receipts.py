"""The Python client's execution receipts (`POST /api/v1/outcomes`) against the real ASGI server:
what `report_outcome` sends, and what `guard` and `require_approval` report for their blocks."""

from __future__ import annotations

import uuid

import httpx
import pytest

from agents.models import AgentStatus
from approvals import services
from controls.models import Outcome, Receipt
from oversight_client import ExecutionMismatch, Oversight, params_sha256
from oversight_client import Outcome as ReportedOutcome
from tests.test_client import LoseFirstResponse, decide_when_asked

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture(autouse=True)
def _quiet_httpx(caplog):
    caplog.set_level("WARNING", logger="httpx")


class DropOutcomes(httpx.HTTPTransport):
    """A network on which every report of an outcome is lost."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/outcomes"):
            raise httpx.ConnectError("network unreachable", request=request)
        return super().handle_request(request)


def test_a_guarded_call_that_needed_a_person_sends_its_matched_receipt(
    web_server, make_agent, approvers
):
    agent = make_agent()
    approver = decide_when_asked(
        agent.agent, lambda r: services.approve_request(request_id=r.pk, reviewer=approvers["lead"])
    )
    params = {"path": "/srv/app/config.yml", "cache": "on"}
    with (
        Oversight(web_server.url, agent.key) as oversight,
        oversight.guard("write_file", params, justification="Turn the cache on.") as go,
    ):
        assert go.receipt is None  # sent when the block ends
        executed = go.params
    approver.join()
    assert executed == params
    assert go.request is not None
    outcome = Outcome.objects.get(agent=agent.agent)
    assert str(outcome.approval_request_id) == go.request.id
    assert outcome.receipt == Receipt.MATCHED
    assert outcome.success
    assert outcome.params_sha256 == params_sha256("write_file", params)
    assert outcome.duration_ms is not None
    assert isinstance(go.receipt, ReportedOutcome)
    assert go.receipt.matched
    assert go.receipt.id == str(outcome.pk)
    assert go.receipt.approval_request_id == go.request.id


def test_an_allowed_guarded_call_reports_its_success_without_a_request(web_server, make_agent):
    agent = make_agent()
    with (
        Oversight(web_server.url, agent.key) as oversight,
        oversight.guard("read_file", {"path": "/srv/reports/q3.csv"}) as go,
    ):
        pass
    outcome = Outcome.objects.get(agent=agent.agent)
    assert outcome.receipt == Receipt.NONE
    assert outcome.approval_request is None
    assert outcome.success
    assert outcome.params_sha256 == params_sha256("read_file", {"path": "/srv/reports/q3.csv"})
    assert go.receipt is not None
    assert go.receipt.receipt == "none"


def test_a_raising_block_reports_a_failure_and_its_exception_goes_on(
    web_server, make_agent, approvers
):
    agent = make_agent()
    approver = decide_when_asked(
        agent.agent, lambda r: services.approve_request(request_id=r.pk, reviewer=approvers["em"])
    )
    with (
        Oversight(web_server.url, agent.key) as oversight,
        pytest.raises(TimeoutError, match="the deploy hung"),
        oversight.require_approval(
            "run_command", {"service": "api", "version": "1.2.3"}, justification="Roll out."
        ) as approval,
    ):
        raise TimeoutError("the deploy hung")
    approver.join()
    outcome = Outcome.objects.get(agent=agent.agent)
    assert str(outcome.approval_request_id) == approval.request.id
    assert outcome.receipt == Receipt.MATCHED  # what ran (and failed) is what was approved
    assert not outcome.success
    assert outcome.error == "TimeoutError: the deploy hung"
    assert approval.receipt is not None
    assert approval.receipt.consecutive_failures == 1
    agent.agent.refresh_from_db()
    assert agent.agent.consecutive_failures == 1


def test_a_decorated_function_that_raises_is_reported_as_failed(web_server, make_agent):
    agent = make_agent()
    oversight = Oversight(web_server.url, agent.key)

    @oversight.guard("read_file")
    def read(*, path: str) -> str:
        raise FileNotFoundError(f"no such file: {path}")

    with pytest.raises(FileNotFoundError):
        read(path="/srv/reports/q4.csv")
    oversight.close()
    outcome = Outcome.objects.get(agent=agent.agent)
    assert not outcome.success
    assert outcome.error == "FileNotFoundError: no such file: /srv/reports/q4.csv"
    assert outcome.params_sha256 == params_sha256("read_file", {"path": "/srv/reports/q4.csv"})


def test_approved_changes_are_executed_and_reported_and_the_receipt_passes(
    web_server, make_agent, approvers
):
    agent = make_agent()
    changed = {"path": "/srv/app/config.yml", "cache": "on", "ttl": 60}
    approver = decide_when_asked(
        agent.agent,
        lambda r: services.approve_request(
            request_id=r.pk, reviewer=approvers["lead"], modified_params=changed
        ),
    )
    oversight = Oversight(web_server.url, agent.key)
    executed: list[dict[str, object]] = []

    @oversight.guard("write_file", justification=lambda **kw: f"write {kw['path']}")
    def write(**kwargs: object) -> None:
        executed.append(kwargs)

    write(path="/srv/app/config.yml", cache="off")
    approver.join()
    oversight.close()
    assert executed == [changed]
    outcome = Outcome.objects.get(agent=agent.agent)
    assert outcome.receipt == Receipt.MATCHED
    assert outcome.params_sha256 == params_sha256("write_file", changed)
    assert outcome.approval_request is not None
    assert outcome.params_sha256 == outcome.approval_request.approved_params_sha256
    agent.agent.refresh_from_db()
    assert agent.agent.status == AgentStatus.ACTIVE


def test_a_receipt_for_other_arguments_raises_execution_mismatch(web_server, make_agent, approvers):
    agent = make_agent()
    with Oversight(web_server.url, agent.key) as oversight:
        request = oversight.request_approval(
            "write_file", {"path": "/srv/app/config.yml"}, justification="Turn the cache on."
        )
        services.approve_request(request_id=uuid.UUID(request.id), reviewer=approvers["lead"])
        with pytest.raises(ExecutionMismatch) as mismatch:
            oversight.report_outcome(
                "write_file",
                {"path": "/srv/app/secrets.yml"},
                success=True,
                approval_request_id=request.id,
            )
    assert mismatch.value.status == 409
    assert mismatch.value.code == "execution_mismatch"
    shown = mismatch.value.outcome
    assert shown is not None
    assert shown.receipt == "mismatch"
    assert shown.critical
    assert Outcome.objects.get(agent=agent.agent).receipt == Receipt.MISMATCH
    agent.agent.refresh_from_db()
    assert agent.agent.status == AgentStatus.DISABLED


def test_report_outcome_is_recorded_once_across_a_retry(web_server, make_agent):
    agent = make_agent()
    transport = LoseFirstResponse()
    with Oversight(web_server.url, agent.key, transport=transport, backoff=0.01) as oversight:
        reported = oversight.report_outcome(
            "read_file",
            {"path": "/srv/reports/q3.csv"},
            success=False,
            error="disk full",
            duration_ms=12,
            cost_cents="1.5",
        )
    assert transport.dropped
    assert Outcome.objects.filter(agent=agent.agent).count() == 1
    assert reported.id == str(Outcome.objects.get(agent=agent.agent).pk)
    assert not reported.success
    assert reported.error == "disk full"
    assert reported.duration_ms == 12
    assert str(reported.cost_cents) == "1.500000"


def test_a_receipt_that_cannot_be_sent_never_hides_the_blocks_exception(
    web_server, make_agent, caplog
):
    agent = make_agent()
    with (
        Oversight(web_server.url, agent.key, transport=DropOutcomes(), max_retries=0) as oversight,
        pytest.raises(KeyError) as raised,
        oversight.guard("read_file", {"path": "/srv/reports/q3.csv"}),
    ):
        raise KeyError("the block's own")
    assert "was not reported" in " ".join(raised.value.__notes__)
    assert "the failure of read_file was not reported" in caplog.text
    assert not Outcome.objects.filter(agent=agent.agent).exists()


def test_a_success_whose_receipt_cannot_be_sent_is_logged_not_raised(
    web_server, make_agent, caplog
):
    agent = make_agent()
    with (
        Oversight(web_server.url, agent.key, transport=DropOutcomes(), max_retries=0) as oversight,
        oversight.guard("read_file", {"path": "/srv/reports/q3.csv"}) as go,
    ):
        pass
    assert go.receipt is None
    assert "the outcome of read_file was not reported" in caplog.text
