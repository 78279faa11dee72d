from __future__ import annotations

import pytest

from agents import keys, services
from agents.models import ApiKey


def test_generated_key_has_the_documented_shape_and_parses_back():
    new = keys.generate()
    assert new.plaintext.startswith(f"ovs_{new.prefix}_")
    parsed = keys.parse(new.plaintext)
    assert parsed is not None
    assert parsed.prefix == new.prefix
    assert keys.secret_matches(parsed.secret, new.secret_hash)


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "ovs_",
        "ovs_abc_def",
        "sk_live_whatever",
        "ovs_ABCDEFGHIJKL_" + "a" * 40,
        "ovs_abcdefghijkl_" + "a" * 39,
    ],
)
def test_malformed_keys_do_not_parse(raw):
    assert keys.parse(raw) is None


def test_a_wrong_secret_does_not_match():
    new = keys.generate()
    other = keys.parse(keys.generate().plaintext)
    assert other is not None
    assert not keys.secret_matches(other.secret, new.secret_hash)


def test_only_the_hash_of_the_secret_is_stored(make_agent):
    created = make_agent()
    row = ApiKey.objects.get(agent=created.agent)
    parsed = keys.parse(created.key)
    assert parsed is not None
    assert row.prefix == parsed.prefix
    assert row.secret_hash == keys.hash_secret(parsed.secret)
    stored = " ".join(str(value) for value in ApiKey.objects.values_list().get(pk=row.pk))
    assert parsed.secret not in stored


def test_revoking_twice_reports_the_second_as_a_no_op(make_agent):
    created = make_agent()
    key = ApiKey.objects.get(agent=created.agent)
    assert services.revoke_api_key(api_key=key) is True
    assert services.revoke_api_key(api_key=key) is False
