"""Grants made the way people make them: approving a request with a standing approval."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from accounts.models import User
from grants import services
from grants.models import Grant
from grants.services import GrantTerms
from guardrails import counters

# write_file (seeded): medium risk, the policy requires a person: its check needs one only for a
# reason a grant may waive (policy_requires_approval).
ACTION = "write_file"
PARAMS = {"path": "/srv/app/notes.txt", "content": "hello"}


@pytest.fixture
def granter(make_user: Callable[..., User]) -> User:
    return make_user("granter", roles=("approver",), tier="team_lead")


@pytest.fixture
def make_grant(new_request: Callable[..., Any], granter: User) -> Callable[..., Grant]:
    def make(
        *,
        agent: Any = None,
        action: str = ACTION,
        params: dict[str, Any] | None = None,
        kind: str = "exact",
        pins: dict[str, str] | None = None,
        lifetime: timedelta | None = timedelta(hours=1),
        max_uses: int | None = None,
        risk_level: str = "medium",
        by: User | None = None,
    ) -> Grant:
        request = new_request(
            agent=agent,
            action=action,
            params=dict(PARAMS if params is None else params),
            risk_level=risk_level,
        )
        _, grant = services.approve_and_grant(
            request_id=request.pk,
            reviewer=by or granter,
            terms=GrantTerms(kind=kind, pins=pins or {}, lifetime=lifetime, max_uses=max_uses),
        )
        # The create counted as the agent's last call for loop detection; a success would end
        # that (SPEC §6), and these tests check the same call again.
        counters.forget_recent(request.agent_id)
        return grant

    return make
