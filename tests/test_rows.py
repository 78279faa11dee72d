"""`insert_row` writes exactly the row `save(force_insert=True)` would, or refuses the model."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import models
from django.db.models.signals import pre_save

from approvals.models import ApprovalRequest, EmailDelivery, EmailKind
from audit.models import ChainVerification
from oversight.rows import insert_row


def _stored(instance: models.Model) -> dict[str, Any]:
    model = type(instance)
    names = [f.attname for f in model._meta.concrete_fields]
    row = model._default_manager.values(*names).get(pk=instance.pk)
    return {name: row[name] for name in names}


def _in_memory(instance: models.Model) -> dict[str, Any]:
    return {f.attname: getattr(instance, f.attname) for f in type(instance)._meta.concrete_fields}


def test_an_inserted_request_reads_back_as_the_orm_would_have_written_it(db, new_request):
    template = new_request(params={"nested": {"text": "héllo ☃", "n": [1, 2.5, None]}})
    fields = {
        f.attname: getattr(template, f.attname) for f in ApprovalRequest._meta.concrete_fields
    }
    fields.pop("id")
    via_insert_row, via_save = ApprovalRequest(**fields), ApprovalRequest(**fields)

    insert_row(via_insert_row)
    via_save.save(force_insert=True)

    assert not via_insert_row._state.adding
    assert via_insert_row._state.db == "default"
    assert _stored(via_insert_row) == _in_memory(via_insert_row)
    assert {**_stored(via_insert_row), "id": None} == {**_stored(via_save), "id": None}


def test_field_defaults_are_applied_as_by_save(db, new_request):
    request = new_request()
    email = EmailDelivery(request=request, kind=EmailKind.CREATED, tier="team_lead")
    insert_row(email)
    stored = EmailDelivery.objects.get(pk=email.pk)
    assert stored.status == email.status
    assert stored.created_at == email.created_at
    assert stored.sent_to == []
    assert _stored(email) == _in_memory(email)


def test_a_model_with_a_database_set_key_is_refused(db):
    with pytest.raises(TypeError, match="primary key set in Python"):
        insert_row(ChainVerification(intact=True, events_checked=0, duration_seconds=0))


def test_a_model_with_save_signal_receivers_is_refused(db, new_request):
    request = new_request()

    def receiver(**kwargs: Any) -> None:
        pass

    pre_save.connect(receiver, sender=EmailDelivery)
    try:
        with pytest.raises(TypeError, match="save signals"):
            insert_row(EmailDelivery(request=request, kind=EmailKind.CREATED, tier="team_lead"))
    finally:
        pre_save.disconnect(receiver, sender=EmailDelivery)
