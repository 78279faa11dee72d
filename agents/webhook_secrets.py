"""Webhook secrets: the keys that sign an agent's callbacks (SPEC §3, §9.9).

A secret looks like `whsec_<43 URL-safe characters>` (256 random bits); the HMAC key is the whole
string's UTF-8 bytes, exactly as shown to the agent.

Unlike an API key, a webhook secret cannot be stored as a hash: the server needs the secret
itself to compute each callback's HMAC, and so does the agent to check it. So it is stored
encrypted (Fernet: AES-128-CBC with an HMAC-SHA256 tag), under a key derived with HKDF from
Django's SECRET_KEY, and decrypted only to sign. A database dump or backup alone does not reveal
it; SECRET_KEY does, as it already unlocks sessions and password-reset links.

Rotating SECRET_KEY: move the old value into SECRET_KEY_FALLBACKS. Secrets encrypted under it
still decrypt (MultiFernet tries each key) and are re-encrypted under the new key the next time
they are written (a rotation); drop the fallback once every agent's secret has been rotated.
"""

from __future__ import annotations

import base64
import secrets

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

PREFIX = "whsec_"
# Names this use of SECRET_KEY, so the derived key is useless for anything else.
_HKDF_INFO = b"oversight/agents/webhook-secret-encryption/v1"


class UndecryptableSecret(Exception):
    """The stored secret does not decrypt with SECRET_KEY or any of SECRET_KEY_FALLBACKS."""


def generate() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def encrypt(secret: str) -> str:
    return _fernet().encrypt(secret.encode()).decode("ascii")


def decrypt(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode("ascii")).decode()
    except InvalidToken:
        raise UndecryptableSecret(
            "A webhook secret does not decrypt: was SECRET_KEY changed without keeping the old "
            "one in SECRET_KEY_FALLBACKS?"
        ) from None


def fernet_key(secret_key: str) -> bytes:
    """The Fernet key for one SECRET_KEY. (Migration 0004, which encrypted the secrets stored
    before, has a frozen copy: change this only with a new `_HKDF_INFO` version.)"""
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(
        secret_key.encode()
    )
    return base64.urlsafe_b64encode(derived)


def _fernet() -> MultiFernet:
    # Derived per call (microseconds), so a test's or a deployment's change of SECRET_KEY is
    # never hidden behind a stale cached key.
    keys = [settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS]
    return MultiFernet([Fernet(fernet_key(key)) for key in keys])
