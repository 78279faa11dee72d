"""StrictSerializer's per-instance fields: shallow copies, each bound to its own serializer."""

from __future__ import annotations

from rest_framework import serializers
from rest_framework.utils.formatting import lazy_format

from approvals.serializers import CreateRequestSerializer
from oversight.fields import StrictCharField, StrictSerializer

VALID = {"action": "deploy", "risk_level": "high", "justification": "why"}


def test_each_serializer_binds_its_own_copies_and_the_declared_fields_stay_unbound():
    first, second = CreateRequestSerializer(data=VALID), CreateRequestSerializer(data=VALID)
    for name, declared in CreateRequestSerializer._declared_fields.items():
        mine, theirs = first.fields[name], second.fields[name]
        assert mine is not theirs
        assert mine is not declared
        assert (mine.parent, theirs.parent) == (first, second)
        assert mine.field_name == name
        assert declared.field_name is None
        assert declared.parent is None


def test_validating_one_request_leaves_nothing_behind_for_the_next():
    bad = CreateRequestSerializer(
        data={
            "action": "x" * 201,
            "risk_level": "extreme",
            "justification": 5,
            "confidence": 1.5,
            "callback_url": "ftp://example.com/hook",
        }
    )
    assert not bad.is_valid()
    assert set(bad.errors) == {
        "action",
        "risk_level",
        "justification",
        "confidence",
        "callback_url",
    }
    good = CreateRequestSerializer(data={**VALID, "confidence": 0.5})
    assert good.is_valid(), good.errors
    assert good.validated_data["urgency"] == "normal"
    assert good.validated_data["params"] == {}
    # The default is built afresh for every request, not shared through the copies.
    good.validated_data["params"]["mutated"] = True
    again = CreateRequestSerializer(data=VALID)
    assert again.is_valid()
    assert again.validated_data["params"] == {}
    # The checks that ran on the bad body still run: they were not spent on it.
    assert not CreateRequestSerializer(data={**VALID, "risk_level": "extreme"}).is_valid()


def test_a_field_holding_fields_is_copied_deeply_so_its_child_belongs_to_this_serializer():
    class Tagged(StrictSerializer):
        tags = serializers.ListField(child=StrictCharField(max_length=3))

    first, second = Tagged(data={"tags": ["abcd"]}), Tagged(data={"tags": ["ok"]})
    mine, theirs = first.fields["tags"], second.fields["tags"]
    assert isinstance(mine, serializers.ListField)
    assert isinstance(theirs, serializers.ListField)
    assert mine.child is not theirs.child
    assert mine.child.parent is mine
    assert not first.is_valid()
    assert second.is_valid(), second.errors


def test_the_shared_validators_messages_are_worded_before_any_request_uses_them():
    """DRF caches a worded message in an object two threads must not fill at once."""
    messages = [
        getattr(validator, "message", None)
        for field in CreateRequestSerializer._declared_fields.values()
        for validator in field.validators
    ]
    worded = [message for message in messages if isinstance(message, lazy_format)]
    assert len(worded) >= 5  # action and justification lengths, confidence and cost bounds
    assert all(message.result is not None for message in worded)
