"""The gateway's config file (SPEC §13): what it accepts, and the whole list of what is wrong."""

from __future__ import annotations

import re

import pytest

from oversight.mcp.config import ConfigError, loads

GOOD = """
listen: {host: 127.0.0.1, port: "${PORT:-9100}"}
oversight_url: ${OVERSIGHT_URL:-http://127.0.0.1:8000}/
servers:
  files: {command: ["python", "-m", "some_server"], env: {TOKEN: "${TOKEN:-t}"}}
  tickets: {url: "http://127.0.0.1:9000/mcp"}
tools:
  files.read_file: read_file
"""


def test_a_config_is_read_with_its_environment():
    config = loads(GOOD, source="gateway.yaml", environ={"PORT": "9200"})
    assert config.port == 9200
    assert config.oversight_url == "http://127.0.0.1:8000"
    assert config.servers["files"].command == ("python", "-m", "some_server")
    assert config.servers["files"].env == {"TOKEN": "t"}
    assert config.servers["tickets"].kind == "http"
    assert config.action_for("files.read_file") == "read_file"
    assert config.action_for("tickets.close") == "mcp.tickets.close"
    assert config.urgency == "normal"
    assert config.risk_level is None


def test_every_problem_is_named_at_once():
    text = """
oversight_url: ftp://nowhere
servers:
  "bad.name": {command: ["x"]}
  both: {command: ["x"], url: "http://h/mcp"}
  files: {command: [], extra: 1}
tools:
  nosuch.tool: x
urgency: whenever
colour: blue
"""
    with pytest.raises(ConfigError) as raised:
        loads(text, source="gateway.yaml", environ={})
    message = str(raised.value)
    for expected in (
        "oversight_url: must be the http(s) URL",
        "servers.bad.name: a server's name",
        "servers.both: give exactly one of",
        "servers.files.extra: unknown setting",
        "tools.nosuch.tool: name a tool",
        "urgency: must be one of",
        "colour: unknown setting",
    ):
        assert expected in message


def test_a_variable_without_a_default_must_be_set():
    text = "oversight_url: ${OVERSIGHT_URL}\nservers: {files: {url: 'http://h/mcp'}}\n"
    with pytest.raises(ConfigError, match="set OVERSIGHT_URL"):
        loads(text, source="gateway.yaml", environ={})
    # A comment is not a value: a variable named there needs nothing.
    config = loads("# ${NOT_SET}\n" + text, source="g", environ={"OVERSIGHT_URL": "http://o"})
    assert config.oversight_url == "http://o"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("listen: {port: true}", "listen.port: must be a port number"),
        ("listen: {host: [a, b]}", "listen.host: must be a host name"),
        ("listen: {hots: x}", "listen.hots: unknown setting"),
        ("call_timeout: true", "call_timeout: must be a number"),
        ("servers: {Files: {url: 'http://h/mcp'}}", "servers.Files: differs from servers.files"),
        ("tools: {'files.': x}", "tools.files.: name a tool"),
        ("tools: {files.read: ' read_file '}", "without spaces around it"),
    ],
)
def test_quiet_mistakes_are_refused(text, expected):
    base = "oversight_url: http://o\nservers: {files: {url: 'http://h/mcp'}}\n"
    merged = (
        base + text
        if not text.startswith("servers")
        else base.replace(
            "servers: {files: {url: 'http://h/mcp'}}",
            "servers: {files: {url: 'http://h/mcp'}, " + text.removeprefix("servers: {"),
        )
    )
    with pytest.raises(ConfigError, match=re.escape(expected)):
        loads(merged, source="g", environ={})


def test_a_key_given_twice_is_refused():
    text = "oversight_url: http://o\nservers:\n  a: {url: 'http://h/mcp'}\n  a: {url: 'http://i/mcp'}\n"
    with pytest.raises(ConfigError, match="'a' is given twice"):
        loads(text, source="g", environ={})
