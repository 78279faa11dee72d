"""The provisioning commands of SPEC §11."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from accounts.models import User
from agents.models import Agent


def run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_create_user_with_roles_and_tier(db):
    out, _ = run(
        "create_user",
        "alice",
        "--password",
        "a-long-passphrase-42",
        "--role",
        "approver",
        "--role",
        "manager",
        "--tier",
        "director",
    )
    assert out.strip() == "Created user alice (approver, manager, tier director)."
    alice = User.objects.get(username="alice")
    assert alice.check_password("a-long-passphrase-42")
    assert alice.has_role("approver")
    assert alice.has_role("manager")
    assert not alice.has_role("compliance")
    assert alice.tier == "director"


def test_create_user_refuses_an_approver_without_a_tier(db):
    with pytest.raises(CommandError, match="An approver needs a tier"):
        run("create_user", "bob", "--password", "a-long-passphrase-42", "--role", "approver")
    assert not User.objects.filter(username="bob").exists()


def test_create_user_refuses_a_weak_password(db):
    with pytest.raises(CommandError, match="password"):
        run("create_user", "carol", "--password", "1234", "--role", "compliance")


def test_create_user_refuses_a_taken_username(db, make_user):
    make_user("dave")
    with pytest.raises(CommandError, match="taken"):
        run("create_user", "Dave", "--password", "a-long-passphrase-42")


def test_create_agent_prints_the_key_alone_on_the_last_line(db, make_user, api):
    make_user("owner1")
    out, err = run("create_agent", "release-bot", "--owner", "owner1", "--team", "platform")
    key = out.strip().splitlines()[-1]
    assert key.startswith("ovs_")
    assert " " not in key
    assert "shown once" in err
    agent = Agent.objects.get(name="release-bot")
    assert agent.owner is not None
    assert agent.owner.username == "owner1"
    assert agent.team == "platform"
    assert api(key).get("/api/v1/agents/me").json()["name"] == "release-bot"


def test_create_agent_refuses_an_unknown_owner_and_a_duplicate_name(db, make_agent):
    with pytest.raises(CommandError, match="No user named"):
        run("create_agent", "x-bot", "--owner", "nobody")
    make_agent("taken-bot")
    with pytest.raises(CommandError, match="exists already"):
        run("create_agent", "taken-bot")
    with pytest.raises(CommandError, match="letters, digits"):
        run("create_agent", "has spaces")


def test_seed_demo_creates_every_role_and_tier_once(db):
    run("seed_demo", "--if-empty")
    roles = {name for user in User.objects.all() for name in user.role_names}
    assert roles == {"approver", "manager", "compliance", "admin"}
    tiers = set(User.objects.exclude(tier="").values_list("tier", flat=True))
    assert tiers == {"team_lead", "engineering_manager", "director", "vp_engineering"}
    assert Agent.objects.count() == 2
    out, _ = run("seed_demo", "--if-empty")
    assert "not seeding" in out
    assert "create_agent NAME" in out  # where a key comes from, now that none is printed
    assert Agent.objects.count() == 2
