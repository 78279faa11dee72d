"""`manage.py audit_public_key`: the public key that signs the audit checkpoints (SPEC §11), in
the C2SP vkey form `<name>+<hex key id>+<base64(0x01 ‖ key)>`, alone on one line.

Hand it to an auditor: `tools/verify_evidence.py BUNDLE --key "$(manage.py audit_public_key)"`.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from audit.signing import signer


class Command(BaseCommand):
    help = "Print the checkpoint-signing public key (a C2SP vkey) alone on one line."

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(signer().vkey)
