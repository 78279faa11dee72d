"""`manage.py audit_export --format (jsonl|csv) [filters] > FILE`: the audit trail as an evidence
bundle or CSV on stdout (SPEC §7, §11), through the same service as the export page, and
audited the same way (`export.made`, by the system, `via: command`).

A summary goes to stderr, so that stdout is the file alone.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import dateparse, timezone

from audit import evidence


def moment(text: str) -> dt.datetime:
    """ISO 8601: a date and time (without an offset: in TIME_ZONE), or a date (its midnight)."""
    parsed = dateparse.parse_datetime(text)
    if parsed is None:
        day = dateparse.parse_date(text)
        if day is None:
            raise ValueError(text)
        parsed = dt.datetime.combine(day, dt.time())
    return parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed)


class Command(BaseCommand):
    help = "Export the audit trail as an evidence bundle (JSON Lines) or CSV to stdout; audited."
    # The system checks import every URLconf, view and admin module: some 30 MB of a process
    # whose whole job is to read the trail (SPEC §10.5 gives an export 150 MB).
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--format", required=True, choices=evidence.FORMATS)
        parser.add_argument("--since", type=moment, help="ISO date or time (inclusive)")
        parser.add_argument("--until", type=moment, help="ISO date or time (inclusive)")
        parser.add_argument("--agent", default="", help="an agent's name (actor or subject)")
        parser.add_argument("--person", default="", help="a person's username (actor)")
        parser.add_argument("--event-type", default="", help="e.g. request.decided")
        parser.add_argument("--risk", default="", choices=("", *evidence.RISKS))

    def handle(self, *args: Any, **options: Any) -> None:
        since, until = options["since"], options["until"]
        if since and until and since > until:
            raise CommandError("--since must be before --until.")
        filters = evidence.ExportFilter(
            since=since,
            until=until,
            agent=options["agent"],
            person=options["person"],
            event_type=options["event_type"],
            risk=options["risk"],
        )
        try:
            made = evidence.start_export(
                format=options["format"], filters=filters, actor=None, via="command"
            )
        except evidence.ExportError as exc:
            raise CommandError(str(exc)) from exc
        # The bytes as they are (a bundle is ASCII, a CSV UTF-8), whatever stdout's encoding.
        binary = getattr(self.stdout._out, "buffer", None)
        for chunk in made.stream():
            if binary is not None:
                binary.write(chunk)
            else:
                self.stdout.write(chunk.decode("utf-8"), ending="")
        if binary is not None:
            binary.flush()
        covered = (
            f", checkpoint of {made.checkpoint.size} events" if made.checkpoint is not None else ""
        )
        self.stderr.write(
            f"Exported {made.count} events up to sequence {made.up_to} as {made.format}{covered}; "
            f"recorded as audit event {made.event.sequence}."
        )
