"""Admin for monitoring: read-only. Alerts come from beat's evaluation (`monitoring.alerts`),
the fairness reports from the weekly task; the page shows both."""

from __future__ import annotations

from django.contrib import admin

from monitoring.models import FairnessReport, MonitorAlert
from oversight.admin import ReadOnlyAdmin


@admin.register(MonitorAlert)
class MonitorAlertAdmin(ReadOnlyAdmin):
    list_display = ("fired_at", "metric", "subject", "state", "value", "threshold", "resolved_at")
    list_filter = ("metric", "state")
    search_fields = ("subject", "message")


@admin.register(FairnessReport)
class FairnessReportAdmin(ReadOnlyAdmin):
    list_display = ("week_start", "status", "sent_to", "delivered_at")
