"""The offline verifier, `tools/verify_evidence.py` (SPEC §7), run as an auditor runs it: a
separate Python process with the file alone, no project code, no database. It passes a real
bundle and fails, naming the line, on each tampering of the matrix that applies to a bundle."""

from __future__ import annotations

import base64
import datetime as dt
import json
import random
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from audit import checkpoints, evidence, merkle, signing
from audit.chain import canonical_event_bytes, format_timestamp, normalize_payload
from audit.events import EventType
from audit.models import AuditEvent
from audit.services import record_event
from tests.audit.conftest import TEST_ORIGIN
from tests.audit.db import execute, tampering, tampering_with_checkpoints
from tools import verify_evidence

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("signing_key")]

BASE_DIR = Path(__file__).resolve().parent.parent.parent
SCRIPT = BASE_DIR / "tools" / "verify_evidence.py"
ORIGIN = TEST_ORIGIN


def vkey() -> str:
    return signing.signer().vkey


def verify(bundle: Path, *args: str, key: str | None = None) -> subprocess.CompletedProcess[str]:
    """The verifier in a process of its own, isolated (-I: no project directory on its path, no
    PYTHON* variables), with only PATH in its environment."""
    return subprocess.run(
        [sys.executable, "-I", str(SCRIPT), str(bundle), "--key", key or vkey(), *args],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
        cwd=bundle.parent,
        timeout=120,
    )


def failed(result: subprocess.CompletedProcess[str], line: int, message: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"FAILED at line {line}" in result.stderr, result.stderr
    assert message in result.stderr, result.stderr


def some_events(n: int) -> None:
    for i in range(n):
        record_event(
            event_type=EventType.REQUEST_CREATED if i % 3 else EventType.LOGIN_FAILED,
            subject=("approval_request", str(i)),
            payload={"attempt": i, "risk_level": ["low", "high"][i % 2], "note": "déjà vu 😀"},
        )


def write_bundle(path: Path, **filters: Any) -> list[str]:
    made = evidence.start_export(
        format="jsonl", filters=evidence.ExportFilter(**filters), actor=None, via="test"
    )
    path.write_bytes(b"".join(made.stream()))
    return path.read_text().splitlines(keepends=True)


@pytest.fixture
def bundle(tmp_path) -> Path:
    """A bundle of 30 events (lines 2-31; the trailer is line 32), its checkpoint made by the
    export, with earlier checkpoints at 10 and 20 events."""
    some_events(10)
    checkpoints.make(force=True)
    some_events(10)
    checkpoints.make(force=True)
    some_events(10)
    path = tmp_path / "evidence.jsonl"
    write_bundle(path)
    return path


def rewrite(path: Path, change) -> None:
    lines = path.read_text().splitlines(keepends=True)
    change(lines)
    path.write_text("".join(lines))


def edit_line(lines: list[str], number: int, **changes: Any) -> None:
    event = json.loads(lines[number - 1])
    event.update(changes)
    lines[number - 1] = json.dumps(event) + "\n"


# --- it passes ------------------------------------------------------------------------------


def test_a_real_bundle_verifies(bundle) -> None:
    result = verify(bundle)
    assert result.returncode == 0, result.stderr
    summary = result.stdout.strip()
    assert "\n" not in summary
    assert summary.startswith("OK: 30 events verified (hashes, 29 chain links, inclusion proofs)")
    assert f"checkpoint of 30 events signed by {ORIGIN}" in summary


def test_the_script_alone_verifies_with_the_key_in_a_file(bundle, tmp_path) -> None:
    """A copy of the one file, somewhere else, and the key as published in a file."""
    elsewhere = tmp_path / "auditor"
    elsewhere.mkdir()
    shutil.copy(SCRIPT, elsewhere / "verify_evidence.py")
    (elsewhere / "oversight.vkey").write_text(vkey() + "\n")
    result = subprocess.run(
        [sys.executable, "-I", "verify_evidence.py", str(bundle), "--key", "oversight.vkey"],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
        cwd=elsewhere,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("OK: 30 events")


def test_a_filtered_bundle_verifies_with_gaps_between_its_events(tmp_path) -> None:
    some_events(25)
    path = tmp_path / "high.jsonl"
    lines = write_bundle(path, risk="high", event_type="request.created")
    assert len(lines) > 3
    result = verify(path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"OK: {len(lines) - 2} events")


def test_a_genuine_previous_checkpoint_is_consistent(bundle, settings) -> None:
    for size in (10, 20, 30):
        kept = Path(settings.OVERSIGHT_CHECKPOINT_DIR) / f"{size}.note"
        result = verify(bundle, "--previous-checkpoint", str(kept))
        assert result.returncode == 0, result.stderr
        expected = "the same as" if size == 30 else "consistent with"
        assert f"{expected} the previous checkpoint" in result.stdout


# --- it fails, naming the line ----------------------------------------------------------------


def test_an_edited_line_is_found(bundle) -> None:
    rewrite(bundle, lambda lines: edit_line(lines, 7, payload={"attempt": 999}))
    failed(verify(bundle), 7, "event 6: its content does not match its hash (edited)")


def test_an_edited_line_with_its_hash_recomputed_is_found(bundle) -> None:
    def forge(lines: list[str]) -> None:
        event = json.loads(lines[6])
        event["actor_name"] = "someone else"
        event["hash"] = verify_evidence.event_hash(event["prev_hash"], event)
        lines[6] = json.dumps(event) + "\n"

    rewrite(bundle, forge)
    failed(verify(bundle), 7, "its inclusion proof does not lead to the checkpoint's root")


def test_a_removed_line_is_found(bundle) -> None:
    rewrite(bundle, lambda lines: lines.pop(11))  # event 11
    failed(verify(bundle), 12, "event 11 is missing before event 12")


def test_a_removed_line_of_a_filtered_bundle_is_found_by_the_count(tmp_path) -> None:
    some_events(25)
    path = tmp_path / "high.jsonl"
    lines = write_bundle(path, risk="high")
    rewrite(path, lambda lines: lines.pop(3))
    failed(verify(path), len(lines) - 1, "the trailer counts")


def swap(lines: list[str]) -> None:
    lines[4], lines[5] = lines[5], lines[4]


def test_swapped_lines_are_found(bundle) -> None:
    rewrite(bundle, swap)  # events 4 and 5, on lines 5 and 6
    failed(verify(bundle), 5, "event 4 is missing before event 5")


def test_swapped_lines_of_a_filtered_bundle_are_found(tmp_path) -> None:
    some_events(25)
    path = tmp_path / "high.jsonl"
    lines = write_bundle(path, risk="high")
    later = json.loads(lines[5])["sequence"]
    rewrite(path, swap)
    failed(verify(path), 6, f"comes after event {later}: lines are out of order or repeated")


def test_a_bundle_cut_short_is_found(bundle) -> None:
    rewrite(bundle, lambda lines: lines.pop())
    failed(verify(bundle), 31, "the last line is not the trailer")


def test_an_altered_checkpoint_signature_is_found(bundle) -> None:
    def alter(lines: list[str]) -> None:
        trailer = json.loads(lines[-1])
        head, _, signature = trailer["checkpoint"].rstrip("\n").rpartition(" ")
        raw = bytearray(base64.b64decode(signature))
        raw[-1] ^= 1
        trailer["checkpoint"] = f"{head} {base64.b64encode(bytes(raw)).decode()}\n"
        lines[-1] = json.dumps(trailer) + "\n"

    rewrite(bundle, alter)
    failed(verify(bundle), 32, "signature by test.example/audit does not verify")


def test_a_checkpoint_signed_by_another_key_is_found(bundle) -> None:
    stranger = signing.Signer(ORIGIN, Ed25519PrivateKey.generate())

    def resign(lines: list[str]) -> None:
        trailer = json.loads(lines[-1])
        text = trailer["checkpoint"].partition("\n\n")[0] + "\n"
        trailer["checkpoint"] = stranger.sign(text)
        lines[-1] = json.dumps(trailer) + "\n"

    rewrite(bundle, resign)
    failed(verify(bundle), 32, f"it is not signed by the key {vkey()}")
    # ...which is the stranger's key: with it, the same bundle verifies.
    assert verify(bundle, key=stranger.vkey).returncode == 0


def test_the_wrong_key_is_refused(bundle) -> None:
    other = signing.Signer("elsewhere.example/log", Ed25519PrivateKey.generate())
    failed(verify(bundle, key=other.vkey), 32, "it is not signed by the key")
    result = verify(bundle, key="not-a-key")
    assert result.returncode == 2
    assert "--key" in result.stderr


def test_a_previous_checkpoint_of_a_log_since_rewritten_is_found(bundle, settings, tmp_path):
    """A witness kept the checkpoint of 20 events; whoever holds the database and the key
    rewrites the log from event 15 on and signs new checkpoints: the new bundle verifies on its
    own, but not against what the witness kept."""
    kept = tmp_path / "kept.note"
    kept.write_text((Path(settings.OVERSIGHT_CHECKPOINT_DIR) / "20.note").read_text())
    with tampering(), tampering_with_checkpoints():
        execute(
            "DELETE FROM audit_auditevent WHERE sequence >= 15",
            "DELETE FROM audit_checkpoint WHERE size > 10",
            "DELETE FROM audit_merklenode",
            "DELETE FROM audit_treestate",
        )
    some_events(5)
    record_event(event_type=EventType.LOGIN_FAILED, payload={"rewritten": True})
    again = checkpoints.make(force=True)  # 20 events again, of another history
    assert again is not None
    assert again.size == 20
    some_events(10)
    checkpoints.make(force=True)
    some_events(3)
    rewritten = tmp_path / "rewritten.jsonl"
    lines = write_bundle(rewritten)
    assert verify(rewritten).returncode == 0  # on its own, it holds
    failed(
        verify(rewritten, "--previous-checkpoint", str(kept)),
        len(lines),
        "is not consistent with the previous checkpoint of 20: the log was rewritten",
    )
    # The witness's checkpoint of 10 events is still consistent: the rewrite began after it.
    first = tmp_path / "first.note"
    first.write_text((Path(settings.OVERSIGHT_CHECKPOINT_DIR) / "10.note").read_text())
    assert verify(rewritten, "--previous-checkpoint", str(first)).returncode == 0


def test_a_previous_checkpoint_of_a_size_never_signed_since_is_found(bundle, tmp_path):
    """A checkpoint of a size the log has no checkpoint of now (a history signed once and
    since replaced by one with other checkpoints): no proof leads from it."""
    forged = tmp_path / "other.note"
    forged.write_text(signing.signer().sign(signing.checkpoint_text(ORIGIN, 15, b"\x05" * 32)))
    failed(
        verify(bundle, "--previous-checkpoint", str(forged)),
        32,
        "holds no consistency proof from 15 events: the log never signed a checkpoint",
    )


def test_a_previous_checkpoint_by_another_key_is_refused(bundle, tmp_path) -> None:
    stranger = signing.Signer(ORIGIN, Ed25519PrivateKey.generate())
    note = tmp_path / "stranger.note"
    note.write_text(stranger.sign(signing.checkpoint_text(ORIGIN, 20, b"\x05" * 32)))
    result = verify(bundle, "--previous-checkpoint", str(note))
    assert result.returncode == 1
    assert "the previous checkpoint: it is not signed by the key" in result.stderr


# --- the verifier's canonical form is the chain's -----------------------------------------------


def random_value(rng: random.Random, depth: int = 0) -> Any:
    kinds = ["int", "float", "str", "bool", "none"] + (["list", "dict"] if depth < 3 else [])
    kind = rng.choice(kinds)
    if kind == "int":
        return rng.choice([0, -1, 7, 2**53 + 1, -(10**20), rng.randrange(-(10**9), 10**9)])
    if kind == "float":
        return rng.choice([0.1, -2.5, 1e-07, 1234.5678, 3.0, 1e20, rng.uniform(-1e6, 1e6)])
    if kind == "str":
        alphabet = "aZ09 \"\\/\n\t\x01\x1f\x7f\u00e9\u2014\u20ac\U0001f600\ufffd<>&'"
        return "".join(rng.choice(alphabet) for _ in range(rng.randrange(12)))
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "none":
        return None
    if kind == "list":
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {random_value_key(rng): random_value(rng, depth + 1) for _ in range(rng.randrange(5))}


def random_value_key(rng: random.Random) -> str:
    return rng.choice(["a", "B", "é", "z1", "risk", "😀", "", " ", "\u2014", "10", "9"])


def test_the_verifier_hashes_real_events_exactly_as_the_chain_does(tmp_path) -> None:
    rng = random.Random(22)
    for n in range(300):
        record_event(
            event_type=rng.choice(EventType.values),
            subject=("thing", f"{n}-ü"),
            payload={
                **{random_value_key(rng): random_value(rng) for _ in range(rng.randrange(6))},
                "cost": Decimal("0.0125"),
                "when": dt.datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=dt.UTC),
            },
        )
    path = tmp_path / "many.jsonl"
    lines = write_bundle(path)
    rows = {row.sequence: row for row in AuditEvent.objects.all()}
    for text in lines[1:-1]:
        event = json.loads(text)
        row = rows[event["sequence"]]
        stored = {name: getattr(row, name) for name in verify_evidence.FIELDS}
        assert verify_evidence.canonical_event(event) == canonical_event_bytes(stored)
        assert verify_evidence.event_hash(event["prev_hash"], event) == row.hash
    assert verify(path).returncode == 0


text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=20)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    strings=st.lists(text, min_size=6, max_size=6),
    payload=st.dictionaries(text, json_values, max_size=5),
    moment=st.datetimes(timezones=st.just(dt.UTC)),
    sequence=st.integers(min_value=1, max_value=2**62),
)
def test_the_verifiers_canonical_form_is_the_chains_for_any_payload(
    strings, payload, moment, sequence
):
    """What the bundle line carries (JSON, read back by the verifier) hashes to the chain's
    bytes, for any payload the chain accepts."""
    names = ("event_type", "actor_type", "actor_id", "actor_name", "subject_type", "subject_id")
    event = dict(zip(names, strings, strict=True))
    event.update(sequence=sequence, occurred_at=moment, payload=normalize_payload(payload))
    line = json.dumps({**event, "occurred_at": format_timestamp(moment)})
    assert verify_evidence.canonical_event(json.loads(line)) == canonical_event_bytes(event)


def test_the_verifiers_shortcut_answers_as_the_rfc_algorithm_does() -> None:
    """InclusionChecker skips the steps a proof shares with the previous accepted one; over
    leaves in order, scattered, and proofs with one hash changed, it accepts exactly the proofs
    the plain algorithm accepts."""
    rng = random.Random(9)
    for size in (1, 2, 3, 5, 8, 13, 64, 100, 257):
        leaves = [merkle.leaf_hash(rng.randbytes(32)) for _ in range(size)]
        lookup = merkle.in_memory(leaves)
        root = merkle.root(size, lookup)
        checker = verify_evidence.InclusionChecker(size, root)
        for index in sorted(rng.sample(range(size), k=max(1, size * 2 // 3))):
            proof = merkle.proof(merkle.inclusion_ranges(index, size), lookup)
            texts = [base64.b64encode(digest).decode() for digest in proof]
            if proof and rng.random() < 0.3:
                spot = rng.randrange(len(texts))
                texts[spot] = base64.b64encode(rng.randbytes(32)).decode()
            plain = verify_evidence.root_from_inclusion(
                index, size, leaves[index], [base64.b64decode(t) for t in texts]
            )
            assert checker.check(index, leaves[index], texts) == (plain == root), (size, index)
            assert (plain == root) == (texts == [base64.b64encode(d).decode() for d in proof])
