"""The benchmark's load generator: a lean keep-alive HTTP/1.1 client over asyncio (so it costs
as little CPU as possible on the shared cores; its CPU time is reported), and the rounds that
measure a call against a floor in the same run (`against_floor`)."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

CONCURRENCY = 32


@dataclass
class Result:
    name: str
    latencies: list[float]
    errors: int
    seconds: float
    client_cpu: float

    @property
    def throughput(self) -> float:
        return len(self.latencies) / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return (
            ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000
            if ordered
            else float("nan")
        )

    def line(self) -> str:
        return (
            f"  {self.name:<34} {self.throughput:8.0f} req/s"
            f"   p50 {self.percentile(0.5):7.1f} ms   p99 {self.percentile(0.99):7.1f} ms"
            f"   errors {self.errors}   client CPU {self.client_cpu:.1f} s"
        )


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, payload: bytes
) -> int:
    writer.write(payload)
    status_line = await reader.readline()
    status = int(status_line.split()[1])
    length = 0
    chunked = False
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        if name.lower() == "content-length":
            length = int(value)
        elif name.lower() == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
    if chunked:
        while True:
            size = int((await reader.readline()).strip(), 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    return status


async def _load(
    port: int, payloads: list[Callable[[], bytes]], *, warmup: float, duration: float
) -> tuple[list[float], int]:
    latencies: list[float] = []
    errors = 0
    start = time.perf_counter()
    measure_from = start + warmup
    stop_at = measure_from + duration

    async def client(make_payload: Callable[[], bytes]) -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while True:
                sent = time.perf_counter()
                if sent >= stop_at:
                    return
                status = await _exchange(reader, writer, make_payload())
                done = time.perf_counter()
                if sent >= measure_from:
                    latencies.append(done - sent)
                    errors += not 200 <= status < 300
        finally:
            writer.close()

    await asyncio.gather(*(client(payload) for payload in payloads))
    return latencies, errors


def measure(
    name: str, port: int, payloads: list[Callable[[], bytes]], *, warmup: float, duration: float
) -> Result:
    """One client per entry of `payloads`; each entry makes that client's requests."""
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    latencies, errors = asyncio.run(_load(port, payloads, warmup=warmup, duration=duration))
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    return Result(name, latencies, errors, duration, cpu)


def get(path: str) -> Callable[[], bytes]:
    payload = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    return lambda: payload


def post_json(
    path: str, key: str | list[str], body: Callable[[], dict[str, object]]
) -> Callable[[], bytes]:
    """A client's POSTs; with several keys, it takes them in turn (one agent each)."""
    keys = itertools.cycle([key] if isinstance(key, str) else key)

    def make() -> bytes:
        data = json.dumps(body()).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {next(keys)}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
        )
        return head.encode() + data

    return make


ROUNDS = 5  # this VM's speed drifts by up to 2x between seconds: more, shorter rounds


def against_floor(
    name: str,
    short: str,
    port: int,
    payloads: list[Callable[[], bytes]],
    *,
    warmup: float,
    duration: float,
    reference: bool = False,
) -> dict[str, float]:
    """Measure `payloads` and the floor in ROUNDS rounds, each scenario once a round, so that a
    burst of other work on the machine weighs on all alike; print each and the ratios; return
    the median ratio of the rounds' throughputs against each base.

    With `reference`, the same bare view on the agent API's own middleware stack (/api/v1/health)
    is measured in the same rounds too: against it, the ratio is what the measured call costs
    beyond the stack it runs on. The order within a round rotates, so that no scenario always
    follows the measured call (and the background work its writes set off).
    """
    scenarios: list[tuple[str, list[Callable[[], bytes]]]] = [
        ("floor", [get(FLOOR_PATH)] * CONCURRENCY),
        (short, payloads),
    ]
    if reference:
        scenarios.append(("reference", [get(REFERENCE_PATH)] * CONCURRENCY))
    rounds: dict[str, list[Result]] = {label: [] for label, _ in scenarios}
    for n in range(ROUNDS):
        turn = n % len(scenarios)
        for label, load in scenarios[turn:] + scenarios[:turn]:
            rounds[label].append(
                measure(label, port, load, warmup=warmup, duration=duration / ROUNDS)
            )
    titles = {
        "floor": f"floor: GET {FLOOR_PATH} (bare JSON view)",
        short: name,
        "reference": f"reference: GET {REFERENCE_PATH} (the same)",
    }
    totals = {label: combined(titles[label], results) for label, results in rounds.items()}
    for result in totals.values():
        print(result.line())
    print(f"  (median of the floor {statistics.median(totals['floor'].latencies) * 1000:.1f} ms)")
    return {
        base: _print_ratio(short, base, rounds[base], rounds[short])
        for base in rounds
        if base != short
    }


FLOOR_PATH = "/healthz"
REFERENCE_PATH = "/api/v1/health"


def _print_ratio(short: str, base: str, bases: list[Result], measured: list[Result]) -> float:
    ratios = [m.throughput / b.throughput for b, m in zip(bases, measured, strict=True)]
    p99 = combined(base, bases).percentile(0.99) / combined(short, measured).percentile(0.99)
    median = statistics.median(ratios)
    print(
        f"  ratio {short}/{base}: throughput {median:.2f} (median of rounds "
        f"{', '.join(f'{r:.2f}' for r in ratios)}), p99 {p99:.2f} ({base} p99 / {short} p99)"
    )
    errors = sum(result.errors for result in (*bases, *measured))
    if errors:
        print(f"  ({errors} answers were errors: this ratio does not count)")
        return math.nan
    return median


def combined(name: str, results: list[Result]) -> Result:
    return Result(
        name,
        [latency for result in results for latency in result.latencies],
        sum(result.errors for result in results),
        sum(result.seconds for result in results),
        sum(result.client_cpu for result in results),
    )
