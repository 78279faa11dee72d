"""The audit vocabulary: every kind of event the trail records (SPEC §7).

The list is closed on purpose: `record_event` refuses a type that is not here, so a typo cannot
start a new kind of event that no report or filter knows about. Each value is documented in
audit/README.md ("Event types"); add the documentation when you add a value.
"""

from __future__ import annotations

from django.db import models


class EventType(models.TextChoices):
    # People and sessions
    LOGIN_SUCCEEDED = "login.succeeded", "Login succeeded"
    LOGIN_LOCKED_OUT = "login.locked_out", "Login locked out"
    # Written once per failed login before lockouts were audited instead; kept for older trails.
    LOGIN_FAILED = "login.failed", "Login failed"
    USER_CREATED = "user.created", "Person created"
    USER_CHANGED = "user.changed", "Person's access changed"
    DELEGATION_SET = "delegation.set", "Away: requests delegated"
    DELEGATION_ENDED = "delegation.ended", "Back: delegation ended"

    # Agents and their keys
    AGENT_CREATED = "agent.created", "Agent created"
    AGENT_CHANGED = "agent.changed", "Agent changed"
    AGENT_STATUS_CHANGED = "agent.status_changed", "Agent status changed"
    AGENT_REENABLE_REQUESTED = "agent.reenable_requested", "Agent re-enable requested"
    AGENT_WEBHOOK_SECRET_ROTATED = "agent.webhook_secret_rotated", "Agent webhook secret rotated"
    API_KEY_CREATED = "api_key.created", "API key created"
    API_KEY_REVOKED = "api_key.revoked", "API key revoked"

    # Approval requests
    REQUEST_CREATED = "request.created", "Request created"
    REQUEST_VOTED = "request.voted", "Vote cast"
    REQUEST_EDITED = "request.edited", "Arguments changed (not counted as an approval)"
    REQUEST_SELF_APPROVED = "request.self_approved", "Self-approval"
    REQUEST_DECIDED = "request.decided", "Request decided"
    REQUEST_ESCALATED = "request.escalated", "Request escalated"
    REQUEST_EXPIRED = "request.expired", "Request expired"
    REQUEST_CANCELLED = "request.cancelled", "Request cancelled"
    CALLBACK_RETRIED = "callback.retried", "Failed callback retried"

    # Standing approvals (grants)
    GRANT_CREATED = "grant.created", "Standing approval granted"
    GRANT_USED = "grant.used", "Standing approval used"
    GRANT_REVOKED = "grant.revoked", "Standing approval revoked"
    GRANT_VOIDED = "grant.voided", "Standing approval voided (policy changed)"

    # Guardrails and budgets
    GUARDRAIL_VIOLATION = "guardrail.violation", "Guardrail violation"
    GUARDRAIL_ALERT = "guardrail.alert", "Repeated guardrail violations"
    DATA_ACCESSED = "data.accessed", "Sensitive data accessed"
    BUDGET_ALERT = "budget.alert", "Budget alert"
    BUDGET_RAISED = "budget.raised", "Budget cap raised by an approval"

    # Agent controls
    OUTCOME_REPORTED = "outcome.reported", "Outcome reported"
    EXECUTION_MISMATCH = "execution.mismatch", "Execution mismatch (security)"
    BREAKER_OPENED = "agent.breaker_opened", "Circuit breaker opened"
    BREAKER_CLOSED = "agent.breaker_closed", "Circuit breaker closed"
    AGENT_ALERT = "agent.alert", "Agent alert"
    AUTONOMY_CHANGED = "autonomy.changed", "Autonomy changed"

    # Monitoring
    MONITOR_ALERT_FIRED = "monitoring.alert_fired", "Monitoring alert fired"
    MONITOR_ALERT_RESOLVED = "monitoring.alert_resolved", "Monitoring alert resolved"

    # Configuration
    POLICY_CHANGED = "policy.changed", "Policy changed"
    ROUTE_CHANGED = "route.changed", "Escalation route changed"
    BUDGET_CHANGED = "budget.changed", "Budget changed"
    PRICE_CHANGED = "price.changed", "Model price changed"
    PRICE_DELETED = "price.deleted", "Model price deleted"

    # Compliance
    EXPORT_MADE = "export.made", "Export made"
    REPORT_GENERATED = "report.generated", "Report generated"
    SIGNING_KEY_ROTATED = "audit.key_rotated", "Checkpoint signing key rotated"


class ActorType(models.TextChoices):
    USER = "user", "Person"
    AGENT = "agent", "Agent"
    SYSTEM = "system", "System"
