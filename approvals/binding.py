"""Argument binding (SPEC §2): what was executed is provably what was approved.

`params_sha256` is the SHA-256 (hex) of the canonical JSON of `{"action": ..., "params": ...}`:
keys sorted, no whitespace (`,` and `:` separators), UTF-8 without escaping non-ASCII, and no
NaN or infinities. An agent recomputes it with
`hashlib.sha256(json.dumps({"action": a, "params": p}, sort_keys=True, separators=(",", ":"),
ensure_ascii=False).encode()).hexdigest()`.
"""

from __future__ import annotations

import hashlib
from typing import Any

from oversight.db_fields import canonical_text


def canonical_json(value: Any) -> bytes:
    # One definition of the canonical form: the exact-JSON column stores the same text.
    return canonical_text(value).encode("utf-8")


def params_sha256(action: str, params: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json({"action": action, "params": params})).hexdigest()
