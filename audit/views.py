"""The audit page (compliance): search the trail and check that its chain is intact."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.http import HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_POST, require_safe

from accounts.decorators import role_required
from accounts.models import Role
from accounts.types import AuthenticatedHttpRequest
from audit import selectors, services
from audit.forms import EventFilterForm


@require_safe
@role_required(Role.COMPLIANCE)
def events(request: AuthenticatedHttpRequest) -> HttpResponse:
    form = EventFilterForm(request.GET)
    valid = form.is_valid()
    before = _cursor(request.GET.get("before"))
    after = _cursor(request.GET.get("after"))
    if valid:
        page = selectors.event_page(form.filters(), before=before, after=after)
        # The pager links keep the filters and replace only the cursor.
        kept = {name: value for name in form.fields if (value := request.GET.get(name))}
    else:
        page, kept = selectors.EventPage([], None, None), {}
    context = {
        "form": form,
        "page": page,
        "filtered": valid and form.filters().active,
        "paged": before is not None or after is not None,
        "newer_url": _page_url(kept, after=page.newer_after),
        "older_url": _page_url(kept, before=page.older_before),
        "verification": selectors.latest_verification(),
    }
    return render(request, "audit/events.html", context)


@require_POST
@role_required(Role.COMPLIANCE)
def verify(request: AuthenticatedHttpRequest) -> HttpResponse:
    outcome = services.run_verification(checked_by=request.user)
    if outcome.intact:
        messages.success(request, f"Audit chain intact: {outcome.events_checked:,} events checked.")
    else:
        messages.error(
            request,
            f"Audit chain broken at sequence {outcome.first_bad_sequence}: {outcome.problem}",
        )
    return HttpResponseRedirect(reverse("audit:events"))


def _cursor(raw: str | None) -> int | None:
    """A sequence number from the URL, or None for anything that is not one."""
    if raw is None or not raw.isdigit() or len(raw) > 19:
        return None
    return int(raw) or None


def _page_url(kept: dict[str, str], **cursor: int | None) -> str | None:
    ((name, value),) = cursor.items()
    if value is None:
        return None
    return "?" + urlencode({**kept, name: value})
