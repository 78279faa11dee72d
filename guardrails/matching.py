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
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import re2  # type: ignore[import-untyped]

from oversight.fields import unstorable_text

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
        elif unstorable_text(pattern):
            problems.append(f"{pattern[:40]!r} holds a NUL character or a lone surrogate.")
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


@dataclass(frozen=True)
class Texts:
    """What the patterns scan: every string of the arguments (`_walk`'s order), then the
    resolved form of each path-like one; `origin[i]` is the string text `i` comes from."""

    texts: list[str]
    origin: list[int]
    strings: int  # how many of `texts` are the arguments' own strings
    lists: dict[int, int]  # a list's joined text: its index, and how many strings follow it

    def joined(self, start: int = 0, stop: int | None = None) -> str:
        return "\n".join(self.texts[start:stop])


def texts(value: Any) -> Texts:
    """Every string inside `value` (keys included, and each list of strings also as the one
    command line it makes, joined by spaces: `["rm", "-rf", "/"]`), and the resolved form of
    each path-like one (`normal_path`). Cheap: no names of places (`names` makes those)."""
    found, lists = _plain_scan(value)
    count = len(found)
    origin = list(range(count))
    # Each distinct text is resolved once, in comprehensions rather than a loop of calls and
    # appends: a deny among 12 000 copies of "//" took 4.7 ms with the loop, 3.1 ms so.
    paths = [index for index, text in enumerate(found) if "/." in text or "//" in text]
    resolved = _resolved({found[index] for index in paths})
    kept = [index for index in paths if found[index] in resolved]
    found.extend([resolved[found[index]] for index in kept])
    origin.extend(kept)
    return Texts(found, origin, count, lists)


def names(value: Any, wanted: set[int]) -> dict[int, str]:
    """Where each wanted string (an index of `texts`' order) is, e.g. `files[2].name`."""
    return _scan(value, wanted)[1] if wanted else {}


def strings(value: Any) -> Iterator[tuple[str, str]]:
    """Every string inside `value`, as `texts` scans them, with where it is."""
    found, _ = _scan(value, None)
    places = names(value, set(range(len(found))))
    for index, text in enumerate(found):
        yield places[index], text


def _scan(value: Any, wanted: set[int] | None) -> tuple[list[str], dict[int, str]]:
    """The strings of `value` in a fixed order, and the names of the `wanted` ones' places.

    Iterative, so no nesting depth can overflow the stack (the API refuses arguments nested
    deeper than 64 levels before they get here anyway). Without `wanted` it makes no names at
    all (the check's usual case), and a list of strings is taken whole: 20 000 strings in a list
    cost a list copy, not 20 000 steps of this loop. With `wanted`, places are kept as chains
    of steps and written out only for the wanted strings. Both visit in the same order."""
    if not wanted:
        return _plain_scan(value)[0], {}
    found: list[str] = []
    places: dict[int, str] = {}
    root: Chain = None
    stack: list[tuple[Chain, Any]] = [(root, value)]
    while stack and len(places) < len(wanted):
        chain, item = stack.pop()
        if isinstance(item, str):
            if len(found) in wanted:
                places[len(found)] = _write(chain)
            found.append(item)
        elif isinstance(item, dict):
            for key, child in reversed(item.items()):
                if len(found) in wanted:
                    places[len(found)] = f"{_write((chain, key))} (a key)"
                found.append(str(key))
                stack.append(((chain, key), child))
        elif isinstance(item, list):
            if _strings_only(item):
                if len(found) in wanted:
                    places[len(found)] = f"{_write(chain)} (joined by spaces)"
                found.append(" ".join(item))
                first = len(found)
                for index in wanted:
                    if first <= index < first + len(item):
                        places[index] = _write((chain, index - first))
                found.extend(item)
            else:
                for index in range(len(item) - 1, -1, -1):
                    stack.append(((chain, index), item[index]))
    return found, places


def _plain_scan(value: Any) -> tuple[list[str], dict[int, int]]:
    """`_scan`'s strings alone, in its order, without a place for anything; and where each
    list of strings is joined, with how many strings follow."""
    found: list[str] = []
    lists: dict[int, int] = {}
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            found.append(item)
        elif isinstance(item, dict):
            for key, child in reversed(item.items()):
                found.append(str(key))
                stack.append(child)
        elif isinstance(item, list):
            if _strings_only(item):
                lists[len(found)] = len(item)
                found.append(" ".join(item))
                found.extend(item)
            else:
                stack.extend(reversed(item))
    return found, lists


def _strings_only(items: list[Any]) -> bool:
    """Whether `items` is two or more strings: a list taken whole, as one command line."""
    return len(items) > 1 and all(isinstance(item, str) for item in items)


# A place as a chain of steps from the arguments' top: (parent chain, key or index), or None.
Chain = tuple[Any, object] | None


def _write(chain: Chain) -> str:
    steps: list[object] = []
    while chain is not None:
        chain, step = chain
        steps.append(step)
    return place(reversed(steps))


def place(steps: Iterable[object]) -> str:
    """The name of a place from its steps (keys and list indices): `files[2].name`."""
    written = ""
    for step in steps:
        if isinstance(step, int):
            written = f"{written or 'params'}[{step}]"
        else:
            written = f"{written}.{part(step)}" if written else part(step)
    return written or "params"


# A key that looks like a name: a letter or _, then at most 23 letters, digits, _ or -. Tokens
# are longer (a GitHub token is 40 characters), so a key that may be one is shown in part.
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]{0,23}")


def part(key: object) -> str:
    """A key as a place's name shows it: whole when it looks like a name, else only in part (a
    key, too, may be a secret: `{"password=hunter2": true}`)."""
    text = str(key)
    return text if _PLAIN_KEY.fullmatch(text) else f"[{excerpt(text)!r}]"


def locate(matcher: PatternSet, found: Texts, limit: int) -> list[int]:
    """The indices of the texts the patterns match, in order, at most `limit` of them.

    Halves of the joined texts are scanned and only a half that matches is split again, so a
    few matches among 20 000 strings cost some dozen scans, not 20 000 (a match across two
    neighbours, which only the joined scan sees, ends as no single text and is dropped)."""
    hits: list[int] = []
    stack = [(0, len(found.texts))]
    while stack and len(hits) < limit:
        start, stop = stack.pop()
        if stop - start == 1:
            if matcher.matching(found.texts[start]):
                hits.append(start)
            continue
        middle = (start + stop) // 2
        for half in ((middle, stop), (start, middle)):  # the earlier half is taken first
            if matcher.matching(found.joined(*half)):
                stack.append(half)
    return hits


def normal_path(text: str) -> str | None:
    """`text` with `.`, `..` and doubled slashes resolved, when it is a path and differs:
    `/tmp/../etc/passwd` is `/etc/passwd` to a pattern like `^/etc/`."""
    return _resolved([text]).get(text) if "/" in text else None


def _resolved(paths: Iterable[str]) -> dict[str, str]:
    """Each of `paths` resolved (`normal_path`), where that differs from it. POSIX keeps a
    leading "//" (exactly two); a file system does not, so neither do we: an absolute path gets
    two more slashes, which `normpath` folds into one."""
    distinct = list(paths)
    rooted = ["//" + text if text[:1] == "/" else text for text in distinct]
    normals = map(posixpath.normpath, rooted)
    return {text: normal for text, normal in zip(distinct, normals, strict=True) if normal != text}


_TRAVERSAL = re.compile(r"(^|/)\.\.?(/|$)")


def resource_in(value: str, prefixes: Sequence[str]) -> bool:
    """Whether `value` lies under one of `prefixes`, at a segment boundary only: `/app/data`
    covers `/app/data/x`, not `/app/database` nor `/app/data#old`. A value with `.` or `..`
    segments never does (it could climb out), in a URL's path percent-encoded too
    (`/public/%2e%2e/admin`, `/public/..?next=`), nor one longer than any path. For a URL (a
    value with `scheme://`), `?` and `#` end the path; for a file path they are characters."""
    if len(value) > MAX_RESOURCE_LENGTH:
        return False
    scheme, separator, rest = value.partition("://")
    if separator:
        path = unquote(re.split(r"[?#]", rest, maxsplit=1)[0])
        if "\\" in path or _TRAVERSAL.search(path):
            return False
        boundaries = "/?#"
    else:
        scheme, rest = "", value
        if "." in value and _TRAVERSAL.search(value):
            return False
        boundaries = "/"
    cleaned = scheme + separator + (re.sub("/+", "/", rest) if "//" in rest else rest)
    return any(
        cleaned == prefix
        or (
            cleaned.startswith(prefix)
            and (prefix.endswith("/") or cleaned[len(prefix)] in boundaries)
        )
        for prefix in prefixes
    )


def excerpt(value: str) -> str:
    """A part of `value` to show in a violation: never the whole of it, nor most of it (it may
    be a secret, or hold one): a third of it, at most 16 characters."""
    return value[: min(16, len(value) // 3)] + "…"
