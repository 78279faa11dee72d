"""What a grant covers and may waive, as plain values (`grants.rules`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from approvals.binding import params_sha256
from grants import rules
from guardrails.rules import ALLOW, DENY, REQUIRE_APPROVAL, Reason, Verdict, compile_policy


@dataclass(frozen=True)
class Terms:
    action: str = "write_file"
    kind: str = "pinned"
    params_sha256: str = ""
    pins: dict[str, Any] = field(default_factory=dict)
    risk_level: str = "medium"


PARAMS = {"path": "/srv/app/notes.txt", "content": "hello", "mode": 1}
DIGEST = params_sha256("write_file", PARAMS)


def covered(terms: Terms, params: dict[str, Any] = PARAMS, **kw: Any) -> bool:
    kw.setdefault("action", "write_file")
    kw.setdefault("risk_level", "medium")
    kw.setdefault("digest", params_sha256(kw["action"], params))
    return rules.covers(terms, params=params, **kw)


def test_an_exact_grant_covers_its_call_only():
    exact = Terms(kind="exact", params_sha256=DIGEST)
    assert covered(exact)
    assert not covered(exact, {**PARAMS, "content": "hello!"})
    assert not covered(exact, {**PARAMS, "mode": True}), "1 and true are different arguments"
    assert not covered(exact, {**PARAMS, "extra": 1})
    assert not covered(Terms(kind="exact", params_sha256=""))


@pytest.mark.parametrize(
    ("pins", "params", "expected"),
    [
        ({"path": {"equals": "/srv/app/notes.txt"}}, PARAMS, True),
        ({"path": {"equals": "/srv/app/notes.txt"}}, {**PARAMS, "content": "other"}, True),
        ({"path": {"equals": "/srv/app/notes.txt"}}, {**PARAMS, "path": "/srv/app/x"}, False),
        ({"path": {"equals": "/srv/app/notes.txt"}}, {"content": "no path"}, False),
        ({"mode": {"equals": 1}}, {**PARAMS, "mode": True}, False),
        ({"mode": {"equals": 1}}, {**PARAMS, "mode": 1.5}, False),
        ({"path": {"prefix": "/srv/app"}}, {**PARAMS, "path": "/srv/app/sub/x.txt"}, True),
        ({"path": {"prefix": "/srv/app"}}, {**PARAMS, "path": "/srv/app"}, True),
        ({"path": {"prefix": "/srv/app"}}, {**PARAMS, "path": "/srv/application/x"}, False),
        ({"path": {"prefix": "/srv/app"}}, {**PARAMS, "path": "/srv/app/../etc/passwd"}, False),
        ({"path": {"prefix": "/srv/app"}}, {**PARAMS, "path": ["/srv/app/x"]}, False),
        ({"content": {"prefix": "hel"}}, PARAMS, False),  # prefixes only for path-like keys
        ({"path": {"other": "x"}}, PARAMS, False),
        ({}, PARAMS, False),  # never a grant that pins nothing
    ],
)
def test_pins(pins, params, expected):
    assert covered(Terms(pins=pins), params) is expected


def test_a_grant_never_covers_another_action_a_raised_risk_or_a_critical_call():
    terms = Terms(pins={"path": {"prefix": "/srv/app"}})
    assert covered(terms, risk_level="low")
    assert not covered(terms, action="read_file")
    assert not covered(terms, risk_level="high")
    assert not covered(Terms(pins=terms.pins, risk_level="high"), risk_level="critical")
    assert not covered(terms, risk_level=None)


def _verdict(*codes: str, risk: str = "medium", policy: bool = True) -> Verdict:
    effects = {"budget_exceeded_deny": DENY}
    reasons = tuple(
        Reason(code.removesuffix("_deny"), "why", effects.get(code, REQUIRE_APPROVAL), 10)
        for code in codes
    )
    compiled = compile_policy(
        id=1,
        name="write_file",
        scope="global",
        version=1,
        version_id=1,
        category="write",
        risk_level=risk,
    )
    decision = (
        DENY if any(r.effect == DENY for r in reasons) else (REQUIRE_APPROVAL if reasons else ALLOW)
    )
    return Verdict(decision, reasons, risk, "write", compiled if policy else None)


@pytest.mark.parametrize(
    ("codes", "risk", "waivable"),
    [
        (("policy_requires_approval",), "medium", True),
        (("autonomy_level",), "high", True),
        (("policy_requires_approval", "autonomy_level"), "low", True),
        (("policy_requires_approval", "critical_risk"), "critical", False),
        (("policy_requires_approval",), "critical", False),
        (("consecutive_failures", "policy_requires_approval"), "medium", False),
        (("loop_detected",), "medium", False),
        (("confidence_low",), "medium", False),
        (("confidence_very_low", "policy_requires_approval"), "medium", False),
        (("budget_exceeded", "policy_requires_approval"), "medium", False),  # ask mode
        (("rate_limit_unavailable", "policy_requires_approval"), "medium", False),
        (("unknown_action",), "high", False),
        (("budget_exceeded_deny", "policy_requires_approval"), "medium", False),
        ((), "medium", False),  # an allow needs no grant
    ],
)
def test_only_the_policys_flag_and_the_autonomy_level_may_be_waived(codes, risk, waivable):
    assert rules.waivable(_verdict(*codes, risk=risk)) is waivable


def test_no_grant_answers_without_a_policy():
    assert not rules.waivable(_verdict("policy_requires_approval", policy=False))


def test_the_answer_is_allow_with_the_grants_reason_deciding():
    ends = datetime(2030, 1, 2, 3, 4, tzinfo=UTC)
    answer = rules.allowed(
        _verdict("policy_requires_approval"),
        grant_id=7,
        granted_by="Ada",
        uses_left=2,
        expires_at=ends,
    )
    assert answer.decision == ALLOW
    assert answer.codes == ["policy_requires_approval", "standing_approval"]
    assert answer.deciding is not None
    assert answer.deciding.code == "standing_approval"
    assert "#7" in answer.deciding.message
    assert "Ada" in answer.deciding.message
    assert "2 uses left" in answer.deciding.message


def test_pins_are_built_from_the_approved_values():
    pins = rules.build_pins(PARAMS, {"content": "", "path": "/srv/app"})
    assert pins == {"content": {"equals": "hello"}, "path": {"prefix": "/srv/app"}}


@pytest.mark.parametrize(
    ("chosen", "message"),
    [
        ({}, "at least one"),
        ({"nope": ""}, "not among"),
        ({"content": "hel"}, "path-like"),
        ({"path": "/"}, "everything"),
        ({"path": "///"}, "everything"),
        ({"path": "/srv/other"}, "does not lie under"),
        ({"path": "/srv/ap"}, "does not lie under"),
        ({"path": "/srv/../srv/app"}, "does not lie under"),
    ],
)
def test_pins_that_are_refused(chosen, message):
    with pytest.raises(rules.GrantProblem, match=message):
        rules.build_pins(PARAMS, chosen)


def test_a_url_prefix_must_name_a_site():
    params = {"url": "https://api.example.com/v1/items"}
    assert rules.build_pins(params, {"url": "https://api.example.com"})
    with pytest.raises(rules.GrantProblem, match="everything"):
        rules.build_pins(params, {"url": "https://"})


def test_a_grant_lives_at_most_seven_days_and_needs_a_lifetime_or_uses():
    now = datetime(2030, 1, 1, tzinfo=UTC)
    assert rules.expiry(now, lifetime=timedelta(hours=8), max_uses=None) == now + timedelta(hours=8)
    assert rules.expiry(now, lifetime=None, max_uses=3) == now + timedelta(days=7)
    assert rules.expiry(now, lifetime=timedelta(days=7), max_uses=1) == now + timedelta(days=7)
    for lifetime, uses in [
        (timedelta(days=7, seconds=1), None),
        (timedelta(0), None),
        (None, None),
        (timedelta(hours=1), 0),
        (timedelta(hours=1), rules.MAX_USES + 1),
    ]:
        with pytest.raises(rules.GrantProblem):
            rules.expiry(now, lifetime=lifetime, max_uses=uses)
