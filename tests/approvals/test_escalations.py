"""The managers' escalations page: the queue across tiers and the figures computed in SQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.utils import timezone

from approvals import selectors, services
from approvals.models import ApprovalRequest
from tests.conftest import client_for, shift_into_past


@pytest.fixture
def manager(make_user):
    return make_user("m-anager", roles=("manager",))


def escalated(new_request, **fields):
    request = new_request(**fields)
    limit = (request.expires_at - request.created_at).total_seconds()
    shift_into_past(request.pk, limit * 0.6)
    assert services.escalate_request(request_id=request.pk)
    return request


def decided_after(request_id, seconds: float, *, days_ago: float = 1) -> None:
    """Make a decided request look as if it took `seconds` and ended `days_ago` days ago."""
    end = timezone.now() - timedelta(days=days_ago)
    ApprovalRequest.objects.filter(pk=request_id).update(
        decided_at=end,
        created_at=end - timedelta(seconds=seconds),
        escalates_at=end - timedelta(seconds=seconds / 2),
        expires_at=end + timedelta(hours=1),
    )


def test_the_queue_holds_escalated_and_soon_expiring_requests_closest_deadline_first(
    db, new_request, approvers, manager
):
    calm = new_request(urgency="low")
    soon = new_request(urgency="critical", risk_level="critical")  # 15 minutes: within 30
    up = escalated(new_request, risk_level="high")
    overdue = new_request()
    shift_into_past(overdue.pk, 5 * 3600)
    html = client_for(manager).get("/escalations/").content.decode()
    assert f"request-{calm.pk}" not in html
    assert f"request-{overdue.pk}" not in html, "an overdue request counts as expired"
    assert html.index(f"request-{soon.pk}") < html.index(f"request-{up.pk}")
    assert "Director" in html  # the tier the high-risk request escalated to
    assert 'data-deadline="' in html, "time left ticks in the browser"


def test_the_page_is_for_managers_only(db, approvers, make_user):
    assert client_for(approvers["vp"]).get("/escalations/").status_code == 403
    assert client_for(make_user(roles=("compliance",))).get("/escalations/").status_code == 403
    response = Client().get("/escalations/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login/")


def test_median_and_p90_match_the_definition_of_percentile_cont(db, new_request, approvers):
    for seconds in (10, 20, 30, 40):
        request = new_request(risk_level="low")
        services.approve_request(request_id=request.pk, reviewer=approvers["lead"])
        decided_after(request.pk, seconds)
    rejected = new_request(risk_level="medium")
    services.reject_request(request_id=rejected.pk, reviewer=approvers["lead"], reason="no")
    decided_after(rejected.pk, 100)
    old = new_request(risk_level="medium")
    services.approve_request(request_id=old.pk, reviewer=approvers["lead"])
    decided_after(old.pk, 9999, days_ago=45)  # outside the 30-day window

    stats = {row.risk: row for row in selectors.decision_stats(timezone.now())}
    # percentile_cont over 10, 20, 30, 40: position p*(n-1), interpolated.
    assert stats["low"].median_seconds == pytest.approx(25)
    assert stats["low"].p90_seconds == pytest.approx(37)
    assert stats["medium"].median_seconds == pytest.approx(100)
    assert stats["medium"].p90_seconds == pytest.approx(100)
    assert stats["high"].median_seconds is None
    assert (stats["low"].approved, stats["medium"].rejected, stats["medium"].approved) == (4, 1, 0)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="compares with PostgreSQL's own")
def test_the_portable_percentiles_equal_postgresqls_percentile_cont(db, new_request, approvers):
    for seconds in (3, 7, 7, 12, 50, 51, 90, 400, 401, 1000, 1234):
        request = new_request(risk_level="low")
        services.approve_request(request_id=request.pk, reviewer=approvers["lead"])
        decided_after(request.pk, seconds + 0.25)
    low = next(r for r in selectors.decision_stats(timezone.now()) if r.risk == "low")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM decided_at"
            " - created_at)), percentile_cont(0.9) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM"
            " decided_at - created_at)) FROM approvals_approvalrequest WHERE risk_level = 'low'"
        )
        median, p90 = cursor.fetchone()
    assert low.median_seconds == pytest.approx(float(median))
    assert low.p90_seconds == pytest.approx(float(p90))


def test_expiry_rate_and_load_per_tier_and_person(db, new_request, approvers, manager):
    for _ in range(3):
        request = new_request(risk_level="low")
        services.approve_request(request_id=request.pk, reviewer=approvers["lead"])
    expired = new_request(risk_level="low")
    shift_into_past(expired.pk, 5 * 3600)
    assert services.expire_request(request_id=expired.pk)
    new_request(risk_level="high")  # waiting at the engineering manager tier
    low = next(r for r in selectors.decision_stats(timezone.now()) if r.risk == "low")
    assert low.expiry_rate == pytest.approx(0.25)
    tiers = {t.tier: t for t in selectors.tier_load(timezone.now())}
    assert tiers["engineering_manager"].pending == 1
    assert tiers["engineering_manager"].approvers == 1
    assert tiers["director"].approvers == 2
    people = selectors.votes_per_person(timezone.now())
    assert [(p["voter_name"], p["votes"], p["approvals"]) for p in people] == [("t-lead", 3, 3)]
    client = client_for(manager)
    assert "Team lead" in client.get("/escalations/").content.decode()
    figures = client.get("/escalations/figures/").content.decode()
    assert "25.0 %" in figures
    assert "t-lead" in figures


def test_the_figures_load_after_the_queue_and_are_kept_a_minute(
    db, new_request, approvers, manager, django_assert_max_num_queries
):
    client = client_for(manager)
    page = client.get("/escalations/").content.decode()
    assert 'hx-get="/escalations/figures/"' in page, "the page asks for its figures"
    request = new_request(risk_level="low")
    services.approve_request(request_id=request.pk, reviewer=approvers["lead"])
    with django_assert_max_num_queries(10) as computed:
        first = client.get("/escalations/figures/").content.decode()
    assert "t-lead" in first
    other = new_request(risk_level="low")
    services.reject_request(request_id=other.pk, reviewer=approvers["em"], reason="no")
    with django_assert_max_num_queries(10) as cached:
        again = client.get("/escalations/figures/").content.decode()
    # The figures' three queries (two for the decisions, one for the votes) are not run again.
    assert len(cached.captured_queries) == len(computed.captured_queries) - 3
    assert "t-em" not in again, "within the minute the same figures are shown"
    assert client_for(approvers["vp"]).get("/escalations/figures/").status_code == 403


def test_the_query_count_does_not_grow_with_ten_times_the_rows(
    db, new_request, approvers, manager, django_assert_max_num_queries
):
    def add_rows(n: int) -> None:
        for _ in range(n):
            escalated(new_request, risk_level="medium")
            decided = new_request(risk_level="high")
            services.reject_request(request_id=decided.pk, reviewer=approvers["em"], reason="no")
            critical = new_request(risk_level="critical", urgency="critical")
            services.approve_request(request_id=critical.pk, reviewer=approvers["director"])

    client = client_for(manager)
    add_rows(3)
    with django_assert_max_num_queries(10) as small:
        client.get("/escalations/")
    with django_assert_max_num_queries(10) as small_figures:
        client.get("/escalations/figures/")
    add_rows(27)
    cache.clear()
    with django_assert_max_num_queries(len(small_figures.captured_queries)):
        client.get("/escalations/figures/")
    with django_assert_max_num_queries(len(small.captured_queries)):
        response = client.get("/escalations/")
    assert response.content.count(b'id="request-') == 60  # escalated + soon-expiring critical
    assert b"1 / 2" in response.content  # a critical request's live approvals, counted in SQL
