"""The admin's Slack pages: channels are edited there; links are made through the service
(audited), never re-pointed in place."""

from __future__ import annotations

import pytest

from audit.models import AuditEvent
from slack.models import SlackChannel, SlackLink
from tests.conftest import client_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(make_user):
    admin = make_user("the-admin", roles=("admin",))
    admin.is_staff = admin.is_superuser = True
    admin.save()
    return client_for(admin)


def test_an_admin_sets_a_tiers_channel(admin_client):
    assert admin_client.get("/admin/slack/slackchannel/add/").status_code == 200
    response = admin_client.post(
        "/admin/slack/slackchannel/add/", {"tier": "director", "channel_id": "C0DIRS"}
    )
    assert response.status_code == 302
    assert SlackChannel.objects.get().channel_id == "C0DIRS"
    refused = admin_client.post(
        "/admin/slack/slackchannel/add/", {"tier": "team_lead", "channel_id": "#approvals"}
    )
    assert refused.status_code == 200, "a channel's name is not its id"
    assert SlackChannel.objects.count() == 1


def test_an_admins_link_is_audited_and_cannot_be_re_pointed(admin_client, approvers):
    lead = approvers["lead"]
    response = admin_client.post(
        "/admin/slack/slacklink/add/",
        {"user": lead.pk, "slack_user_id": "U0LEAD", "slack_team_id": "T0FAKE"},
    )
    assert response.status_code == 302
    link = SlackLink.objects.get()
    assert (link.user, link.method) == (lead, "admin")
    event = AuditEvent.objects.get(event_type="user.changed", subject_id=str(lead.pk))
    assert event.actor_name == "the-admin"
    assert event.payload["after"] == {"slack_user_id": "U0LEAD", "slack_link": "admin"}
    page = admin_client.post(
        f"/admin/slack/slacklink/{link.pk}/change/",
        {"user": approvers["vp"].pk, "slack_user_id": "U0LEAD", "slack_team_id": ""},
    )
    assert page.status_code == 403
    assert SlackLink.objects.get().user == lead
    admin_client.post(f"/admin/slack/slacklink/{link.pk}/delete/", {"post": "yes"})
    assert not SlackLink.objects.exists()
    unlinked = AuditEvent.objects.filter(event_type="user.changed").order_by("-sequence").first()
    assert unlinked is not None
    assert unlinked.payload["after"] == {"slack_user_id": None}
