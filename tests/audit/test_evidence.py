"""Exports of the audit trail (SPEC §7): the evidence bundle (every event with its inclusion proof
in a signed checkpoint that covers it, consistency proofs from the earlier checkpoints), the CSV
view, the filters, the audit of every export, the page and the command."""

from __future__ import annotations

import base64
import csv
import datetime as dt
import io
import json
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from audit import checkpoints, evidence, merkle, signing, tree
from audit.chain import compute_hash
from audit.events import EventType
from audit.models import AuditEvent, Checkpoint
from audit.services import record_event
from tests.audit.conftest import TEST_ORIGIN
from tests.conftest import client_for
from tests.support import live
from tools.audit_fill import bulk_append

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("signing_key")]

ORIGIN = TEST_ORIGIN


def events(n: int, **fields: Any) -> list[AuditEvent]:
    fields.setdefault("event_type", EventType.LOGIN_FAILED)
    return [record_event(**fields, payload={"attempt": i}) for i in range(n)]


def export(fmt: str = "jsonl", **filters: Any) -> tuple[evidence.Export, bytes]:
    made = evidence.start_export(
        format=fmt, filters=evidence.ExportFilter(**filters), actor=None, via="test"
    )
    return made, b"".join(made.stream())


def bundle(**filters: Any) -> tuple[dict, list[dict], dict]:
    """(header, events, trailer) of a new bundle."""
    _, body = export(**filters)
    lines = [json.loads(line) for line in body.decode("ascii").splitlines()]
    return lines[0], lines[1:-1], lines[-1]


def exported(**filters: Any) -> list[int]:
    return [event["sequence"] for event in bundle(**filters)[1]]


def unb64(hashes: list[str]) -> list[bytes]:
    return [base64.b64decode(h) for h in hashes]


# --- the bundle -----------------------------------------------------------------------------


def test_a_bundle_holds_every_event_with_a_proof_in_its_signed_checkpoint() -> None:
    events(37)
    header, lines, trailer = bundle()
    assert header == {
        "type": "header",
        "format": "oversight-evidence/1",
        "filter": dict.fromkeys(("since", "until", "agent", "person", "event_type", "risk")),
        "generated_at": header["generated_at"],
        "origin": ORIGIN,
        "public_key": signing.signer().vkey,
    }
    assert [line["sequence"] for line in lines] == list(range(1, 38))
    note = signing.verify(trailer["checkpoint"], signing.signer().vkey)
    assert (trailer["type"], trailer["count"], trailer["tree_size"]) == ("trailer", 37, note.size)
    assert note.size == 37  # made by the export: none covered the events before
    stored = AuditEvent.objects.filter(sequence__lte=37).order_by("sequence")
    for line, row in zip(lines, stored, strict=True):
        assert line["type"] == "event"
        assert line["hash"] == row.hash
        assert line["prev_hash"] == row.prev_hash
        assert line["occurred_at"] == row.occurred_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        assert (line["event_type"], line["payload"]) == (row.event_type, row.payload)
        fields = {name: line[name] for name in ("actor_type", "actor_id", "actor_name")}
        assert fields == {"actor_type": "system", "actor_id": "", "actor_name": ""}
        assert compute_hash(row.prev_hash, {**line, "occurred_at": row.occurred_at}) == row.hash
        proof = line["proof"]
        assert (proof["leaf_index"], proof["tree_size"]) == (row.sequence - 1, 37)
        leaf = merkle.leaf_hash(bytes.fromhex(row.hash))
        assert merkle.verify_inclusion(
            row.sequence - 1, 37, leaf, unb64(proof["hashes"]), note.root
        )


def test_the_export_makes_a_checkpoint_only_when_the_latest_does_not_cover_it() -> None:
    events(5)
    checkpoints.make(force=True)
    events(3)
    assert exported(until=AuditEvent.objects.get(sequence=5).occurred_at) == [1, 2, 3, 4, 5]
    assert list(Checkpoint.objects.values_list("size", flat=True)) == [5], "the latest covers"
    _, lines, trailer = bundle()
    assert [line["sequence"] for line in lines] == list(range(1, 10))  # with the first export
    # A new checkpoint, of those 9: this export's own event comes after it.
    assert list(Checkpoint.objects.values_list("size", flat=True)) == [9, 5]
    assert trailer["tree_size"] == 9
    assert AuditEvent.objects.order_by("-sequence").values_list("sequence")[0] == (10,)


def test_the_trailer_proves_every_earlier_checkpoint_consistent_with_its_own() -> None:
    roots = {}
    for n in (3, 5, 8):
        events(n)
        made = checkpoints.make(force=True)
        assert made is not None
        roots[made.size] = bytes(made.root_hash)
    events(4)
    _, _, trailer = bundle()
    size = trailer["tree_size"]
    root = tree.root(size)
    assert [entry["from_size"] for entry in trailer["consistency"]] == sorted(roots)
    for entry in trailer["consistency"]:
        old = entry["from_size"]
        assert merkle.verify_consistency(old, size, roots[old], root, unb64(entry["hashes"]))


def test_the_export_is_recorded_before_it_streams_and_is_not_in_itself() -> None:
    events(4)
    made = evidence.start_export(
        format="jsonl",
        filters=evidence.ExportFilter(event_type=EventType.LOGIN_FAILED),
        actor=None,
        via="test",
    )
    recorded = AuditEvent.objects.get(event_type=EventType.EXPORT_MADE)  # before any byte
    assert recorded.sequence == made.event.sequence == 5
    assert recorded.payload == {
        "format": "jsonl",
        "filters": {
            **dict.fromkeys(evidence.ExportFilter().as_json()),
            "event_type": "login.failed",
        },
        "rows": 4,
        "up_to_sequence": 4,
        "checkpoint": 4,
        "via": "test",
    }
    lines = b"".join(made.stream()).decode().splitlines()
    assert [json.loads(line)["sequence"] for line in lines[1:-1]] == [1, 2, 3, 4]
    # A second export of everything holds the first one's record, but not its own.
    _, body = export()
    sequences = [json.loads(line).get("sequence") for line in body.decode().splitlines()[1:-1]]
    assert sequences == [1, 2, 3, 4, 5]


def test_an_empty_selection_still_makes_a_complete_bundle() -> None:
    events(2)
    header, lines, trailer = bundle(event_type=EventType.REQUEST_DECIDED)
    assert lines == []
    assert trailer["count"] == 0
    assert header["filter"]["event_type"] == "request.decided"
    recorded = AuditEvent.objects.get(event_type=EventType.EXPORT_MADE)
    assert recorded.payload["rows"] == 0


def test_batched_proofs_are_the_trees_proofs() -> None:
    """The export's proofs against audit.merkle's, for every leaf of many tree sizes, in
    batches of several sizes, for consecutive and for scattered leaves."""
    rng = random.Random(7)
    for size in [*range(1, 70), 127, 128, 129, 1000, 1023, 1025]:
        leaves = [merkle.leaf_hash(rng.randbytes(32)) for _ in range(size)]
        lookup = merkle.in_memory(leaves)
        for batch in (1, 3, 64):
            for step in (1, 5):
                proofs = evidence.InclusionProofs(size, lookup)
                indices = list(range(rng.randrange(min(step, size)), size, step))
                for start in range(0, len(indices), batch):
                    some = indices[start : start + batch]
                    proofs.load({i: leaves[i] for i in some} if batch == 3 else some)
                    for index in some:
                        expected = merkle.proof(merkle.inclusion_ranges(index, size), lookup)
                        text = proofs.text(index)
                        got = json.loads(f"[{text}]")
                        assert unb64(got) == expected, (size, index)


def test_a_lookup_of_many_subtrees_reads_them_in_a_few_queries(django_assert_max_num_queries):
    events(300)
    tree.extend()
    wanted = [(0, i) for i in range(0, 300, 7)] + [(1, i) for i in range(150)] + [(5, 3), (8, 0)]
    with django_assert_max_num_queries(2):
        found = evidence.lookup(wanted)
    assert found == tree.lookup(wanted)
    with pytest.raises(KeyError):
        evidence.lookup([(9, 0)])  # 512 leaves: not built


# --- filters --------------------------------------------------------------------------------


@pytest.fixture
def cast(make_user, make_agent) -> dict[str, Any]:
    """A person and two agents, each with a few events of their own."""
    dana = make_user("dana")
    bot, other = make_agent("bot").agent, make_agent("other-bot").agent
    record_event(event_type=EventType.LOGIN_SUCCEEDED, actor=dana, subject=dana)
    record_event(
        event_type=EventType.REQUEST_CREATED,
        actor=bot,
        subject=("approval_request", "1"),
        payload={"risk_level": "high"},
    )
    record_event(
        event_type=EventType.GUARDRAIL_VIOLATION,
        actor=other,
        subject=("violation", "1"),
        payload={"severity": "high"},
    )
    record_event(event_type=EventType.AGENT_STATUS_CHANGED, actor=dana, subject=bot)
    record_event(event_type=EventType.REQUEST_CREATED, actor=bot, payload={"risk_level": "low"})
    record_event(event_type=EventType.LOGIN_FAILED, payload={"risk": "high", "nested": {"x": 1}})
    record_event(event_type=EventType.LOGIN_FAILED, payload={"detail": {"risk_level": "high"}})
    return {"dana": dana, "bot": bot, "other": other}


def sequences_where(**conditions: Any) -> list[int]:
    return sorted(AuditEvent.objects.filter(**conditions).values_list("sequence", flat=True))


def test_an_agent_filter_finds_what_it_did_and_what_was_done_to_it(cast) -> None:
    bot = cast["bot"]
    by = sequences_where(actor_type="agent", actor_id=str(bot.pk))
    about = sequences_where(subject_type="agent", subject_id=str(bot.pk))
    assert exported(agent="bot") == sorted(by + about)
    assert len(by) == 2
    assert len(about) >= 2  # its creation, its key, its status change


def test_a_person_filter_finds_what_they_did(cast) -> None:
    dana = cast["dana"]
    assert exported(person="dana") == sequences_where(actor_type="user", actor_id=str(dana.pk))
    assert len(exported(person="dana")) == 2


def test_a_type_filter(cast) -> None:
    assert exported(event_type="request.created") == sequences_where(event_type="request.created")
    assert len(exported(event_type="request.created")) == 2


def test_a_risk_filter_reads_the_payloads_risk_level_severity_or_risk(cast) -> None:
    high = exported(risk="high")
    assert [AuditEvent.objects.get(sequence=s).event_type for s in high] == [
        "request.created",
        "guardrail.violation",
        "login.failed",
    ]
    assert len(exported(risk="low")) == 1
    assert exported(risk="high", agent="bot") == high[:1]


def test_a_period_filter_is_inclusive(cast) -> None:
    rows = list(AuditEvent.objects.order_by("sequence"))
    third, sixth = rows[2], rows[5]
    assert exported(since=third.occurred_at, until=sixth.occurred_at) == [
        row.sequence for row in rows if third.occurred_at <= row.occurred_at <= sixth.occurred_at
    ]
    later = rows[-1].occurred_at + dt.timedelta(days=1)
    assert exported(since=later) == []


@pytest.mark.parametrize(
    ("filters", "field"),
    [
        ({"agent": "nobody"}, "agent"),
        ({"person": "nobody"}, "person"),
        ({"event_type": "no.such"}, "event_type"),
        ({"risk": "extreme"}, "risk"),
    ],
)
def test_a_filter_naming_nothing_is_refused_and_nothing_is_recorded(filters, field) -> None:
    events(1)
    with pytest.raises(evidence.ExportError) as refused:
        export(**filters)
    assert refused.value.field == field
    assert not AuditEvent.objects.filter(event_type=EventType.EXPORT_MADE).exists()


# --- the CSV view ---------------------------------------------------------------------------


def test_the_csv_view_has_the_canonical_columns_and_the_hashes(cast) -> None:
    made, body = export("csv", agent="bot")
    rows = list(csv.reader(io.StringIO(body.decode("utf-8"))))
    assert tuple(rows[0]) == (
        "sequence",
        "occurred_at",
        "event_type",
        "actor_type",
        "actor_id",
        "actor_name",
        "subject_type",
        "subject_id",
        "payload",
        "prev_hash",
        "hash",
    )
    assert [int(row[0]) for row in rows[1:]] == exported(agent="bot")
    for row in rows[1:]:
        fields: dict[str, Any] = dict(zip(rows[0], row, strict=True))
        stored = AuditEvent.objects.get(sequence=int(fields["sequence"]))
        fields.update(sequence=stored.sequence, occurred_at=stored.occurred_at)
        fields["payload"] = json.loads(fields["payload"])
        assert compute_hash(fields["prev_hash"], fields) == fields["hash"] == stored.hash
    assert made.checkpoint is None  # no proofs, no checkpoint needed
    assert AuditEvent.objects.filter(
        event_type=EventType.EXPORT_MADE, payload__format="csv"
    ).exists()


# --- the page -------------------------------------------------------------------------------


def body(response: Any) -> bytes:
    assert response.streaming  # read as the server reads it, not gathered first
    return b"".join(response.streaming_content)


def test_the_export_page_is_for_compliance_staff(make_user) -> None:
    events(2)
    assert Client().get("/audit/export/").status_code == 302
    approver = client_for(make_user(roles=("approver",), tier="team_lead"))
    assert approver.get("/audit/export/").status_code == 403
    assert approver.post("/audit/export/", {"format": "jsonl"}).status_code == 403
    assert not AuditEvent.objects.filter(event_type=EventType.EXPORT_MADE).exists()
    compliance = client_for(make_user(roles=("compliance",)))
    page = compliance.get("/audit/export/")
    assert page.status_code == 200
    assert signing.signer().vkey in page.content.decode()


def test_the_page_downloads_a_bundle_and_records_who_exported_it(make_user) -> None:
    carol = make_user("carol", roles=("compliance",))
    events(3)
    response = client_for(carol).post("/audit/export/", {"format": "jsonl", "person": "carol"})
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "application/jsonl"
    disposition = response["Content-Disposition"]
    assert disposition.startswith('attachment; filename="oversight-audit-')
    assert disposition.endswith('.jsonl"')
    lines = [json.loads(line) for line in body(response).splitlines()]
    assert lines[0]["filter"]["person"] == "carol"
    assert [line["event_type"] for line in lines[1:-1]] == ["login.succeeded"]  # client_for's
    assert lines[1]["actor_id"] == str(carol.pk)
    recorded = AuditEvent.objects.get(event_type=EventType.EXPORT_MADE)
    assert (recorded.actor_type, recorded.actor_id) == ("user", str(carol.pk))
    assert recorded.payload["via"] == "page"
    assert recorded.payload["rows"] == len(lines) - 2
    # The page lists it.
    page = client_for(carol).get("/audit/export/")
    assert [event.sequence for event in page.context["recent"]] == [recorded.sequence]


def test_the_page_downloads_csv(make_user) -> None:
    compliance = client_for(make_user(roles=("compliance",)))
    events(3)
    response = compliance.post("/audit/export/", {"format": "csv", "event_type": "login.failed"})
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].endswith('.csv"')
    rows = list(csv.reader(io.StringIO(body(response).decode())))
    assert len(rows) == 4


def test_the_page_shows_a_filter_naming_nothing_as_an_error(make_user) -> None:
    compliance = client_for(make_user(roles=("compliance",)))
    response = compliance.post("/audit/export/", {"format": "jsonl", "agent": "nobody"})
    assert response.status_code == 400
    assert "No agent is named" in response.content.decode()
    response = compliance.post(
        "/audit/export/",
        {"format": "csv", "since": "2026-12-02T10:00", "until": "2026-12-01T10:00"},
    )
    assert response.status_code == 400
    assert not AuditEvent.objects.filter(event_type=EventType.EXPORT_MADE).exists()


# --- the command ----------------------------------------------------------------------------


def test_the_command_writes_a_bundle_to_stdout_and_is_audited(cast, capsysbinary) -> None:
    call_command("audit_export", "--format", "jsonl", "--agent", "bot", "--risk", "high")
    out, err = capsysbinary.readouterr()
    recorded = AuditEvent.objects.get(event_type=EventType.EXPORT_MADE)
    assert recorded.actor_type == "system"
    assert recorded.payload["via"] == "command"
    assert b"Exported 1 events" in err
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines[0]["filter"]["agent"] == "bot"
    created = sequences_where(event_type="request.created", payload__risk_level="high")
    assert [line["sequence"] for line in lines[1:-1]] == created


def test_the_command_takes_dates_and_refuses_what_names_nothing(cast, capsysbinary) -> None:
    today = AuditEvent.objects.get(sequence=1).occurred_at.date().isoformat()
    call_command(
        "audit_export", "--format", "csv", "--since", today, "--event-type", "agent.created"
    )
    out, _ = capsysbinary.readouterr()
    assert len(out.decode().splitlines()) == 1 + 2  # the header row and the two agents
    with pytest.raises(CommandError, match="No person has the username"):
        call_command("audit_export", "--format", "csv", "--person", "nobody")
    with pytest.raises(CommandError):
        call_command("audit_export", "--format", "xml")


# --- memory and the real server ------------------------------------------------------------


def signing_env(tmp_path: Path) -> dict[str, str]:
    """The test's key, origin and folder (as `_key` sets them here) for another process."""
    return {
        "OVERSIGHT_AUDIT_SIGNING_KEY": base64.b64encode(b"\x07" * 32).decode(),
        "OVERSIGHT_CHECKPOINT_ORIGIN": ORIGIN,
        "OVERSIGHT_CHECKPOINT_DIR": str(tmp_path / "checkpoints"),
    }


# `manage.py ARGS` that writes its peak resident memory (VmHWM, kB) to the file in argv[1] as it
# exits. Not the kernel's ru_maxrss of the child: that counts the parent's pages the child held
# between fork and exec (here, all of pytest's).
WITH_PEAK = """
import atexit, re, runpy, sys
out = sys.argv.pop(1)
def peak():
    with open("/proc/self/status") as status, open(out, "w") as handle:
        handle.write(re.search(r"VmHWM:\\s+(\\d+)", status.read()).group(1))
atexit.register(peak)
sys.argv[0] = "manage.py"
runpy.run_path("manage.py", run_name="__main__")
"""


def export_in_a_process(tmp_path: Path, fmt: str = "jsonl") -> tuple[Path, float]:
    """`manage.py audit_export` in a process of its own, against the test database: the file and
    the process's peak resident memory in MB."""
    out = tmp_path / f"export-{time.monotonic_ns()}.{fmt}"
    peak = tmp_path / "peak"
    with out.open("wb") as handle:
        subprocess.run(
            [sys.executable, "-c", WITH_PEAK, str(peak), "audit_export", "--format", fmt],
            cwd=live.BASE_DIR,
            env=live.process_env(tmp_path, **signing_env(tmp_path)),
            stdout=handle,
            stderr=subprocess.DEVNULL,
            check=True,
        )
    return out, int(peak.read_text()) / 1024


def verify_in_a_process(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-I",
            "tools/verify_evidence.py",
            str(path),
            "--key",
            signing.signer().vkey,
        ],
        cwd=live.BASE_DIR,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_an_export_streams_in_constant_memory(tmp_path) -> None:
    """Ten times the events, the same peak memory: nothing grows with the export. (The tree is
    extended first, as beat keeps it: extending it is not the export's memory.)"""
    bulk_append(5_000)
    checkpoints.make(force=True)
    small, small_peak = export_in_a_process(tmp_path)
    bulk_append(45_000)
    checkpoints.make(force=True)
    large, large_peak = export_in_a_process(tmp_path)
    assert large.stat().st_size > 9 * small.stat().st_size  # some 50 MB against 5 MB
    assert large_peak - small_peak < 12, (small_peak, large_peak)
    assert large_peak < 150
    assert export_in_a_process(tmp_path, "csv")[1] < 150
    result = verify_in_a_process(large)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("OK: 50001 events")  # with the first export's record


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_real_server_streams_a_download_that_verifies(tmp_path, make_user) -> None:
    """Through uvicorn (ASGI), where Django would gather a plain iterator's body in memory
    first: the page's download is the whole bundle, and it verifies."""
    make_user("carol", roles=("compliance",))
    bulk_append(12_000)
    server = live.start_web(tmp_path, **signing_env(tmp_path))
    try:
        client = live.logged_in(server.url, "carol", timeout=60)
        client.get("/audit/export/")
        path = tmp_path / "download.jsonl"
        data = {"format": "jsonl", "csrfmiddlewaretoken": client.cookies["csrftoken"]}
        with (
            client.stream("POST", "/audit/export/", data=data) as response,
            path.open("wb") as out,
        ):
            assert response.status_code == 200
            assert response.headers["content-disposition"].startswith("attachment;")
            for chunk in response.iter_bytes():
                out.write(chunk)
        log = server.proc.output()
    finally:
        server.proc.stop()
    # Django warns when it has to gather a streamed body first.
    assert "must consume synchronous iterators" not in log
    result = verify_in_a_process(path)
    assert result.returncode == 0, result.stderr
    count = AuditEvent.objects.get(event_type=EventType.EXPORT_MADE).payload["rows"]
    assert count > 12_000
    assert result.stdout.startswith(f"OK: {count} events")
