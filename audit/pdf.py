"""The PDFs of the period report and the decision record (SPEC §7), drawn with fpdf2: pure
Python, installed from the lock file alone, no system library or browser.

Text is set in DejaVu Sans, shipped in audit/fonts/ (its licence beside it) and embedded as a
subset, so names, justifications and comments in any script the font covers come out as typed
(the PDF's standard fonts know Latin-1 only); hashes are set in the standard Courier. Each PDF
carries its title and generation time in its metadata, and page numbers in its footer.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fpdf import FPDF, FontFace, XPos, YPos

from audit.records import DecisionRecord, Line
from audit.reports import Figure, Report, integrity_lines
from oversight.text import duration

FONTS = Path(__file__).resolve().parent / "fonts"
SANS = "DejaVuSans"
MONO = "Courier"

BRAND = (31, 79, 209)
TEXT = (27, 31, 39)
MUTED = (90, 98, 114)
OK = (23, 112, 58)
WARN = (138, 90, 0)
DANGER = (179, 38, 30)
LEVELS = {"ok": OK, "warn": WARN, "danger": DANGER, "muted": MUTED, "text": TEXT}
HEADINGS = FontFace(emphasis="BOLD", color=MUTED, fill_color=(240, 242, 246), size_pt=8)


class _Document(FPDF):
    """A4 portrait with the product's name and the document's title on every page."""

    def __init__(self, title: str, generated_at: dt.datetime) -> None:
        super().__init__(orientation="portrait", unit="mm", format="A4")
        self.document_title = title
        self.generated_at = generated_at
        self.add_font(SANS, "", str(FONTS / "DejaVuSans.ttf"))
        self.add_font(SANS, "B", str(FONTS / "DejaVuSans-Bold.ttf"))
        self.set_title(title)
        self.set_author("Oversight")
        self.set_creator("Oversight (fpdf2)")
        self.set_creation_date(generated_at)
        self.set_margins(16, 16, 16)
        self.set_auto_page_break(auto=True, margin=18)
        self.add_page()

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font(SANS, "", 7)
        self.set_text_color(*MUTED)
        stamp = self.generated_at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        self.cell(0, 5, f"Oversight · {self.document_title} · generated {stamp}", align="L")
        self.set_x(self.l_margin)
        self.cell(0, 5, f"Page {self.page_no()} of {{nb}}", align="R")

    # --- building blocks ---------------------------------------------------------------------

    def title_block(self, title: str, subtitle: str) -> None:
        self.set_font(SANS, "B", 18)
        self.set_text_color(*TEXT)
        self.multi_cell(0, 9, title, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_font(SANS, "", 9)
        self.set_text_color(*MUTED)
        self.multi_cell(0, 5, subtitle, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.ln(3)

    def heading(self, text: str) -> None:
        # Keep a heading with the first rows of the table that follows it.
        if self.will_page_break(40):
            self.add_page()
        self.ln(3)
        self.set_font(SANS, "B", 12)
        self.set_text_color(*BRAND)
        self.multi_cell(0, 7, text, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_text_color(*TEXT)
        self.ln(1)

    def paragraph(self, text: str, *, color: tuple[int, int, int] = TEXT, size: float = 9) -> None:
        self.set_font(SANS, "", size)
        self.set_text_color(*color)
        self.multi_cell(0, size * 0.5, text, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_text_color(*TEXT)
        self.ln(1.5)

    def grid(
        self,
        headings: Sequence[str],
        rows: Sequence[Sequence[Any]],
        *,
        widths: Sequence[float],
        align: Sequence[str] | None = None,
        empty: str = "None in this period.",
    ) -> None:
        """A table; a cell is its text, or (text, FontFace) to set it apart."""
        self.set_font(SANS, "", 8.5)
        with self.table(
            col_widths=tuple(widths),
            text_align=tuple(align) if align else "LEFT",
            headings_style=HEADINGS,
            borders_layout="HORIZONTAL_LINES",
            line_height=4.6,
            padding=(1.2, 1.5),
            v_align="TOP",
            width=sum(widths),
            align="LEFT",
        ) as table:
            heading_row = table.row()
            for heading in headings:
                heading_row.cell(heading)
            if not rows:
                table.row().cell(empty, colspan=len(headings), style=FontFace(color=MUTED))
            for values in rows:
                row = table.row()
                for value in values:
                    if isinstance(value, tuple):
                        row.cell(value[0], style=value[1])
                    else:
                        row.cell(str(value))
        self.ln(2)

    def figures(self, column: str, figures: list[Figure], *, empty: str = "") -> None:
        self.grid(
            (column, "Count"),
            [(figure.label, figure.count) for figure in figures],
            widths=(self.epw * 0.72, self.epw * 0.28),
            align=("LEFT", "RIGHT"),
            empty=empty or "None in this period.",
        )


def _bold(text: object) -> tuple[str, FontFace]:
    return str(text), FontFace(emphasis="BOLD")


def _mono(text: str) -> tuple[str, FontFace]:
    """Hashes in Courier; anything Courier cannot set (beyond Latin-1) in the text font."""
    if text.isascii():
        return text, FontFace(family=MONO, size_pt=7.5)
    return text, FontFace(size_pt=7.5)


def _utc(moment: dt.datetime | None, seconds: bool = False) -> str:
    if moment is None:
        return ""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


# --- the period report -----------------------------------------------------------------------

HEADLINE = (
    ("events", "Audit events"),
    ("requests", "Requests created"),
    ("decisions", "Decisions (approved or rejected)"),
    ("approved", "Approved"),
    ("rejected", "Rejected"),
    ("expired", "Expired undecided"),
    ("violations", "Guardrail violations"),
    ("security", "Security events"),
    ("data_accesses", "Sensitive-data accesses"),
    ("circuit_breaks", "Circuit breaks"),
    ("autonomy_changes", "Autonomy changes"),
    ("budget_alerts", "Budget alerts"),
    ("policy_changes", "Policy changes"),
)


def report_pdf(report: Report) -> bytes:
    """The period report as a PDF: the same figures as the page, in the same order."""
    period = report.period
    pdf = _Document(f"Compliance report {period.label}", report.generated_at)
    pdf.title_block(
        "Compliance report",
        f"Period {period.label}{' (not ended: figures so far)' if report.ongoing else ''}. "
        f"Generated {_utc(report.generated_at, seconds=True)} UTC.",
    )

    pdf.heading("Summary")
    totals = report.totals
    pdf.grid(
        ("Figure", "Count"),
        [(label, _bold(totals[key])) for key, label in HEADLINE],
        widths=(pdf.epw * 0.72, pdf.epw * 0.28),
        align=("LEFT", "RIGHT"),
    )

    pdf.heading("Decisions by outcome and risk")
    rows: list[list[Any]] = [
        [
            row.label,
            row.approved,
            row.rejected,
            row.expired,
            row.cancelled,
            duration(row.median_seconds),
            duration(row.p90_seconds),
        ]
        for row in report.by_risk
    ]
    together = report.decisions
    rows.append(
        [
            _bold(together.label),
            _bold(together.approved),
            _bold(together.rejected),
            _bold(together.expired),
            _bold(together.cancelled),
            _bold(duration(together.median_seconds)),
            _bold(duration(together.p90_seconds)),
        ]
    )
    unit = pdf.epw / 100
    pdf.grid(
        ("Risk", "Approved", "Rejected", "Expired", "Cancelled", "Median", "p90"),
        rows,
        widths=[unit * w for w in (22, 13, 13, 13, 13, 13, 13)],
        align=("LEFT", *["RIGHT"] * 6),
    )
    pdf.paragraph(
        "Requests that ended in the period, by their effective risk. Time to decision runs from "
        "creation to the approval or rejection that decided it. "
        f"{report.requests_created} request(s) were created in the period.",
        color=MUTED,
        size=8,
    )

    pdf.heading("Guardrail violations by type")
    pdf.figures("Reason", report.violations, empty="No guardrail violations in this period.")
    pdf.heading("Security events")
    pdf.figures("Event", report.security)
    pdf.heading("Sensitive-data accesses")
    pdf.figures("Policy", report.data_accesses, empty="No sensitive data was accessed.")
    pdf.heading("Circuit breaks and autonomy")
    pdf.figures("Circuit breaker", report.circuit)
    pdf.figures("Autonomy changes", report.autonomy, empty="No autonomy level changed.")
    pdf.heading("Budget alerts")
    pdf.figures("Alert", report.budget_alerts, empty="No budget alerts in this period.")
    pdf.heading("Policy and configuration changes")
    pdf.figures("Policies", report.policy_changes)
    pdf.figures("Configuration", report.configuration_changes)

    pdf.heading("Integrity")
    for text, level in integrity_lines(report):
        pdf.paragraph(text, color=LEVELS[level])

    pdf.heading("All events by type")
    pdf.figures("Event type", report.events_by_type, empty="No events in this period.")
    if report.first_sequence is not None:
        pdf.paragraph(
            f"Audit events #{report.first_sequence} to #{report.last_sequence}.",
            color=MUTED,
            size=8,
        )
    return bytes(pdf.output())


# --- the decision record ---------------------------------------------------------------------


def record_pdf(record: DecisionRecord) -> bytes:
    """The decision record as a PDF: every line with the audit sequence number that backs it."""
    request = record.request
    pdf = _Document(f"Decision record {request.pk}", record.generated_at)
    pdf.title_block(
        f"Decision record: {request.action}",
        f"Request {request.pk} from agent {request.agent.name}; outcome: {record.status_label}. "
        f"Generated {_utc(record.generated_at, seconds=True)} UTC. Each line gives the sequence "
        "number of the audit event that recorded it.",
    )
    if record.unaudited:
        pdf.paragraph(
            f"{len(record.unaudited)} line(s) have no audit event in the trail (marked “none”).",
            color=WARN,
        )
    unit = pdf.epw / 100
    widths = [unit * w for w in (10, 21, 48, 21)]
    for section in record.sections:
        pdf.heading(section.title)
        if not section.lines:
            pdf.paragraph(section.empty, color=MUTED)
            continue
        pdf.grid(
            ("Audit #", "What", "Details", "Recorded (UTC)"),
            [_record_row(line) for line in section.lines],
            widths=widths,
        )

    pdf.heading("The audit events")
    pdf.grid(
        ("#", "Time (UTC)", "Event", "Actor", "Hash"),
        [
            (
                event.sequence,
                _utc(event.occurred_at, seconds=True),
                event.event_type_label,
                event.actor_label,
                _mono(event.hash),
            )
            for event in record.trail
        ],
        widths=[unit * w for w in (7, 16, 22, 17, 38)],
        empty="No audit event concerns this request.",
    )
    return bytes(pdf.output())


def _record_row(line: Line) -> list[Any]:
    if line.sequence is not None:
        number: Any = f"#{line.sequence}"
    else:
        number = "—" if line.kind == "note" else ("none", FontFace(color=WARN, emphasis="BOLD"))
    text = f"{line.text}\n{line.detail}" if line.detail else line.text
    recorded: Any = text
    if line.kind == "hash":
        recorded = _mono(text)
    elif line.kind == "json":
        recorded = (text, FontFace(size_pt=7.5))
    return [number, _bold(line.label), recorded, _utc(line.at, seconds=True)]
