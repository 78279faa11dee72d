"""People's own pages: being away, and who stands in (issue 24: delegation).

Changes go through `accounts.services` (`set_away`, `end_away`), as the admin's and any other
door's do, with the same checks and audit events.
"""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from accounts import selectors, services
from accounts.decorators import role_required
from accounts.forms import AwayForm
from accounts.models import Role
from accounts.types import AuthenticatedHttpRequest


@role_required(Role.APPROVER)
@require_http_methods(["GET", "POST"])
def away(request: AuthenticatedHttpRequest) -> HttpResponse:
    person = request.user
    now = timezone.now()
    current = selectors.away(person, now)
    initial = {}
    if current is not None:  # changing it starts from what holds
        initial = {
            "delegate": current.delegate,
            "until": timezone.localtime(current.ends_at),
            "note": current.note,
        }
    form = AwayForm(person=person, initial=initial)
    if request.method == "POST":
        if request.POST.get("back"):
            if services.end_away(person=person, now=now):
                messages.success(request, "Welcome back: your requests reach you alone again.")
            return redirect("away")
        form = AwayForm(request.POST, person=person)
        if form.is_valid():
            try:
                delegation = services.set_away(
                    person=person,
                    delegate=form.cleaned_data["delegate"],
                    until=form.cleaned_data["until"],
                    note=form.cleaned_data["note"],
                    now=now,
                )
            except ValidationError as exc:
                for field, problems in exc.message_dict.items():
                    form.add_error(field if field in form.fields else None, problems)
            else:
                messages.success(
                    request,
                    f"Away until {timezone.localtime(delegation.ends_at):%Y-%m-%d %H:%M}: "
                    f"{delegation.delegate.display_name} decides for you.",
                )
                return redirect("away")
    return render(
        request,
        "accounts/away.html",
        {
            "form": form,
            "current": current,
            "standing_in": selectors.standing_in(person, now),
            "has_inbox": person.has_inbox,
        },
        status=400 if form.errors else 200,
    )
