"""Webhook secrets (SPEC §3, §9.9): shown once, when an agent is created and when its secret is
rotated; stored encrypted; rotated by one audited service that every door calls."""

from __future__ import annotations

import io
import re
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.utils import timezone

from accounts.models import User
from agents import services
from agents.models import Agent
from audit.models import AuditEvent
from tests.conftest import client_for

pytestmark = pytest.mark.django_db

SECRET_ON_PAGE = re.compile(r'id="new-webhook-secret-value"[^>]*value="(whsec_[A-Za-z0-9_-]+)"')


def stored_row(agent: Agent) -> str:
    """Every column of the agent's row as the database holds it."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM agents_agent WHERE id = %s", [agent.pk])
        return " ".join(str(value) for value in cursor.fetchone())


@pytest.fixture
def manager(make_user) -> User:
    return make_user("hook-mgr", roles=("manager",))


@pytest.fixture
def root(make_user) -> User:
    person: User = make_user("root-admin", roles=("admin",))
    person.is_superuser = True
    person.save()
    return person


def test_create_agent_shows_the_webhook_secret_once_above_the_key(db, manager):
    out, err = io.StringIO(), io.StringIO()
    call_command("create_agent", "hook-bot", stdout=out, stderr=err)
    *_, secret, key = out.getvalue().strip().splitlines()
    assert key.startswith("ovs_"), "the key stays alone on the last line"
    assert secret.startswith("whsec_")
    assert "webhook secret" in err.getvalue()
    agent = Agent.objects.get(name="hook-bot")
    assert agent.signing_secrets() == [secret], "it is the secret that signs the callbacks"
    page = client_for(manager).get("/agents/hook-bot/").content.decode()
    assert "Webhook secret" in page
    assert secret not in page, "the page never shows it again"


def test_the_webhook_secret_is_stored_encrypted_not_in_plain_text(make_agent):
    created = make_agent()
    row = stored_row(created.agent)
    assert created.webhook_secret not in row
    assert created.webhook_secret.removeprefix("whsec_") not in row
    fresh = Agent.objects.get(pk=created.agent.pk)
    assert fresh.signing_secrets() == [created.webhook_secret]


def test_rotating_on_the_agent_page_shows_the_new_secret_once(make_agent, manager):
    created = make_agent("rotate-bot")
    client = client_for(manager)
    response = client.post("/agents/rotate-bot/webhook-secret")
    assert response.status_code == 200
    assert "no-store" in response.headers["Cache-Control"]
    found = SECRET_ON_PAGE.search(response.content.decode())
    assert found, "the new secret is on the page"
    new = found[1]
    assert new != created.webhook_secret
    assert Agent.objects.get(pk=created.agent.pk).signing_secrets() == [
        new,
        created.webhook_secret,
    ], "the old secret still signs, second, during the grace window"
    again = client.get("/agents/rotate-bot/").content.decode()
    assert new not in again
    assert "previous secret" in again.lower(), "the page says until when the old one signs"
    assert new not in stored_row(created.agent)
    assert created.webhook_secret not in stored_row(created.agent)


def test_rotation_is_audited_and_no_secret_enters_the_trail(make_agent, manager, settings):
    settings.OVERSIGHT_WEBHOOK_SECRET_GRACE_HOURS = 24
    created = make_agent("audited-bot")
    before = timezone.now()
    new = services.rotate_webhook_secret(agent=created.agent, actor=manager)
    event = AuditEvent.objects.filter(event_type="agent.webhook_secret_rotated").get()
    assert (event.actor_name, event.subject_type, event.subject_id) == (
        "hook-mgr",
        "agent",
        str(created.agent.pk),
    )
    until = created.agent.previous_webhook_secret_expires_at
    assert until is not None
    assert before + timedelta(hours=24) <= until <= timezone.now() + timedelta(hours=24)
    assert event.payload["previous_valid_until"] == until.isoformat().replace("+00:00", "Z")
    for secret in (new, created.webhook_secret):
        assert secret.removeprefix("whsec_") not in str(event.payload)


def test_after_the_grace_window_only_the_new_secret_signs(make_agent, settings):
    settings.OVERSIGHT_WEBHOOK_SECRET_GRACE_HOURS = 24
    created = make_agent()
    new = services.rotate_webhook_secret(agent=created.agent)
    later = timezone.now() + timedelta(hours=24, seconds=1)
    assert created.agent.signing_secrets(now=later) == [new]
    # With no grace window the old secret stops signing at once.
    settings.OVERSIGHT_WEBHOOK_SECRET_GRACE_HOURS = 0
    newer = services.rotate_webhook_secret(agent=created.agent)
    assert created.agent.signing_secrets() == [newer]


def test_a_secret_lost_with_an_old_secret_key_is_rotated_at_once_not_a_500(
    make_agent, manager, settings
):
    """Found by review: after SECRET_KEY changed with no fallback, rotating (the way back)
    failed with a 500 because the replaced secret could not be decrypted for the grace window."""
    settings.OVERSIGHT_WEBHOOK_SECRET_GRACE_HOURS = 24
    created = make_agent("orphan-bot")
    settings.SECRET_KEY = "another-secret-key-" + "y" * 40
    settings.SECRET_KEY_FALLBACKS = []
    response = client_for(manager).post("/agents/orphan-bot/webhook-secret", {})
    assert response.status_code == 200
    found = SECRET_ON_PAGE.search(response.content.decode())
    assert found
    assert Agent.objects.get(pk=created.agent.pk).signing_secrets() == [found[1]]


def test_a_leaked_secret_is_stopped_at_once_when_asked(make_agent, manager, settings):
    settings.OVERSIGHT_WEBHOOK_SECRET_GRACE_HOURS = 24
    created = make_agent("leaky-bot")
    response = client_for(manager).post("/agents/leaky-bot/webhook-secret", {"immediately": "on"})
    found = SECRET_ON_PAGE.search(response.content.decode())
    assert found
    assert Agent.objects.get(pk=created.agent.pk).signing_secrets() == [found[1]]
    event = AuditEvent.objects.get(event_type="agent.webhook_secret_rotated")
    assert event.payload == {"previous_valid_until": None}


def test_only_managers_and_admins_rotate_and_an_unknown_agent_is_not_found(
    make_agent, approvers, manager
):
    created = make_agent("guarded-bot")
    assert client_for(approvers["vp"]).post("/agents/guarded-bot/webhook-secret").status_code == 403
    assert Client().post("/agents/guarded-bot/webhook-secret").status_code == 302
    assert client_for(manager).get("/agents/guarded-bot/webhook-secret").status_code == 405
    assert client_for(manager).post("/agents/no-such-bot/webhook-secret").status_code == 404
    assert Agent.objects.get(pk=created.agent.pk).signing_secrets() == [created.webhook_secret]
    assert not AuditEvent.objects.filter(event_type="agent.webhook_secret_rotated").exists()


def test_the_admin_neither_shows_nor_edits_the_webhook_secret(make_agent, root):
    created = make_agent("admin-bot", team="ops")
    client = client_for(root)
    change = f"/admin/agents/agent/{created.agent.pk}/change/"
    page = client.get(change).content.decode()
    assert 'name="webhook_secret' not in page, "no field to edit it"
    assert "webhook_secret_encrypted" not in page
    assert created.webhook_secret not in page
    assert created.agent.webhook_secret_encrypted not in page, "not even encrypted"
    response = client.post(
        change,
        {
            "name": "admin-bot",
            "team": "ops-2",
            "owner": "",
            "webhook_secret": "whsec_chosen-by-the-admin",
            "webhook_secret_encrypted": "tampered",
            "api_keys-TOTAL_FORMS": "1",
            "api_keys-INITIAL_FORMS": "1",
            "api_keys-MIN_NUM_FORMS": "0",
            "api_keys-MAX_NUM_FORMS": "1000",
            "api_keys-0-id": str(created.agent.api_keys.get().pk),
            "api_keys-0-agent": str(created.agent.pk),
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    saved = Agent.objects.get(pk=created.agent.pk)
    assert saved.team == "ops-2", "the rest of the form is saved"
    assert saved.webhook_secret_encrypted == created.agent.webhook_secret_encrypted
    assert saved.signing_secrets() == [created.webhook_secret]


def test_the_admin_rotates_through_the_service_and_shows_the_secret_once(make_agent, root):
    created = make_agent("admin-rotated-bot")
    response = client_for(root).post(
        "/admin/agents/agent/",
        {"action": "rotate_webhook_secret", "_selected_action": [created.agent.pk]},
        follow=True,
    )
    found = re.search(r"whsec_[A-Za-z0-9_-]+", response.content.decode())
    assert found, "the new secret is in the admin's message"
    assert Agent.objects.get(pk=created.agent.pk).signing_secrets()[0] == found[0]
    event = AuditEvent.objects.get(event_type="agent.webhook_secret_rotated")
    assert event.actor_name == "root-admin"


def test_an_agent_added_in_the_admin_is_created_by_the_service_and_shown_its_secret(root):
    response = client_for(root).post(
        "/admin/agents/agent/add/",
        {
            "name": "admin-made-bot",
            "team": "ops",
            "owner": "",
            "api_keys-TOTAL_FORMS": "0",
            "api_keys-INITIAL_FORMS": "0",
            "api_keys-MIN_NUM_FORMS": "0",
            "api_keys-MAX_NUM_FORMS": "1000",
        },
        follow=True,
    )
    found = re.search(r"whsec_[A-Za-z0-9_-]+", response.content.decode())
    assert found, "the new agent's secret is in the admin's message"
    agent = Agent.objects.get(name="admin-made-bot")
    assert agent.signing_secrets() == [found[0]]
    created = AuditEvent.objects.get(event_type="agent.created", subject_id=str(agent.pk))
    assert created.actor_name == "root-admin"


@pytest.mark.django_db(transaction=True)
def test_the_migration_encrypts_the_secrets_stored_in_plain_text_and_reverses():
    from django.db.migrations.executor import MigrationExecutor

    plain = [("agents", "0003_agent_reenable_request")]
    encrypted = [("agents", "0004_webhook_secret_encrypted")]
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes()
    try:
        executor.migrate(plain)
        OldAgent = (
            MigrationExecutor(connection)
            .loader.project_state(plain)
            .apps.get_model("agents", "Agent")
        )
        OldAgent.objects.create(name="legacy-bot", webhook_secret="legacy-plain-secret")

        MigrationExecutor(connection).migrate(encrypted)
        MigrationExecutor(connection).migrate(latest)  # the model as the code has it now
        agent = Agent.objects.get(name="legacy-bot")
        assert agent.signing_secrets() == ["legacy-plain-secret"], "agents keep verifying"
        assert "legacy-plain-secret" not in stored_row(agent)

        MigrationExecutor(connection).migrate(plain)
        assert OldAgent.objects.get(name="legacy-bot").webhook_secret == "legacy-plain-secret"
    finally:
        MigrationExecutor(connection).migrate(latest)
