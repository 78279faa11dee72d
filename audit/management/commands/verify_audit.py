"""`manage.py verify_audit`: recompute the audit hash chain and say whether it is intact (SPEC §7).

Exit status 0 with a one-line summary when it is; 1 naming the first bad sequence number and
what is wrong with it when it is not, so a cron job or CI step can alert on it.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.integrity import CHUNK_SIZE, verify_chain


class Command(BaseCommand):
    help = "Verify the audit trail's hash chain; exit 1 naming the first bad event if broken."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--chunk-size",
            type=int,
            default=CHUNK_SIZE,
            help=f"Rows fetched per round trip (default {CHUNK_SIZE}).",
        )

    def handle(self, *args: Any, chunk_size: int, **options: Any) -> None:
        if chunk_size < 1:
            raise CommandError("--chunk-size must be at least 1.")
        result = verify_chain(chunk_size=chunk_size)
        if not result.intact:
            raise CommandError(result.summary())
        self.stdout.write(result.summary())
