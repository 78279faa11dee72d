"""Checkpoint signing (SPEC §7): an Ed25519 key, and notes in the C2SP signed-note format.

A checkpoint (C2SP `tlog-checkpoint`) is the note text

    <origin>\\n<tree size>\\n<base64 root hash>\\n

followed by a blank line and one signature line per signer, `— <key name> <base64(key id ‖
signature)>`, where the key id is the first 4 bytes of SHA-256(key name ‖ 0x0A ‖ 0x01 ‖ public
key) and the signature is Ed25519 over the text. A verifier's key is written as the vkey
`<key name>+<hex key id>+<base64(0x01 ‖ public key)>`.

The key is the base64 of a 32-byte seed in OVERSIGHT_AUDIT_SIGNING_KEY; unset, one is generated
into OVERSIGHT_AUDIT_SIGNING_KEY_FILE (mode 0600) the first time it is needed. Rotating it:
docs/compliance.md (the next checkpoint is signed with the new key, and that is audited).
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

ED25519 = b"\x01"
SIGNATURE_PREFIX = "\u2014 "  # an em dash and a space, as C2SP writes it


@dataclass(frozen=True)
class Signer:
    name: str
    key: Ed25519PrivateKey

    @property
    def public_bytes(self) -> bytes:
        return self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.public_bytes)

    @property
    def vkey(self) -> str:
        return vkey(self.name, self.public_bytes)

    def sign(self, text: str) -> str:
        """The note: `text` and its signature line."""
        signature = self.key.sign(text.encode())
        line = base64.b64encode(self.key_id + signature).decode()
        return f"{text}\n{SIGNATURE_PREFIX}{self.name} {line}\n"


def key_id(name: str, public: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + ED25519 + public).digest()[:4]


def vkey(name: str, public: bytes) -> str:
    return f"{name}+{key_id(name, public).hex()}+{base64.b64encode(ED25519 + public).decode()}"


def checkpoint_text(origin: str, size: int, root: bytes) -> str:
    return f"{origin}\n{size}\n{base64.b64encode(root).decode()}\n"


@cache
def signer() -> Signer:
    """The configured key (a process reads it once)."""
    return Signer(settings.OVERSIGHT_CHECKPOINT_ORIGIN, _private_key())


def _private_key() -> Ed25519PrivateKey:
    configured = settings.OVERSIGHT_AUDIT_SIGNING_KEY.strip()
    if configured:
        return _from_seed(configured, "OVERSIGHT_AUDIT_SIGNING_KEY")
    path = Path(settings.OVERSIGHT_AUDIT_SIGNING_KEY_FILE)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        seed = base64.b64encode(os.urandom(32)).decode()
        # Created 0600 and never replaced: another process racing to make one loses cleanly.
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(descriptor, "w") as handle:
                handle.write(seed + "\n")
    return _from_seed(path.read_text().strip(), str(path))


def _from_seed(text: str, where: str) -> Ed25519PrivateKey:
    try:
        seed = base64.b64decode(text, validate=True)
    except ValueError:
        seed = b""
    if len(seed) != 32:
        raise ImproperlyConfigured(f"{where}: expected the base64 of a 32-byte Ed25519 seed.")
    return Ed25519PrivateKey.from_private_bytes(seed)


@dataclass(frozen=True)
class Note:
    origin: str
    size: int
    root: bytes
    text: str
    signatures: list[tuple[str, bytes]]  # (key name, key id ‖ signature)


def parse(note: str) -> Note:
    """A checkpoint note's parts; raises ValueError when it is not one."""
    text, separator, signed = note.partition("\n\n")
    if not separator:
        raise ValueError("no signature block")
    lines = text.split("\n")
    if len(lines) < 3:
        raise ValueError("a checkpoint has an origin, a size and a root hash")
    origin, size_text, root_text = lines[0], lines[1], lines[2]
    if not size_text.isdigit():
        raise ValueError("the size is not a number")
    root = base64.b64decode(root_text, validate=True)
    if len(root) != 32:
        raise ValueError("the root hash is not 32 bytes")
    signatures = []
    for line in signed.rstrip("\n").split("\n"):
        if not line.startswith(SIGNATURE_PREFIX):
            raise ValueError("a signature line starts with an em dash")
        name, _, blob = line[len(SIGNATURE_PREFIX) :].rpartition(" ")
        signatures.append((name, base64.b64decode(blob, validate=True)))
    return Note(origin, int(size_text), root, text + "\n", signatures)


def verify(note: str, verifier_key: str) -> Note:
    """The parsed note when `verifier_key` (a vkey) signed it; raises ValueError otherwise."""
    name, key_hex, key_text = verifier_key.strip().split("+", 2)
    raw = base64.b64decode(key_text, validate=True)
    if raw[:1] != ED25519 or len(raw) != 33:
        raise ValueError("not an Ed25519 vkey")
    public = Ed25519PublicKey.from_public_bytes(raw[1:])
    wanted = bytes.fromhex(key_hex)
    if key_id(name, raw[1:]) != wanted:
        raise ValueError("the vkey's key id does not match its key")
    parsed = parse(note)
    for signer_name, blob in parsed.signatures:
        if signer_name == name and blob[:4] == wanted:
            try:
                public.verify(blob[4:], parsed.text.encode())
            except InvalidSignature:
                raise ValueError("the signature does not verify") from None
            return parsed
    raise ValueError(f"the note carries no signature by {name}+{key_hex}")
