"""A JSON column that gives back exactly what was stored.

PostgreSQL's jsonb rewrites numbers (`1e16` comes back as `10000000000000000`, `-0.0` as `0`),
so arguments read back from it may no longer match the hash they were approved under. This
field stores the canonical JSON text (the same form `approvals.binding` hashes) and parses it on
the way out, so the bytes an agent gets are the bytes that were hashed.
"""

from __future__ import annotations

import json
from typing import Any

from django.db import models


def canonical_text(value: Any) -> str:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


class ExactJSONField(models.TextField):
    description = "JSON stored as its canonical text"
    # django-stubs: what the attribute holds in Python (any JSON value), not the column's str.
    _pyi_private_set_type: Any
    _pyi_private_get_type: Any

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> Any:
        return None if value is None else json.loads(value)

    def to_python(self, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                return value
        return value

    def get_prep_value(self, value: Any) -> str | None:
        return None if value is None else canonical_text(value)

    def value_to_string(self, obj: models.Model) -> str:
        return canonical_text(self.value_from_object(obj))
