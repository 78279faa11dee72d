"""`Authorization: Bearer ovs_<prefix>_<secret>` for the agent API.

Every call reads the key row, so a revoked key fails on the very next call (the guardrails
check reads this process's copy of it, and verifies the copy in its Redis round trip:
`agents.keyring`). All failures look alike to the caller (no oracle telling a wrong secret
from a wrong prefix), except that a key whose secret is right but which was revoked says so:
its holder already knows it was valid.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest, JsonResponse
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request

from agents import keyring, keys
from agents.models import Agent, ApiKey
from oversight import logs
from oversight.api_errors import json_error

BEARER_CHALLENGE = 'Bearer realm="oversight"'
_INVALID = "Invalid API key. Send `Authorization: Bearer ovs_<prefix>_<secret>`."


def authenticate_bearer(header: bytes) -> tuple[Agent, ApiKey] | None:
    """Resolve an Authorization header to (agent, key), read from the database; None when
    there is no header.

    Raises AuthenticationFailed for anything else that is not a live key. Shared by the DRF
    views and the async long-poll view, so both authenticate the same way.
    """
    resolved = _authenticate(header, keyring.KEYRING.load)
    if resolved is None:
        return None
    api_key = resolved[1]
    return api_key.agent, api_key


def _authenticate(
    header: bytes, find: Callable[[str], tuple[int, ApiKey | None]]
) -> tuple[int, ApiKey] | None:
    """The one check of a key: `find` gives the key row for a prefix (from the database, or
    this process's copy) with the keyring version it was read at."""
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
    version, api_key = find(parsed.prefix)
    if api_key is None or not keys.secret_matches(parsed.secret, api_key.secret_hash):
        raise exceptions.AuthenticationFailed(_INVALID)
    if api_key.is_revoked:
        # A copy's revocation stands: a key is never un-revoked.
        raise exceptions.AuthenticationFailed("This API key has been revoked.", code="key_revoked")
    api_key.touch()
    logs.bind(agent=api_key.agent.name)  # the request's log lines name the agent
    return version, api_key


def agent_or_401(request: HttpRequest, *, copy: bool = False) -> Caller | JsonResponse:
    """For the API's views that are not DRF's: the agent behind the request's key, or the 401
    answer (the same codes and messages as DRF's views give).

    With `copy`, the key comes from this process's copy when it has one (`agents.keyring`):
    the caller must compare `Caller.version` with the published version before it relies on
    the agent, and call again without `copy` when they differ."""
    find = keyring.copy_of_key if copy else keyring.KEYRING.load
    try:
        resolved = _authenticate(request.headers.get("Authorization", "").encode("latin-1"), find)
    except exceptions.AuthenticationFailed as exc:
        code = "key_revoked" if exc.get_codes() == "key_revoked" else "invalid_api_key"
        return json_error(
            401, code, str(exc.detail), headers={"WWW-Authenticate": BEARER_CHALLENGE}
        )
    if resolved is None:
        message = "Send `Authorization: Bearer <api key>`."
        return json_error(
            401, "unauthenticated", message, headers={"WWW-Authenticate": BEARER_CHALLENGE}
        )
    version, api_key = resolved
    return Caller(api_key.agent, version if copy else None)


@dataclass(frozen=True)
class Caller:
    agent: Agent
    # The keyring version of a copy, still to be compared with the published one; None when
    # the key was read from the database for this call.
    version: int | None


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
