"""The export page (compliance): the audit trail as an evidence bundle or CSV, downloaded as it
is read (SPEC §7 Exports; `audit.evidence` does the work, `manage.py audit_export` is the other
door)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator, Iterator
from typing import cast

from asgiref.sync import sync_to_async
from django import forms
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from accounts.decorators import role_required
from accounts.models import Role
from accounts.types import AuthenticatedHttpRequest
from audit import checkpoints, evidence, signing
from audit.events import EventType
from audit.forms import DateTimeLocalInput
from audit.models import AuditEvent

RECENT_EXPORTS = 10


class ExportForm(forms.Form):
    format = forms.ChoiceField(
        label="Format",
        choices=[
            (evidence.JSONL, "Evidence bundle (JSON Lines, with proofs and a signed checkpoint)"),
            (evidence.CSV, "CSV (the events only)"),
        ],
        initial=evidence.JSONL,
        widget=forms.RadioSelect,
    )
    since = forms.DateTimeField(label="From", required=False, widget=DateTimeLocalInput())
    until = forms.DateTimeField(label="To", required=False, widget=DateTimeLocalInput())
    agent = forms.CharField(
        label="Agent",
        required=False,
        max_length=100,
        widget=forms.TextInput(
            attrs={"placeholder": "its name: what it did and what was done to it"}
        ),
    )
    person = forms.CharField(
        label="Person",
        required=False,
        max_length=150,
        widget=forms.TextInput(attrs={"placeholder": "a username: what they did"}),
    )
    event_type = forms.ChoiceField(
        label="Event type", required=False, choices=[("", "All types"), *EventType.choices]
    )
    risk = forms.ChoiceField(
        label="Risk",
        required=False,
        choices=[("", "Any"), *((risk, risk.capitalize()) for risk in evidence.RISKS)],
    )

    def clean(self) -> dict[str, object] | None:
        cleaned = super().clean()
        since, until = self.cleaned_data.get("since"), self.cleaned_data.get("until")
        if since and until and since > until:
            raise forms.ValidationError("“From” must be before “To”.")
        return cleaned

    def filters(self) -> evidence.ExportFilter:
        data = self.cleaned_data
        return evidence.ExportFilter(
            since=data.get("since"),
            until=data.get("until"),
            agent=(data.get("agent") or "").strip(),
            person=(data.get("person") or "").strip(),
            event_type=data.get("event_type") or "",
            risk=data.get("risk") or "",
        )


@require_http_methods(["GET", "POST"])
@role_required(Role.COMPLIANCE)
def export(request: AuthenticatedHttpRequest) -> HttpResponse:
    """GET: the form. POST: record the export and stream the file (a POST, as it is audited)."""
    form = ExportForm(request.POST if request.method == "POST" else None)
    if form.is_bound and form.is_valid():
        try:
            made = evidence.start_export(
                format=form.cleaned_data["format"],
                filters=form.filters(),
                actor=request.user,
                via="page",
            )
        except evidence.ExportError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, str(exc))
        else:
            # role_required types a view as answering an HttpResponse; Django serves a
            # streaming one through the same path.
            return cast(HttpResponse, download(request, made))
    recent = list(
        AuditEvent.objects.filter(event_type=EventType.EXPORT_MADE).order_by("-sequence")[
            :RECENT_EXPORTS
        ]
    )
    context = {
        "form": form,
        "recent": recent,
        "checkpoint": checkpoints.latest(),
        "public_key": signing.signer().vkey,
    }
    return render(request, "audit/export.html", context, status=400 if form.errors else 200)


def download(request: HttpRequest, made: evidence.Export) -> StreamingHttpResponse:
    content_type = (
        "application/jsonl" if made.format == evidence.JSONL else "text/csv; charset=utf-8"
    )
    response = StreamingHttpResponse(_served(request, made.stream()), content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{made.filename}"'
    response["Cache-Control"] = "no-store"
    return response


def _served(
    request: HttpRequest, chunks: Generator[bytes]
) -> Iterator[bytes] | AsyncIterator[bytes]:
    """The chunks as the server consumes them in constant memory. Under ASGI Django would turn
    a plain iterator into a list first (StreamingHttpResponse.__aiter__), so there each chunk
    is read through `sync_to_async`: on the request's own thread, where the export's
    transaction and server-side cursor live."""
    if not isinstance(request, ASGIRequest):
        return chunks
    return _async_chunks(chunks)


def _next(chunks: Generator[bytes]) -> bytes | None:
    return next(chunks, None)


async def _async_chunks(chunks: Generator[bytes]) -> AsyncIterator[bytes]:
    step = sync_to_async(_next, thread_sensitive=True)
    try:
        while (chunk := await step(chunks)) is not None:
            yield chunk
    finally:
        # A download cut short: end the transaction and close the cursor, on their thread.
        await sync_to_async(chunks.close, thread_sensitive=True)()
