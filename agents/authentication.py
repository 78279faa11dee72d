"""`Authorization: Bearer ovs_<prefix>_<secret>` for the agent API.

Every call reads the key row, so a revoked key fails on the very next call. All failures look
alike to the caller (no oracle telling a wrong secret from a wrong prefix), except that a key
whose secret is right but which was revoked says so: its holder already knows it was valid.
"""

from __future__ import annotations

import functools
from typing import Any

from django.contrib.auth.models import AnonymousUser
from django.db import connection, models
from django.db.models.expressions import Col
from django.http import HttpRequest, JsonResponse
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request

from agents import keys
from agents.models import Agent, ApiKey
from oversight.api_errors import json_error

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
    api_key = _key_with_agent(parsed.prefix)
    if api_key is None or not keys.secret_matches(parsed.secret, api_key.secret_hash):
        raise exceptions.AuthenticationFailed(_INVALID)
    if api_key.is_revoked:
        raise exceptions.AuthenticationFailed("This API key has been revoked.", code="key_revoked")
    api_key.touch()
    return api_key.agent, api_key


def agent_or_401(request: HttpRequest) -> Agent | JsonResponse:
    """For the API's views that are not DRF's: the agent behind the request's key, or the 401
    answer (the same codes and messages as DRF's views give)."""
    try:
        resolved = authenticate_bearer(request.headers.get("Authorization", "").encode("latin-1"))
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
    return resolved[0]


def _key_with_agent(prefix: str) -> ApiKey | None:
    """`ApiKey.objects.select_related("agent").filter(prefix=prefix).first()`, minus the ORM's
    work of compiling that query again on every API call (a third of the call's cost): the SQL
    is built once from the models' own metadata, and rows become instances via `from_db`."""
    sql, fields = _key_query()
    with connection.cursor() as cursor:
        cursor.execute(sql, [prefix])
        row = cursor.fetchone()
    if row is None:
        return None
    values = []
    for value, field in zip(row, fields, strict=True):
        column, converters = _converters(field)
        for convert in converters:
            value = convert(value, column, connection)
        values.append(value)
    split = len(ApiKey._meta.concrete_fields)
    api_key = ApiKey.from_db(connection.alias, [f.attname for f in fields[:split]], values[:split])
    api_key.agent = Agent.from_db(
        connection.alias, [f.attname for f in fields[split:]], values[split:]
    )
    return api_key


@functools.cache
def _key_query() -> tuple[str, list[models.Field[Any, Any]]]:
    """Built on first use (the app registry must be ready), once per process."""
    quote = connection.ops.quote_name

    def column(model: type[models.Model], name: str) -> str:
        field = model._meta.get_field(name)
        assert isinstance(field, models.Field)
        assert field.column
        return f"{quote(model._meta.db_table)}.{quote(field.column)}"

    fields = [*ApiKey._meta.concrete_fields, *Agent._meta.concrete_fields]
    columns = ", ".join(column(field.model, field.name) for field in fields)
    # Only quoted identifiers from the models' metadata go in; the prefix is a parameter.
    sql = (
        f"SELECT {columns} FROM {quote(ApiKey._meta.db_table)} "  # noqa: S608
        f"INNER JOIN {quote(Agent._meta.db_table)} "
        f"ON {column(Agent, 'id')} = {column(ApiKey, 'agent')} "
        f"WHERE {column(ApiKey, 'prefix')} = %s"
    )
    return sql, fields


@functools.cache
def _converters(field: models.Field[Any, Any]) -> tuple[Col, list[Any]]:
    """What the ORM applies to a column read from this database (e.g. SQLite's datetimes)."""
    column = field.get_col(field.model._meta.db_table)
    return column, [*connection.ops.get_db_converters(column), *field.get_db_converters(connection)]


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
