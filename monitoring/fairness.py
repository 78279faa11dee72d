"""Fairness of people's decisions (SPEC §12, the seed's §5 "bias detection").

Two figures, each with the counts behind it:

- **Approval rates and the disparate-impact ratio.** For agents, teams and action categories,
  per risk level: of the requests people decided in the period (approved or rejected, by
  `decided_at`), how many were approved. A group's ratio is its rate over the best-treated
  group's rate, among the groups *of the same kind and the same risk level* (a critical request
  is refused more often than a low one for good reasons; comparing across levels would flag
  the agents that do risky work). Below 0.8 it is flagged: the 80 % ("four-fifths") rule. A
  group with fewer than `OVERSIGHT_FAIRNESS_MIN_SAMPLE` decisions says "not enough data"
  instead of a ratio, and cannot be the best-treated group either (one lucky approval of one
  request would otherwise set the bar for everyone).

- **Selection bias across approvers.** For comparable requests (same risk level and same action
  category), do the approvers split approve/reject alike? The chi-square test of independence
  on the approvers x decision table of their votes (not voided; an approve-with-changes is an
  approve vote). The seed's threshold is kept: flagged when the statistic exceeds twice the
  number of options compared (`len(options) * 2`, here the approvers), and the seed's window:
  fewer than 100 votes (or fewer than two approvers) is "not enough data". The p-value is given
  beside it, from the exact survival function for whole degrees of freedom.

The statistics are plain functions over plain numbers (tested with tables of hand-worked
cases); `approval_rates` and `selection_bias` gather the counts in a few grouped queries, a
fixed number whatever the amount of history, and loop only over the aggregated groups.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db.models import CharField, Count, F, Q, QuerySet, Value
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Coalesce, NullIf

from agents.models import Agent
from approvals.models import ApprovalRequest, RiskLevel, Status, Vote, VoteChoice

# The 80 % rule: a group approved at less than four fifths of the best-treated group's rate.
DISPARATE_IMPACT_THRESHOLD = 0.8
# The seed's window (`window_size=100`): fewer votes than this in a group tells nothing yet.
SELECTION_BIAS_MIN_VOTES = 100
# The seed's threshold is `len(options) * 2`; the options compared here are the approvers.
SELECTION_BIAS_FACTOR = 2

NO_TEAM = "(no team)"
NO_CATEGORY = "(none)"

KINDS: dict[str, str] = {"agent": "Agent", "team": "Team", "category": "Action category"}


# --- the statistics: plain functions over plain numbers ------------------------------------


def disparate_impact(rate: float, best_rate: float) -> float | None:
    """A group's approval rate over the best-treated group's; None when the best rate is 0
    (every comparable group was always refused: nobody is treated better)."""
    return rate / best_rate if best_rate > 0 else None


def chi_square_independence(table: Sequence[Sequence[int]]) -> tuple[float, int]:
    """Pearson's chi-square statistic of independence of rows and columns of a table of counts,
    and its degrees of freedom, (rows - 1) x (columns - 1).

    A cell whose expected count is 0 (its whole row or column is empty) adds nothing: with no
    rejections at all, every approver decided alike and the statistic is 0.
    """
    rows = [sum(row) for row in table]
    columns = [sum(column) for column in zip(*table, strict=True)]
    total = sum(rows)
    statistic = 0.0
    for row, row_total in zip(table, rows, strict=True):
        for observed, column_total in zip(row, columns, strict=True):
            expected = row_total * column_total / total if total else 0.0
            if expected:
                statistic += (observed - expected) ** 2 / expected
    return statistic, (len(rows) - 1) * (len(columns) - 1)


def chi_square_p_value(statistic: float, dof: int) -> float:
    """P(X ≥ statistic) for X chi-square with `dof` (a positive whole number) degrees of freedom.

    The closed forms of the survival function (Abramowitz & Stegun 26.4.4 and 26.4.5), summed in
    logarithms so that a large statistic or many approvers cannot overflow:
    even k:  Q = e^(-x/2) · Σ_{i=0}^{k/2-1} (x/2)^i / i!
    odd k:   Q = erfc(√(x/2)) + √(2/π) · e^(-x/2) · Σ_{i=1}^{(k-1)/2} x^(i-½) / (2i-1)!!
    """
    if dof < 1:
        raise ValueError("The degrees of freedom are a positive whole number.")
    if statistic <= 0:
        return 1.0
    x = statistic
    if dof % 2 == 0:
        total = sum(
            math.exp(-x / 2 + i * math.log(x / 2) - math.lgamma(i + 1)) for i in range(dof // 2)
        )
    else:
        total = math.erfc(math.sqrt(x / 2))
        for i in range(1, (dof - 1) // 2 + 1):
            # log((2i - 1)!!) = log((2i)!) - i·log 2 - log(i!)
            log_double_factorial = math.lgamma(2 * i + 1) - i * math.log(2) - math.lgamma(i + 1)
            total += math.exp(
                0.5 * math.log(2 / math.pi) - x / 2 + (i - 0.5) * math.log(x) - log_double_factorial
            )
    return min(1.0, total)


# --- approval rates -------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupRate:
    """One group (an agent, a team or a category) at one risk level."""

    kind: str
    risk_level: str
    group: str
    decided: int
    approved: int
    changed: int  # of the approved, how many with changed arguments
    min_sample: int
    best_group: str | None  # the best-treated group of the same kind and risk level
    best_rate: float | None
    ratio: float | None  # None: not enough data, or no best group to compare with
    flagged: bool

    @property
    def rate(self) -> float | None:
        return self.approved / self.decided if self.decided else None

    @property
    def enough_data(self) -> bool:
        return self.decided >= self.min_sample

    @property
    def rejected(self) -> int:
        return self.decided - self.approved


@dataclass(frozen=True)
class RateKind:
    """Every group of one kind, by risk level (lowest first) then group."""

    kind: str
    label: str
    groups: tuple[GroupRate, ...]

    @property
    def flagged(self) -> tuple[GroupRate, ...]:
        return tuple(group for group in self.groups if group.flagged)


@dataclass(frozen=True)
class ApprovalRates:
    start: datetime
    end: datetime
    min_sample: int
    threshold: float
    kinds: tuple[RateKind, ...]

    @property
    def flagged(self) -> tuple[GroupRate, ...]:
        return tuple(group for kind in self.kinds for group in kind.flagged)

    @property
    def decided(self) -> int:
        """Requests people decided in the period (each counts once per kind)."""
        return sum(group.decided for group in self.kinds[0].groups) if self.kinds else 0


def rate_groups(
    kind: str, counts: Iterable[tuple[str, str, int, int, int]], *, min_sample: int
) -> tuple[GroupRate, ...]:
    """The groups of one kind with their ratios, from (risk level, group, decided, approved,
    changed) counts: each risk level's best-treated group is the one with the highest rate among
    those with at least `min_sample` decisions."""
    rows = sorted(counts, key=lambda row: (RiskLevel.rank(row[0]), row[1]))
    best: dict[str, tuple[float, str]] = {}
    for risk, group, decided, approved, _ in rows:
        if decided >= min_sample:
            rate = approved / decided
            if risk not in best or rate > best[risk][0]:
                best[risk] = (rate, group)
    result = []
    for risk, group, decided, approved, changed in rows:
        best_rate, best_group = best.get(risk, (None, None))
        ratio = None
        if decided >= min_sample and best_rate is not None:
            ratio = disparate_impact(approved / decided, best_rate)
        result.append(
            GroupRate(
                kind=kind,
                risk_level=risk,
                group=group,
                decided=decided,
                approved=approved,
                changed=changed,
                min_sample=min_sample,
                best_group=best_group,
                best_rate=best_rate,
                ratio=ratio,
                flagged=ratio is not None and ratio < DISPARATE_IMPACT_THRESHOLD,
            )
        )
    return tuple(result)


def _scoped(
    queryset: QuerySet[Any], prefix: str, agent: Agent | int | None, team: str | None
) -> QuerySet[Any]:
    if agent is not None:
        queryset = queryset.filter(**{f"{prefix}agent_id": getattr(agent, "pk", agent)})
    if team is not None:
        queryset = queryset.filter(**{f"{prefix}agent__team": team})
    return queryset


def _category(prefix: str) -> Coalesce:
    """The action category of a request: the one in the policy version its check applied (what
    the policy said then), else its policy's, else "(none)" (no policy covered the action)."""
    return Coalesce(
        KeyTextTransform("category", f"{prefix}policy_version__snapshot"),
        F(f"{prefix}policy_version__policy__category"),
        Value(NO_CATEGORY),
        output_field=CharField(),
    )


def approval_rates(
    start: datetime,
    end: datetime,
    *,
    agent: Agent | int | None = None,
    team: str | None = None,
) -> ApprovalRates:
    """Approval rates of requests people decided in [start, end), by agent, team and action
    category per risk level, with the disparate-impact ratios. Three grouped queries."""
    min_sample = settings.OVERSIGHT_FAIRNESS_MIN_SAMPLE
    decided = _scoped(
        ApprovalRequest.objects.filter(
            decided_by__isnull=False,
            status__in=[Status.APPROVED, Status.REJECTED],
            decided_at__gte=start,
            decided_at__lt=end,
        ),
        "",
        agent,
        team,
    )
    groupings = {
        "agent": F("agent__name"),
        "team": Coalesce(
            NullIf(F("agent__team"), Value("")), Value(NO_TEAM), output_field=CharField()
        ),
        "category": _category(""),
    }
    kinds = []
    for kind, expression in groupings.items():
        rows = (
            decided.order_by()
            .annotate(group=expression)
            .values("risk_level", "group")
            .annotate(
                decided=Count("pk"),
                approved=Count("pk", filter=Q(status=Status.APPROVED)),
                changed=Count(
                    "pk", filter=Q(status=Status.APPROVED, modified_params__isnull=False)
                ),
            )
        )
        counts = [
            (row["risk_level"], row["group"], row["decided"], row["approved"], row["changed"])
            for row in rows
        ]
        kinds.append(
            RateKind(
                kind=kind,
                label=KINDS[kind],
                groups=rate_groups(kind, counts, min_sample=min_sample),
            )
        )
    return ApprovalRates(
        start=start,
        end=end,
        min_sample=min_sample,
        threshold=DISPARATE_IMPACT_THRESHOLD,
        kinds=tuple(kinds),
    )


# --- selection bias -------------------------------------------------------------------------


@dataclass(frozen=True)
class ApproverVotes:
    voter_id: int
    name: str
    approvals: int
    rejections: int

    @property
    def votes(self) -> int:
        return self.approvals + self.rejections

    @property
    def approval_rate(self) -> float | None:
        return self.approvals / self.votes if self.votes else None


@dataclass(frozen=True)
class BiasTest:
    """The chi-square test for one group of comparable requests."""

    risk_level: str
    category: str
    approvers: tuple[ApproverVotes, ...]
    min_votes: int
    chi_square: float | None  # None: not enough data
    dof: int | None
    threshold: int | None
    p_value: float | None
    flagged: bool

    @property
    def votes(self) -> int:
        return sum(approver.votes for approver in self.approvers)

    @property
    def approvals(self) -> int:
        return sum(approver.approvals for approver in self.approvers)

    @property
    def rejections(self) -> int:
        return sum(approver.rejections for approver in self.approvers)

    @property
    def enough_data(self) -> bool:
        return self.chi_square is not None

    @property
    def why_not(self) -> str:
        """Why there is no statistic ("" when there is one)."""
        if self.enough_data:
            return ""
        if len(self.approvers) < 2:
            return f"{len(self.approvers)} approver (a comparison needs 2)"
        return f"{self.votes} of {self.min_votes} votes"


@dataclass(frozen=True)
class SelectionBias:
    start: datetime
    end: datetime
    min_votes: int
    tests: tuple[BiasTest, ...]

    @property
    def flagged(self) -> tuple[BiasTest, ...]:
        return tuple(test for test in self.tests if test.flagged)


def bias_test(
    risk_level: str,
    category: str,
    approvers: Sequence[ApproverVotes],
    *,
    min_votes: int = SELECTION_BIAS_MIN_VOTES,
) -> BiasTest:
    """The seed's selection-bias test on one group's approvers x decision table."""
    ordered = tuple(sorted(approvers, key=lambda approver: (approver.name, approver.voter_id)))
    votes = sum(approver.votes for approver in ordered)
    if votes < min_votes or len(ordered) < 2:
        return BiasTest(
            risk_level=risk_level,
            category=category,
            approvers=ordered,
            min_votes=min_votes,
            chi_square=None,
            dof=None,
            threshold=None,
            p_value=None,
            flagged=False,
        )
    statistic, dof = chi_square_independence([(a.approvals, a.rejections) for a in ordered])
    threshold = SELECTION_BIAS_FACTOR * len(ordered)
    return BiasTest(
        risk_level=risk_level,
        category=category,
        approvers=ordered,
        min_votes=min_votes,
        chi_square=statistic,
        dof=dof,
        threshold=threshold,
        p_value=chi_square_p_value(statistic, dof),
        flagged=statistic > threshold,
    )


def selection_bias(
    start: datetime,
    end: datetime,
    *,
    agent: Agent | int | None = None,
    team: str | None = None,
) -> SelectionBias:
    """The selection-bias test per group of comparable requests (same risk level, same action
    category), over the votes cast in [start, end) that stand (not voided). One grouped query."""
    votes = _scoped(
        Vote.objects.filter(voided_at__isnull=True, created_at__gte=start, created_at__lt=end),
        "request__",
        agent,
        team,
    )
    rows = (
        votes.order_by()
        .annotate(risk=F("request__risk_level"), category=_category("request__"))
        .values("risk", "category", "voter_id", "voter__username")
        .annotate(
            approvals=Count("pk", filter=Q(vote=VoteChoice.APPROVE)),
            rejections=Count("pk", filter=Q(vote=VoteChoice.REJECT)),
        )
    )
    groups: dict[tuple[str, str], list[ApproverVotes]] = {}
    for row in rows:
        groups.setdefault((row["risk"], row["category"]), []).append(
            ApproverVotes(
                voter_id=row["voter_id"],
                name=row["voter__username"],
                approvals=row["approvals"],
                rejections=row["rejections"],
            )
        )
    tests = [
        bias_test(risk, category, approvers, min_votes=SELECTION_BIAS_MIN_VOTES)
        for (risk, category), approvers in groups.items()
    ]
    tests.sort(key=lambda test: (RiskLevel.rank(test.risk_level), test.category))
    return SelectionBias(
        start=start, end=end, min_votes=SELECTION_BIAS_MIN_VOTES, tests=tuple(tests)
    )


# --- the weekly report ----------------------------------------------------------------------


def as_json(rates: ApprovalRates, bias: SelectionBias) -> dict[str, Any]:
    """Both figures as plain JSON values (kept in the weekly report's row; `report_text` reads
    this form back, so the email can be written again from the row alone)."""
    return {
        "start": rates.start.isoformat(),
        "end": rates.end.isoformat(),
        "rates": {
            "min_sample": rates.min_sample,
            "threshold": rates.threshold,
            "kinds": [
                {
                    "kind": kind.kind,
                    "label": kind.label,
                    "groups": [
                        {
                            "risk_level": group.risk_level,
                            "group": group.group,
                            "decided": group.decided,
                            "approved": group.approved,
                            "changed": group.changed,
                            "rate": group.rate,
                            "enough_data": group.enough_data,
                            "best_group": group.best_group,
                            "best_rate": group.best_rate,
                            "ratio": group.ratio,
                            "flagged": group.flagged,
                        }
                        for group in kind.groups
                    ],
                }
                for kind in rates.kinds
            ],
        },
        "bias": {
            "min_votes": bias.min_votes,
            "factor": SELECTION_BIAS_FACTOR,
            "tests": [
                {
                    "risk_level": test.risk_level,
                    "category": test.category,
                    "votes": test.votes,
                    "approvals": test.approvals,
                    "rejections": test.rejections,
                    "approvers": [
                        {
                            "voter_id": approver.voter_id,
                            "name": approver.name,
                            "approvals": approver.approvals,
                            "rejections": approver.rejections,
                        }
                        for approver in test.approvers
                    ],
                    "enough_data": test.enough_data,
                    "why_not": test.why_not,
                    "chi_square": test.chi_square,
                    "dof": test.dof,
                    "threshold": test.threshold,
                    "p_value": test.p_value,
                    "flagged": test.flagged,
                }
                for test in bias.tests
            ],
        },
    }


def _pct(rate: float | None) -> str:
    return "—" if rate is None else f"{rate * 100:.1f} %"


def _group_line(group: Mapping[str, Any], min_sample: int) -> str:
    counts = f"{group['approved']} of {group['decided']} approved"
    if not group["enough_data"]:
        return (
            f"  {group['risk_level']:<8} {group['group']:<28} {counts}: not enough data "
            f"({group['decided']} of {min_sample})"
        )
    ratio = "—" if group["ratio"] is None else f"{group['ratio']:.2f}"
    mark = "  BELOW 0.8" if group["flagged"] else ""
    return (
        f"  {group['risk_level']:<8} {group['group']:<28} {counts} ({_pct(group['rate'])}), "
        f"ratio {ratio} vs {group['best_group']}{mark}"
    )


def _test_line(test: Mapping[str, Any], min_votes: int) -> str:
    where = f"  {test['risk_level']:<8} {test['category']:<14}"
    counts = (
        f"{test['votes']} votes by {len(test['approvers'])} approver(s) "
        f"({test['approvals']} approve, {test['rejections']} reject)"
    )
    if not test["enough_data"]:
        return f"{where} {counts}: not enough data ({test['why_not']})"
    verdict = "ABOVE THRESHOLD" if test["flagged"] else "within threshold"
    return (
        f"{where} {counts}: chi-square {test['chi_square']:.2f} (dof {test['dof']}, "
        f"p = {test['p_value']:.4f}), threshold {test['threshold']}, {verdict}"
    )


def report_text(figures: Mapping[str, Any]) -> str:
    """The weekly report's plain text, from `as_json`'s form: what is flagged first, then every
    table with its counts."""
    rates, bias = figures["rates"], figures["bias"]
    min_sample, min_votes = rates["min_sample"], bias["min_votes"]
    lines = [
        f"Fairness of decisions, {figures['start'][:10]} to {figures['end'][:10]} (UTC).",
        "",
    ]
    flagged_rates = [
        (kind["label"], group)
        for kind in rates["kinds"]
        for group in kind["groups"]
        if group["flagged"]
    ]
    flagged_tests = [test for test in bias["tests"] if test["flagged"]]
    if flagged_rates or flagged_tests:
        lines.append("FLAGGED")
        for label, group in flagged_rates:
            lines.append(f"- {label}:" + _group_line(group, min_sample)[1:])
        for test in flagged_tests:
            lines.append("- Selection bias:" + _test_line(test, min_votes)[1:])
    else:
        lines.append("Nothing flagged this period.")
    lines += [
        "",
        f"Approval rates per risk level; ratio = the group's rate over the best-treated group's "
        f"(same kind, same risk level); below {rates['threshold']} is flagged (the 80 % rule). "
        f"Fewer than {min_sample} decisions: not enough data.",
    ]
    for kind in rates["kinds"]:
        lines += ["", f"By {kind['label'].lower()}:"]
        if not kind["groups"]:
            lines.append("  no decisions")
        lines += [_group_line(group, min_sample) for group in kind["groups"]]
    lines += [
        "",
        f"Selection bias across approvers (chi-square of approvers x decision, comparable "
        f"requests: same risk level and category); flagged above {bias['factor']} x the number "
        f"of approvers. Fewer than {min_votes} votes: not enough data.",
    ]
    if not bias["tests"]:
        lines.append("  no votes")
    lines += [_test_line(test, min_votes) for test in bias["tests"]]
    return "\n".join(lines) + "\n"
