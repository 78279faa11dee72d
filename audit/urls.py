from __future__ import annotations

from django.urls import path

from audit import exports, proofs, views

app_name = "audit"

urlpatterns = [
    # The compliance landing page; the search of the trail is one click from it.
    path("", views.overview, name="overview"),
    path("events/", views.events, name="events"),
    path("report/", views.report, name="report"),
    path("report.pdf", views.report_pdf, name="report_pdf"),
    path("requests/<uuid:request_id>/record/", views.decision_record, name="decision_record"),
    path(
        "requests/<uuid:request_id>/record.pdf",
        views.decision_record_pdf,
        name="decision_record_pdf",
    ),
    path("verify/", views.verify, name="verify"),
    path("checkpoints/latest", proofs.latest_checkpoint, name="latest_checkpoint"),
    path("proofs/inclusion", proofs.inclusion, name="inclusion_proof"),
    path("proofs/consistency", proofs.consistency, name="consistency_proof"),
    path("export/", exports.export, name="export"),
]
