"""The audit section of `make bench` (BENCH=audit): SPEC §10.5 on a trail of a million events,
its verify_chain, the evidence export's rate and peak memory, and the offline verifier on that
bundle. tools/bench.py runs it after the scale fill."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

from tools.stack import BASE_DIR, manage

AUDIT_EVENTS = 1_000_000


def audit_trail(env: dict[str, str], tmp: Path) -> None:
    """SPEC §10.5 on a trail of AUDIT_EVENTS events (filled with tools/audit_fill, then its Merkle
    tree built and a checkpoint signed, as beat keeps them in production): verify_chain (chain,
    Merkle root, checkpoints) < 10 s; the evidence bundle of all of it, exported by
    `manage.py audit_export` in a process of its own, at >= 20 000 events/s with a peak RSS
    < 150 MB; the offline verifier on that bundle < 60 s."""
    env = {
        **env,
        "OVERSIGHT_AUDIT_SIGNING_KEY_FILE": str(tmp / "audit-signing-key"),
        "OVERSIGHT_CHECKPOINT_DIR": str(tmp / "checkpoints"),
    }
    print(f"\n§10.5 the audit trail at {AUDIT_EVENTS:,} events")
    script = (
        "import json, time\n"
        "from django.db import connection\n"
        "from audit import checkpoints\n"
        "from audit.models import AuditEvent\n"
        "from tools.audit_fill import bulk_append\n"
        "head = AuditEvent.objects.order_by('-sequence').values_list('sequence', flat=True)"
        ".first() or 0\n"
        f"added = max(0, {AUDIT_EVENTS} - head)\n"
        "started = time.perf_counter()\n"
        "bulk_append(added, batch=20_000)\n"
        "with connection.cursor() as cursor:\n"
        "    cursor.execute('ANALYZE audit_auditevent')\n"
        "filled = time.perf_counter() - started\n"
        "started = time.perf_counter()\n"
        "made = checkpoints.make(force=True)\n"
        "tree = time.perf_counter() - started\n"
        "size = made.size if made else checkpoints.latest().size\n"
        "print(json.dumps({'added': added, 'filled': filled, 'tree': tree, 'size': size}))\n"
    )
    prepared = json.loads(manage(env, "shell", "--no-imports", "-c", script).splitlines()[-1])
    print(
        f"  (filled {prepared['added']:,} events in {prepared['filled']:.0f} s; the Merkle tree "
        f"and a checkpoint of {prepared['size']:,} events in {prepared['tree']:.1f} s)"
    )
    script = (
        "import resource, time\n"
        "from audit.integrity import verify_chain\n"
        "started = time.perf_counter()\n"
        "result = verify_chain()\n"
        "seconds = time.perf_counter() - started\n"
        "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
        "print(result.intact, result.events_checked, result.checkpoint_size, seconds, peak)\n"
    )
    intact, checked, covered, seconds, peak = manage(
        env, "shell", "--no-imports", "-c", script
    ).split()[-5:]
    verdict = "meets" if float(seconds) < 10 else "MISSES"
    print(
        f"  verify_chain: {int(checked):,} events, chain + Merkle root + checkpoints, in "
        f"{float(seconds):.1f} s ({verdict} < 10 s); intact={intact}, consistent with the "
        f"checkpoint of {covered}; peak RSS {float(peak):.0f} MB"
    )
    bundle = tmp / "evidence.jsonl"
    export = _measured(["manage.py", "audit_export", "--format", "jsonl"], env, bundle)
    if export.status:
        print(f"  the export failed (exit status {export.status})")
        return
    with bundle.open("rb") as handle:
        header = json.loads(handle.readline())
    events = _bundle_events(bundle)
    rate = events / export.seconds
    print(
        f"  export (manage.py audit_export): {events:,} events, "
        f"{bundle.stat().st_size / 1e9:.2f} GB, in {export.seconds:.1f} s: {rate:,.0f} events/s "
        f"({'meets' if rate >= 20_000 else 'MISSES'} >= 20 000), peak RSS {export.peak_mb:.0f} MB "
        f"({'meets' if export.peak_mb < 150 else 'MISSES'} < 150 MB)"
    )
    output = tmp / "verifier.out"
    verifier = _measured(
        ["tools/verify_evidence.py", str(bundle), "--key", header["public_key"]], env, output
    )
    print(
        f"  offline verifier: {verifier.seconds:.1f} s "
        f"({'meets' if verifier.seconds < 60 else 'MISSES'} < 60 s), exit status "
        f"{verifier.status}, peak RSS {verifier.peak_mb:.0f} MB: {output.read_text().strip()}"
    )
    bundle.unlink()


# Runs the script in argv[2] with the arguments after it, and writes its peak resident memory
# (VmHWM, kB) to the file in argv[1] as it exits. Not the kernel's ru_maxrss of a child: that
# also counts the parent's pages the child held between fork and exec.
WITH_PEAK = """
import atexit, re, runpy, sys
out = sys.argv.pop(1)
def peak():
    with open("/proc/self/status") as status, open(out, "w") as handle:
        handle.write(re.search(r"VmHWM:\\s+(\\d+)", status.read()).group(1))
atexit.register(peak)
sys.argv.pop(0)
runpy.run_path(sys.argv[0], run_name="__main__")
"""


class Measured(NamedTuple):
    seconds: float
    peak_mb: float
    status: int


def _measured(script: list[str], env: dict[str, str], out: Path) -> Measured:
    """Run a Python script (and its arguments) with its stdout to `out`: wall time, peak RSS."""
    peak, errors = out.with_suffix(".peak"), out.with_suffix(".err")
    with out.open("wb") as handle, errors.open("wb") as error_handle:
        started = time.perf_counter()
        done = subprocess.run(  # noqa: S603 - our own interpreter and scripts
            [sys.executable, "-c", WITH_PEAK, str(peak), *script],
            cwd=BASE_DIR,
            env=env,
            stdout=handle,
            stderr=error_handle,
            check=False,
        )
        seconds = time.perf_counter() - started
    if done.returncode:
        sys.stderr.write(errors.read_text())
    return Measured(seconds, int(peak.read_text()) / 1024, done.returncode)


def _bundle_events(path: Path) -> int:
    """The events of a bundle: its lines but the header and the trailer."""
    with path.open("rb") as handle:
        return sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 20), b"")) - 2
