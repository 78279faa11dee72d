"""An adversarial review of the guardrails (SPEC §2, §3, §5, §6, §10.7): what a hostile agent
holding a valid key, or a careless admin, could get past them. Each test states the behaviour
the spec asks for; each failed when the review wrote it, and passes since its fix. (An
approver's edits are re-checked with the controls of issue 18.)"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import connection, transaction

from approvals import services as approvals
from audit.models import AuditEvent
from budgets import services as budgets
from guardrails import policies as policy_changes
from guardrails import policyfile, rules, services
from guardrails.models import Policy, Violation
from guardrails.policyfile import snapshot
from guardrails.tasks import republish_cache_versions
from tests.conftest import client_for
from tests.guardrails.rulekit import policy as compiled

CHECK = "/api/v1/guardrails/check"
CREATE = "/api/v1/approval-requests"

# The seed document's read_file patterns (guardrails/migrations/0002_seed_policies.py).
READ_FILE_PATTERNS = [r"\.env$", r"id_rsa$", r"\.pem$", "password", "secret"]
LIMIT_SECONDS = 0.010  # SPEC §10.7: a hostile input never takes longer than 10 ms


def change_policy(name: str, **changes: Any) -> Policy:
    """Change the global policy `name` through the service (a version, an audit event)."""
    policy = Policy.objects.get(name=name, scope="global")
    fields = snapshot(policy)
    fields.update(changes)
    return policy_changes.save_policy(fields=fields, policy=policy)


def fastest(run: Callable[[], object], times: int = 10) -> float:
    best = float("inf")
    for _ in range(times):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


# --- §10.7: no input makes a check slow ---------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        # 21 000 empty strings and one forbidden path: 63 KB, under the 64 KB the API takes.
        pytest.param({"k": [""] * 21_000, "path": "/app/.env"}, id="empty-strings"),
        # Strings that each need resolving as paths ("//"), and one forbidden path.
        pytest.param({"k": ["//"] * 12_000, "path": "/app/.env"}, id="slash-strings"),
    ],
)
def test_a_deny_among_many_short_strings_is_evaluated_within_10_ms(params: dict[str, Any]) -> None:
    # The joined scan keeps the allow path at ~1-3 ms, but as soon as one string matches, every
    # string is scanned again one C call (and one path name) at a time: 24-29 ms, ten times the
    # allow path (SPEC §10.1: a deny must not be slower than 2x an allow).
    policy = compiled(forbidden_patterns=READ_FILE_PATTERNS)
    facts = rules.Facts(action="read_file", params=params)

    took = fastest(lambda: rules.evaluate(policy, facts))

    assert rules.evaluate(policy, facts).codes[0] == "forbidden_pattern"
    assert took < LIMIT_SECONDS, f"a deny took {took * 1000:.1f} ms"


@pytest.mark.parametrize(
    "items",
    [
        pytest.param({"type": "integer"}, id="integers"),
        pytest.param({"anyOf": [{"type": "integer"}, {"type": "boolean"}]}, id="any-of"),
    ],
)
def test_arguments_that_break_a_params_schema_many_times_are_evaluated_within_10_ms(
    items: dict[str, Any],
) -> None:
    # An ordinary schema (a list of ids) and 60 KB of wrong items. `next(iter_errors(...))`
    # looks lazy, but jsonschema_rs builds every error first (15 000 of them, each converted to
    # Python): 45-320 ms for the first one, where `validator.validate()` raises it in 0.02 ms.
    schema = {"type": "object", "properties": {"ids": {"type": "array", "items": items}}}
    policy = compiled(params_schema=schema)
    facts = rules.Facts(action="read_file", params={"ids": ["x"] * 15_000})

    took = fastest(lambda: rules.evaluate(policy, facts))

    verdict = rules.evaluate(policy, facts)
    assert (verdict.codes, verdict.reasons[0].param) == (["invalid_params"], "ids[0]")
    assert took < LIMIT_SECONDS, f"an invalid_params deny took {took * 1000:.1f} ms"


# --- §6 rate limit: a limit an admin sets is a limit ---------------------------------------------


def test_a_rate_limit_of_zero_calls_an_hour_admits_no_call(db, api, make_agent):
    # The admin form, the policy file and the column all take 0, and GET /policies tells the
    # agent "rate_limit_per_hour": 0; the check then treats 0 as "no limit" (`limit or 0` in
    # guardrails/services.py, `limit > 0` in the Lua script): every call goes through.
    try:
        change_policy("read_file", rate_limit_per_hour=0)
    except ValidationError:
        return  # refusing a limit of 0 when it is saved is fine too
    agent = make_agent()

    answer = api(agent.key).post(CHECK, {"action": "read_file", "params": {"path": "/a"}}).json()

    assert answer["decision"] == "deny", answer
    assert answer["reasons"][0]["code"] == "rate_limited"


# --- §6 violations: values truncated, never secrets in full ---------------------------------------


SECRET_KEY = "password=Tr0ub4dor&3-correct-horse-battery-staple"
TOKEN_KEY = "ghp_5mJ3kQ9xL2vB8nR4tY6wP1zC7dF0hG2aS9eU"


def test_a_secret_key_of_the_arguments_is_never_stored_or_shown_whole(
    db, api, make_agent, make_user
):
    # A key is scanned like any string (SPEC §6: keys included). When a key is what matched, the
    # violation names the param as "opts.<the whole key> (the key)": the excerpt is cut to half
    # and 40 characters, but the param, the message, the reasons, the audit event and the page
    # carry the whole of it.
    agent = make_agent()
    params = {"path": "/srv/reports/q3.csv", "opts": {SECRET_KEY: True}}

    answer = api(agent.key).post(CHECK, {"action": "read_file", "params": params}).json()

    assert answer["decision"] == "deny"
    violation = Violation.objects.get(pk=answer["violation_id"])
    stored = [violation.param, violation.message, violation.excerpt, str(violation.reasons)]
    assert not [text for text in stored if SECRET_KEY in text], stored
    event = AuditEvent.objects.get(event_type="guardrail.violation")
    assert SECRET_KEY not in str(event.payload)
    page = client_for(make_user(roles=("manager",))).get("/policies/violations/")
    assert SECRET_KEY not in page.content.decode()


def test_a_secret_key_named_in_a_params_schema_error_is_never_stored_whole(db, api, make_agent):
    # The same through `invalid_params`: the error's place (`where`) is the offending key.
    change_policy(
        "read_file",
        params_schema={"type": "object", "additionalProperties": {"type": "string"}},
    )
    agent = make_agent()

    answer = api(agent.key).post(CHECK, {"action": "read_file", "params": {TOKEN_KEY: 1}}).json()

    assert answer["decision"] == "deny"
    violation = Violation.objects.get(pk=answer["violation_id"])
    assert TOKEN_KEY not in violation.param
    assert TOKEN_KEY not in violation.message
    event = AuditEvent.objects.get(event_type="guardrail.violation")
    assert TOKEN_KEY not in str(event.payload)


# --- §6 allowed resources: dot segments and look-alike prefixes -----------------------------------


API_PREFIX = "https://api.example.com/public/"


@pytest.mark.parametrize(
    "resource",
    [
        # RFC 3986 §2.3/§6.2.2.2: %2E is ".", so these are dot segments; servers resolve them.
        API_PREFIX + "%2e%2e/admin/users",
        API_PREFIX + "%2E%2E/admin/users",
        API_PREFIX + ".%2e/admin/users",
        # A ".." segment ended by the query or the fragment is still a segment: httpx (and any
        # WHATWG parser) resolves "https://api.example.com/public/..?x" to "/?x".
        API_PREFIX + "..?next=/admin",
        API_PREFIX + "..#admin",
    ],
)
def test_a_url_with_dot_segments_in_any_form_is_never_inside_its_prefix(resource: str) -> None:
    policy = compiled(name="external_api_call", allowed_resources=[API_PREFIX])
    facts = rules.Facts(action="external_api_call", params={"resource": resource})

    verdict = rules.evaluate(policy, facts)

    assert verdict.codes == ["resource_not_allowed"], (resource, verdict.codes)


@pytest.mark.parametrize("path", ["/app/data#old/passwords.txt", "/app/data?/config.yml"])
def test_a_file_path_beside_the_allowed_directory_is_outside_it(path: str) -> None:
    # "?" and "#" end a URL's path, not a file path: "/app/data#old" is a sibling of
    # "/app/data", yet it counts as inside it.
    policy = compiled(name="write_file", allowed_resources=["/app/data"])
    facts = rules.Facts(action="write_file", params={"path": path})

    verdict = rules.evaluate(policy, facts)

    assert verdict.codes == ["resource_not_allowed"], (path, verdict.codes)


# --- §2: an approver's changes are re-checked ----------------------------------------------------


# --- §6/§7: sensitive-data accesses ---------------------------------------------------------------


def test_a_sensitive_call_a_person_approves_is_recorded_as_a_data_access(
    db, new_request, approvers
):
    # SPEC §6: "allowed calls on `sensitive` policies record `data.accessed`" (counted in the
    # period report, §7). Only a check answered `allow` records one: a sensitive call that a
    # person approves (the policy needs approval, the agent's autonomy or confidence sent it to
    # a person) is allowed all the same, yet leaves no data.accessed event.
    change_policy("read_file", sensitive=True, requires_approval=True)
    request = new_request(
        action="read_file", params={"path": "/srv/hr/salaries.csv"}, risk_level="low"
    )

    approvals.approve_request(request_id=request.pk, reviewer=approvers["lead"])

    accesses = AuditEvent.objects.filter(event_type="data.accessed")
    assert accesses.count() == 1, "the approved read of sensitive data is not in the trail"


# --- §5/§6 budget step: conservative under concurrency --------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_simultaneous_checks_do_not_together_pass_an_enforced_budget(make_agent):
    # SPEC §5: "Admission is conservative under concurrency: N simultaneous checks must not
    # together pass a limit that one would hit." The check's budget step only reads (it holds
    # nothing), so five checks estimating 60 ¢ each against 100 ¢ all answer allow: the agent
    # goes on to spend 300 ¢ of a 100 ¢ hard limit.
    agent = make_agent().agent
    budgets.set_budget(scope="agent", agent=agent, period="daily", limit_cents=100)
    barrier = threading.Barrier(5)
    decisions: list[str] = []
    lock = threading.Lock()

    def run(n: int) -> None:
        try:
            barrier.wait()
            outcome = services.check_action(
                agent=agent,
                action="read_file",
                params={"path": f"/srv/reports/{n}.csv"},
                estimated_cost_cents=60,
            )
            with lock:
                decisions.append(outcome.decision)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(decisions) == 5
    assert decisions.count("allow") <= 1, decisions


# --- §2/§6: the policy's risk cannot be lowered by renaming the action ----------------------------


@pytest.mark.parametrize("action", ["Deploy_To_Production", "DEPLOY_TO_PRODUCTION"])
def test_a_case_variant_of_a_known_action_is_not_routed_below_its_policy(
    db, api, make_agent, settings, action
):
    # With unknown actions sent to a person (the admin setting of SPEC §6 step 3), a case
    # variant of deploy_to_production is "unknown": it is routed at high (one engineering
    # manager) instead of critical (two directors), with no rate limit, and the inbox shows an
    # approver a request to deploy to production. An agent can lower its risk below policy.
    settings.OVERSIGHT_UNKNOWN_ACTIONS = "require_approval"
    agent = make_agent()
    body = {"action": action, "params": {"service": "api"}, "justification": "Ship the fix."}

    response = api(agent.key).post(CREATE, body)

    if response.status_code == 403:
        return  # refused: fine
    assert response.status_code == 201, response.content
    created = response.json()
    assert (created["risk_level"], created["required_approvals"]) == ("critical", 2), created


# --- §6 policies as code and the simulator: never a crash, never a hang --------------------------


@pytest.mark.parametrize(
    "params",
    [
        pytest.param('{"note": "' + "x" * 70_000 + '"}', id="over-64-KB"),
        pytest.param('{"note": "\\ud800"}', id="lone-surrogate"),
        pytest.param('{"limit": 1e999}', id="infinity"),
    ],
)
def test_policies_test_refuses_arguments_no_check_takes_with_a_command_error(db, params):
    # `services.simulate` raises InvalidParams, which the command does not catch: a traceback.
    with pytest.raises(CommandError):
        call_command("policies", "test", "read_file", "--params", params)


POLICY = "policies:\n- name: adv_policy\n  category: read\n  risk_level: low\n"


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("policies: " + "[" * 2_000 + "]" * 2_000, id="deeply-nested"),
        pytest.param(POLICY + '  forbidden_patterns: ["\\ud800"]\n', id="surrogate-pattern"),
    ],
)
def test_policies_import_names_the_problem_of_any_file_instead_of_crashing(db, tmp_path, text):
    # RecursionError (PyYAML's composer) and UnicodeEncodeError (RE2) escape `policyfile.parse`.
    path = tmp_path / "policies.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")

    with pytest.raises(CommandError) as refused:
        call_command("policies", "import", str(path), "--dry-run")

    assert "not applied" in str(refused.value)


def test_a_policy_file_whose_aliases_expand_to_millions_of_values_is_refused_quickly(db):
    # A 500-byte file: six levels of twelve YAML aliases are 3 million values in the params
    # schema. `parse` expands them (the JSON Schema library and the NUL scan walk every one):
    # seconds here, and each further level multiplies it by twelve; applied, the schema would be
    # stored in every version, audit event and GET /policies answer.
    anchors = ["a0: &a0 [x]"]
    for level in range(1, 7):
        anchors.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * 12) + "]")
    text = POLICY + "  params_schema:\n    default: {" + ", ".join(anchors) + "}\n"
    assert len(text) < 1_000

    started = time.perf_counter()
    with contextlib.suppress(policyfile.FileProblem):
        policyfile.parse(text, agent_names=set())
    took = time.perf_counter() - started

    assert took < 0.5, f"a {len(text)}-byte file took {took:.1f} s to read"


# --- §6: a change is honoured by the very next check on every web process ------------------------


def _waiting_on_a_lock() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return int(cursor.fetchone()[0])


def _ask(url: str, key: str, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(
        url + CHECK, json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_change_committed_behind_a_concurrent_import_is_honoured_on_every_web_process(
    web_server, make_agent
):
    # The policy set's version is the newest PolicyVersion id, but ids are handed out when a row
    # is inserted, not when it commits. An admin's save (id N+1) waits for the audit lock that a
    # running import holds; the import writes its next version (id N+2) and commits, publishing
    # N+2; a web process reloads then (without the admin's change); the admin's save commits and
    # publishes max(id) = N+2 again: nothing changes, beat's republish neither, and that process
    # keeps allowing what the new pattern forbids until some other policy changes.
    if connection.vendor != "postgresql":
        pytest.skip("the audit append lock and pg_stat_activity are PostgreSQL's")
    agent = make_agent()
    body = {"action": "read_file", "params": {"path": "/srv/reports/q3.csv"}}
    assert _ask(web_server.url, agent.key, body)["decision"] == "allow"

    import_started, import_goes_on = threading.Event(), threading.Event()
    admin_appended, admin_commits = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def import_two_changes() -> None:
        try:
            with transaction.atomic():
                change_policy("write_file", description="from the import, 1 of 2")
                import_started.set()
                import_goes_on.wait(30)
                change_policy("run_command", description="from the import, 2 of 2")
        except BaseException as exc:
            failures.append(exc)
        finally:
            import_started.set()
            connection.close()

    def admin_adds_a_pattern() -> None:
        try:
            with transaction.atomic():
                change_policy("read_file", forbidden_patterns=[*READ_FILE_PATTERNS, "^/srv/"])
                admin_appended.set()
                admin_commits.wait(30)
        except BaseException as exc:
            failures.append(exc)
        finally:
            admin_appended.set()
            connection.close()

    importer = threading.Thread(target=import_two_changes)
    admin = threading.Thread(target=admin_adds_a_pattern)
    try:
        importer.start()
        assert import_started.wait(30)
        admin.start()
        deadline = time.monotonic() + 30
        while _waiting_on_a_lock() < 1:  # the admin's version row is in; it awaits the audit lock
            assert time.monotonic() < deadline, "the admin's save never waited for the import"
            time.sleep(0.01)
        import_goes_on.set()
        importer.join(30)
        assert admin_appended.wait(30)
        # A check on the web process between the two commits: it reloads the import's version.
        assert _ask(web_server.url, agent.key, body)["decision"] == "allow"
    finally:
        import_goes_on.set()
        admin_commits.set()
        importer.join(30)
        if admin.ident is not None:  # started
            admin.join(30)
    assert not failures, failures
    republish_cache_versions()  # what beat does every tick

    answer = _ask(web_server.url, agent.key, body)

    assert answer["decision"] == "deny", "the web process still holds the set without ^/srv/"
    assert answer["reasons"][0]["pattern"] == "^/srv/"
