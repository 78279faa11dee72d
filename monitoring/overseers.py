"""Oversight of the overseers (SPEC §12): automation bias in the people who approve.

Per approver, over the votes they cast in the period that stand (not voided): decisions,
approvals, approval rate, median time to decide (vote time - request creation), and two
**rubber-stamp signals**:

- **Fast approvals**: approvals given sooner after the request was created than anyone could
  read it. The reading time grows with the request's size, the length of its arguments' JSON
  text plus its justification: READING_BASE_SECONDS + size / READING_CHARS_PER_SECOND. An adult
  reads prose at about 250 words a minute, some 25 characters a second counting the space after
  each word; JSON reads slower than prose, so the estimate is generous and errs towards not
  flagging. The signal is raised when at least FAST_MIN_COUNT approvals, and at least
  FAST_SHARE_SIGNAL of the approver's approvals, were that fast (one quick approval of a
  request already talked over elsewhere is no pattern).
- **Approval streak**: the longest run of consecutive approvals with no rejection between them,
  and how many distinct risk levels it spans. A run of at least STREAK_MIN_LENGTH approvals
  across at least STREAK_MIN_RISK_LEVELS risk levels is raised: a person who approves twenty
  requests in a row, from low to critical, is likely no longer reading them. The streak shown
  is the longest one that raises the signal, or the longest of all when none does.

Everything is computed in SQL (grouped counts, window functions for the median and for the
streaks as gaps-and-islands), in three queries whatever the amount of history; Python loops
only over the approvers. Shown to managers only, never to peers (the page's concern).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from django.db import connection
from django.db.models import (
    Case,
    Count,
    F,
    FloatField,
    Q,
    QuerySet,
    Sum,
    Value,
    When,
    Window,
)
from django.db.models.functions import Cast, Length, RowNumber

from approvals.models import Vote, VoteChoice
from oversight.sql import EpochSeconds

# Reading time of a request: a base for taking it in, plus its size at a reading speed.
READING_BASE_SECONDS = 3.0
READING_CHARS_PER_SECOND = 25.0
# The fast-approval signal: at least this many such approvals, and this share of all of them.
FAST_MIN_COUNT = 5
FAST_SHARE_SIGNAL = 0.25
# The streak signal: this many approvals in a row spanning this many risk levels.
STREAK_MIN_LENGTH = 20
STREAK_MIN_RISK_LEVELS = 3


@dataclass(frozen=True)
class Overseer:
    # The rules in words, for the page (from the constants above).
    READING_RULE: ClassVar[str] = (
        f"{READING_BASE_SECONDS:g} s plus 1 s per {READING_CHARS_PER_SECOND:g} characters of "
        "arguments and justification"
    )
    FAST_RULE: ClassVar[str] = (
        f"at least {FAST_MIN_COUNT} approvals, and {FAST_SHARE_SIGNAL:.0%} of them, faster than "
        "the reading time"
    )
    STREAK_RULE: ClassVar[str] = (
        f"{STREAK_MIN_LENGTH} approvals in a row with no rejection, across at least "
        f"{STREAK_MIN_RISK_LEVELS} risk levels"
    )

    voter_id: int
    name: str
    decisions: int
    approvals: int
    fast_approvals: int
    median_seconds: float | None
    longest_streak: int  # the streak shown (see the module's docstring)
    streak_risk_levels: int
    flagged_streaks: int  # streaks that raise the signal

    @property
    def rejections(self) -> int:
        return self.decisions - self.approvals

    @property
    def approval_rate(self) -> float | None:
        return self.approvals / self.decisions if self.decisions else None

    @property
    def fast_share(self) -> float | None:
        return self.fast_approvals / self.approvals if self.approvals else None

    @property
    def fast_signal(self) -> bool:
        return self.fast_approvals >= FAST_MIN_COUNT and (self.fast_share or 0) >= FAST_SHARE_SIGNAL

    @property
    def streak_signal(self) -> bool:
        return self.flagged_streaks > 0

    @property
    def signals(self) -> tuple[str, ...]:
        """The rubber-stamp signals raised, in words."""
        raised = []
        if self.fast_signal:
            raised.append(
                f"{self.fast_approvals} of {self.approvals} approvals faster than the reading time"
            )
        if self.streak_signal:
            raised.append(
                f"{self.longest_streak} approvals in a row across "
                f"{self.streak_risk_levels} risk levels"
            )
        return tuple(raised)


def _votes(start: datetime, end: datetime) -> QuerySet[Vote]:
    return Vote.objects.filter(
        voided_at__isnull=True, created_at__gte=start, created_at__lt=end
    ).order_by()


def _delay() -> Any:
    """Seconds from the request's creation to the vote."""
    return EpochSeconds("created_at") - EpochSeconds("request__created_at")


def _reading_seconds() -> Any:
    size = Length("request__params") + Length("request__justification")
    return Value(READING_BASE_SECONDS) + Cast(size, FloatField()) / Value(READING_CHARS_PER_SECOND)


def _counts(votes: QuerySet[Vote]) -> list[dict[str, Any]]:
    rows: Any = (
        votes.annotate(delay=_delay(), reading=_reading_seconds())
        .values("voter_id", "voter__username", "voter__first_name", "voter__last_name")
        .annotate(
            decisions=Count("pk"),
            approvals=Count("pk", filter=Q(vote=VoteChoice.APPROVE)),
            fast=Count("pk", filter=Q(vote=VoteChoice.APPROVE, delay__lt=F("reading"))),
        )
    )
    return list(rows)


def _medians(votes: QuerySet[Vote]) -> dict[int, float]:
    """Each voter's median delay: the middle vote (or the mean of the middle two) of the votes
    ranked by delay, picked out in SQL; at most two rows per voter come back."""
    by_voter = [F("voter_id")]
    middle = (
        votes.annotate(delay=_delay())
        .annotate(
            rank=Window(RowNumber(), partition_by=by_voter, order_by=[F("delay"), F("pk")]),
            total=Window(Count("pk"), partition_by=by_voter),
        )
        # Integer division: rank (n + 1) / 2 and (n + 2) / 2 are one row for n odd, two for even.
        .filter(Q(rank=(F("total") + 1) / 2) | Q(rank=(F("total") + 2) / 2))
        .values_list("voter_id", "delay")
    )
    found: dict[int, list[float]] = {}
    for voter_id, delay in middle:
        found.setdefault(voter_id, []).append(delay)
    return {voter_id: sum(delays) / len(delays) for voter_id, delays in found.items()}


def _streaks(votes: QuerySet[Vote]) -> dict[int, tuple[int, int, int]]:
    """Per voter: (length, risk levels, flagged streaks) of the streak to show.

    Gaps and islands: the running count of a voter's rejections numbers the runs of approvals
    between them (an island), so grouping the approvals by (voter, island) gives each streak.
    The ORM builds the inner query; the grouping over it is SQL the ORM cannot say.
    """
    islands = votes.annotate(
        risk=F("request__risk_level"),
        island=Window(
            Sum(Case(When(vote=VoteChoice.REJECT, then=1), default=0)),
            partition_by=[F("voter_id")],
            order_by=[F("created_at"), F("pk")],
        ),
    ).values("voter_id", "vote", "risk", "island")
    inner, params = islands.query.sql_with_params()
    sql = f"""
        SELECT voter_id, streak_length, risk_levels, flagged FROM (
            SELECT voter_id, streak_length, risk_levels,
                ROW_NUMBER() OVER (
                    PARTITION BY voter_id
                    ORDER BY qualifies DESC, streak_length DESC, risk_levels DESC
                ) AS streak_rank,
                SUM(qualifies) OVER (PARTITION BY voter_id) AS flagged
            FROM (
                SELECT voter_id, COUNT(*) AS streak_length, COUNT(DISTINCT risk) AS risk_levels,
                    CASE WHEN COUNT(*) >= %s AND COUNT(DISTINCT risk) >= %s THEN 1 ELSE 0 END
                        AS qualifies
                FROM ({inner}) AS votes
                WHERE vote = %s
                GROUP BY voter_id, island
            ) AS streaks
        ) AS ranked
        WHERE streak_rank = 1
    """  # noqa: S608 - the inner query is the ORM's, with its parameters passed as such
    with connection.cursor() as cursor:
        cursor.execute(
            sql, [STREAK_MIN_LENGTH, STREAK_MIN_RISK_LEVELS, *params, VoteChoice.APPROVE]
        )
        return {
            voter_id: (int(length), int(levels), int(flagged))
            for voter_id, length, levels, flagged in cursor.fetchall()
        }


def overseers(start: datetime, end: datetime) -> list[Overseer]:
    """Every approver who voted in [start, end), those with the most rubber-stamp signals
    first (then the largest share of fast approvals, then the most decisions)."""
    votes = _votes(start, end)
    medians = _medians(votes)
    streaks = _streaks(votes)
    found = []
    for row in _counts(votes):
        voter_id = row["voter_id"]
        full_name = f"{row['voter__first_name']} {row['voter__last_name']}".strip()
        length, levels, flagged = streaks.get(voter_id, (0, 0, 0))
        found.append(
            Overseer(
                voter_id=voter_id,
                name=full_name or row["voter__username"],
                decisions=row["decisions"],
                approvals=row["approvals"],
                fast_approvals=row["fast"],
                median_seconds=medians.get(voter_id),
                longest_streak=length,
                streak_risk_levels=levels,
                flagged_streaks=flagged,
            )
        )
    found.sort(
        key=lambda overseer: (
            -len(overseer.signals),
            -(overseer.fast_share or 0),
            -overseer.decisions,
            overseer.name,
        )
    )
    return found
