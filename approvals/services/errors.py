"""The refusals of approvals' services, each with its API status and code."""

from __future__ import annotations

from typing import Any

from agents.models import Agent, AgentStatus
from guardrails.rules import DENY, Verdict
from guardrails.services import CheckOutcome
from oversight.fields import params_problem


class ApprovalError(Exception):
    """A refused state change, with a stable code and the HTTP status the API answers with."""

    code = "conflict"
    status = 409

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotPending(ApprovalError):
    code = "not_pending"


class RequestExpired(ApprovalError):
    code = "expired"


class AlreadyVoted(ApprovalError):
    code = "already_voted"


class NotAllowed(ApprovalError):
    code = "not_allowed"
    status = 403


class ArgumentsChanged(ApprovalError):
    code = "arguments_changed"


class Invalid(ApprovalError):
    code = "invalid"
    status = 422


class BudgetRefused(ApprovalError):
    code = "budget_exceeded"
    status = 403


class GuardrailDenied(ApprovalError):
    """The create's guardrails check answered deny: 403 with the deciding reason's code (e.g.
    `forbidden_pattern`, `budget_exceeded`) and every reason."""

    status = 403

    def __init__(self, check: CheckOutcome) -> None:
        deciding = check.verdict.deciding
        assert deciding is not None
        self.code = deciding.code
        self.check = check
        super().__init__(f"The guardrails refuse this action: {deciding.message}")

    @property
    def details(self) -> dict[str, Any]:
        return {
            "reasons": [reason.as_json() for reason in self.check.verdict.reasons],
            "violation_id": self.check.violation_id,
        }


class AgentStopped(ApprovalError):
    status = 403

    def __init__(self, agent: Agent) -> None:
        self.code = "agent_paused" if agent.status == AgentStatus.PAUSED else "agent_disabled"
        super().__init__(f"Agent {agent.name} is {agent.status}; it cannot ask for approvals.")


class EditRefused(ApprovalError):
    """An approver's edited arguments are denied by the guardrails (SPEC §2: changes are
    re-checked): the edit is refused with every reason; nothing changes."""

    status = 422

    def __init__(self, verdict: Verdict) -> None:
        deciding = verdict.deciding
        assert deciding is not None
        self.code = deciding.code
        self.reasons = verdict.reasons
        listed = "; ".join(reason.message for reason in verdict.reasons if reason.effect == DENY)
        super().__init__(f"The guardrails refuse the changed arguments: {listed}")


class AgentFrozen(ApprovalError):
    """A vote on a request of an agent that is paused or disabled (SPEC §2: a stopped agent's
    requests are frozen; nothing it asked for may be approved while it is stopped)."""

    def __init__(self, agent: Agent, message: str) -> None:
        self.code = "agent_paused" if agent.status == AgentStatus.PAUSED else "agent_disabled"
        super().__init__(message)


def check_params_size(params: dict[str, Any]) -> None:
    problem = params_problem(params)
    if problem:
        raise Invalid(problem)
