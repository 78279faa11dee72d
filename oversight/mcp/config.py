"""The gateway's config file (SPEC §13), read once at start and checked whole: every problem is
reported with where it is, and the gateway does not start with a config it half understands."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

URGENCIES = ("low", "normal", "high", "critical")
RISK_LEVELS = ("low", "medium", "high", "critical")

# A server's name is the first part of its tools' names (`files.read_file`) and of their default
# action names (`mcp.files.read_file`): no dots, nothing a policy name or a URL would trip on.
SERVER_NAME = re.compile(r"^[A-Za-z0-9_-]{1,40}$")


class ConfigError(Exception):
    """The config file cannot be used; the message lists every problem found."""


@dataclass(frozen=True)
class ServerSpec:
    """One upstream MCP server: a command to run (stdio) or a streamable-HTTP URL."""

    name: str
    command: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    url: str | None = None

    @property
    def kind(self) -> str:
        return "http" if self.url else "stdio"


@dataclass(frozen=True)
class GatewayConfig:
    oversight_url: str
    servers: dict[str, ServerSpec]
    host: str = "127.0.0.1"
    port: int = 8765
    tools: dict[str, str] = field(default_factory=dict)  # `<server>.<tool>` -> action name
    urgency: str = "normal"
    risk_level: str | None = None  # the agent's claim; None: the policy's
    # Seconds a forwarded call may take upstream before the client gets an error.
    call_timeout: float = 120.0

    def action_for(self, tool: str) -> str:
        """The policy action a client-facing tool name is checked as."""
        return self.tools.get(tool) or f"mcp.{tool}"


# `${NAME}` or `${NAME:-default}` in a value of the file is the environment's NAME: one file
# serves `make run`, `make mcp` and compose (deploy/mcp.yaml). A value that is one variable and
# nothing else is read as YAML (`port: ${PORT:-8765}` is a number).
VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def load(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> GatewayConfig:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror}).") from None
    return loads(text, source=str(path), environ=os.environ if environ is None else environ)


class _Loader(yaml.SafeLoader):
    """YAML without duplicate keys: the second of two `servers: files` entries is a mistake
    to report, not a silent replacement of the first."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"{key!r} is given twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def loads(text: str, *, source: str, environ: Mapping[str, str]) -> GatewayConfig:
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML ({exc}).") from None
    missing: list[str] = []
    data = _expand(data, environ, missing)
    if missing:
        names = ", ".join(sorted(set(missing)))
        raise ConfigError(f"{source}: set {names} (used in the file without a default).")
    return parse(data, source=source)


def _expand(value: Any, environ: Mapping[str, str], missing: list[str]) -> Any:
    if isinstance(value, dict):
        return {key: _expand(item, environ, missing) for key, item in value.items()}
    if isinstance(value, list):
        return [_expand(item, environ, missing) for item in value]
    if not isinstance(value, str) or "${" not in value:
        return value

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if environ.get(name):
            return environ[name]
        if default is None:
            missing.append(name)
            return ""
        return default

    expanded = VARIABLE.sub(substitute, value)
    if VARIABLE.fullmatch(value):
        try:
            scalar = yaml.safe_load(expanded)
        except yaml.YAMLError:
            return expanded
        return scalar if isinstance(scalar, int | float | bool) else expanded
    return expanded


def parse(data: Any, *, source: str = "config") -> GatewayConfig:
    problems: list[str] = []

    def problem(where: str, message: str) -> None:
        problems.append(f"{where}: {message}")

    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the config must be a mapping (oversight_url, servers, ...).")
    known = {
        "listen",
        "oversight_url",
        "servers",
        "tools",
        "urgency",
        "risk_level",
        "call_timeout",
    }
    for key in sorted(set(data) - known):
        problem(str(key), f"unknown setting (known: {', '.join(sorted(known))})")

    listen = data.get("listen") or {}
    host, port = "127.0.0.1", 8765
    if not isinstance(listen, dict):
        problem("listen", "must be a mapping {host, port}")
    else:
        for key in sorted(map(str, set(listen) - {"host", "port"})):
            problem(f"listen.{key}", "unknown setting (known: host, port)")
        host_value = listen.get("host", host)
        if not isinstance(host_value, str) or not host_value:
            problem("listen.host", "must be a host name or address")
        else:
            host = host_value
        port_value = listen.get("port", port)
        if not _is_int(port_value) or not 0 <= port_value <= 65535:
            problem("listen.port", "must be a port number (0-65535)")
        else:
            port = port_value

    oversight_url = data.get("oversight_url")
    if not isinstance(oversight_url, str) or not _is_http_url(oversight_url):
        problem("oversight_url", "must be the http(s) URL of the Oversight server")
        oversight_url = ""

    servers: dict[str, ServerSpec] = {}
    folded: dict[str, str] = {}
    raw_servers = data.get("servers")
    if not isinstance(raw_servers, dict) or not raw_servers:
        problem("servers", "must name at least one upstream MCP server")
        raw_servers = {}
    for name, spec in raw_servers.items():
        where = f"servers.{name}"
        if not isinstance(name, str) or not SERVER_NAME.match(name):
            problem(where, "a server's name is 1-40 letters, digits, '_' or '-' (no dots)")
            continue
        if name.casefold() in folded:
            # Oversight folds case in action names: both would share their tools' policies.
            problem(where, f"differs from servers.{folded[name.casefold()]} only in case")
            continue
        folded[name.casefold()] = name
        if not isinstance(spec, dict):
            problem(where, "must be a mapping with `command` or `url`")
            continue
        for key in sorted(set(spec) - {"command", "env", "cwd", "url"}):
            problem(f"{where}.{key}", "unknown setting (known: command, env, cwd, url)")
        command, url = spec.get("command"), spec.get("url")
        if (command is None) == (url is None):
            problem(where, "give exactly one of `command` (stdio) or `url` (streamable HTTP)")
            continue
        if url is not None:
            if not isinstance(url, str) or not _is_http_url(url):
                problem(f"{where}.url", "must be an http(s) URL")
                continue
            servers[name] = ServerSpec(name=name, url=url)
            continue
        if isinstance(command, str):
            command = [command]
        if (
            not isinstance(command, list)
            or not command
            or not all(isinstance(part, str) and part for part in command)
        ):
            problem(f"{where}.command", "must be a list of strings: the program, then arguments")
            continue
        env = spec.get("env") or {}
        if not isinstance(env, dict) or not all(
            isinstance(k, str) and isinstance(v, str | int | float) for k, v in env.items()
        ):
            problem(f"{where}.env", "must map names to string values")
            continue
        cwd = spec.get("cwd")
        if cwd is not None and not isinstance(cwd, str):
            problem(f"{where}.cwd", "must be a directory path")
            continue
        servers[name] = ServerSpec(
            name=name,
            command=tuple(command),
            env={k: str(v) for k, v in env.items()},
            cwd=cwd,
        )

    tools = data.get("tools") or {}
    if not isinstance(tools, dict):
        problem("tools", "must map `<server>.<tool>` to a policy action name")
        tools = {}
    for tool, action in tools.items():
        where = f"tools.{tool}"
        server, _, name = str(tool).partition(".")
        if not name or server not in raw_servers:
            problem(where, "name a tool as `<server>.<tool>`, with a server from `servers`")
        if (
            not isinstance(action, str)
            or not action
            or action != action.strip()
            or len(action) > 200
        ):
            problem(where, "the action name is 1-200 characters, without spaces around it")

    urgency = data.get("urgency", "normal")
    if urgency not in URGENCIES:
        problem("urgency", f"must be one of {', '.join(URGENCIES)}")
    risk_level = data.get("risk_level")
    if risk_level is not None and risk_level not in RISK_LEVELS:
        problem("risk_level", f"must be one of {', '.join(RISK_LEVELS)}, or left out")
    call_timeout = data.get("call_timeout", 120)
    if not (_is_int(call_timeout) or isinstance(call_timeout, float)) or not (
        0 < call_timeout <= 3600
    ):
        problem("call_timeout", "must be a number of seconds (0 < t <= 3600)")
        call_timeout = 120

    if problems:
        raise ConfigError(f"{source}:\n  " + "\n  ".join(problems))
    return GatewayConfig(
        oversight_url=oversight_url.rstrip("/"),
        servers=servers,
        host=host,
        port=port,
        tools={str(k): str(v) for k, v in tools.items()},
        urgency=str(urgency),
        risk_level=risk_level,
        call_timeout=float(call_timeout),
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # YAML's `true` is not 1


def _is_http_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in {"http", "https"} and bool(parts.netloc)
