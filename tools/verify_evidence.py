#!/usr/bin/env python3
"""Check an Oversight evidence bundle offline.

    python verify_evidence.py BUNDLE --key PUBKEY [--previous-checkpoint FILE]

Needs Python 3.10+ and the `cryptography` package, nothing else: not Oversight's code, not its
database. PUBKEY is the log's public key as a C2SP vkey (`<name>+<hex key id>+<base64>`), or a
file holding one; FILE is a signed checkpoint note kept from earlier (`latest.note` in the
checkpoint folder, or the `note` of /audit/checkpoints/latest).

It checks, stopping at the first problem:

- the header (line 1) and the trailer (the last line);
- the trailer's checkpoint: a C2SP signed note (`tlog-checkpoint`), signed (Ed25519) by PUBKEY;
- with FILE: that FILE is signed by the same key and the bundle's checkpoint extends it (the
  trailer's RFC 6962 consistency proof from FILE's size): the log only grew in between;
- every event line: in ascending sequence order (consecutive, when the export was of a period
  or of everything: no agent, person, type or risk filter), its hash over its canonical form
  (audit/README.md, "The canonical event, byte for byte"), its link to the line before
  (`prev_hash` is that event's hash, where the two are consecutive events), and its RFC 6962
  inclusion proof (RFC 9162 §2.1.3.2) against the checkpoint's root;
- the trailer's count of events.

Exit status 0 and a one-line summary when all of it holds; 1 naming the first bad line and what
is wrong with it; 2 for bad arguments (an unreadable file or key).

What it cannot tell: the header and trailer are not signed, only the checkpoint is. A bundle of
consecutive events (a period, or everything) shows any event missing between its first and last;
a filtered bundle proves each event it holds is in the log, not that none was left out.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

FORMAT = "oversight-evidence/1"
GENESIS = "0" * 64  # the prev_hash of event 1
# The nine members of an event's canonical form (audit/README.md).
FIELDS = (
    "sequence",
    "occurred_at",
    "event_type",
    "actor_type",
    "actor_id",
    "actor_name",
    "subject_type",
    "subject_id",
    "payload",
)
STRING_FIELDS = FIELDS[1:-1]
# Filters after which a bundle's events are not consecutive.
SELECTIVE = ("agent", "person", "event_type", "risk")
HEX = frozenset("0123456789abcdef")
SIGNATURE_PREFIX = "\u2014 "  # an em dash and a space start a signature line
ED25519 = b"\x01"

# json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False),
# with the encoder built once instead of on every call.
_canonical = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
).encode


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_decoder = json.JSONDecoder(parse_constant=_refuse_constant)


class Bad(Exception):
    """The bundle does not verify: where (a line number; TRAILER for the last line) and why."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


TRAILER = -1  # the last line, numbered once it is known


# --- the canonical form and the hash chain (audit/README.md) --------------------------------


def canonical_event(event: dict[str, Any]) -> bytes:
    """The canonical bytes of an event: its nine members as sorted, compact, ASCII JSON."""
    return _canonical({name: event[name] for name in FIELDS}).encode("ascii")


def event_hash(prev_hash: str, event: dict[str, Any]) -> str:
    return hashlib.sha256(prev_hash.encode("ascii") + canonical_event(event)).hexdigest()


# --- RFC 6962 / RFC 9162 Merkle tree verification --------------------------------------------


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_from_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes | None:
    """RFC 9162 §2.1.3.2: the root the proof leads to, or None when it is malformed."""
    if not 0 <= index < size:
        return None
    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


class InclusionChecker:
    """`root_from_inclusion(...) == root` for many leaves of one tree, one after another, without
    redoing the work their proofs share.

    The algorithm's steps after the k-th depend only on its state then (fn, sn, the hash so
    far) and on the proof's remaining hashes. So once a leaf's computation reaches a state the
    previous, accepted, leaf's passed through at the same step, with the same remaining hashes
    (the same base64 text), it would go on exactly as that one did, to the checkpoint's root: it
    is accepted there. Consecutive leaves share all but about two of their ~20 steps, and the
    shared hashes are neither decoded nor hashed again; the answer is the full algorithm's.
    (Verifying a bundle of 200 000 events: 9.5 s with the plain algorithm per event, 4.1 s.)
    """

    def __init__(self, size: int, root: bytes) -> None:
        self.size = size
        self.root = root
        self._proof: list[Any] = []  # the last accepted proof, as given (base64 text)
        self._states: list[tuple[int, int, bytes]] = []  # its state after each step

    def check(self, index: int, leaf: bytes, proof: list[Any]) -> bool:
        """Whether `proof` (base64 hashes) proves `leaf` at `index`; raises ValueError (or
        TypeError) for a hash that is not the base64 of 32 bytes."""
        if not 0 <= index < self.size:
            return False
        previous, passed = self._proof, self._states
        # The first step from which this proof's hashes are the previous one's.
        shared_from = len(proof)
        if len(previous) == len(proof):
            while shared_from and proof[shared_from - 1] == previous[shared_from - 1]:
                shared_from -= 1
        fn, sn, r = index, self.size - 1, leaf
        states = [(fn, sn, r)]
        for k, text in enumerate(proof):
            if k >= shared_from and states[k] == passed[k]:
                self._proof, self._states = proof, states + passed[k + 1 :]
                return True
            p = base64.b64decode(text, validate=True)
            if len(p) != 32:
                raise ValueError("a hash is not 32 bytes")
            if sn == 0:
                return False
            if fn & 1 or fn == sn:
                r = node_hash(p, r)
                if not fn & 1:
                    while fn & 1 == 0 and fn != 0:
                        fn >>= 1
                        sn >>= 1
            else:
                r = node_hash(r, p)
            fn >>= 1
            sn >>= 1
            states.append((fn, sn, r))
        if sn != 0 or r != self.root:
            return False
        self._proof, self._states = proof, states
        return True


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 §2.1.4.2: whether the tree of `second` leaves extends the one of `first`."""
    if first == second:
        return not proof and first_root == second_root
    if not 0 < first < second or not proof:
        return False
    path = list(proof)
    if first & (first - 1) == 0:  # a power of two: the first root is the path's first node
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while fn & 1 == 0 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == first_root and sr == second_root


# --- keys and signed notes (C2SP signed-note, tlog-checkpoint) -------------------------------


@dataclass(frozen=True)
class VerifierKey:
    name: str
    key_id: bytes
    public: Ed25519PublicKey
    text: str


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes


def parse_vkey(text: str) -> VerifierKey:
    """`<name>+<hex key id>+<base64(0x01 ‖ Ed25519 public key)>`; raises ValueError."""
    text = text.strip()
    parts = text.split("+", 2)  # a name never holds "+"; the base64 may
    if len(parts) != 3 or not parts[0] or len(parts[1]) != 8:
        raise ValueError("a vkey is <name>+<8 hex digits>+<base64 key>")
    name, key_hex, key_b64 = parts
    raw = base64.b64decode(key_b64, validate=True)
    if len(raw) != 33 or raw[:1] != ED25519:
        raise ValueError("not an Ed25519 vkey (0x01 and 32 bytes)")
    key_id = bytes.fromhex(key_hex)
    if hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4] != key_id:
        raise ValueError("the vkey's key id does not match its name and key")
    return VerifierKey(name, key_id, Ed25519PublicKey.from_public_bytes(raw[1:]), text)


def verify_note(note: str, key: VerifierKey) -> Checkpoint:
    """The checkpoint a signed note states, when `key` signed it; raises ValueError."""
    text, blank, signatures = note.partition("\n\n")
    if not blank:
        raise ValueError("the note has no signature block")
    text += "\n"
    lines = text.split("\n")
    if len(lines) < 4:
        raise ValueError("a checkpoint has an origin, a size and a root hash")
    origin, size_text, root_text = lines[:3]
    if not size_text.isascii() or not size_text.isdigit() or size_text != str(int(size_text)):
        raise ValueError("the checkpoint's size is not a number")
    root = base64.b64decode(root_text, validate=True)
    if len(root) != 32:
        raise ValueError("the checkpoint's root hash is not 32 bytes")
    for line in signatures.rstrip("\n").split("\n"):
        if not line.startswith(SIGNATURE_PREFIX):
            raise ValueError("a signature line must start with an em dash")
        name, _, blob_text = line[len(SIGNATURE_PREFIX) :].rpartition(" ")
        blob = base64.b64decode(blob_text, validate=True)
        if name != key.name or blob[:4] != key.key_id:
            continue  # another signer's: not ours to check
        try:
            key.public.verify(blob[4:], text.encode())
        except InvalidSignature:
            raise ValueError(f"its signature by {key.name} does not verify") from None
        return Checkpoint(origin, int(size_text), root)
    raise ValueError(f"it is not signed by the key {key.text}")


# --- the bundle -----------------------------------------------------------------------------


def last_line(handle: Any) -> bytes:
    """The file's last line (without its newline), read backwards from the end."""
    handle.seek(0, os.SEEK_END)
    position = handle.tell()
    if position:
        handle.seek(position - 1)
        if handle.read(1) == b"\n":
            position -= 1
    blocks: list[bytes] = []
    while position > 0:
        step = min(1 << 16, position)
        position -= step
        handle.seek(position)
        block = handle.read(step)
        newline = block.rfind(b"\n")
        if newline >= 0:
            blocks.append(block[newline + 1 :])
            break
        blocks.append(block)
    return b"".join(reversed(blocks))


def _json_object(raw: bytes, line: int, what: str) -> dict[str, Any]:
    try:
        value = _decoder.decode(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise Bad(line, f"not a JSON {what} ({exc})") from None
    if not isinstance(value, dict):
        raise Bad(line, f"not a JSON {what} (an object is expected)")
    return value


def _b64_list(value: Any, line: int, what: str) -> list[bytes]:
    if not isinstance(value, list):
        raise Bad(line, f"{what} is not a list of base64 hashes")
    try:
        hashes = [base64.b64decode(item, validate=True) for item in value]
    except (TypeError, ValueError):
        raise Bad(line, f"{what} holds something that is not base64") from None
    if any(len(digest) != 32 for digest in hashes):
        raise Bad(line, f"{what} holds a hash that is not 32 bytes")
    return hashes


def _is_hash(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and HEX.issuperset(value)


def read_trailer(handle: Any, key: VerifierKey) -> tuple[dict[str, Any], Checkpoint | None]:
    trailer = _json_object(last_line(handle), TRAILER, "trailer")
    if trailer.get("type") != "trailer":
        raise Bad(TRAILER, "the last line is not the trailer: the bundle was cut short")
    count, size = trailer.get("count"), trailer.get("tree_size")
    if type(count) is not int or count < 0 or type(size) is not int or size < 0:
        raise Bad(TRAILER, "the trailer's count or tree_size is not a whole number")
    note = trailer.get("checkpoint")
    if note is None:
        if count:
            raise Bad(TRAILER, "the trailer has no checkpoint, but the bundle has events")
        return trailer, None
    if not isinstance(note, str):
        raise Bad(TRAILER, "the trailer's checkpoint is not a signed note")
    try:
        checkpoint = verify_note(note, key)
    except ValueError as exc:
        raise Bad(TRAILER, f"the trailer's checkpoint: {exc}") from None
    if checkpoint.size != size:
        raise Bad(TRAILER, f"tree_size {size} is not the checkpoint's size {checkpoint.size}")
    return trailer, checkpoint


def check_previous(
    trailer: dict[str, Any], checkpoint: Checkpoint | None, previous: Checkpoint
) -> str:
    """That the bundle's checkpoint extends `previous` (signed by the same key); a summary."""
    if checkpoint is None:
        raise Bad(TRAILER, "the bundle has no checkpoint to compare with the previous one")
    if previous.origin != checkpoint.origin:
        raise Bad(
            TRAILER,
            f"the previous checkpoint is of the log {previous.origin!r}, not {checkpoint.origin!r}",
        )
    if previous.size > checkpoint.size:
        raise Bad(
            TRAILER,
            f"the previous checkpoint ({previous.size} events) is newer than the bundle's "
            f"({checkpoint.size}): export again to check them against each other",
        )
    if previous.size == checkpoint.size:
        if previous.root != checkpoint.root:
            raise Bad(
                TRAILER,
                f"the previous checkpoint and the bundle's both have {previous.size} events "
                "but different roots: the log was rewritten",
            )
        return f"the same as the previous checkpoint ({previous.size} events)"
    proofs = trailer.get("consistency")
    if not isinstance(proofs, list):
        raise Bad(TRAILER, "the trailer's consistency proofs are not a list")
    for entry in proofs:
        if isinstance(entry, dict) and entry.get("from_size") == previous.size:
            hashes = _b64_list(entry.get("hashes"), TRAILER, "a consistency proof")
            if not verify_consistency(
                previous.size, checkpoint.size, previous.root, checkpoint.root, hashes
            ):
                raise Bad(
                    TRAILER,
                    f"the checkpoint of {checkpoint.size} events is not consistent with the "
                    f"previous checkpoint of {previous.size}: the log was rewritten, not only "
                    "added to",
                )
            return f"consistent with the previous checkpoint of {previous.size} events"
    raise Bad(
        TRAILER,
        f"the trailer holds no consistency proof from {previous.size} events: the log never "
        "signed a checkpoint of that size (it may have been rewritten since)",
    )


def check_event(
    event: dict[str, Any], line: int, checkpoint: Checkpoint, inclusion: InclusionChecker
) -> None:
    """One event line on its own: its shape, its hash, its inclusion proof."""
    sequence = event.get("sequence")
    if type(sequence) is not int or sequence < 1:
        raise Bad(line, "its sequence is not a whole number of at least 1")
    for name in STRING_FIELDS:
        if not isinstance(event.get(name), str):
            raise Bad(line, f"event {sequence}: {name} is missing or not a string")
    if not isinstance(event.get("payload"), dict):
        raise Bad(line, f"event {sequence}: its payload is missing or not an object")
    if not _is_hash(event.get("prev_hash")) or not _is_hash(event.get("hash")):
        raise Bad(line, f"event {sequence}: prev_hash or hash is not 64 lowercase hex digits")
    prev_hash: str = event["prev_hash"]
    digest: str = event["hash"]
    try:
        recomputed = event_hash(prev_hash, event)
    except (TypeError, ValueError) as exc:  # e.g. a number too large for JSON's rules
        raise Bad(line, f"event {sequence}: its content cannot be hashed ({exc})") from None
    if recomputed != digest:
        raise Bad(line, f"event {sequence}: its content does not match its hash (edited)")
    proof = event.get("proof")
    if not isinstance(proof, dict):
        raise Bad(line, f"event {sequence}: it has no inclusion proof")
    index, size = proof.get("leaf_index"), proof.get("tree_size")
    if index != sequence - 1 or size != checkpoint.size:
        raise Bad(
            line,
            f"event {sequence}: its proof is for leaf {index} of a tree of {size}, not leaf "
            f"{sequence - 1} of the checkpoint's {checkpoint.size}",
        )
    hashes = proof.get("hashes")
    if not isinstance(hashes, list):
        raise Bad(line, f"event {sequence}: its proof's hashes are not a list")
    try:
        included = inclusion.check(index, leaf_hash(bytes.fromhex(digest)), hashes)
    except (TypeError, ValueError):
        raise Bad(
            line, f"event {sequence}: its proof holds a hash that is not base64 of 32 bytes"
        ) from None
    if not included:
        raise Bad(
            line,
            f"event {sequence}: its inclusion proof does not lead to the checkpoint's root "
            "(the event is not in the signed log as exported)",
        )


def verify_bundle(path: str, key: VerifierKey, previous: Checkpoint | None) -> str:
    """Check the bundle at `path`; a one-line summary, or Bad."""
    started = time.perf_counter()
    with open(path, "rb") as handle:
        trailer, checkpoint = read_trailer(handle, key)
        grown = check_previous(trailer, checkpoint, previous) if previous else ""
        handle.seek(0)
        header = _json_object(handle.readline(), 1, "header")
        if header.get("type") != "header" or header.get("format") != FORMAT:
            raise Bad(1, f"not the header of an evidence bundle ({FORMAT})")
        filters = header.get("filter")
        if not isinstance(filters, dict):
            raise Bad(1, "the header has no filter")
        consecutive = not any(filters.get(name) for name in SELECTIVE)
        inclusion = InclusionChecker(checkpoint.size, checkpoint.root) if checkpoint else None
        whole_log = consecutive and not filters.get("since")
        count, links = 0, 0
        last_sequence, last_hash = 0, ""
        line = 1
        for raw in handle:
            line += 1
            event = _json_object(raw, line, "line")
            kind = event.get("type")
            if kind == "trailer":
                if handle.read(1):
                    raise Bad(line, "a trailer before the end of the bundle")
                break
            if kind != "event":
                raise Bad(line, f"a line of type {kind!r} where an event was expected")
            if checkpoint is None or inclusion is None:
                raise Bad(line, "an event, but the trailer has no checkpoint")
            sequence = event.get("sequence")
            if type(sequence) is int and last_sequence:
                if sequence <= last_sequence:
                    raise Bad(
                        line,
                        f"event {sequence} comes after event {last_sequence}: "
                        "lines are out of order or repeated",
                    )
                if consecutive and sequence != last_sequence + 1:
                    missing = (
                        f"event {last_sequence + 1} is"
                        if sequence == last_sequence + 2
                        else f"events {last_sequence + 1} to {sequence - 1} are"
                    )
                    raise Bad(line, f"{missing} missing before event {sequence}")
            elif type(sequence) is int and whole_log and sequence != 1:
                raise Bad(line, f"the export of the whole log starts at event {sequence}, not 1")
            if sequence == 1 and event.get("prev_hash") != GENESIS:
                raise Bad(line, "event 1: its prev_hash is not the genesis value (64 zeros)")
            if type(sequence) is int and sequence == last_sequence + 1 and last_sequence:
                if event.get("prev_hash") != last_hash:
                    raise Bad(
                        line,
                        f"event {sequence}: its prev_hash is not the hash of event "
                        f"{last_sequence} on line {line - 1} (the chain is broken)",
                    )
                links += 1
            check_event(event, line, checkpoint, inclusion)  # sequence: a whole number from here
            last_sequence, last_hash = event["sequence"], event["hash"]
            count += 1
        else:
            raise Bad(line, "the bundle ends without its trailer")
    if count != trailer["count"]:
        raise Bad(
            TRAILER,
            f"the trailer counts {trailer['count']} events, the bundle holds {count}: "
            "lines were removed or added",
        )
    seconds = time.perf_counter() - started
    signed = (
        f"all in the checkpoint of {checkpoint.size} events signed by {key.name}"
        if checkpoint
        else "no checkpoint"
    )
    extra = f"; {grown}" if grown else ""
    return (
        f"OK: {count} events verified (hashes, {links} chain links, inclusion proofs), "
        f"{signed}{extra}; {seconds:.1f} s"
    )


def _count_lines(path: str) -> int:
    lines, ends_in_newline = 0, True
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            lines += block.count(b"\n")
            ends_in_newline = block.endswith(b"\n")
    return lines if ends_in_newline else lines + 1


def _read_key(text: str) -> VerifierKey:
    if os.path.isfile(text):
        with open(text, encoding="utf-8") as handle:
            text = handle.read()
    return parse_vkey(text)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Check an Oversight evidence bundle offline (see this file's docstring)."
    )
    parser.add_argument("bundle", help="the evidence bundle (JSON Lines)")
    parser.add_argument("--key", required=True, help="the log's vkey, or a file holding it")
    parser.add_argument(
        "--previous-checkpoint", help="a signed checkpoint note kept from earlier (a file)"
    )
    args = parser.parse_args(argv)
    try:
        key = _read_key(args.key)
    except (OSError, ValueError) as exc:
        print(f"--key: {exc}", file=sys.stderr)
        return 2
    previous = None
    if args.previous_checkpoint:
        try:
            with open(args.previous_checkpoint, encoding="utf-8") as handle:
                note = handle.read()
        except OSError as exc:
            print(f"--previous-checkpoint: {exc}", file=sys.stderr)
            return 2
        try:
            previous = verify_note(note, key)
        except ValueError as exc:
            print(f"FAILED: the previous checkpoint: {exc}", file=sys.stderr)
            return 1
    try:
        print(verify_bundle(args.bundle, key, previous))
    except OSError as exc:
        print(f"{args.bundle}: {exc}", file=sys.stderr)
        return 2
    except Bad as bad:
        line = _count_lines(args.bundle) if bad.line == TRAILER else bad.line
        where = f"line {line} (the trailer)" if bad.line == TRAILER else f"line {line}"
        print(f"FAILED at {where}: {bad.message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
