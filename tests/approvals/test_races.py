"""Races settled by the database (SPEC §9.1-9.3), with real threads and real transactions."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.db import close_old_connections, connection
from django.utils import timezone

from approvals import services
from approvals.models import ApprovalRequest, Status, Vote
from audit.models import AuditEvent
from tests.conftest import api_stack_client

pytestmark = pytest.mark.django_db(transaction=True)


def run_together(calls: list[Callable[[], Any]]) -> list[Any]:
    """Start every call at the same moment on its own thread (own DB connection)."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(index: int, call: Callable[[], Any]) -> None:
        barrier.wait()
        try:
            results[index] = call()
        except Exception as exc:
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    close_old_connections()
    return results


def final_events(request_id: Any) -> int:
    return AuditEvent.objects.filter(
        subject_id=str(request_id),
        event_type__in=["request.decided", "request.expired", "request.cancelled"],
    ).count()


def test_twenty_concurrent_votes_make_exactly_one_decision(new_request, make_user):
    request = new_request(risk_level="medium")
    voters = [make_user(f"racer{i}", roles=("approver",), tier="team_lead") for i in range(20)]
    results = run_together(
        [
            functools.partial(services.approve_request, request_id=request.pk, reviewer=v)
            for v in voters
        ]
    )
    decided = [r for r in results if isinstance(r, services.VoteOutcome)]
    refused = [r for r in results if isinstance(r, services.NotPending)]
    assert len(decided) == 1
    assert len(refused) == 19
    assert Vote.objects.filter(request=request).count() == 1
    assert ApprovalRequest.objects.get(pk=request.pk).status == Status.APPROVED
    assert final_events(request.pk) == 1


@pytest.mark.parametrize("round_", range(6))
def test_mixed_approve_reject_cancel_expire_end_in_exactly_one_final_state(
    new_request, approvers, round_
):
    request = new_request(risk_level="medium")
    # Put the deadline right at the moment the threads start, so expiry is a real contender.
    ApprovalRequest.objects.filter(pk=request.pk).update(
        expires_at=timezone.now() + timedelta(milliseconds=30 * round_)
    )
    results = run_together(
        [
            lambda: services.approve_request(request_id=request.pk, reviewer=approvers["lead"]),
            lambda: services.reject_request(
                request_id=request.pk, reviewer=approvers["em"], reason="no"
            ),
            lambda: services.cancel_request(request_id=request.pk, agent=request.agent),
            lambda: services.expire_request(request_id=request.pk),
            lambda: services.approve_request(request_id=request.pk, reviewer=approvers["director"]),
        ]
    )
    request.refresh_from_db()
    assert request.status in Status.final()
    assert final_events(request.pk) == 1
    winners = [
        r for r in results if isinstance(r, services.VoteOutcome | ApprovalRequest) or r is True
    ]
    # Exactly one call changed the state, unless a refused vote found it overdue and expired it.
    assert len(winners) <= 1
    if not winners:
        assert request.status == Status.EXPIRED


def test_a_critical_request_counts_one_person_once_even_concurrently(new_request, approvers):
    request = new_request(risk_level="critical")
    results = run_together(
        [lambda: services.approve_request(request_id=request.pk, reviewer=approvers["director"])]
        * 5
    )
    assert sum(isinstance(r, services.VoteOutcome) for r in results) == 1
    assert all(isinstance(r, services.VoteOutcome | services.AlreadyVoted) for r in results)
    request.refresh_from_db()
    assert request.status == Status.PENDING
    assert services.approve_request(request_id=request.pk, reviewer=approvers["vp"]).decided


def test_ten_parallel_creates_with_one_idempotency_key_make_one_request(make_agent):
    agent = make_agent()
    body = {
        "action": "delete_resource",
        "params": {"id": 7},
        "risk_level": "high",
        "justification": "cleanup",
    }

    # Built here, not in the threads: building a client's API stack swaps a setting.
    ready = [api_stack_client() for _ in range(10)]

    def create(client: Any) -> tuple[int, str | None]:
        response = client.post(
            "/api/v1/approval-requests",
            data=body,
            content_type="application/json",
            headers={"Authorization": f"Bearer {agent.key}", "Idempotency-Key": "one-key"},
        )
        return response.status_code, response.json().get("id")

    results = run_together([functools.partial(create, client) for client in ready])
    assert ApprovalRequest.objects.filter(agent=agent.agent).count() == 1
    statuses = sorted(status for status, _ in results)
    assert set(statuses) <= {201, 409}
    ids = {request_id for status, request_id in results if status == 201}
    assert len(ids) == 1
    # Afterwards the key replays the one response, and a different body is refused.
    again = create(api_stack_client())
    assert again == (201, ids.pop())
