"""Fixtures for the callback tests: a receiver, and DNS answers the test chooses."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tests.support.receivers import FakeDns, Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> FakeDns:
    """Made-up names resolve as the test says (`dns.answers`); every other name as usual."""
    fake = FakeDns()
    real = socket.getaddrinfo
    monkeypatch.setattr(
        socket, "getaddrinfo", lambda *args, **kwargs: fake.getaddrinfo(real, *args, **kwargs)
    )
    return fake
