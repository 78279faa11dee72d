"""`manage.py audit_report --since ISO --until ISO (--html|--pdf) > FILE`: the period report
(SPEC §7, §11) of [since, until), as a standalone HTML file or a PDF, on standard output.

ISO dates or dates and times; a date is its midnight, and a time without an offset is UTC, so
`--since 2026-11-30 --until 2026-12-07` is the week from Monday 30 November. `--verify` first
verifies the whole chain, so the report's integrity section is as of now. Generating the report
is audited, as from the page.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.staticfiles import finders
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.template.loader import render_to_string

from audit import pdf, reports, services


class Command(BaseCommand):
    help = "Write the period report of [--since, --until) as HTML or PDF to standard output."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--since", required=True, help="Start (ISO 8601), included.")
        parser.add_argument("--until", required=True, help="End (ISO 8601), not included.")
        output = parser.add_mutually_exclusive_group(required=True)
        output.add_argument("--html", action="store_const", const="html", dest="output_format")
        output.add_argument("--pdf", action="store_const", const="pdf", dest="output_format")
        parser.add_argument(
            "--verify",
            action="store_true",
            help="Verify the chain first, so the integrity section is as of now.",
        )

    def handle(
        self, *args: Any, since: str, until: str, output_format: str, **options: Any
    ) -> None:
        try:
            period = reports.Period(reports.parse_moment(since), reports.parse_moment(until))
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if options["verify"]:
            outcome = services.run_verification()
            self.stderr.write(
                f"Audit chain {'intact' if outcome.intact else 'BROKEN'}: "
                f"{outcome.events_checked} events checked."
            )
        report = reports.build(period)
        if output_format == reports.Format.PDF:
            body = pdf.report_pdf(report)
        else:
            body = document(report).encode()
        reports.record_generated(period=period, fmt=output_format, via="command")
        # The bytes as they are: a PDF is binary, and HTML is UTF-8 whatever the locale says.
        stream: Any = self.stdout._out  # the text stream under Django's wrapper
        self.stdout.flush()
        binary = stream.buffer if hasattr(stream, "buffer") else stream
        binary.write(body)
        binary.flush()


def document(report: reports.Report) -> str:
    """The report as one HTML file that needs nothing else: the product's stylesheet inside."""
    stylesheet = finders.find("css/oversight.css")
    css = Path(stylesheet).read_text(encoding="utf-8") if isinstance(stylesheet, str) else ""
    return render_to_string(
        "audit/report_document.html",
        {"report": report, "stylesheet": css, "origin": settings.OVERSIGHT_BASE_URL},
    )
