"""The traffic: agents and a person calling at steady rates, and the receiver of the agents'
callbacks."""

from __future__ import annotations

import asyncio
import html
import itertools
import random
import re
import time
import uuid
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

from tools.soak import MANAGER, PASSWORD

# Calls started per second at --rate 1. Creates come in three kinds: "timed" (4-30 s, nobody
# reads them: their escalation and expiry are the timer sample), "polled" (15-45 s, long-polled
# until decided; a person decides some), "decided" (90-300 s, past the 60 s horizon so the tick
# hands their deadlines over; a person decides or the agent cancels within 5-120 s).
RATES = {
    "check": 12.0,
    "timed": 0.8,
    "polled": 0.5,
    "decided": 0.7,
    "cost": 4.0,
    "read": 1.0,
    "list": 0.3,
    "me": 0.2,
}
MAX_IN_FLIGHT = 64  # per stream: past it, a call is skipped (and counted), not queued
LONG_POLL_SECONDS = 25
MODELS = ["gpt-4o-mini", "gpt-4o", "claude-sonnet-4-5", "claude-haiku-4-5", "gemini-2.5-flash"]
UNKNOWN_MODEL = "soak-private-model"


@dataclass
class Endpoint:
    statuses: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)


class Calls:
    """Every call's answer (status, or the client error) and time, by endpoint."""

    def __init__(self) -> None:
        self.endpoints: dict[str, Endpoint] = defaultdict(Endpoint)
        self.skipped: Counter[str] = Counter()

    async def send(
        self, client: httpx.AsyncClient, label: str, method: str, url: str, **kwargs: Any
    ) -> httpx.Response | None:
        endpoint = self.endpoints[label]
        started = time.perf_counter()
        try:
            response = await client.request(method, url, **kwargs)
        except httpx.TimeoutException:
            endpoint.statuses["timeout"] += 1
            return None
        except httpx.TransportError as exc:
            endpoint.statuses[type(exc).__name__] += 1
            return None
        endpoint.latencies.append(time.perf_counter() - started)
        endpoint.statuses[str(response.status_code)] += 1
        return response


@dataclass(frozen=True)
class Agent:
    index: int
    key: str
    webhook_secret: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@dataclass(frozen=True)
class Created:
    kind: str  # timed, polled or decided (see RATES)
    callback: bool


# --- the callback receiver --------------------------------------------------------------------


@dataclass
class Arrival:
    at: float
    delivery: str
    request_id: str
    decided_at: float


class CallbackReceiver:
    """A local HTTP endpoint for the agents' callbacks (`/hook/<agent index>`): it checks each
    signature with that agent's webhook secret, answers 200 and notes when it arrived."""

    def __init__(self, agents: list[Agent]) -> None:
        self.agents = agents
        self.arrivals: list[Arrival] = []
        self.bad: list[str] = []
        self.url = ""
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/hook"

    def close(self) -> None:
        if self.server is not None:
            self.server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        from oversight_client import InvalidSignature, verify_callback

        try:
            request_line = await reader.readline()
            headers: dict[str, str] = {}
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            arrived = time.time()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
            agent = self.agents[int(request_line.split()[1].rsplit(b"/", 1)[1])]
            try:
                sent = verify_callback(body=body, headers=headers, secret=agent.webhook_secret)
            except InvalidSignature as exc:
                self.bad.append(str(exc))
                return
            decided = datetime.fromisoformat(sent["decision"]["decided_at"]).timestamp()
            delivery = headers.get("x-oversight-delivery", "")
            self.arrivals.append(Arrival(arrived, delivery, sent["id"], decided))
        except (OSError, ValueError, KeyError, IndexError, asyncio.IncompleteReadError) as exc:
            self.bad.append(repr(exc))
        finally:
            writer.close()


# --- the traffic ------------------------------------------------------------------------------

CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
SEEN_HASH = re.compile(r'name="seen_params_sha256" value="([^"]*)"')
ARGUMENTS = re.compile(r'<textarea[^>]*name="modified_params"[^>]*>(.*?)</textarea>', re.DOTALL)
REQUEST_PAGE = "GET /requests/{id}/ (page)"


class Traffic:
    """Agents and a person calling at steady rates, each stream an open loop: a call starts on
    time whether or not the previous one has answered, as independent agents would."""

    def __init__(
        self, base: str, agents: list[Agent], receiver: CallbackReceiver, rate: float, seed: int
    ) -> None:
        self.base = base
        self.rng = random.Random(seed)  # noqa: S311 - traffic, not secrets; a seed repeats a run
        self.agents = agents
        self.receiver = receiver
        self.rate = rate
        self.calls = Calls()
        # Long-polls are cancelled at the end (their wait is no answer), so no timeout of ours
        # cuts one short; other calls get 30 s.
        self.api = httpx.AsyncClient(
            base_url=base, timeout=30, limits=httpx.Limits(max_connections=300)
        )
        self.person = httpx.AsyncClient(base_url=base, timeout=30)
        self.created: dict[str, Created] = {}
        self.readable: deque[tuple[Agent, str]] = deque(maxlen=200)
        self.woken: list[float] = []  # long-poll answered, seconds after the decision
        self.tasks: set[asyncio.Task[None]] = set()
        self.streams: list[asyncio.Task[None]] = []
        self.counter = itertools.count()

    async def log_in(self) -> None:
        """Log the person in as a browser does: the form's CSRF token, then the POST."""
        await self.person.get("/login/")
        response = await self.calls.send(
            self.person,
            "POST /login/",
            "POST",
            "/login/",
            data={
                "username": MANAGER,
                "password": PASSWORD,
                "csrfmiddlewaretoken": self.person.cookies["csrftoken"],
            },
            headers={"Origin": self.base, "Referer": f"{self.base}/login/"},
        )
        if response is None or response.status_code != 302:
            raise RuntimeError(f"{MANAGER} could not log in: {response}")

    def start(self) -> None:
        calls: dict[str, Callable[[], Coroutine[Any, Any, None]]] = {
            "check": self.check,
            "timed": lambda: self.create("timed"),
            "polled": lambda: self.create("polled"),
            "decided": lambda: self.create("decided"),
            "cost": self.report_cost,
            "read": self.read,
            "list": self.list_pending,
            "me": self.me,
        }
        for name, call in calls.items():
            self.streams.append(asyncio.create_task(self._steady(name, RATES[name], call)))

    async def stop(self) -> None:
        """Stop starting calls; give those in flight 5 s; cancel the rest (long-polls, and
        decisions still waiting for their moment)."""
        for stream in self.streams:
            stream.cancel()
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=5)
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.streams, *self.tasks, return_exceptions=True)
        await self.api.aclose()
        await self.person.aclose()

    async def _steady(
        self, name: str, rate: float, call: Callable[[], Coroutine[Any, Any, None]]
    ) -> None:
        in_flight: set[asyncio.Task[None]] = set()
        interval = 1 / (rate * self.rate)
        while True:
            await asyncio.sleep(self.rng.uniform(0.5, 1.5) * interval)
            if len(in_flight) >= MAX_IN_FLIGHT:
                self.calls.skipped[name] += 1
                continue
            task = self._spawn(call())
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    # The agents' calls.

    async def check(self) -> None:
        roll = self.rng.random()
        body: dict[str, Any]
        if roll < 0.75:
            body = {"action": "read_file", "params": {"path": f"/srv/data/{next(self.counter)}"}}
        elif roll < 0.85:  # refused: a forbidden pattern (a violation and its audit event)
            body = {"action": "read_file", "params": {"path": "/srv/app/.env"}}
        elif roll < 0.95:
            body = {"action": "database_query", "params": {"sql": "SELECT id FROM orders"}}
        else:
            body = {"action": "external_api_call", "params": {"url": "https://api.example.com"},
                    "estimated_cost_cents": 40}  # fmt: skip
        agent = self.rng.choice(self.agents)
        await self.calls.send(
            self.api, "POST /api/v1/guardrails/check", "POST", "/api/v1/guardrails/check",
            json=body, headers=agent.headers,
        )  # fmt: skip

    async def create(self, kind: str) -> None:
        agent = self.rng.choice(self.agents)
        timeout = {"timed": (4, 30), "polled": (15, 45), "decided": (90, 300)}[kind]
        body: dict[str, Any] = {
            "action": "read_file",
            "params": {"path": f"/srv/reports/{next(self.counter)}.csv"},
            "risk_level": self.rng.choice(["low", "medium"]),
            "urgency": self.rng.choice(["low", "normal", "high"]),
            "justification": f"soak: {kind}",
            "timeout_seconds": self.rng.randint(*timeout),
        }
        roll = self.rng.random()
        if roll < 0.03:  # refused by the guardrails (403 forbidden_pattern)
            body.update(action="write_file", params={"path": "/etc/shadow"})
        elif roll < 0.13:  # write_file: 100 an hour per agent, well within at this rate
            body.update(action="write_file", params={"path": f"/srv/out/{next(self.counter)}"})
        callback = kind != "polled" and self.rng.random() < 0.5
        if callback:
            body["callback_url"] = f"{self.receiver.url}/{agent.index}"
        if kind == "decided" and self.rng.random() < 0.5:
            body["estimated_cost_cents"] = self.rng.randint(5, 200)
        headers = dict(agent.headers)
        if self.rng.random() < 0.5:
            headers["Idempotency-Key"] = str(uuid.uuid4())
        response = await self.calls.send(
            self.api, "POST /api/v1/approval-requests", "POST", "/api/v1/approval-requests",
            json=body, headers=headers,
        )  # fmt: skip
        if response is None or response.status_code != 201:
            return
        request_id = response.json()["id"]
        self.created[request_id] = Created(kind, callback)
        if kind == "polled":
            if self.rng.random() < 0.3:
                self._spawn(self.decide(request_id, self.rng.uniform(3, 12)))
            await self.long_poll(agent, request_id)
        elif kind == "decided":
            self.readable.append((agent, request_id))
            delay = self.rng.uniform(5, 120)
            if self.rng.random() < 0.1:
                self._spawn(self.cancel(agent, request_id, delay))
            else:
                self._spawn(self.decide(request_id, delay, agent=agent))

    async def long_poll(self, agent: Agent, request_id: str) -> None:
        while True:
            response = await self.calls.send(
                self.api,
                "GET /api/v1/approval-requests/{id}?wait=",
                "GET",
                f"/api/v1/approval-requests/{request_id}",
                params={"wait": LONG_POLL_SECONDS},
                headers=agent.headers,
                timeout=None,
            )
            if response is None:
                return
            if response.status_code == 429:  # a cap on waiting agents: come back as told
                await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
                continue
            if response.status_code != 200:
                return
            answer = response.json()
            if answer["status"] != "pending":
                decided = datetime.fromisoformat(answer["decision"]["decided_at"]).timestamp()
                self.woken.append(time.time() - decided)
                return

    async def cancel(self, agent: Agent, request_id: str, delay: float) -> None:
        await asyncio.sleep(delay)
        await self.calls.send(
            self.api,
            "POST /api/v1/approval-requests/{id}/cancel",
            "POST",
            f"/api/v1/approval-requests/{request_id}/cancel",
            headers=agent.headers,
        )

    async def read(self) -> None:
        if not self.readable:
            return
        agent, request_id = self.rng.choice(self.readable)
        await self.calls.send(
            self.api, "GET /api/v1/approval-requests/{id}", "GET",
            f"/api/v1/approval-requests/{request_id}", headers=agent.headers,
        )  # fmt: skip

    async def list_pending(self) -> None:
        await self.calls.send(
            self.api, "GET /api/v1/approval-requests?status=pending", "GET",
            "/api/v1/approval-requests", params={"status": "pending", "page_size": 20},
            headers=self.rng.choice(self.agents).headers,
        )  # fmt: skip

    async def me(self) -> None:
        await self.calls.send(
            self.api, "GET /api/v1/agents/me", "GET", "/api/v1/agents/me",
            headers=self.rng.choice(self.agents).headers,
        )  # fmt: skip

    async def report_cost(
        self, agent: Agent | None = None, task_id: str = "", model: str = ""
    ) -> None:
        agent = agent or self.rng.choice(self.agents)
        if not model:
            model = UNKNOWN_MODEL if self.rng.random() < 0.01 else self.rng.choice(MODELS)
        body = {
            "model": model,
            "input_tokens": self.rng.randint(100, 20_000),
            "output_tokens": self.rng.randint(10, 2_000),
            "task_id": task_id,
        }
        headers = dict(agent.headers)
        if self.rng.random() < 0.3:
            headers["Idempotency-Key"] = str(uuid.uuid4())
        await self.calls.send(
            self.api, "POST /api/v1/costs", "POST", "/api/v1/costs", json=body, headers=headers
        )

    # The person's decisions, on the request page as a browser makes them.

    async def decide(self, request_id: str, delay: float, agent: Agent | None = None) -> None:
        await asyncio.sleep(delay)
        path = f"/requests/{request_id}/"
        page = await self.calls.send(self.person, REQUEST_PAGE, "GET", path)
        if page is None or page.status_code != 200:
            return
        token = CSRF.search(page.text)
        if token is None or 'id="approve-form"' not in page.text:
            return  # decided or expired meanwhile: the page shows no form
        approve = self.rng.random() < 0.75
        data = {"csrfmiddlewaretoken": html.unescape(token.group(1))}
        if approve:
            seen = SEEN_HASH.search(page.text)
            arguments = ARGUMENTS.search(page.text)
            data.update(
                comment="Looks right.",
                seen_params_sha256=seen.group(1) if seen else "",
                # A textarea's content starts after the newline that follows its tag.
                modified_params=html.unescape(arguments.group(1)).removeprefix("\n")
                if arguments
                else "",
            )
        else:
            data["reason"] = "Not this week."
        verb = "approve" if approve else "reject"
        response = await self.calls.send(
            self.person, f"POST /requests/{{id}}/{verb}", "POST", f"{path}{verb}", data=data,
            headers={"Origin": self.base, "Referer": f"{self.base}{path}"},
        )  # fmt: skip
        if response is None or response.status_code != 302:
            return
        await self.calls.send(
            self.person, "GET / (inbox page)", "GET", response.headers["location"]
        )
        if approve and agent is not None:  # the agent acts, and reports what it cost
            await self.report_cost(agent, task_id=request_id, model=self.rng.choice(MODELS))
