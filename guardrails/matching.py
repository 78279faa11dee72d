"""Matching an agent's arguments against a policy: forbidden patterns, allowed resources.

Patterns run on RE2 (`google-re2`), which never backtracks: `(a+)+$` against 50 KB of `a`s
costs what any other pattern does. Patterns are case-insensitive (SPEC §6) and multi-line: `^`
and `$` match at each string's start and end and at its line breaks, so a newline cannot hide
`/app/.env` from `\\.env$`.

A policy's patterns are compiled into one RE2 set, which answers which of them match with its
DFA alone: 0.1 ms over 64 KB of `a`s for `(.*a){20}$`, where a single pattern's search, which
also finds where the match is, took 38 ms. The set scans all the arguments' strings at once,
joined by newlines (`texts`): one call instead of one per string, which kept arguments of many
short strings from costing a C call each (80 000 empty strings took over 75 ms). A joined scan
can also match across two strings (never miss one), so on a hit the strings are scanned one by
one to name the one that matches. `\\A` and `\\z`, which would tell the joined text from a
single string, are refused, as is switching multi-line mode off.

The DFA is linear in the input, but its constant depends on the pattern: a counted repeat after
a broad class (`[a-q][^u-z]{20}x`) makes it thrash, 200 ms over 250 KB. So when a policy is
saved, its patterns must scan a few kilobytes of probing text quickly (`PROBE_BUDGET_SECONDS`),
which with the 64 KB limit on arguments keeps every check's matching within milliseconds.
"""

from __future__ import annotations

import posixpath
import random
import re
import string
import time
from collections.abc import Iterator, Sequence
from typing import Any

import re2  # type: ignore[import-untyped]

MAX_PATTERNS = 50
MAX_PATTERN_LENGTH = 500
# The keys whose values name what an action touches (SPEC §6: allowed resource prefixes).
RESOURCE_KEYS = ("path", "file_path", "resource")
# Longer than any path a file system takes (PATH_MAX): refused, not scanned.
MAX_RESOURCE_LENGTH = 4096
# A policy's patterns together may take this long to scan each probe text (PROBE_BYTES of text
# over a small alphabet, the kind that makes an automaton thrash): 8 KB in 0.5 ms is 4 ms over
# the 64 KB an agent may send.
PROBE_BYTES = 8 * 1024
PROBE_BUDGET_SECONDS = 0.0005
# The first scans after a policy loads build the automaton: a pattern may take longer then,
# once per process and policy version, but not much (`\\w{1,1000}0` takes 22 ms).
PROBE_COLD_BUDGET_SECONDS = 0.002
_PROBE_ALPHABETS = ("ab", "ar", "a/", "a0", "a ", string.printable[:94])


class PatternError(ValueError):
    """A pattern RE2 refuses (lookarounds, backreferences, bad syntax), or too many of them."""


def _options() -> re2.Options:
    options = re2.Options()
    options.case_sensitive = False
    options.log_errors = False  # a refused pattern is reported to the admin, not to stderr
    return options


def _compile(pattern: str) -> Any:
    return re2.compile(f"(?m){pattern}", _options())


def _set_of(patterns: Sequence[str]) -> Any:
    """The patterns as one RE2 set; raises PatternError when RE2 cannot build it (patterns it
    accepts one by one may still be too large together)."""
    compiled = re2.Set.SearchSet(_options())
    try:
        for pattern in patterns:
            compiled.Add(f"(?m){pattern}")
        compiled.Compile()
    except re2.error:
        raise PatternError(
            "RE2 cannot compile these patterns together: too large; simplify or split them."
        ) from None
    return compiled


class PatternSet:
    """Compiled forbidden patterns: which of them match a text, in one scan."""

    def __init__(self, patterns: Sequence[str]) -> None:
        problems = pattern_problems(patterns, probe=False)
        if problems:
            raise PatternError("; ".join(problems))
        self.patterns = tuple(patterns)
        self._set = _set_of(patterns)

    def matching(self, text: str) -> list[str]:
        """The patterns that match somewhere in `text`, in the policy's order."""
        found = self._set.Match(text)
        return [self.patterns[index] for index in sorted(found)] if found else []


def pattern_problems(patterns: object, *, probe: bool = True) -> list[str]:
    """What is wrong with a list of patterns, as messages for the person who wrote them. With
    `probe`, the patterns must also scan the probe texts within the budget."""
    if not isinstance(patterns, list | tuple) or not all(isinstance(p, str) for p in patterns):
        return ["Forbidden patterns are a list of strings."]
    if len(patterns) > MAX_PATTERNS:
        return [f"At most {MAX_PATTERNS} forbidden patterns per policy."]
    problems = []
    compiled = []
    for pattern in patterns:
        if not pattern:
            problems.append("An empty pattern would match everything.")
        elif len(pattern) > MAX_PATTERN_LENGTH:
            problems.append(f"{pattern[:40]!r}… is longer than {MAX_PATTERN_LENGTH} characters.")
        elif "\x00" in pattern:
            problems.append(f"{pattern[:40]!r} holds a NUL character.")
        elif _single_string_only(pattern):
            problems.append(
                f"{pattern!r}: \\A, \\z and turning multi-line mode off are not supported; "
                "^ and $ match at the start and end of each string."
            )
        else:
            try:
                compiled.append(_compile(pattern))
            except re2.error as exc:
                detail = (
                    exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
                )
                problems.append(f"{pattern!r} is not a pattern RE2 accepts: {detail}.")
    if not problems and compiled:
        try:
            _set_of(patterns)
        except PatternError as exc:
            problems.append(str(exc))
    if probe and not problems and compiled:
        cold, warm = _probe(list(patterns))
        if warm > PROBE_BUDGET_SECONDS or cold > PROBE_COLD_BUDGET_SECONDS:
            problems.append(
                f"These patterns are too slow to match: {max(cold, warm) * 1000:.1f} ms for "
                f"{PROBE_BYTES // 1024} KB of text (at most {PROBE_BUDGET_SECONDS * 1000:g} ms, "
                f"{PROBE_COLD_BUDGET_SECONDS * 1000:g} ms the first time). Counted repeats of "
                "broad classes, like [a-q][^u-z]{20}x or \\w{1,1000}, are the usual cause."
            )
    return problems


def _single_string_only(pattern: str) -> bool:
    """Whether the pattern uses \\A or \\z, or turns multi-line mode off ((?-m), (?s-m:...))."""
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            if pattern[index + 1 : index + 2] in ("A", "z"):
                return True
            index += 2
            continue
        if pattern.startswith("(?", index):
            flags = re.match(r"\(\?([a-zA-Z]*)(?:-([a-zA-Z]*))?[:)]", pattern[index:])
            if flags and flags.group(2) and "m" in flags.group(2):
                return True
        index += 1
    return False


def _probe(patterns: list[str]) -> tuple[float, float]:
    """How long the patterns together take to scan the slowest probe text: the first time,
    freshly compiled, and afterwards (the better of two runs, so a busy machine's hiccup does
    not refuse a good pattern)."""
    cold = warm = 0.0
    for alphabet in _PROBE_ALPHABETS:
        fresh = _set_of(patterns)  # as a check scans them: a set, its automaton built anew
        runs = []
        for seed in range(3):  # a new text each run: an automaton that thrashes keeps doing so
            chosen = random.Random(f"{alphabet}{seed}").choices(alphabet, k=PROBE_BYTES)  # noqa: S311
            text = "".join(chosen)
            started = time.perf_counter()
            fresh.Match(text)
            runs.append(time.perf_counter() - started)
        cold, warm = max(cold, runs[0]), max(warm, min(runs[1:]))
    return cold, warm


def texts(value: Any) -> list[str]:
    """Every string inside `value`, keys included, and the resolved form of each path-like one
    (`normal_path`): what the patterns scan, joined. Iterative and cheap: no names of places."""
    found: list[str] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            found.append(item)
        elif isinstance(item, dict):
            found.extend(key for key in item if isinstance(key, str))
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    resolved = [
        normal
        for text in found
        if ("/." in text or "//" in text) and (normal := normal_path(text)) is not None
    ]
    return found + resolved


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
    does (it could climb out), nor one longer than any path; a prefix matches at a segment
    boundary only: `/app/data` covers `/app/data/x`, not `/app/database`."""
    if len(value) > MAX_RESOURCE_LENGTH or ("." in value and _TRAVERSAL.search(value)):
        return False
    scheme, separator, rest = value.partition("://")
    if not separator:
        scheme, rest = "", value
    cleaned = scheme + separator + (re.sub("/+", "/", rest) if "//" in rest else rest)
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
