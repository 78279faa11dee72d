"""API key format: `ovs_<prefix>_<secret>`.

The prefix (12 lowercase letters/digits) is stored in clear and indexed, so a key is found with
one lookup; the secret (40 letters/digits, ~238 bits) is stored only as its SHA-256. A slow
password hash would add nothing for a secret this long and would cost every API call.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from typing import NamedTuple

_PREFIX_ALPHABET = string.ascii_lowercase + string.digits
_SECRET_ALPHABET = string.ascii_letters + string.digits
PREFIX_LENGTH = 12
SECRET_LENGTH = 40
_KEY_RE = re.compile(rf"^ovs_([a-z0-9]{{{PREFIX_LENGTH}}})_([A-Za-z0-9]{{{SECRET_LENGTH}}})$")


class ParsedKey(NamedTuple):
    prefix: str
    secret: str


class NewKey(NamedTuple):
    prefix: str
    secret_hash: str
    plaintext: str


def generate() -> NewKey:
    prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(PREFIX_LENGTH))
    secret = "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(SECRET_LENGTH))
    return NewKey(prefix, hash_secret(secret), f"ovs_{prefix}_{secret}")


def parse(raw: str) -> ParsedKey | None:
    match = _KEY_RE.match(raw)
    return ParsedKey(match[1], match[2]) if match else None


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_hash)
