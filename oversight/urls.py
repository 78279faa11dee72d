"""The URL root: pages, the agent API under /api/v1/, health checks, admin."""

from __future__ import annotations

import sys

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, URLResolver, include, path, re_path
from django.views import defaults
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from approvals import views as approvals_views
from oversight import api, health, outage

api_v1: list[URLPattern | URLResolver] = [
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    # /healthz as the agents reach it: through the API's middleware, and under /api/ for a
    # proxy that forwards only that to the agents' network.
    path("health", api.api_health, name="api-health"),
    path("", include("agents.api_urls")),
    path("", include("approvals.api_urls")),
    path("", include("budgets.api_urls")),
    path("", include("guardrails.api_urls")),
    path("", include("controls.api_urls")),
    # Agents get JSON for unknown endpoints even with DEBUG on (no HTML debug page).
    re_path(r"^.*$", api.api_not_found),
]

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", include("monitoring.prometheus")),
    path("api/v1/", include(api_v1)),
    path("admin/", admin.site.urls),
    path("audit/", include("audit.urls")),
    path("agents/", include("agents.urls")),
    path("agents/", include("controls.urls")),
    path("budgets/", include("budgets.urls")),
    path("policies/", include("guardrails.urls")),
    path("grants/", include("grants.urls")),
    path("monitoring/", include("monitoring.urls")),
    path("integrations/slack/", include("slack.urls")),
    # The front page: an approver's inbox, everyone else's overview.
    path("", approvals_views.home, name="home"),
    path("", include("accounts.urls")),
    path("", include("approvals.urls")),
]

admin.site.site_header = "Oversight administration"
admin.site.site_title = "Oversight admin"


def handler400(request: HttpRequest, exception: Exception) -> HttpResponse:
    if api.is_api_path(request):
        return api.api_bad_request(request)
    return defaults.bad_request(request, exception)


def handler404(request: HttpRequest, exception: Exception) -> HttpResponse:
    if api.is_api_path(request):
        return api.api_not_found(request)
    return defaults.page_not_found(request, exception)


def handler500(request: HttpRequest) -> HttpResponse:
    # Django calls this inside its `except` for the exception that escaped.
    if outage.database_unreachable(sys.exc_info()[1]):
        if api.is_api_path(request):
            return outage.api_unavailable()
        return outage.page_unavailable(request)
    if api.is_api_path(request):
        return api.api_server_error(request)
    return defaults.server_error(request)
