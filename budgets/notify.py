"""What happens after a budget alert commits: email the people who watch budgets.

Called only through `on_commit`, so a rolled-back alert notifies nobody. The page shows alerts
live by refreshing its alert list (htmx polling), so only email is sent from here.
TODO(#6): move the email onto the shared transactional email outbox when it lands; until then a
broker that is down at commit time loses the email (the alert row and its audit event stay).
"""

from __future__ import annotations

import logging

from django.db import transaction

logger = logging.getLogger(__name__)


def alert_on_commit(alert_id: int) -> None:
    """Enqueue the alert's notification once the current transaction commits."""
    transaction.on_commit(lambda: _dispatch(alert_id), robust=True)


def _dispatch(alert_id: int) -> None:
    from budgets.tasks import email_alert

    try:
        email_alert.delay(alert_id)
    except Exception:  # broker down: the alert is on the page and in the audit trail
        logger.warning("could not queue the email for budget alert %s", alert_id)
