"""A fake Slack: a real local HTTP server speaking the Web API's shape, and the signed
interactions Slack would send to the app.

`FakeSlack` answers `POST /api/<method>` as Slack does (HTTP 200, `{"ok": true, ...}` or
`{"ok": false, "error": ...}`; JSON or form-encoded arguments; the bot token checked) for the
methods Oversight calls: `chat.postMessage`, `chat.update`, `chat.postEphemeral`, `views.open`,
`users.info`. It records every call, keeps the messages it holds (so an update of an unknown
message fails as in Slack), and can be told to fail (`failing`: HTTP 500). Nothing in the app
under test is replaced: its calls go over a socket, through `oversight.outbound`.

`interaction_body` and `signed_headers` make what Slack posts to the interactions endpoint: a
form body `payload=<json>` signed with v0 (`X-Slack-Signature`, `X-Slack-Request-Timestamp`), or
signed wrongly, or with an old timestamp, as a test asks.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode

TOKEN = "xoxb-test-token"
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


class FakeSlack:
    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self.calls: list[dict[str, Any]] = []
        self.messages: dict[tuple[str, str], dict[str, Any]] = {}  # (channel, ts) → content
        self.users: dict[str, dict[str, Any]] = {}  # id → users.info's `user`
        self.failing = False
        # Called with the method's name before it is answered, in the server's thread.
        self.before_answer: Callable[[str], None] | None = None
        self._lock = threading.Lock()
        self._ts = itertools.count(1)
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                method = self.path.removeprefix("/api/")
                if fake.failing:
                    fake._record(method, {}, dict(self.headers))
                    self._answer(500, {"ok": False, "error": "fatal_error"})
                    return
                if self.headers.get("Content-Type", "").startswith("application/json"):
                    arguments = json.loads(body or b"{}")
                else:
                    arguments = {k: v[0] for k, v in parse_qs(body.decode()).items()}
                fake._record(method, arguments, dict(self.headers))
                if fake.before_answer is not None:
                    fake.before_answer(method)
                if self.headers.get("Authorization") != f"Bearer {fake.token}":
                    self._answer(200, {"ok": False, "error": "invalid_auth"})
                    return
                self._answer(200, fake._method(method, arguments))

            def _answer(self, status: int, content: dict[str, Any]) -> None:
                data = json.dumps(content).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _record(self, method: str, arguments: dict[str, Any], headers: dict[str, str]) -> None:
        with self._lock:
            self.calls.append({"method": method, "args": arguments, "headers": headers})

    def calls_of(self, method: str) -> list[dict[str, Any]]:
        with self._lock:
            return [call["args"] for call in self.calls if call["method"] == method]

    def _method(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            if method == "chat.postMessage":
                if not args.get("channel"):
                    return {"ok": False, "error": "channel_not_found"}
                ts = f"{int(time.time())}.{next(self._ts):06d}"
                self.messages[(args["channel"], ts)] = args
                return {"ok": True, "channel": args["channel"], "ts": ts, "message": {}}
            if method == "chat.update":
                key = (args.get("channel"), args.get("ts"))
                if key not in self.messages:
                    return {"ok": False, "error": "message_not_found"}
                self.messages[key] = args
                return {"ok": True, "channel": key[0], "ts": key[1]}
            if method == "chat.postEphemeral":
                if not args.get("user") or not args.get("channel"):
                    return {"ok": False, "error": "user_not_in_channel"}
                return {"ok": True, "message_ts": f"{int(time.time())}.{next(self._ts):06d}"}
            if method == "views.open":
                if not args.get("trigger_id") or args["trigger_id"] == "expired":
                    return {"ok": False, "error": "expired_trigger_id"}
                return {"ok": True, "view": {"id": "V0FAKE", **args.get("view", {})}}
            if method == "users.info":
                user = self.users.get(args.get("user", ""))
                if user is None:
                    return {"ok": False, "error": "user_not_found"}
                return {"ok": True, "user": user}
            return {"ok": False, "error": "unknown_method"}

    def add_user(self, user_id: str, email: str, *, confirmed: bool = True) -> None:
        self.users[user_id] = {
            "id": user_id,
            "team_id": "T0FAKE",
            "deleted": False,
            "is_bot": False,
            "is_email_confirmed": confirmed,
            "profile": {"email": email, "real_name": user_id},
        }

    def message_for(self, channel: str) -> dict[str, Any]:
        """The one message held in `channel`, as last posted or updated."""
        with self._lock:
            found = [content for (ch, _), content in self.messages.items() if ch == channel]
        assert len(found) == 1, found
        return found[0]


# --- what Slack sends to the app -------------------------------------------------------------


def interaction_body(payload: dict[str, Any]) -> bytes:
    return urlencode({"payload": json.dumps(payload)}).encode()


def signed_headers(
    body: bytes, *, secret: str = SIGNING_SECRET, timestamp: int | None = None
) -> dict[str, str]:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    mac = hmac.new(secret.encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256)
    return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": f"v0={mac.hexdigest()}"}


_clicks = itertools.count(1)


def block_action(
    action_id: str, value: str, *, user: str, channel: str = "C0LEADS", trigger: str = "T123"
) -> dict[str, Any]:
    """A click on a button of a message (Slack's `block_actions` payload, the fields used)."""
    return {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower(), "team_id": "T0FAKE"},
        "team": {"id": "T0FAKE", "domain": "fake"},
        "api_app_id": "A0FAKE",
        "trigger_id": trigger,
        "container": {"type": "message", "channel_id": channel, "message_ts": "1.000001"},
        "channel": {"id": channel, "name": "approvals"},
        "response_url": "https://hooks.slack.invalid/actions/x",
        "actions": [
            {
                "action_id": action_id,
                "block_id": "decide",
                "type": "button",
                "value": value,
                # Each click has its own time, so two clicks are two signatures (not a replay).
                "action_ts": f"{next(_clicks)}.{time.time_ns()}",
            }
        ],
    }


def reject_submission(
    request_id: str, reason: str, *, user: str, channel: str = "C0LEADS"
) -> dict[str, Any]:
    """The reject modal's submission (Slack's `view_submission` payload, the fields used)."""
    return {
        "type": "view_submission",
        "user": {"id": user, "team_id": "T0FAKE"},
        "team": {"id": "T0FAKE"},
        "view": {
            "id": "V0FAKE",
            "callback_id": "oversight_reject_modal",
            "private_metadata": json.dumps({"request_id": request_id, "channel_id": channel}),
            "state": {
                "values": {
                    "reason": {"reason_input": {"type": "plain_text_input", "value": reason}}
                }
            },
        },
    }
