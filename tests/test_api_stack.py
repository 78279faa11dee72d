"""The agent API runs on its own short middleware stack; pages keep the browser's."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from asgiref.sync import async_to_sync
from django.conf import settings as django_settings
from django.test import AsyncClient
from django.test.client import AsyncClientHandler

from approvals.models import ApprovalRequest
from oversight.asgi import SplitByPath
from oversight.handlers import ApiHandler, ApiMiddlewareMixin, on_api_stack
from tests.conftest import PASSWORD, api_stack_client


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/api/v1/approval-requests", True),
        ("/api/v1/approval-requests/7d0c6a0e-4f6b-4f0e-9d55-2b1d2b6e1f0a", True),
        ("/api/v1/costs", True),
        ("/api/v1/schema/", True),
        ("/api/v1/health", True),
        ("/api/v1/no-such-thing", True),
        ("/api/v1/docs/", False),  # a page for people: CSP and framing headers
        ("/healthz", False),
        ("/apis", False),
        ("/", False),
        ("/admin/", False),
    ],
)
def test_which_paths_the_api_stack_serves(path, expected):
    assert on_api_stack(path) is expected


@pytest.mark.parametrize(
    ("path", "root_path", "expected"),
    [
        ("/api/v1/costs", "", "api"),
        ("/api/v1/health", "", "api"),  # the bench's reference: a bare view on this stack
        ("/healthz", "", "pages"),  # the bench's floor
        ("/api/v1/docs/", "", "pages"),
        ("/oversight/api/v1/costs", "/oversight", "api"),
        ("/oversight/api/v1/docs/", "/oversight", "pages"),
        ("/oversight/login/", "/oversight", "pages"),
        ("/oversight/api/v1/costs", "/oversight/", "api"),
        ("/oversightapi/v1/costs", "/oversight", "pages"),
    ],
)
def test_the_router_strips_the_root_path_as_django_does(path, root_path, expected):
    served: list[str] = []

    def app(name: str) -> Any:
        async def serve(scope: Any, receive: Any, send: Any) -> None:
            served.append(name)

        return serve

    router = SplitByPath(api=app("api"), pages=app("pages"))
    async_to_sync(router)({"type": "http", "path": path, "root_path": root_path}, None, None)
    assert served == [expected]


def test_building_the_api_handler_leaves_the_browser_stack_in_the_settings():
    before = list(django_settings.MIDDLEWARE)
    handler = ApiHandler()
    assert before == django_settings.MIDDLEWARE
    # Only the API stack's hooks are collected: no CSRF check or login wall before the view.
    assert vars(handler)["_view_middleware"] == []  # set by load_middleware; not in the stubs


class AsyncApiStackClientHandler(ApiMiddlewareMixin, AsyncClientHandler):
    """The API stack in async mode, as the ASGI server runs it."""


def test_the_api_stack_redirects_plain_http_and_sets_hsts(settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 3600
    client = AsyncClient()
    client.handler = AsyncApiStackClientHandler(enforce_csrf_checks=False)

    plain = async_to_sync(client.get)("/api/v1/agents/me")
    assert plain.status_code == 301
    assert plain["Location"] == "https://testserver/api/v1/agents/me"

    # A Host this deployment does not serve is refused before any work, as on the pages.
    foreign = async_to_sync(client.get)(
        "/api/v1/agents/me", secure=True, headers={"Host": "evil.example"}
    )
    assert foreign.status_code == 400
    assert foreign.json()["error"]["code"] == "bad_request"

    secure = async_to_sync(client.get)("/api/v1/agents/me", secure=True)
    assert secure.status_code == 401
    assert secure["Strict-Transport-Security"].startswith("max-age=3600")
    assert secure["X-Content-Type-Options"] == "nosniff"


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_the_server_answers_agents_without_browser_middleware(web_server, make_agent, make_user):
    agent = make_agent()
    with httpx.Client(base_url=web_server.url, timeout=10) as http:
        me = http.get("/api/v1/agents/me", headers={"Authorization": f"Bearer {agent.key}"})
        assert me.status_code == 200
        assert me.json()["name"] == agent.agent.name
        # The security headers are there; the browser's session and framing ones are not.
        assert me.headers["X-Content-Type-Options"] == "nosniff"
        assert me.headers["Content-Length"] == str(len(me.content))  # not sent chunked
        assert "X-Frame-Options" not in me.headers
        assert "Cookie" not in me.headers.get("Vary", "")
        assert "Set-Cookie" not in me.headers

        # Pages, the API's docs page among them, keep the browser stack.
        for page in ("/login/", "/api/v1/docs/"):
            response = http.get(page)
            assert response.status_code == 200
            assert response.headers["X-Frame-Options"] == "DENY"
            assert "Content-Security-Policy" in response.headers

        make_user("stack-person", roles=("approver",), tier="team_lead")

        login = http.post(
            "/login/",
            data={
                "username": "stack-person",
                "password": PASSWORD,
                "csrfmiddlewaretoken": http.cookies["csrftoken"],
            },
        )
        assert login.status_code == 302
        assert "sessionid" in http.cookies
        # A guard (it held before the split too): the API knows no session authentication, so a
        # logged-in person's cookie is no way in.
        refused = http.post("/api/v1/approval-requests", json={"action": "x"})
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "unauthenticated"


def test_a_create_for_a_foreign_host_is_refused_and_makes_nothing(make_agent):
    agent = make_agent()
    response = api_stack_client().post(
        "/api/v1/approval-requests",
        data={"action": "deploy", "justification": "ship"},
        content_type="application/json",
        headers={"Authorization": f"Bearer {agent.key}"},
        HTTP_HOST="evil.example",
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request"
    assert not ApprovalRequest.objects.exists()
