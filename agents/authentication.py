"""`Authorization: Bearer ovs_<prefix>_<secret>` for the agent API.

Every call reads the key row, so a revoked key fails on the very next call. All failures look
alike to the caller (no oracle telling a wrong secret from a wrong prefix), except that a key
whose secret is right but which was revoked says so: its holder already knows it was valid.
"""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request

from agents import keys
from agents.models import Agent, ApiKey

BEARER_CHALLENGE = 'Bearer realm="oversight"'
_INVALID = "Invalid API key. Send `Authorization: Bearer ovs_<prefix>_<secret>`."


def authenticate_bearer(header: bytes) -> tuple[Agent, ApiKey] | None:
    """Resolve an Authorization header to (agent, key); None when there is no header.

    Raises AuthenticationFailed for anything else that is not a live key. Shared by the DRF
    views and the async long-poll view, so both authenticate the same way.
    """
    parts = header.split()
    if not parts:
        return None
    if parts[0].lower() != b"bearer" or len(parts) != 2:
        raise exceptions.AuthenticationFailed(_INVALID)
    try:
        parsed = keys.parse(parts[1].decode("ascii"))
    except UnicodeDecodeError:
        parsed = None
    if parsed is None:
        raise exceptions.AuthenticationFailed(_INVALID)
    api_key = ApiKey.objects.select_related("agent").filter(prefix=parsed.prefix).first()
    if api_key is None or not keys.secret_matches(parsed.secret, api_key.secret_hash):
        raise exceptions.AuthenticationFailed(_INVALID)
    if api_key.is_revoked:
        raise exceptions.AuthenticationFailed("This API key has been revoked.", code="key_revoked")
    api_key.touch()
    return api_key.agent, api_key


class ApiKeyAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[Agent, ApiKey] | None:
        return authenticate_bearer(get_authorization_header(request))

    def authenticate_header(self, request: Request) -> str:
        # Present, so that DRF answers 401 (not 403) to unauthenticated calls.
        return BEARER_CHALLENGE


def request_agent(request: Request) -> Agent:
    """The authenticated agent of an API request (the permission class guarantees one)."""
    agent = request.user
    if isinstance(agent, AnonymousUser) or not isinstance(agent, Agent):
        raise exceptions.NotAuthenticated()
    return agent


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "agents.authentication.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema: object) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An agent API key, `ovs_<prefix>_<secret>`.",
        }
