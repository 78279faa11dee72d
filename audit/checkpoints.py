"""Signed checkpoints of the audit log (SPEC §7): made by beat every
OVERSIGHT_CHECKPOINT_EVERY_EVENTS events, or every OVERSIGHT_CHECKPOINT_EVERY_SECONDS when the
log grew, and on demand (an export needs one that covers what it exports). Each is stored in
`Checkpoint` (append-only in the database) and written to OVERSIGHT_CHECKPOINT_DIR as well, as
`<size>.note` plus `latest.note`.
"""

from __future__ import annotations

import base64
import logging
import os
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit import signing, tree
from audit.events import EventType
from audit.models import Checkpoint
from audit.services import record_event

logger = logging.getLogger(__name__)


def latest() -> Checkpoint | None:
    return Checkpoint.objects.order_by("-size").first()


def due(size: int, last: Checkpoint | None) -> bool:
    if size == 0:
        return False
    if last is None:
        return True
    if size <= last.size:
        return False
    if size - last.size >= settings.OVERSIGHT_CHECKPOINT_EVERY_EVENTS:
        return True
    age = timezone.now() - last.created_at
    return age >= timedelta(seconds=settings.OVERSIGHT_CHECKPOINT_EVERY_SECONDS)


def make(*, force: bool = False) -> Checkpoint | None:
    """Extend the tree and sign a checkpoint of it when one is due (`force`: whenever the log
    grew since the last). Returns the new checkpoint, or None."""
    size = tree.extend()
    last = latest()
    if not (due(size, last) or (force and size > (last.size if last else 0))):
        return None
    return sign(size, last)


def covering(size: int) -> Checkpoint:
    """A checkpoint of at least `size` events: the latest, or a new one (an export's trailer)."""
    last = latest()
    if last is not None and last.size >= size:
        return last
    made = make(force=True)
    if made is None or made.size < size:
        raise RuntimeError(f"no checkpoint covers {size} events: the tree stops before them")
    return made


def sign(size: int, previous: Checkpoint | None) -> Checkpoint:
    key = signing.signer()
    root = tree.root(size)
    note = key.sign(signing.checkpoint_text(key.name, size, root))
    checkpoint = Checkpoint(
        size=size,
        root_hash=root,
        origin=key.name,
        note=note,
        public_key=key.vkey,
        created_at=timezone.now(),
    )
    try:
        with transaction.atomic():
            checkpoint.save(force_insert=True)
            if previous is not None and previous.public_key != key.vkey:
                # A new signing key: the trail says so (the checkpoint itself names it too).
                record_event(
                    event_type=EventType.SIGNING_KEY_ROTATED,
                    payload={
                        "previous_key": previous.public_key,
                        "key": key.vkey,
                        "from_size": size,
                    },
                )
    except IntegrityError:  # another beat (or an export) signed this size first
        return Checkpoint.objects.get(size=size)
    write_file(checkpoint)
    return checkpoint


def write_file(checkpoint: Checkpoint) -> None:
    """The second place (a volume of its own in compose); a failure is logged, not raised: the
    database keeps the checkpoint, and the next one is written again."""
    folder = Path(settings.OVERSIGHT_CHECKPOINT_DIR)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name in (f"{checkpoint.size}.note", "latest.note"):
            with tempfile.NamedTemporaryFile("w", dir=folder, delete=False) as handle:
                handle.write(checkpoint.note)
            os.chmod(handle.name, 0o644)  # public, as /audit/checkpoints/latest is
            os.replace(handle.name, folder / name)
    except OSError:
        logger.exception("checkpoint %s not written to %s", checkpoint.size, folder)


def as_json(checkpoint: Checkpoint) -> dict[str, Any]:
    """`/audit/checkpoints/latest` (SPEC §7)."""
    return {
        "origin": checkpoint.origin,
        "size": checkpoint.size,
        "root_hash": base64.b64encode(bytes(checkpoint.root_hash)).decode(),
        "note": checkpoint.note,
        "public_key": checkpoint.public_key,
    }
