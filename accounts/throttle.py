"""Login throttling (SPEC §9.9): per account across addresses, per address across accounts, and
per account from one address, each with its own limit; and which address a login comes from.

django-axes records each failed login (one row per name, address and browser) and, while a limit
is reached, refuses a login before its password is checked. `LoginThrottle` is its handler with
three limits instead of one, each counted over the cool-off (OVERSIGHT_LOGIN_COOLOFF_MINUTES):

- **account and address** (OVERSIGHT_LOGIN_FAILURE_LIMIT, 5): one guesser at one account. The
  tightest, because it locks out nobody else.
- **address** (OVERSIGHT_LOGIN_ADDRESS_FAILURE_LIMIT, 20): one guesser trying many names. Higher,
  because a whole office may share one address; and, like the account's, not applied to a name
  that logged in from that address in the last 30 days, so a guesser behind the office's (or a
  proxy's) address cannot lock its people out.
- **account** (OVERSIGHT_LOGIN_ACCOUNT_FAILURE_LIMIT, 20): guesses at one account from many
  addresses. Higher too, and not applied at an address the person logged in from in the last
  30 days: a lock on the account is what an attacker would use to shut its person out from
  everywhere, and that way it shuts out only strangers. A guesser who shares such an address
  still meets the other two limits.

Attempts refused while a lock holds do not count (AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT
off): they never reach a password, and counting them would let anyone keep an account locked
with one request per cool-off. A successful login forgives the failures of that name from that
address only, not the address's as a whole (someone who can log in could otherwise wipe their
own guesses at colleagues' accounts).

Auditing: one event per lockout (SPEC §7), written by the failure that reaches a limit. Failures
below the limits are not written to the audit trail: a typo is not a security event, and an
anonymous caller must not be able to append to the seven-year, append-only chain, which every
audited change queues behind, at will. axes keeps them for the cool-off (the admin's "Access
attempts"), and the lockout's event names the limits they reached.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
from collections.abc import Mapping
from typing import Any

from axes.attempts import get_cool_off_threshold
from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_client_username, get_cool_off
from axes.models import AccessAttempt, AccessLog
from django.conf import settings
from django.db.models import Q, Sum
from django.http import HttpRequest
from django.utils import timezone

from accounts.services import record_lockout
from oversight.redis_clients import UNAVAILABLE, quick_client

ACCOUNT_AND_ADDRESS, ADDRESS, ACCOUNT = "account_and_address", "address", "account"

# An address the person logged in from this recently is theirs, for the account limit.
KNOWN_ADDRESS_DAYS = 30


def applicable_limits(limits: Mapping[str, int], *, known_address: bool) -> dict[str, int]:
    """The limits that hold for a login: at an address its person is known at, only the one
    for that name from that address (neither a stranger's guesses at this account from
    elsewhere nor at other names from this shared address shut its person out)."""
    return {
        name: limit
        for name, limit in limits.items()
        if not (name in (ACCOUNT, ADDRESS) and known_address)
    }


def limits_reached(
    counts: Mapping[str, int], limits: Mapping[str, int], *, known_address: bool
) -> list[str]:
    """The limits (in the order of `limits`) that `counts` failures have reached."""
    holding = applicable_limits(limits, known_address=known_address)
    return [name for name, limit in holding.items() if counts.get(name, 0) >= limit]


def failures_left(
    counts: Mapping[str, int], limits: Mapping[str, int], *, known_address: bool
) -> int:
    """How many more failures before the nearest limit is reached (0 or less: reached)."""
    holding = applicable_limits(limits, known_address=known_address)
    return min(limit - counts.get(name, 0) for name, limit in holding.items())


def current_limits() -> dict[str, int]:
    return {
        ACCOUNT_AND_ADDRESS: int(settings.AXES_FAILURE_LIMIT),
        ADDRESS: settings.OVERSIGHT_LOGIN_ADDRESS_FAILURE_LIMIT,
        ACCOUNT: settings.OVERSIGHT_LOGIN_ACCOUNT_FAILURE_LIMIT,
    }


class LoginThrottle(AxesDatabaseHandler):
    """axes' database handler with the three limits above (settings.AXES_HANDLER)."""

    def standing(
        self, request: Any, credentials: dict[str, Any] | None
    ) -> tuple[dict[str, int], dict[str, int], bool]:
        """The recent failures counted against each limit, the limits, and whether the person
        logged in from this address lately."""
        username = get_client_username(request, credentials)
        address = request.axes_ip_address
        counts = _recent_failures(username, address, since=get_cool_off_threshold(request))
        limits = current_limits()
        known = (
            bool(username)
            # the extra query only when it matters
            and (counts[ACCOUNT] >= limits[ACCOUNT] or counts[ADDRESS] >= limits[ADDRESS])
            and _logged_in_from(username, address)
        )
        return counts, limits, known

    def get_failures(self, request: Any, credentials: dict[str, Any] | None = None) -> int:
        """axes compares one number with one limit: it locks when this reaches
        AXES_FAILURE_LIMIT. Answer that limit less the failures the nearest of the three limits
        has left, so the comparison holds exactly when one of them is reached."""
        counts, limits, known = self.standing(request, credentials)
        left = failures_left(counts, limits, known_address=known)
        return int(settings.AXES_FAILURE_LIMIT) - left

    def user_login_failed(
        self, sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any
    ) -> None:
        # axes marks an attempt it refused, before any password check, as locked out; one that
        # was let through and marked afterwards is the failure that reached a limit.
        refused = request is not None and request.axes_locked_out
        super().user_login_failed(sender, credentials, request, **kwargs)
        if request is None or refused or not request.axes_locked_out:
            return
        username = get_client_username(request, credentials) or ""
        address = request.axes_ip_address
        counts, limits, known = self.standing(request, credentials)
        started = [
            name
            for name in limits_reached(counts, limits, known_address=known)
            if _first_to_reach(name, username, address, get_cool_off(request))
        ]
        if started:
            record_lockout(username=username, address=address or "", limits=started)

    def reset_user_attempts(
        self, request: HttpRequest, credentials: dict[str, Any] | None = None
    ) -> int:
        """After a successful login: forget this name's failures from this address only."""
        username = get_client_username(request, credentials)
        attempts = AccessAttempt.objects.filter(
            username=username,
            ip_address=request.axes_ip_address,  # type: ignore[attr-defined]
        )
        count, _ = attempts.delete()
        return count


def _recent_failures(
    username: str | None, address: str | None, *, since: dt.datetime
) -> dict[str, int]:
    """Failures since `since` for the name from the address, from the address, and for the name
    (one query)."""
    failures = "failures_since_start"
    # axes stores a missing name as NULL, which matches no name: only the address counts then.
    for_name = Q(username=username or "")
    from_address = Q(ip_address=address)
    counts = (
        AccessAttempt.objects.filter(attempt_time__gte=since)
        .filter(for_name | from_address)
        .aggregate(
            **{
                ACCOUNT_AND_ADDRESS: Sum(failures, filter=for_name & from_address, default=0),
                ADDRESS: Sum(failures, filter=from_address, default=0),
                ACCOUNT: Sum(failures, filter=for_name, default=0),
            }
        )
    )
    return {name: int(count) for name, count in counts.items()}


def _logged_in_from(username: str, address: str | None) -> bool:
    since = timezone.now() - dt.timedelta(days=KNOWN_ADDRESS_DAYS)
    return AccessLog.objects.filter(
        username=username, ip_address=address, attempt_time__gte=since
    ).exists()


def _first_to_reach(
    limit: str, username: str, address: str | None, cool_off: dt.timedelta | None
) -> bool:
    """True for the one failure that starts a lockout, however many reach the limit together
    (guesses sent in parallel all pass the check before any is counted): the first to claim the
    lockout's key in Redis for the cool-off. Without Redis every one of them is audited: a
    duplicate event is better than a lost one."""
    locked = {
        ACCOUNT_AND_ADDRESS: f"{username}\0{address}",
        ADDRESS: f"{address}",
        ACCOUNT: username,
    }
    key = f"oversight:lockout:{limit}:{hashlib.sha256(locked[limit].encode()).hexdigest()}"
    seconds = max(1, int(cool_off.total_seconds())) if cool_off else 3600
    try:
        return bool(quick_client().set(key, 1, nx=True, ex=seconds))
    except UNAVAILABLE:
        return True


def client_address(request: HttpRequest) -> str | None:
    """The address a request comes from, behind OVERSIGHT_PROXY_COUNT proxies
    (settings.AXES_CLIENT_IP_CALLABLE; the audit trail uses the same).

    Each proxy appends the address it was connected from to X-Forwarded-For, and the last one
    connects to us. Behind N proxies the client is therefore the N-th entry from the right:
    entries to its left were sent by the client and may be anything, so a guesser cannot pose
    as someone new on each attempt. With no proxies configured the header is ignored. With
    fewer entries than proxies (the request did not come through all of them), no header, or
    an entry that is not an address, it is the peer that connected.
    """
    peer = request.META.get("REMOTE_ADDR")
    proxies = settings.OVERSIGHT_PROXY_COUNT
    if not proxies:
        return peer
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    entries = [entry.strip() for entry in forwarded.split(",") if entry.strip()]
    if len(entries) < proxies:
        return peer
    return _address(entries[-proxies]) or peer


def _address(entry: str) -> str | None:
    """The IP address in an X-Forwarded-For entry (`1.2.3.4`, `1.2.3.4:567`, `2001:db8::1`,
    `[2001:db8::1]:567`), normalised; None if there is none."""
    host = entry
    if entry.startswith("["):
        host = entry[1:].partition("]")[0]
    elif entry.count(":") == 1:
        host = entry.partition(":")[0]
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None
