"""Costs computed at ingestion with the price version in force, kept with that version."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from audit.models import AuditEvent
from budgets import services
from budgets.models import Alert, AlertEmail, CostRecord, ModelPrice
from tests.budgets.helpers import report

pytestmark = pytest.mark.django_db


def test_the_seed_documents_example_call_costs_what_it_says(make_agent):
    # The seed: gpt-4, 3000 input + 1500 output tokens = $0.18.
    outcome = report(make_agent().agent, "gpt-4", 3000, 1500)
    assert outcome.record.cost_cents == Decimal("18.00000000")
    assert outcome.record.price is not None
    assert outcome.record.price.model == "gpt-4"
    assert not outcome.record.unknown_model


def test_cached_tokens_use_the_cached_rate_or_the_input_rate_without_one(make_agent):
    agent = make_agent().agent
    # gpt-4o: 250 ¢ input, 1000 ¢ output, 125 ¢ cached per million tokens.
    cached = report(agent, "gpt-4o", 1_000_000, 2_000, cached_input_tokens=400_000)
    assert cached.record.cost_cents == Decimal("250") + Decimal("2") + Decimal("50")
    # gpt-4 has no cache discount: cached tokens cost the input rate (3000 ¢ per million).
    plain = report(agent, "gpt-4", 0, 0, cached_input_tokens=1)
    assert plain.record.cost_cents == Decimal("0.00300000")


def test_tiny_calls_are_exact_to_a_hundred_millionth_of_a_cent(make_agent):
    outcome = report(make_agent().agent, "gpt-4o-mini", 1, 1, cached_input_tokens=1)
    # 15 + 60 + 7.5 ¢ per million tokens
    assert outcome.record.cost_cents == Decimal("0.00008250")


@pytest.mark.parametrize(
    ("reported", "priced"),
    [
        ("GPT-4o", "gpt-4o"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("claude-3-5-sonnet-20241022", "claude-3-5-sonnet"),
        ("gpt-4-0613", "gpt-4"),
        ("claude-sonnet-4-5", "claude-sonnet-4-5"),
    ],
)
def test_provider_snapshot_names_use_their_models_price(make_agent, reported, priced):
    outcome = report(make_agent().agent, reported)
    assert outcome.record.price is not None
    assert outcome.record.price.model == priced
    assert outcome.record.model == reported


def test_an_unknown_model_is_recorded_flagged_and_alerted_once_a_day(make_agent):
    agent = make_agent().agent
    first = report(agent, "llama-99-mega", 5000, 5000)
    second = report(agent, "llama-99-mega", 10, 10)
    for outcome in (first, second):
        assert outcome.record.unknown_model
        assert outcome.record.price is None
        assert outcome.record.cost_cents == 0
    assert CostRecord.objects.filter(unknown_model=True).count() == 2
    (alert,) = Alert.objects.filter(kind="unknown_model")
    assert alert.model == "llama-99-mega"
    events = AuditEvent.objects.filter(event_type="budget.alert", subject_id="llama-99-mega")
    assert events.count() == 1
    assert AlertEmail.objects.filter(alert=alert).count() == 1  # emailed once, via the outbox


def test_a_new_price_version_applies_from_its_start_and_history_is_not_recomputed(make_agent):
    agent = make_agent().agent
    before = report(agent, "gpt-4o", 1_000_000, 0)
    services.save_price(
        price=ModelPrice(
            model="gpt-4o",
            effective_from=timezone.now(),
            input_cents_per_mtok=Decimal(200),
            output_cents_per_mtok=Decimal(800),
            cached_input_cents_per_mtok=Decimal(100),
        )
    )
    after = report(agent, "gpt-4o", 1_000_000, 0)
    assert after.record.cost_cents == Decimal(200)
    assert after.record.price_id != before.record.price_id
    before.record.refresh_from_db()
    assert before.record.cost_cents == Decimal(250)
    assert AuditEvent.objects.filter(event_type="price.changed").count() == 1


def test_a_price_version_that_costs_used_cannot_be_changed(make_agent):
    outcome = report(make_agent().agent, "gpt-4o", 1000, 0)
    price = outcome.record.price
    assert price is not None
    price.input_cents_per_mtok = Decimal(1)
    with pytest.raises(ValidationError, match="add a new version"):
        services.save_price(price=price)


def test_a_future_price_is_not_used_before_its_start(make_agent):
    services.save_price(
        price=ModelPrice(
            model="brand-new-model",
            effective_from=timezone.now() + timedelta(days=1),
            input_cents_per_mtok=Decimal(100),
            output_cents_per_mtok=Decimal(100),
        )
    )
    assert report(make_agent().agent, "brand-new-model").record.unknown_model
