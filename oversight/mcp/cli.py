"""The gateway's command line. Logs go to stderr: over stdio, stdout is the protocol's."""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys

import anyio

from oversight.mcp import config as gateway_config
from oversight.mcp.serve import StartupError, serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m oversight.mcp",
        description="The Oversight MCP gateway: every tools/call is checked by Oversight.",
    )
    parser.add_argument(
        "--config",
        default=os.environ.get("OVERSIGHT_MCP_CONFIG", ""),
        help="the YAML config file (default: $OVERSIGHT_MCP_CONFIG)",
    )
    parser.add_argument(
        "--stdio",
        action="store_true",
        help="serve one client over stdin/stdout, as the agent in $OVERSIGHT_API_KEY",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=os.environ.get("OVERSIGHT_MCP_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if not args.config:
        parser.error("name the config file: --config FILE or OVERSIGHT_MCP_CONFIG")
    try:
        settings = gateway_config.load(args.config)
    except gateway_config.ConfigError as exc:
        print(f"oversight.mcp: {exc}", file=sys.stderr)
        sys.exit(2)
    try:
        anyio.run(functools.partial(serve, settings, stdio=args.stdio))
    except* StartupError as group:
        for refusal in _leaves(group):
            print(f"oversight.mcp: {refusal}", file=sys.stderr)
        sys.exit(1)
    except* KeyboardInterrupt:
        pass


def _leaves(error: BaseException) -> list[BaseException]:
    """The exceptions in a (nested) exception group: the task groups each wrap what they pass."""
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _leaves(inner)]
    return [error]
