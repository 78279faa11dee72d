"""Process-local copies of rarely-changing rows: `TimedCache` for rows a few seconds of
staleness cannot hurt, `VersionedCache` for rows that must never be stale after a change commits.

A `TimedCache` keeps what its `load` builds for a few seconds; the process that makes a change
drops its copy (`forget`) on commit, the others see the change once their copy is that old.

A `VersionedCache` keeps one copy of what its `load` builds (the policy set, say) and the
version of the rows it was built from: a number from the database that every change raises
(`version`). The change's transaction calls `changed()`; once it commits, the new version is
published in Redis. Each read compares the copy's version with the published one (the
guardrails check reads it in the same Redis round trip as its counters, so freshness costs no
extra trip) and reloads when they differ.

How stale can a read be? Not at all while Redis answers: a change is published before the call
that made it returns, and the next read anywhere sees it. While Redis does not answer, each read
asks the database for the version instead (one small query), so it is exact then too. The one
window: a change committed while Redis was unreachable for the writer but not for the readers
(or while Redis kept its old value through an outage) is seen once any process republishes the
version: a reader that holds a newer copy does so at once, and beat does every timer tick
(`guardrails.tasks.republish_cache_versions`), so within a few seconds.

`VersionedRows` keeps rows read one at a time (the agent API's keys, with their agents), each
with the version of the whole table it was read at, under the same publication: one change to
any row makes every copy older than it stale.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable

from django.db import DatabaseError, transaction

from oversight.redis_clients import UNAVAILABLE, quick_client, steady_client

logger = logging.getLogger(__name__)

KEY_PREFIX = "oversight:version:"

# Raise the published version, never lower it (a slow publisher must not undo a newer one),
# except from the value the caller saw (ARGV[2]) when the database went back: if another
# publication came in meanwhile, it stands.
_PUBLISH = """
local current = tonumber(redis.call('GET', KEYS[1]) or '-1')
if tonumber(ARGV[1]) > current or (ARGV[2] ~= '' and current == tonumber(ARGV[2])) then
    redis.call('SET', KEYS[1], ARGV[1])
end
return 1
"""
# A publication is tried this many times, PUBLISH_PAUSE_SECONDS apart, past the breaker: a
# change that Redis is not told of is seen late (by beat's republish; the keyring's recheck).
PUBLISH_ATTEMPTS = 3
PUBLISH_PAUSE_SECONDS = 0.2


class TimedCache[T]:
    def __init__(self, seconds: float, load: Callable[[], T]) -> None:
        self.seconds = seconds
        self._load = load
        self._held: tuple[float, T] | None = None

    def get(self) -> T:
        held = self._held  # one read: another thread may replace it meanwhile
        if held is None or time.monotonic() - held[0] > self.seconds:
            held = (time.monotonic(), self._load())
            self._held = held
        return held[1]

    def forget(self) -> None:
        """Load again at the next `get` (after a change, and in tests)."""
        self._held = None


class Unread:
    """The published version was not read by the caller: `get` reads it."""


UNREAD = Unread()


class Published:
    """A version of some rows: read from the database (`version`, which every change raises),
    published in Redis after each change commits, compared by readers with what they hold."""

    def __init__(self, name: str, *, version: Callable[[], int]) -> None:
        self.name = name
        self.key = KEY_PREFIX + name
        self._version = version

    def forget(self) -> None:
        raise NotImplementedError

    def changed(self) -> None:
        """Call inside the transaction that changes the rows: on commit, every process sees the
        change on its next read."""
        self.forget()
        transaction.on_commit(self._after_commit)

    def _after_commit(self) -> None:
        self.forget()
        self.publish()

    def publish(self, *, replacing: int | None = None) -> None:
        """Put the database's version in Redis, if higher than the published one, or in place
        of `replacing` (the published version, when the database's is lower: a restore, a
        test's rollback). Tried a few times, even while the breaker holds other calls back."""
        version = self._version()
        for attempt in range(PUBLISH_ATTEMPTS):
            try:
                steady_client().eval(
                    _PUBLISH, 1, self.key, str(version), "" if replacing is None else str(replacing)
                )
                return
            except UNAVAILABLE:
                if attempt + 1 < PUBLISH_ATTEMPTS:
                    time.sleep(PUBLISH_PAUSE_SECONDS)
        logger.error("could not publish the %s version %d; readers catch up", self.name, version)


class VersionedCache[T](Published):
    def __init__(self, name: str, *, version: Callable[[], int], load: Callable[[], T]) -> None:
        super().__init__(name, version=version)
        self._load = load
        self._held: tuple[int, T] | None = None
        self._reload_lock = threading.Lock()

    def get(self, published: int | Unread | None = UNREAD) -> T:
        """The rows as of the newest committed change.

        `published` is the version Redis holds, when the caller has read it already (None when
        Redis has none); otherwise it is read here. When Redis does not answer, the database's
        version is read instead."""
        if isinstance(published, Unread):
            try:
                raw = quick_client().get(self.key)
                published = None if raw is None else int(raw)
            except UNAVAILABLE:
                return self.from_database()
        held = self._held
        if published is None:  # Redis lost the key (a restart): the database says, then Redis
            value = self.from_database()
            self.publish()
            return value
        if held is not None and held[0] == published:
            return held[1]
        if held is not None and held[0] > published:
            self.publish()  # Redis missed a publication; this copy is newer
            return held[1]
        version, value = self._reload()
        if version < published:
            # The database is the truth: it went back (a restore, a test's rollback).
            self.publish(replacing=published)
        return value

    def peek(self) -> tuple[int, T] | None:
        """This process's copy and its version, without asking anyone (None: no copy yet)."""
        return self._held

    def held_version(self) -> int | None:
        held = self._held
        return held[0] if held is not None else None

    def from_database(self) -> T:
        """The rows as of the database's version, without Redis (when it does not answer)."""
        version = self._version()
        held = self._held
        if held is not None and held[0] == version:
            return held[1]
        return self._reload()[1]

    def forget(self) -> None:
        """Drop this process's copy (tests, and after a change here)."""
        self._held = None

    def _reload(self) -> tuple[int, T]:
        with self._reload_lock:  # one thread loads; the others wait for its copy
            version = self._version()  # first: rows read after it are at least this new
            held = self._held
            if held is not None and held[0] == version:
                return held
            self._held = (version, self._load())
            return self._held


class VersionedRows[K, T](Published):
    """Rows read one at a time (an API key with its agent, by prefix), each kept with the
    version it was read at. Unlike `VersionedCache`, nothing here reads Redis: the caller
    compares an entry's version with the published one in a round trip of its own (the
    guardrails check's), trusts it only when they are equal, and reads the row again (`load`)
    when they differ or Redis does not answer, telling `outdated`. `load` returns the
    database's version and the row, read in one statement.

    Besides, `recheck` compares the copies with the database's version at least every so
    often, and drops those read at another: the bound on a change Redis was never told of (its
    writer could not reach Redis; Redis came back from a snapshot older than the change; the
    database was restored under the copies)."""

    MAX_ENTRIES = 10_000

    def __init__(
        self, name: str, *, version: Callable[[], int], load: Callable[[K], tuple[int, T]]
    ) -> None:
        super().__init__(name, version=version)
        self._load = load
        self._held: dict[K, tuple[int, T]] = {}
        self._rechecked_at = -math.inf

    def peek(self, key: K) -> tuple[int, T] | None:
        """This process's copy of the row and its version (None: none), unverified."""
        return self._held.get(key)

    def load(self, key: K) -> tuple[int, T]:
        """The row from the database, kept for the next `peek` unless there is none (adding a
        row does not raise the version, so a copy of its absence would never go stale)."""
        entry = self._load(key)
        if entry[1] is None:
            return entry
        if len(self._held) >= self.MAX_ENTRIES:
            self._held = {}  # a flood of unknown keys must not grow the process without end
        self._held[key] = entry
        return entry

    def forget(self) -> None:
        self._held = {}

    def outdated(self, published: int | None) -> None:
        """A copy's version was not the `published` one (None: Redis has none): drop every
        copy, and bring Redis to the database's version (up, or down after a restore) so that
        the copies read next are trusted."""
        self.forget()
        version = self._version()
        if published is None or version > published:
            self.publish()
        elif version < published:
            self.publish(replacing=published)

    def recheck(self, seconds: float) -> None:
        """Drop the copies read at another version than the database's, if that was last
        compared more than `seconds` ago (one small query, once a period per process)."""
        now = time.monotonic()
        if now - self._rechecked_at < seconds:
            return
        self._rechecked_at = now
        try:
            version = self._version()
        except DatabaseError:
            # Nothing can change the rows while the database is away; Redis still verifies
            # each copy. Compared again next period.
            logger.warning("could not compare the %s copies with the database", self.name)
            return
        held = self._held
        if any(entry[0] != version for entry in held.values()):
            self._held = {key: entry for key, entry in held.items() if entry[0] == version}
