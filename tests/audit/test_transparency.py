"""The transparency log in the database (SPEC §7): the Merkle tree built as events commit,
proofs that verify against it, signed checkpoints (made when due, stored append-only and in a
folder, published as JSON), and verification that fails on every tampering the chain alone
cannot show: a chain re-hashed after an edit, events cut off the end, a forged or altered
checkpoint."""

from __future__ import annotations

import base64
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.db import DatabaseError, IntegrityError, transaction
from django.utils import timezone

from audit import checkpoints, merkle, signing, tree
from audit.chain import compute_hash
from audit.events import EventType
from audit.integrity import verify_chain
from audit.models import AuditEvent, Checkpoint, MerkleNode
from audit.services import record_event
from tests.audit.db import execute, tampering, tampering_with_checkpoints
from tests.conftest import client_for

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("signing_key")]


def events(n: int) -> list[AuditEvent]:
    return [
        record_event(event_type=EventType.LOGIN_FAILED, payload={"attempt": i}) for i in range(n)
    ]


def forced() -> Checkpoint:
    made = checkpoints.make(force=True)
    assert made is not None
    return made


def made_size() -> int:
    made = checkpoints.make()
    assert made is not None
    return made.size


def hashes() -> list[str]:
    return list(AuditEvent.objects.order_by("sequence").values_list("hash", flat=True))


# --- the tree -------------------------------------------------------------------------------


def test_the_tree_extends_in_steps_to_the_root_of_the_whole_log() -> None:
    events(13)
    assert tree.extend(limit=5) == 5
    assert tree.extend(limit=4) == 9
    events(10)
    assert tree.extend() == 23
    assert tree.root(23) == tree.recompute_root(hashes())[1]
    assert tree.root(9) == tree.recompute_root(hashes()[:9])[1]
    # Every complete subtree once: 23 leaves make 11 + 5 + 2 + 1 nodes above the leaves.
    assert MerkleNode.objects.count() == 11 + 5 + 2 + 1


def test_proofs_from_the_database_verify() -> None:
    events(21)
    tree.extend()
    leaves = [merkle.leaf_hash(bytes.fromhex(h)) for h in hashes()]
    for size in (1, 2, 7, 8, 21):
        root = tree.root(size)
        for index in range(size):
            proof = tree.inclusion_proof(index, size)
            assert merkle.verify_inclusion(index, size, leaves[index], proof, root)
        for old in range(1, size + 1):
            proof = tree.consistency_proof(old, size)
            assert merkle.verify_consistency(old, size, tree.root(old), root, proof)


# --- checkpoints ----------------------------------------------------------------------------


def test_a_checkpoint_is_due_every_1000_events_or_after_5_minutes(settings) -> None:
    settings.OVERSIGHT_CHECKPOINT_EVERY_EVENTS = 10
    assert checkpoints.make() is None, "an empty log has none"
    events(3)
    first = checkpoints.make()
    assert first is not None
    assert first.size == 3
    events(5)
    assert checkpoints.make() is None, "8 events, 5 new, 2 minutes young: not due"
    events(5)
    assert made_size() == 13  # 10 new
    events(1)
    assert checkpoints.make() is None
    later = timezone.now() + timedelta(minutes=6)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(timezone, "now", lambda: later)
        assert made_size() == 14


def test_a_checkpoint_is_a_signed_note_stored_and_written_to_the_folder(settings) -> None:
    events(5)
    made = forced()
    key = signing.signer()
    text = made.note
    assert text.startswith(f"test.example/audit\n5\n{base64.b64encode(tree.root(5)).decode()}\n\n")
    assert text.splitlines()[-1].startswith("\u2014 test.example/audit ")
    parsed = signing.verify(text, key.vkey)
    assert (parsed.size, parsed.root) == (5, tree.root(5))
    folder = Path(settings.OVERSIGHT_CHECKPOINT_DIR)
    assert (folder / "5.note").read_text() == text
    assert (folder / "latest.note").read_text() == text
    assert made.public_key == key.vkey
    name, key_id, blob = key.vkey.split("+")
    assert (name, len(key_id)) == ("test.example/audit", 8)
    assert base64.b64decode(blob)[:1] == b"\x01"


def test_checkpoints_are_append_only_in_the_database() -> None:
    events(2)
    forced()
    with pytest.raises((IntegrityError, DatabaseError)), transaction.atomic():
        Checkpoint.objects.update(origin="else")
    with pytest.raises((IntegrityError, DatabaseError)), transaction.atomic():
        Checkpoint.objects.all().delete()


def test_the_latest_checkpoint_is_public_json(client) -> None:
    assert client.get("/audit/checkpoints/latest").status_code == 404
    events(4)
    forced()
    answer = client.get("/audit/checkpoints/latest")
    assert answer.status_code == 200
    body = answer.json()
    assert set(body) == {"origin", "size", "root_hash", "note", "public_key"}
    assert body["size"] == 4
    assert base64.b64decode(body["root_hash"]) == tree.root(4)
    assert signing.verify(body["note"], body["public_key"]).size == 4


def test_proofs_are_for_compliance_staff_and_verify(client, make_user) -> None:
    events(9)
    forced()
    assert client.get("/audit/proofs/inclusion?seq=3&size=9").status_code == 302  # log in
    staff = client_for(make_user(roles=("approver",), tier="team_lead"))
    assert staff.get("/audit/proofs/inclusion?seq=3&size=9").status_code == 403
    compliance = client_for(make_user(roles=("compliance",)))
    body = compliance.get("/audit/proofs/inclusion?seq=3&size=9").json()
    assert (body["leaf_index"], body["tree_size"]) == (2, 9)
    proof = [base64.b64decode(h) for h in body["hashes"]]
    leaf = merkle.leaf_hash(bytes.fromhex(AuditEvent.objects.get(sequence=3).hash))
    assert merkle.verify_inclusion(2, 9, leaf, proof, tree.root(9))
    events(3)  # not in the tree yet: the endpoint extends it first
    body = compliance.get("/audit/proofs/consistency?from=9&to=12").json()
    proof = [base64.b64decode(h) for h in body["hashes"]]
    assert merkle.verify_consistency(9, 12, tree.root(9), tree.root(12), proof)
    for bad in ("seq=0&size=9", "seq=10&size=9", "seq=x&size=9", "seq=1"):
        assert compliance.get(f"/audit/proofs/inclusion?{bad}").status_code == 400
    assert compliance.get("/audit/proofs/inclusion?seq=1&size=999").status_code == 404


def test_a_new_signing_key_is_audited_and_both_are_trusted(settings) -> None:
    events(3)
    old = forced()
    settings.OVERSIGHT_AUDIT_SIGNING_KEY = base64.b64encode(b"\x09" * 32).decode()
    signing.signer.cache_clear()
    events(2)
    new = forced()
    assert new.public_key != old.public_key
    rotated = AuditEvent.objects.get(event_type="audit.key_rotated")
    assert rotated.payload["previous_key"] == old.public_key
    assert rotated.payload["key"] == new.public_key
    result = verify_chain()
    assert result.intact, result.problem
    assert result.checkpoint_size == new.size


# --- what verification catches now (the tampering matrix's database half) -------------------


@pytest.fixture
def checkpointed() -> Checkpoint:
    events(20)
    made = forced()
    assert made.size == 20
    return made


def test_an_intact_log_is_consistent_with_its_checkpoint(checkpointed) -> None:
    result = verify_chain()
    assert result.intact
    assert result.checkpoint_size == 20
    assert "consistent with the signed checkpoint of 20 events" in result.summary()


def test_an_edit_with_the_whole_chain_rehashed_downstream_is_found(checkpointed) -> None:
    """Whoever holds the database edits event 7 and recomputes every hash after it: the chain
    verifies, the signed root does not."""
    rows = list(AuditEvent.objects.order_by("sequence"))
    with tampering():
        prev = rows[5].hash
        for row in rows[6:]:
            if row.sequence == 7:
                row.payload = {"attempt": 999}
            row.prev_hash = prev
            row.hash = compute_hash(prev, row.__dict__)
            AuditEvent.objects.filter(sequence=row.sequence).update(
                payload=row.payload, prev_hash=row.prev_hash, hash=row.hash
            )
            prev = row.hash
    result = verify_chain()
    assert not result.intact
    assert result.first_bad_sequence == 1
    assert "not the ones the signed checkpoint of 20 covers" in result.problem


def test_the_last_ten_events_deleted_are_found(checkpointed) -> None:
    with tampering():
        execute("DELETE FROM audit_auditevent WHERE sequence > 10")
    result = verify_chain()
    assert (result.intact, result.first_bad_sequence) == (False, 11)
    assert "cut off its end" in result.problem


def test_a_forged_tail_in_place_of_the_real_one_is_found(checkpointed) -> None:
    last = AuditEvent.objects.get(sequence=19)
    forged = {
        "sequence": 20,
        "occurred_at": last.occurred_at,
        "event_type": "login.succeeded",
        "actor_type": "system",
        "actor_id": "",
        "actor_name": "",
        "subject_type": "",
        "subject_id": "",
        "payload": {},
    }
    with tampering():
        execute("DELETE FROM audit_auditevent WHERE sequence = 20")
        AuditEvent.objects.create(
            **forged, prev_hash=last.hash, hash=compute_hash(last.hash, forged)
        )
    result = verify_chain()
    assert not result.intact
    assert "signed checkpoint of 20" in result.problem


def test_an_altered_checkpoint_signature_is_found(checkpointed) -> None:
    note = checkpointed.note
    head, _, signature = note.rstrip("\n").rpartition(" ")
    raw = bytearray(base64.b64decode(signature))
    raw[-1] ^= 1
    with tampering_with_checkpoints():
        Checkpoint.objects.filter(size=20).update(
            note=f"{head} {base64.b64encode(bytes(raw)).decode()}\n"
        )
    result = verify_chain()
    assert (result.intact, result.first_bad_sequence) == (False, 20)
    assert "not signed by a key the trail trusts" in result.problem


def test_a_checkpoint_from_another_key_is_found(checkpointed) -> None:
    """A forger with the database but not the key signs a checkpoint of their own."""
    events(5)
    stranger = signing.Signer("test.example/audit", Ed25519PrivateKey.generate())
    text = signing.checkpoint_text(stranger.name, 25, tree.root(tree.extend()))
    Checkpoint.objects.create(
        size=25,
        root_hash=tree.root(25),
        origin=stranger.name,
        note=stranger.sign(text),
        public_key=stranger.vkey,
        created_at=timezone.now(),
    )
    result = verify_chain()
    assert (result.intact, result.first_bad_sequence) == (False, 25)
    assert "not signed by a key the trail trusts" in result.problem
