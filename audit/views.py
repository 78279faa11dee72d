"""The audit pages (compliance): the landing page, the search of the trail, the check that its
chain is intact, the period report and the decision record of a request (with managers)."""

from __future__ import annotations

import datetime as dt
import uuid
from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.http import HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST, require_safe

from accounts.decorators import role_required
from accounts.models import Role
from accounts.types import AuthenticatedHttpRequest
from audit import landing, pdf, records, reports, selectors, services
from audit.forms import EventFilterForm


@require_safe
@role_required(Role.COMPLIANCE)
def overview(request: AuthenticatedHttpRequest) -> HttpResponse:
    """The compliance landing page: is the trail intact, what vouches for it, this week."""
    return render(request, "audit/overview.html", {"landing": landing.landing()})


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
    # Back to the page the button was on (the landing page or the search, with its filters).
    back = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}):
        back = reverse("audit:overview")
    return HttpResponseRedirect(back)


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


# --- the period report ------------------------------------------------------------------------

# The page's longest period: a report over years is `manage.py audit_report`'s job.
MAX_REPORT_DAYS = 366


class DateInput(forms.DateInput):
    input_type = "date"


class PeriodForm(forms.Form):
    """The period picker: whole days in UTC, both included (a GET form, so links keep it)."""

    first = forms.DateField(label="First day (UTC)", widget=DateInput())
    last = forms.DateField(label="Last day (UTC)", widget=DateInput())

    def clean(self) -> dict[str, object] | None:
        cleaned = super().clean()
        first, last = self.cleaned_data.get("first"), self.cleaned_data.get("last")
        if first and last:
            if first > last:
                raise forms.ValidationError("The first day must not be after the last.")
            if (last - first).days >= MAX_REPORT_DAYS:
                raise forms.ValidationError(
                    f"Pick at most {MAX_REPORT_DAYS} days here; "
                    "`manage.py audit_report` takes any period."
                )
        return cleaned

    def period(self) -> reports.Period:
        return reports.days(self.cleaned_data["first"], self.cleaned_data["last"])


def _period_form(request: AuthenticatedHttpRequest) -> PeriodForm:
    """The period asked for; this week when none is."""
    if "first" in request.GET or "last" in request.GET:
        return PeriodForm(request.GET)
    week = reports.week_of(timezone.now())
    return PeriodForm({"first": week.first_day, "last": week.last_day})


def _presets(now: dt.datetime) -> list[dict[str, object]]:
    this_week = reports.week_of(now)
    this_month = reports.month_of(now)
    periods = [
        ("This week", this_week),
        ("Last week", reports.previous_week(now)),
        ("This month", this_month),
        ("Last month", reports.month_of(this_month.since - dt.timedelta(days=1))),
    ]
    return [
        {"label": label, "query": _period_query(period), "period": period}
        for label, period in periods
    ]


def _period_query(period: reports.Period) -> str:
    return urlencode({"first": period.first_day, "last": period.last_day})


@require_safe
@role_required(Role.COMPLIANCE)
def report(request: AuthenticatedHttpRequest) -> HttpResponse:
    """The period report as a page (SPEC §7), with a period picker and the PDF link."""
    form = _period_form(request)
    context: dict[str, object] = {"form": form, "presets": _presets(timezone.now())}
    if form.is_valid():
        period = form.period()
        context["report"] = reports.build(period)
        context["query"] = _period_query(period)
        reports.record_generated(period=period, fmt=reports.Format.HTML, actor=request.user)
    return render(request, "audit/report.html", context, status=200 if form.is_valid() else 400)


@require_safe
@role_required(Role.COMPLIANCE)
def report_pdf(request: AuthenticatedHttpRequest) -> HttpResponse:
    form = _period_form(request)
    if not form.is_valid():
        return render(
            request,
            "audit/report.html",
            {"form": form, "presets": _presets(timezone.now())},
            status=400,
        )
    period = form.period()
    body = pdf.report_pdf(reports.build(period))
    reports.record_generated(period=period, fmt=reports.Format.PDF, actor=request.user)
    name = f"oversight-report-{period.first_day}-to-{period.last_day}.pdf"
    return _pdf_response(body, name)


def _pdf_response(body: bytes, filename: str) -> HttpResponse:
    response = HttpResponse(body, content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


# --- the decision record ----------------------------------------------------------------------


@require_safe
@role_required(Role.COMPLIANCE, Role.MANAGER)
def decision_record(request: AuthenticatedHttpRequest, request_id: uuid.UUID) -> HttpResponse:
    """Everything that led to one request's outcome, each line with its audit sequence number
    (SPEC §7, GDPR right to explanation)."""
    approval = records.load(request_id)
    record = records.build(approval)
    records.record_generated(request=approval, fmt=reports.Format.HTML, actor=request.user)
    return render(request, "audit/decision_record.html", {"record": record})


@require_safe
@role_required(Role.COMPLIANCE, Role.MANAGER)
def decision_record_pdf(request: AuthenticatedHttpRequest, request_id: uuid.UUID) -> HttpResponse:
    approval = records.load(request_id)
    body = pdf.record_pdf(records.build(approval))
    records.record_generated(request=approval, fmt=reports.Format.PDF, actor=request.user)
    return _pdf_response(body, f"decision-record-{approval.pk}.pdf")
