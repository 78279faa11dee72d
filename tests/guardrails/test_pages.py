"""The policies pages (SPEC §4, §6): the list, a policy with its history, the simulator and the
violations with their filters and pager; each for the right people only."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from audit.models import AuditEvent
from guardrails import counters, services
from guardrails import policies as policy_changes
from guardrails.models import Policy, Violation, ViolationAlert
from guardrails.policyfile import snapshot
from oversight.redis_clients import quick_client
from tests.conftest import client_for
from tests.guardrails.policies import policy_fields

pytestmark = pytest.mark.django_db

PAGES = ("/policies/", "/policies/{id}/", "/policies/simulate/", "/policies/violations/")


@pytest.fixture
def manager(make_user) -> Client:
    return client_for(make_user("mona", roles=("manager",)))


def read_file() -> Policy:
    return Policy.objects.get(name="read_file", scope="global")


def new_policy(**fields: Any) -> Policy:
    """A global policy through the service, as the admin and the import make them."""
    values = policy_fields(**{"category": "external_api", **fields})
    return policy_changes.save_policy(fields=values)


def refused(agent, action: str, params: dict[str, Any], **extra: Any) -> int:
    """Check a call the guardrails deny; the id of the violation it records."""
    outcome = services.check_action(agent=agent, action=action, params=params, **extra)
    assert outcome.decision == "deny"
    assert outcome.violation_id is not None
    return outcome.violation_id


def deny(agent, path: str = "/app/.env") -> int:
    return refused(agent, "read_file", {"path": path})


def shown(client: Client, query: str = "") -> list[int]:
    response = client.get(f"/policies/violations/{query}")
    assert response.status_code == 200
    return [violation.pk for violation in response.context["violations"]]


def local(moment: dt.datetime) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%dT%H:%M")


def recorded() -> tuple[int, int, int, int]:
    """What a check may leave behind: violations, alerts, audit events, logged checks."""
    return (
        Violation.objects.count(),
        ViolationAlert.objects.count(),
        AuditEvent.objects.count(),
        quick_client().xlen(counters.CHECK_LOG),
    )


# --- who may see what ------------------------------------------------------------------------


def paths() -> list[str]:
    return [page.format(id=read_file().pk) for page in PAGES]


def test_anonymous_visitors_are_sent_to_log_in():
    for path in paths():
        response = Client().get(path)
        assert response.status_code == 302
        assert response.headers["Location"] == f"/login/?next={path}"


def test_an_approver_without_a_reading_role_is_refused_everywhere(approvers):
    for person in approvers.values():
        client = client_for(person)
        for path in paths():
            assert client.get(path).status_code == 403, path
    answer = client_for(approvers["vp"]).get("/policies/simulate/?action=read_file&params={}")
    assert answer.status_code == 403
    assert b"The check would answer" not in answer.content


@pytest.mark.parametrize("role", ["manager", "admin"])
def test_managers_and_admins_may_use_every_page(make_user, role):
    client = client_for(make_user(roles=(role,)))
    for path in paths():
        assert client.get(path).status_code == 200, path


def test_compliance_reads_policies_and_violations_but_may_not_simulate(make_user):
    client = client_for(make_user("carol", roles=("compliance",)))
    for path in paths():
        expected = 403 if path == "/policies/simulate/" else 200
        assert client.get(path).status_code == expected, path
    assert client.get("/policies/simulate/?action=read_file&params={}").status_code == 403
    listing = client.get("/policies/").content.decode()
    assert "Try an action" not in listing, "no button to a page compliance may not open"


def test_the_pages_answer_get_only(manager):
    for path in paths():
        assert manager.post(path).status_code == 405, path


@pytest.mark.parametrize(
    ("roles", "tier", "sees"),
    [
        (("manager",), "", True),
        (("admin",), "", True),
        (("compliance",), "", True),
        (("approver",), "director", False),
        ((), "", False),
    ],
)
def test_the_nav_shows_policies_to_managers_admins_and_compliance_only(
    make_user, roles, tier, sees
):
    html = client_for(make_user(roles=roles, tier=tier)).get("/").content.decode()
    assert ('<a href="/policies/">Policies</a>' in html) is sees
    assert ('href="/policies/"' in html) is sees


# --- the list --------------------------------------------------------------------------------


def test_the_list_shows_every_seeded_policy_with_its_bounds(manager):
    response = manager.get("/policies/")
    html = response.content.decode()
    for policy in Policy.objects.all():
        assert f'<a href="/policies/{policy.pk}/"><code>{policy.name}</code></a>' in html
    row = html[html.index("<code>write_file</code>") :]
    row = row[: row.index("</tr>")]
    assert "100/h" in row
    assert "3 patterns" in row
    assert "always" in row, "write_file requires approval"
    assert "v1" in row
    assert "Try an action" in html
    assert "Add a policy" not in html, "managers read; admins edit"
    assert '<a href="/policies/" aria-current="page">Policies</a>' in html


def test_admins_get_the_links_to_edit(make_user):
    client = client_for(make_user("root", roles=("admin",)))
    listing = client.get("/policies/").content.decode()
    assert 'href="/admin/guardrails/policy/add/"' in listing
    detail = client.get(f"/policies/{read_file().pk}/").content.decode()
    assert f'href="/admin/guardrails/policy/{read_file().pk}/change/"' in detail


def test_the_list_query_count_does_not_grow_with_policies(
    manager, make_agent, django_assert_max_num_queries
):
    def add(count: int) -> None:
        for _ in range(count):
            agent = make_agent().agent
            new_policy(name="read_file", scope="agent", agent=agent.name, sensitive=True)

    add(3)
    with django_assert_max_num_queries(5) as few:
        assert manager.get("/policies/").status_code == 200
    add(27)
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = manager.get("/policies/")
    assert response.content.decode().count("agent agent-") == 30


# --- a policy and its history ----------------------------------------------------------------


def test_a_change_is_a_new_version_naming_the_fields_it_changed(make_user, manager):
    admin = make_user("ada", roles=("admin",))
    policy = read_file()
    fields = snapshot(policy)
    fields.update(rate_limit_per_hour=30, description="Reads, at most 30 an hour.")
    policy_changes.save_policy(fields=fields, policy=policy, actor=admin)

    html = manager.get(f"/policies/{policy.pk}/").content.decode()
    assert "version 2" in html
    history = html[html.index('id="history-heading"') :]
    newest = history[history.index("<strong>v2</strong>") : history.index("<strong>v1</strong>")]
    assert "changed" in newest
    assert "ada" in newest
    assert "<code>rate_limit_per_hour</code>" in newest
    assert "<code>description</code>" in newest
    assert "<code>forbidden_patterns</code>" not in newest
    first = history[history.index("<strong>v1</strong>") :]
    first = first[: first.index("</li>")]
    assert "created" in first
    assert "system" in first
    assert "30 calls per agent per clock hour" in html
    assert "<code>\\.env$</code>" in html


def test_the_policy_page_lists_its_recent_violations(manager, make_agent):
    agent = make_agent("leaky-bot").agent
    deny(agent)
    html = manager.get(f"/policies/{read_file().pk}/").content.decode()
    recent = html[html.index("Recent violations") :]
    assert "<code>forbidden_pattern</code> by leaky-bot" in recent
    assert 'href="/policies/violations/?action=read_file"' in recent
    other = Policy.objects.get(name="write_file")
    assert "leaky-bot" not in manager.get(f"/policies/{other.pk}/").content.decode()


def test_an_unknown_policy_is_not_found(manager):
    assert manager.get("/policies/999999/").status_code == 404


# --- the simulator ---------------------------------------------------------------------------


def simulate(client: Client, **query: Any) -> Any:
    response = client.get("/policies/simulate/", query)
    assert response.status_code == 200
    return response


def test_the_empty_simulator_shows_the_form_and_no_answer(manager):
    html = simulate(manager).content.decode()
    assert 'name="action"' in html
    assert 'name="params"' in html
    assert "The check would answer" not in html
    assert '<option value="read_file">' in html, "the policies' names are suggested"


def test_the_simulator_explains_a_deny_and_records_nothing(manager, make_agent):
    agent = make_agent("sim-bot").agent
    before = recorded()
    response = simulate(
        manager, action="read_file", params='{"path": "/app/.env"}', agent="sim-bot"
    )
    html = response.content.decode()
    assert 'The check would answer <span class="badge danger">deny</span>' in html
    assert "forbidden_pattern" in html
    assert "path matches the forbidden pattern \\.env$" in html
    assert f'href="/policies/{read_file().pk}/"><code>read_file</code></a> v1 (global)' in html
    assert recorded() == before, "no violation, alert, audit event or logged check"
    # Not even three of them alert anyone.
    for _ in range(3):
        simulate(manager, action="read_file", params='{"path": "/app/.env"}', agent="sim-bot")
    assert recorded() == before
    assert not Violation.objects.filter(agent=agent).exists()


def test_the_simulator_answers_allow_and_names_the_current_version(manager):
    html = simulate(manager, action="read_file", params='{"path": "/app/README.md"}').content
    assert b'<span class="badge ok">allow</span>' in html
    assert b"Nothing stops it" in html
    policy = read_file()
    fields = snapshot(policy)
    fields["forbidden_patterns"] = [*fields["forbidden_patterns"], "readme"]
    policy_changes.save_policy(fields=fields, policy=policy)
    html = simulate(manager, action="read_file", params='{"path": "/app/README.md"}').content
    assert b"deny" in html
    assert b"<code>read_file</code></a> v2 (global)" in html


def test_the_simulator_shows_the_hours_rate_count_and_uses_no_slot(manager, make_agent):
    agent = make_agent("rate-bot").agent
    new_policy(name="send_report", rate_limit_per_hour=3)
    query = {"action": "send_report", "params": '{"to": "ops"}', "agent": "rate-bot"}

    def check() -> Any:
        return services.check_action(agent=agent, action="send_report", params={"to": "ops"})

    assert check().rate.used == 1
    before = recorded()
    for _ in range(4):
        html = simulate(manager, **query).content.decode()
        assert "1 of 3 used this hour" in html
        assert '<span class="badge ok">allow</span>' in html
    assert recorded() == before
    assert check().rate.used == 2, "the simulations used up no slot"
    assert check().rate.used == 3
    html = simulate(manager, **query).content.decode()
    assert "3 of 3 used this hour" in html
    assert '<span class="badge danger">deny</span>' in html
    assert "rate_limited" in html, "it answers what the check would answer now"
    assert check().decision == "deny"


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ("{not json", "Not JSON"),
        ('["/app/.env"]', "The arguments are a JSON object"),
        ('{"path": "\\u0000"}', "NUL"),
    ],
)
def test_bad_arguments_are_a_form_error_not_an_answer(manager, params, error):
    before = recorded()
    html = simulate(manager, action="read_file", params=params).content.decode()
    assert error in html
    assert 'class="field-error"' in html
    assert "The check would answer" not in html
    assert recorded() == before


def test_an_unknown_agent_is_a_form_error(manager):
    html = simulate(manager, action="read_file", params="{}", agent="ghost-bot").content.decode()
    assert "Select a valid choice" in html
    assert "The check would answer" not in html


# --- the violations --------------------------------------------------------------------------


def test_no_violations_says_so(manager):
    html = manager.get("/policies/violations/").content.decode()
    assert "No violations yet" in html
    assert "Repeated violations" not in html
    assert "Older →" not in html


def test_violations_filter_by_agent_action_reason_and_time(manager, make_agent):
    alpha, beta = make_agent("alpha-bot").agent, make_agent("beta-bot").agent
    a_pattern = deny(alpha)
    a2 = refused(alpha, "launch_rockets", {})
    b1 = refused(beta, "run_command", {"command": "rm -rf /"})
    b2 = refused(beta, "external_api_call", {"url": "x"}, estimated_cost_cents=500)
    assert Violation.objects.get(pk=a2).code == "unknown_action"
    assert Violation.objects.get(pk=b2).code == "cost_limit"

    assert shown(manager) == [b2, b1, a2, a_pattern]
    assert shown(manager, "?agent=alpha-bot") == [a2, a_pattern]
    assert shown(manager, "?action=run_command") == [b1]
    assert shown(manager, "?code=forbidden_pattern") == [b1, a_pattern]
    assert shown(manager, "?code=cost_limit&agent=beta-bot") == [b2]
    assert shown(manager, "?code=cost_limit&agent=alpha-bot") == []

    now = timezone.now()
    Violation.objects.filter(pk=a_pattern).update(created_at=now - dt.timedelta(days=2))
    yesterday = local(now - dt.timedelta(days=1))
    assert shown(manager, f"?since={yesterday}") == [b2, b1, a2]
    assert shown(manager, f"?until={yesterday}") == [a_pattern]
    assert shown(manager, f"?since={local(now + dt.timedelta(hours=1))}") == []

    html = manager.get("/policies/violations/?agent=alpha-bot&code=cost_limit").content
    assert b"No violation matches these filters." in html
    assert b'href="/policies/violations/">Clear</a>' in html


def test_invalid_filters_show_an_error_not_a_crash(manager, make_agent):
    deny(make_agent().agent)
    response = manager.get(
        "/policies/violations/?since=2026-03-02T00:00&until=2026-03-01T00:00&code=made_up"
        "&before=abc"
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert "must be before" in html
    assert "Select a valid choice" in html
    assert response.context["violations"] == []
    assert manager.get("/policies/violations/?before=99999999999999999999999").status_code == 200
    assert manager.get("/policies/violations/?agent=nobody").status_code == 200


def test_a_violation_shows_an_excerpt_never_the_whole_value(manager, make_agent):
    value = "/srv/shop/config/production/credentials/.env"
    deny(make_agent("leaky-bot").agent, path=value)
    violation = Violation.objects.get()
    assert violation.excerpt
    assert violation.excerpt.rstrip("…") in value
    assert len(violation.excerpt) < len(value)
    html = manager.get("/policies/violations/").content.decode()
    assert f"value: <code>{violation.excerpt}</code>" in html
    assert value not in html
    assert "forbidden_pattern" in html
    assert "leaky-bot" in html


def test_a_schema_violation_does_not_show_the_whole_value_either(manager, make_agent):
    """A value that breaks the params schema is as likely a secret as one that matches a
    pattern (SPEC §6: values truncated, never secrets in full)."""
    schema = {"type": "object", "properties": {"token": {"type": "integer"}}}
    new_policy(name="rotate_key", params_schema=schema)
    secret = "sk-live-4f9a1c2e7b3d5f6a8c0e"
    outcome = services.check_action(
        agent=make_agent("schema-bot").agent, action="rotate_key", params={"token": secret}
    )
    assert outcome.decision == "deny"
    violation = Violation.objects.get()
    assert violation.code == "invalid_params"
    assert violation.param == "token"
    assert secret not in violation.message
    assert secret not in str(violation.reasons)
    html = manager.get("/policies/violations/").content.decode()
    assert "invalid_params" in html
    assert secret not in html


def bulk_violations(agent, count: int, *, start: dt.datetime | None = None) -> list[Violation]:
    """`count` violations of `agent`, one millisecond apart, oldest first (ids in time order)."""
    start = start or timezone.now() - dt.timedelta(minutes=5)
    return Violation.objects.bulk_create(
        Violation(
            agent=agent,
            action="read_file",
            code="forbidden_pattern",
            severity="critical",
            message="path matches the forbidden pattern \\.env$",
            param="path",
            excerpt="/app…",
            pattern="\\.env$",
            params_sha256="0" * 64,
            purpose="check",
            created_at=start + dt.timedelta(milliseconds=index),
        )
        for index in range(count)
    )


def test_violations_page_older_with_a_keyset_cursor_that_keeps_the_filters(manager, make_agent):
    agent = make_agent("busy-bot").agent
    other = make_agent("other-bot").agent
    mine = [v.pk for v in bulk_violations(agent, 55)]
    bulk_violations(other, 5)

    first = manager.get("/policies/violations/?agent=busy-bot")
    on_first = [v.pk for v in first.context["violations"]]
    assert on_first == sorted(mine, reverse=True)[:50]
    older = first.context["older_url"]
    assert older == f"?agent=busy-bot&before={on_first[-1]}"
    html = first.content.decode()
    assert f'href="{older.replace("&", "&amp;")}" rel="next">Older →</a>' in html
    assert "← Newest" not in html

    second = manager.get("/policies/violations/" + older)
    assert [v.pk for v in second.context["violations"]] == sorted(mine, reverse=True)[50:]
    assert second.context["older_url"] is None
    html = second.content.decode()
    assert "Older →" not in html
    assert 'href="?agent=busy-bot" rel="first">← Newest</a>' in html

    everyone = manager.get("/policies/violations/")
    assert everyone.context["older_url"] == f"?before={everyone.context['violations'][-1].pk}"


def test_every_violation_is_on_exactly_one_page_when_ids_and_times_disagree(manager, make_agent):
    """Two checks denied at once take their times and their ids in different orders (the one
    that read the clock first may insert second). Paging must still show each one once."""
    agent = make_agent("racing-bot").agent
    rows = bulk_violations(agent, 51)
    # The two oldest came in swapped: the first id has the later time.
    first, second = rows[0], rows[1]
    Violation.objects.filter(pk=first.pk).update(created_at=second.created_at)
    Violation.objects.filter(pk=second.pk).update(created_at=first.created_at)

    seen: list[int] = []
    url: str | None = ""
    for _ in range(5):
        response = manager.get("/policies/violations/" + (url or ""))
        seen += [v.pk for v in response.context["violations"]]
        url = response.context["older_url"]
        if url is None:
            break
    assert sorted(seen) == sorted(row.pk for row in rows)


def test_repeated_violations_alert_is_listed_with_a_link_to_the_agents_violations(
    manager, make_agent
):
    agent = make_agent("noisy-bot").agent
    for _ in range(3):
        deny(agent)
    alert = ViolationAlert.objects.get()
    html = manager.get("/policies/violations/").content.decode()
    section = html[html.index('id="alerts-heading"') : html.index("</section>")]
    assert "Repeated violations" in section
    assert alert.message in section
    assert "noisy-bot was refused 3 times" in section
    assert '<a href="?agent=noisy-bot">Show</a>' in section
    assert shown(manager, "?agent=noisy-bot") == list(
        Violation.objects.filter(agent=agent).order_by("-id").values_list("pk", flat=True)
    )


def page_queries(client: Client, url: str, django_assert_max_num_queries: Any) -> int:
    with django_assert_max_num_queries(8) as captured:
        assert client.get(url).status_code == 200
    return len(captured.captured_queries)


@pytest.mark.parametrize(
    "url",
    [
        "/policies/violations/",
        "/policies/violations/?agent=agent-1&code=forbidden_pattern&action=read_file",
        "/policies/violations/?since=2000-01-01T00:00&until=2100-01-01T00:00&before=999999999",
    ],
)
def test_the_violations_query_count_does_not_grow_with_rows(
    manager, make_agent, django_assert_max_num_queries, url
):
    def add(agents: int) -> None:
        for _ in range(agents):
            agent = make_agent().agent
            for _ in range(3):  # each agent also gets its repeated-violations alert
                deny(agent)

    add(1)
    few = page_queries(manager, url, django_assert_max_num_queries)
    add(9)
    assert Violation.objects.count() == 30
    assert ViolationAlert.objects.count() == 10
    with django_assert_max_num_queries(few):
        response = manager.get(url)
    if "agent=" not in url:
        assert len(response.context["violations"]) == 30
        assert len(response.context["alerts"]) == 5
    assert re.search(r"Agent agent-\d+ was refused 3 times", response.content.decode())
