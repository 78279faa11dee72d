"""Issue 18: what an adversarial review of items 3 (admin) and 4 (audit roles) found, each fixed."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, connection, transaction
from django.urls import reverse

from accounts.models import User
from audit import roles
from audit.events import EventType
from audit.models import AuditEvent
from audit.services import record_event
from tests.conftest import client_for

ROLE = "oversight_review_app"


@pytest.fixture
def as_app_role(db, settings):
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE ROLE "{ROLE}" NOLOGIN')
        # What a database created on PostgreSQL <= 14, or pg_upgrade'd from one, still has:
        # PUBLIC may CREATE in schema public. grant_app_role does not take it away.
        cursor.execute(f'GRANT CREATE ON SCHEMA public TO "{ROLE}"')
    settings.OVERSIGHT_DB_APP_ROLE = ROLE
    roles.after_migrate(using="default")
    with connection.cursor() as cursor:
        cursor.execute(f'SET ROLE "{ROLE}"')
    yield
    with connection.cursor() as cursor:
        cursor.execute("RESET ROLE")


def test_the_app_role_cannot_plant_code_where_the_owners_function_runs(as_app_role):
    """An exact-match operator planted in the schema would run as the owner inside
    audit_append: granting the app role takes CREATE away (from PUBLIC too)."""
    with (
        pytest.raises(DatabaseError, match="permission denied"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(
            "CREATE FUNCTION public.evil_cat(a varchar, b text) RETURNS text "
            "LANGUAGE sql AS $$ SELECT a::text || b $$"
        )
    record_event(event_type=EventType.EXPORT_MADE, payload={"rows": 2})


def test_nobody_deletes_a_person_in_the_admin(db, make_user):
    root = User.objects.create_superuser("root", "root@example.com", "a-long-passphrase-1")
    person = make_user("person", roles=("approver",), tier="director")
    response = client_for(root).post(
        reverse("admin:accounts_user_delete", args=[person.pk]), {"post": "yes"}
    )
    assert response.status_code == 403
    assert User.objects.filter(pk=person.pk).exists()


def test_an_admin_who_is_not_a_superuser_cannot_take_over_a_superuser(db, make_user):
    from django.contrib.auth.models import Permission

    admin_person = make_user("admin-person", roles=("admin",))
    admin_person.user_permissions.set(
        Permission.objects.filter(codename__in=["view_user", "change_user"])
    )
    root = User.objects.create_superuser("root", "root@example.com", "a-long-passphrase-1")
    browser = client_for(admin_person)
    response = browser.post(
        reverse("admin:auth_user_password_change", args=[root.pk]),
        {"password1": "Pwned-by-admin-123", "password2": "Pwned-by-admin-123"},
    )
    root.refresh_from_db()
    taken = root.check_password("Pwned-by-admin-123")
    audited = AuditEvent.objects.filter(subject_id=str(root.pk)).exclude(event_type="user.created")
    assert not taken, (response.status_code, list(audited.values_list("event_type", flat=True)))

    # and deactivating a superuser is not refused either
    url = reverse("admin:accounts_user_change", args=[root.pk])
    browser.post(
        url,
        {"username": "root", "email": "root@example.com", "groups": [], "tier": ""},
    )
    assert User.objects.get(pk=root.pk).is_active


def test_granting_refuses_a_member_of_the_owner_role(db, settings):
    from django.core.exceptions import ImproperlyConfigured

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = 'audit_auditevent'"
        )
        (owner,) = cursor.fetchone()
        cursor.execute('CREATE ROLE "member_app" NOLOGIN')
        cursor.execute(f'GRANT "{owner}" TO "member_app"')
    with pytest.raises(ImproperlyConfigured, match="member of"):
        roles.grant_app_role(connection, "member_app")


def test_a_superuser_cannot_lock_themselves_out_by_dropping_their_own_flag(db):
    from django.contrib.auth.models import Group

    root = User.objects.create_superuser("root", "root@example.com", "a-long-passphrase-1")
    root.groups.add(Group.objects.get(name="admin"))
    browser = client_for(root)
    url = reverse("admin:accounts_user_change", args=[root.pk])
    response = browser.post(
        url,
        {
            "username": "root",
            "email": "root@example.com",
            "groups": [Group.objects.get(name="admin").pk],
            "tier": "",
            "is_active": "on",
            # is_superuser unticked
        },
    )
    print("change:", response.status_code)
    root.refresh_from_db()
    after = client_for(root).get(reverse("admin:accounts_user_changelist"))
    assert root.is_superuser or after.status_code == 200, (
        f"superuser={root.is_superuser}, admin user list now answers {after.status_code}"
    )


def test_an_admin_setting_someones_password_is_audited(db, make_user):
    root = User.objects.create_superuser("root", "root@example.com", "a-long-passphrase-1")
    person = make_user("person", roles=("approver",), tier="director")
    response = client_for(root).post(
        reverse("admin:auth_user_password_change", args=[person.pk]),
        {"password1": "A-new-passphrase-42", "password2": "A-new-passphrase-42"},
    )
    assert response.status_code == 302
    person.refresh_from_db()
    assert person.check_password("A-new-passphrase-42")
    (event,) = AuditEvent.objects.filter(event_type="user.changed", subject_id=str(person.pk))
    assert event.actor_id == str(root.pk)
    assert event.payload["after"] == {"password": "set by an admin"}
    assert "A-new-passphrase-42" not in str(event.payload)
