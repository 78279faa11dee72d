"""The fake Slack, with the app configured to use it, and a channel per tier."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.test import Client

from slack import delivery
from slack.models import SlackChannel
from tests.support.slack import SIGNING_SECRET, TOKEN, FakeSlack, interaction_body, signed_headers

CHANNELS = {
    "team_lead": "C0LEADS",
    "engineering_manager": "C0EMS",
    "director": "C0DIRS",
    "vp_engineering": "C0VPS",
}


@pytest.fixture
def fake_slack(settings: Any, db: None) -> Iterator[FakeSlack]:
    fake = FakeSlack()
    settings.OVERSIGHT_SLACK_BOT_TOKEN = TOKEN
    settings.OVERSIGHT_SLACK_SIGNING_SECRET = SIGNING_SECRET
    settings.OVERSIGHT_SLACK_API_URL = fake.url
    settings.OVERSIGHT_SLACK_ALLOW_PRIVATE = True  # the fake listens on loopback
    settings.OVERSIGHT_SLACK_LINK_BY_EMAIL = True
    settings.OVERSIGHT_BASE_URL = "https://oversight.example"
    for tier, channel in CHANNELS.items():
        SlackChannel.objects.create(tier=tier, channel_id=channel)
    delivery.forget_channels()
    yield fake
    fake.close()
    delivery.forget_channels()


@pytest.fixture
def interact() -> Callable[..., Any]:
    """Post an interaction to the app as Slack does: signed with the signing secret, unless the
    test signs it otherwise."""
    client = Client()

    def send(payload: dict[str, Any], **signing: Any) -> Any:
        body = interaction_body(payload)
        return client.post(
            "/integrations/slack/interactions",
            data=body,
            content_type="application/x-www-form-urlencoded",
            headers=signed_headers(body, **signing),
        )

    return send
