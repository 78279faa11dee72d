"""Matching an agent's arguments against a policy: forbidden patterns, allowed resources.

Patterns run on RE2 (`google-re2`), whose matching time is linear in the input whatever the
pattern: `(a+)+$` against 50 KB of `a`s costs what any other pattern does. A policy's patterns
are compiled into one RE2 set, so each string of the arguments is scanned once for all of them.
Patterns are case-insensitive (SPEC §6) and multi-line: `^` and `$` also match at line breaks,
so a newline cannot hide `/app/.env` from `\\.env$`.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator, Sequence
from typing import Any

import re2  # type: ignore[import-untyped]

MAX_PATTERNS = 50
MAX_PATTERN_LENGTH = 500
# The keys whose values name what an action touches (SPEC §6: allowed resource prefixes).
RESOURCE_KEYS = ("path", "file_path", "resource")


class PatternError(ValueError):
    """A pattern RE2 refuses (lookarounds, backreferences, bad syntax), or too many of them."""


def _options() -> re2.Options:
    options = re2.Options()
    options.case_sensitive = False
    options.log_errors = False  # a refused pattern is reported to the admin, not to stderr
    return options


class PatternSet:
    """Compiled forbidden patterns: which of them match a string, in one scan."""

    def __init__(self, patterns: Sequence[str]) -> None:
        problems = pattern_problems(patterns)
        if problems:
            raise PatternError("; ".join(problems))
        self.patterns = tuple(patterns)
        self._set = re2.Set.SearchSet(_options())
        for pattern in patterns:
            self._set.Add(f"(?m){pattern}")
        self._set.Compile()

    def matching(self, text: str) -> list[str]:
        """The patterns that match somewhere in `text`, in the policy's order."""
        found = self._set.Match(text)
        return [self.patterns[index] for index in sorted(found)] if found else []


def pattern_problems(patterns: object) -> list[str]:
    """What is wrong with a list of patterns, as messages for the person who wrote them."""
    if not isinstance(patterns, list | tuple) or not all(isinstance(p, str) for p in patterns):
        return ["Forbidden patterns are a list of strings."]
    if len(patterns) > MAX_PATTERNS:
        return [f"At most {MAX_PATTERNS} forbidden patterns per policy."]
    problems = []
    for pattern in patterns:
        if not pattern:
            problems.append("An empty pattern would match everything.")
        elif len(pattern) > MAX_PATTERN_LENGTH:
            problems.append(f"{pattern[:40]!r}… is longer than {MAX_PATTERN_LENGTH} characters.")
        else:
            try:
                re2.compile(f"(?m){pattern}", _options())
            except re2.error as exc:
                detail = (
                    exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
                )
                problems.append(f"{pattern!r} is not a pattern RE2 accepts: {detail}.")
    return problems


def strings(value: Any) -> Iterator[tuple[str, str]]:
    """Every string inside `value`, keys included, with where it is (`files[2].name`).

    Iterative, so no nesting depth can overflow the stack; the API refuses arguments nested
    deeper than 64 levels before they get here anyway."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, str):
            yield where or "params", item
        elif isinstance(item, dict):
            for key, child in reversed(item.items()):
                path = f"{where}.{key}" if where else str(key)
                yield f"{path} (the key)", str(key)
                stack.append((path, child))
        elif isinstance(item, list):
            for index in range(len(item) - 1, -1, -1):
                stack.append((f"{where}[{index}]", item[index]))


def normal_path(text: str) -> str | None:
    """`text` with `.`, `..` and doubled slashes resolved, when it is a path and differs:
    `/tmp/../etc/passwd` is `/etc/passwd` to a pattern like `^/etc/`."""
    if "/" not in text:
        return None
    absolute = text.startswith("/")
    resolved = posixpath.normpath(text)
    if absolute:
        resolved = "/" + resolved.lstrip("/")  # POSIX keeps a leading "//"; a file system not
    return resolved if resolved != text else None


_TRAVERSAL = re.compile(r"(^|/)\.\.?(/|$)")


def resource_in(value: str, prefixes: Sequence[str]) -> bool:
    """Whether `value` lies under one of `prefixes`. A value with `.` or `..` segments never
    does (it could climb out), and a prefix matches at a segment boundary only: `/app/data`
    covers `/app/data/x`, not `/app/database`."""
    if _TRAVERSAL.search(value):
        return False
    scheme, separator, rest = value.partition("://")
    if not separator:
        scheme, rest = "", value
    cleaned = scheme + separator + re.sub("/+", "/", rest)
    return any(
        cleaned == prefix
        or (cleaned.startswith(prefix) and (prefix.endswith("/") or cleaned[len(prefix)] in "/?#"))
        for prefix in prefixes
    )


def excerpt(value: str) -> str:
    """A part of `value` to show in a violation: never the whole of it (it may be a secret),
    at most half of it and 40 characters."""
    keep = min(40, len(value) // 2)
    return value[:keep] + "…"
