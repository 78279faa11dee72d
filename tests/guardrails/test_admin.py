"""The Django admin edits policies through `guardrails.services` (SPEC §6: each save is a new
version and an audited `policy.changed`, checked as a policy file is); versions, violations,
alerts and the check log are read-only there."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from accounts.models import User
from audit.models import AuditEvent
from guardrails import policies as policy_changes
from guardrails import policyfile, services
from guardrails.models import Policy, PolicyVersion, Violation
from tests.conftest import client_for
from tests.guardrails.policies import policy_fields

pytestmark = pytest.mark.django_db

ADD = "/admin/guardrails/policy/add/"


@pytest.fixture
def root(make_user) -> User:
    person: User = make_user("root-admin", roles=("admin",))
    person.is_superuser = True
    person.save()
    return person


@pytest.fixture
def admin_client(root: User) -> Client:
    return client_for(root)


def change_url(policy: Policy) -> str:
    return f"/admin/guardrails/policy/{policy.pk}/change/"


def delete_url(policy: Policy) -> str:
    return f"/admin/guardrails/policy/{policy.pk}/delete/"


def form_data(**fields: Any) -> dict[str, Any]:
    """The admin form's POST for a policy given in the policy file's form (checkboxes are
    sent only when ticked, lists one item per line)."""
    values = policy_fields(**{"name": "list_files", **fields})
    data: dict[str, Any] = {}
    for name, value in values.items():
        if isinstance(value, bool):
            if value:
                data[name] = "on"
        elif isinstance(value, list):
            data[name] = "\n".join(value)
        elif value is None:
            data[name] = ""
        elif isinstance(value, dict):
            data[name] = json.dumps(value)
        else:
            data[name] = str(value)
    return data


def form_of(policy: Policy, **changes: Any) -> dict[str, Any]:
    fields = {**policyfile.snapshot(policy), **changes}
    fields["agent"] = str(policy.agent_id) if policy.agent_id else ""
    return form_data(**fields)


def global_policy(name: str) -> Policy:
    return Policy.objects.select_related("agent").get(name=name, scope="global")


def policy_events() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(event_type="policy.changed").order_by("sequence"))


def errors_of(response: Any) -> str:
    assert response.status_code == 200, response.status_code
    form = response.context["adminform"].form
    assert form.errors, "the form was expected to refuse"
    return json.dumps(form.errors)


# --- add, change, delete go through the service --------------------------------------------


def test_adding_a_policy_writes_version_one_and_an_audit_event_naming_the_person(
    admin_client, root
):
    response = admin_client.post(
        ADD,
        form_data(
            forbidden_patterns=[r"\.ssh/", "secret"],
            allowed_resources=["/srv/"],
            rate_limit_per_hour=30,
            sensitive=True,
            params_schema={"type": "object", "required": ["path"]},
        ),
    )

    assert response.status_code == 302, response.content[:2000]
    policy = global_policy("list_files")
    assert policy.version == 1
    expected = {
        "name": "list_files",
        "scope": "global",
        "team": "",
        "agent": "",
        "description": "",
        "category": "read",
        "risk_level": "low",
        "requires_approval": False,
        "forbidden_patterns": [r"\.ssh/", "secret"],
        "allowed_resources": ["/srv/"],
        "max_cost_cents": None,
        "rate_limit_per_hour": 30,
        "sensitive": True,
        "params_schema": {"type": "object", "required": ["path"]},
        "enabled": True,
    }
    assert policyfile.snapshot(policy) == expected
    version = PolicyVersion.objects.get(policy=policy)
    assert (version.version, version.change, version.created_by, version.note) == (
        1,
        "created",
        root,
        "admin",
    )
    assert version.snapshot == expected
    (event,) = policy_events()
    assert (event.actor_type, event.actor_name) == ("user", root.display_name)
    assert (event.subject_type, event.subject_id) == ("policy", str(policy.pk))
    assert event.payload["from"] is None
    assert event.payload["to"] == expected
    assert event.payload["source"] == "admin"
    assert event.payload["change"] == "created"


def test_adding_an_agent_scoped_policy_names_the_agent(admin_client, make_agent):
    agent = make_agent("deploy-bot").agent

    response = admin_client.post(
        ADD, form_data(name="read_file", scope="agent", agent=str(agent.pk), sensitive=True)
    )

    assert response.status_code == 302, response.content[:2000]
    policy = Policy.objects.get(name="read_file", scope="agent")
    assert policy.agent == agent
    assert PolicyVersion.objects.get(policy=policy).agent_name == "deploy-bot"
    assert policy_events()[-1].payload["to"]["agent"] == "deploy-bot"


def test_changing_a_policy_writes_the_next_version_and_version_is_read_only(admin_client, root):
    run_command = global_policy("run_command")
    before = policyfile.snapshot(run_command)
    page = admin_client.get(change_url(run_command))
    assert page.status_code == 200
    assert 'name="version"' not in page.content.decode()
    assert "version" not in page.context["adminform"].form.fields

    data = form_of(run_command, rate_limit_per_hour=5, forbidden_patterns=["mkfs"])
    response = admin_client.post(change_url(run_command), {**data, "version": "99"})

    assert response.status_code == 302, response.content[:2000]
    run_command = global_policy("run_command")
    assert run_command.version == 2
    assert (run_command.rate_limit_per_hour, run_command.forbidden_patterns) == (5, ["mkfs"])
    version = PolicyVersion.objects.filter(policy=run_command).order_by("-id").first()
    assert version is not None
    assert (version.version, version.change, version.created_by) == (2, "changed", root)
    (event,) = policy_events()
    assert event.actor_name == root.display_name
    assert event.payload["from"] == before
    assert event.payload["to"] == policyfile.snapshot(run_command)
    assert (event.payload["version"], event.payload["change"]) == (2, "changed")


def test_saving_a_policy_unchanged_writes_no_version(admin_client):
    run_command = global_policy("run_command")
    versions = PolicyVersion.objects.count()

    response = admin_client.post(change_url(run_command), form_of(run_command))

    assert response.status_code == 302, response.content[:2000]
    assert global_policy("run_command").version == 1
    assert PolicyVersion.objects.count() == versions
    assert policy_events() == []


def test_a_pattern_that_starts_with_a_bracket_is_kept_as_a_pattern(admin_client):
    # One pattern per line; a character class is a pattern like any other.
    response = admin_client.post(ADD, form_data(forbidden_patterns=["[0-9]{16}", "secret"]))

    assert response.status_code == 302, errors_of(response)
    assert global_policy("list_files").forbidden_patterns == ["[0-9]{16}", "secret"]


def test_saving_unchanged_a_policy_whose_first_pattern_is_a_character_class(admin_client):
    read_file = global_policy("read_file")
    fields = {**policyfile.snapshot(read_file), "forbidden_patterns": ["[0-9]{16}", "secret"]}
    read_file = policy_changes.save_policy(fields=fields, policy=read_file)
    page = admin_client.get(change_url(read_file))
    shown = page.context["adminform"].form["forbidden_patterns"].value()
    assert page.context["adminform"].form.fields["forbidden_patterns"].prepare_value(shown) == (
        "[0-9]{16}\nsecret"
    )

    response = admin_client.post(change_url(read_file), form_of(read_file))

    assert response.status_code == 302, errors_of(response)
    assert global_policy("read_file").version == 2


@pytest.mark.parametrize(
    ("patterns", "shown"),
    [
        (["(?<=key=)\\w+"], "is not a pattern RE2 accepts"),
        (["ok", "(a)\\1"], "is not a pattern RE2 accepts"),
        (['["unclosed'], "forbidden_patterns"),
    ],
)
def test_a_pattern_re2_refuses_is_a_form_error_and_nothing_is_saved(admin_client, patterns, shown):
    versions, events = PolicyVersion.objects.count(), AuditEvent.objects.count()

    response = admin_client.post(ADD, form_data(forbidden_patterns=patterns))

    errors = errors_of(response)
    assert "forbidden_patterns" in errors
    assert shown in errors
    assert not Policy.objects.filter(name="list_files").exists()
    assert (PolicyVersion.objects.count(), AuditEvent.objects.count()) == (versions, events)


def test_a_refused_pattern_leaves_the_changed_policy_as_it_was(admin_client):
    read_file = global_policy("read_file")
    before = policyfile.snapshot(read_file)

    response = admin_client.post(
        change_url(read_file), form_of(read_file, forbidden_patterns=["(?!x)y"])
    )

    assert "is not a pattern RE2 accepts" in errors_of(response)
    assert policyfile.snapshot(global_policy("read_file")) == before
    assert policy_events() == []


@pytest.mark.parametrize(
    ("schema", "shown"),
    [
        ('{"type": "nonsense"}', "Not a usable JSON Schema"),
        ('"a string"', "A JSON Schema is a JSON object."),
        ('{"$ref": "https://example.com/schema.json"}', "Not a usable JSON Schema"),
        ('{"type": "object"', "params_schema"),
    ],
)
def test_a_broken_params_schema_is_a_form_error_and_nothing_is_saved(admin_client, schema, shown):
    versions = PolicyVersion.objects.count()

    response = admin_client.post(ADD, {**form_data(), "params_schema": schema})

    errors = errors_of(response)
    assert "params_schema" in errors
    assert shown in errors
    assert not Policy.objects.filter(name="list_files").exists()
    assert PolicyVersion.objects.count() == versions
    assert policy_events() == []


def test_a_scope_without_its_target_is_a_form_error(admin_client):
    response = admin_client.post(ADD, form_data(scope="team"))

    assert "a team's policy names its team" in errors_of(response)
    assert not Policy.objects.filter(name="list_files").exists()


def test_a_second_global_policy_of_the_same_name_is_refused(admin_client):
    versions = PolicyVersion.objects.count()

    response = admin_client.post(ADD, form_data(name="read_file"))

    assert "There is a global policy for this action already." in errors_of(response)
    assert Policy.objects.filter(name="read_file").count() == 1
    assert PolicyVersion.objects.count() == versions


def test_deleting_a_policy_writes_a_deleted_version_and_an_audit_event(admin_client, root):
    delete_resource = global_policy("delete_resource")
    before = policyfile.snapshot(delete_resource)
    assert admin_client.get(delete_url(delete_resource)).status_code == 200

    response = admin_client.post(delete_url(delete_resource), {"post": "yes"})

    assert response.status_code == 302, response.content[:2000]
    assert not Policy.objects.filter(name="delete_resource").exists()
    versions = list(PolicyVersion.objects.filter(name="delete_resource").order_by("id"))
    assert [(v.version, v.change, v.policy_id) for v in versions] == [
        (1, "created", None),
        (2, "deleted", None),
    ]
    assert versions[1].created_by == root
    assert versions[1].snapshot == before
    (event,) = policy_events()
    assert event.actor_name == root.display_name
    assert (event.payload["change"], event.payload["from"], event.payload["to"]) == (
        "deleted",
        before,
        None,
    )


def test_deleting_selected_policies_from_the_list_goes_through_the_service(admin_client):
    chosen = [global_policy("delete_resource"), global_policy("deploy_to_production")]

    response = admin_client.post(
        "/admin/guardrails/policy/",
        {"action": "delete_selected", "_selected_action": [p.pk for p in chosen], "post": "yes"},
    )

    assert response.status_code == 302, response.content[:2000]
    assert not Policy.objects.filter(pk__in=[p.pk for p in chosen]).exists()
    deleted = PolicyVersion.objects.filter(change="deleted")
    assert sorted(deleted.values_list("name", flat=True)) == [
        "delete_resource",
        "deploy_to_production",
    ]
    assert sorted(e.payload["name"] for e in policy_events()) == [
        "delete_resource",
        "deploy_to_production",
    ]


def test_people_who_are_not_admins_cannot_edit_policies(make_user):
    manager = client_for(make_user("a-manager", roles=("manager",)))

    response = manager.post(ADD, form_data())

    assert response.status_code == 302
    assert response.headers["Location"].startswith("/admin/login/")
    assert not Policy.objects.filter(name="list_files").exists()


# --- records are read-only -----------------------------------------------------------------


@pytest.mark.parametrize("model", ["policyversion", "violation"])
def test_versions_and_violations_are_read_only_in_the_admin(admin_client, make_agent, model):
    agent = make_agent().agent
    services.check_action(agent=agent, action="read_file", params={"path": "/app/.env"})
    record = (
        PolicyVersion.objects.order_by("id").first()
        if model == "policyversion"
        else Violation.objects.get()
    )
    assert record is not None
    base = f"/admin/guardrails/{model}/"

    listing = admin_client.get(base)
    assert listing.status_code == 200
    assert f"{base}add/".encode() not in listing.content
    assert admin_client.get(f"{base}add/").status_code == 403
    assert admin_client.post(f"{base}add/", {}).status_code == 403
    detail = admin_client.get(f"{base}{record.pk}/change/")
    assert detail.status_code == 200
    assert b'name="_save"' not in detail.content
    assert admin_client.post(f"{base}{record.pk}/change/", {}).status_code == 403
    assert admin_client.post(f"{base}{record.pk}/delete/", {"post": "yes"}).status_code == 403
    assert type(record).objects.filter(pk=record.pk).exists()
