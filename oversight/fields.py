"""Strict DRF fields for the agent API: a wrong JSON type is a 400, never silently coerced.

DRF's stock fields turn `5` into `"5"` and `"5"` into `5`; an agent that sends the wrong type
has a bug it should hear about.
"""

from __future__ import annotations

import copy
import json
import math
import re
from typing import Any

from django.core.validators import RegexValidator
from rest_framework import serializers

from oversight.text import CONTROL_CLASS, CONTROL_MESSAGE


class StrictCharField(serializers.CharField):
    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


# A validator, not a check in `to_internal_value`, so that the OpenAPI schema states the rule as
# the field's `pattern` (SPEC §9.7) and generated clients keep to it.
_ONE_LINE = RegexValidator(rf"\A[^{CONTROL_CLASS}]*\Z", message=CONTROL_MESSAGE, code="control")


class SingleLineField(StrictCharField):
    """A name on one line (an action, a model): control characters and line breaks are refused,
    because the name goes into email subjects, logs and pages (`oversight.text`)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.validators.append(_ONE_LINE)


class StrictIntegerField(serializers.IntegerField):
    default_error_messages = {"invalid": "A whole number is required."}

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    default_error_messages = {"invalid": "true or false is required."}

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


class StrictFloatField(serializers.FloatField):
    default_error_messages = {"invalid": "A number is required."}

    def to_internal_value(self, data: Any) -> float:
        if isinstance(data, bool) or not isinstance(data, int | float):
            self.fail("invalid")
        if isinstance(data, int) and abs(data) > 2**53:  # math.isfinite would overflow
            self.fail("invalid")
        if not math.isfinite(data):
            self.fail("invalid")
        return super().to_internal_value(data)


# Deeper JSON is refused, by the API's parser and by the services that store it: the checks and
# serialisers that walk a value recurse once per level (agents' params need a handful).
MAX_JSON_DEPTH = 64


def nested_deeper_than(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether `value` nests objects and arrays more than `limit` levels deep (without recursing:
    Python's own JSON decoder accepts thousands of levels)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


# The largest arguments (as JSON) an agent may send with a check or a request, or an approver
# store with changes: enough for any tool call, and a bound on what every check scans.
MAX_PARAMS_BYTES = 64 * 1024


def params_problem(params: Any) -> str | None:
    """What makes `params` unacceptable as an action's arguments, or None: nesting deeper than
    MAX_JSON_DEPTH, text no column can store, anything but plain JSON, more than
    MAX_PARAMS_BYTES."""
    if nested_deeper_than(params):
        return f"params nest deeper than {MAX_JSON_DEPTH} levels."
    where = unstorable_text(params)
    if where:
        return f"Text at {where} contains a NUL character or a lone surrogate."
    try:
        size = len(json.dumps(params, allow_nan=False, ensure_ascii=False).encode())
    except (TypeError, ValueError) as exc:
        return f"params must be plain JSON: {exc}"
    if size > MAX_PARAMS_BYTES:
        return f"params are {size} bytes; the limit is {MAX_PARAMS_BYTES}."
    return None


# NUL and lone surrogates: text that no database column (nor jsonb) can store.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def unstorable_text(value: Any, path: str = "") -> str | None:
    """Where `value` holds text no database column can store (NUL, lone surrogates), if anywhere.

    A regular expression scans each string and a place's name is built only when something is
    found: a character-by-character scan and a path per key made this a third of the agent
    API's check (profiled: 360 of 1 200 µs for 1 KB of params)."""
    if isinstance(value, str):
        return (path or "(value)") if _UNSTORABLE.search(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and _UNSTORABLE.search(key):
                return f"{path}.{key!r}"
            if isinstance(item, str):
                if _UNSTORABLE.search(item):
                    return f"{path}.{key}"
            elif isinstance(item, dict | list):
                found = unstorable_text(item, f"{path}.{key}")
                if found:
                    return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, str):
                if _UNSTORABLE.search(item):
                    return f"{path}[{index}]"
            elif isinstance(item, dict | list):
                found = unstorable_text(item, f"{path}[{index}]")
                if found:
                    return found
    return None


class JSONObjectField(serializers.JSONField):
    default_error_messages = {
        "not_object": "A JSON object is required.",
        "unstorable": "Text at {path} contains a NUL character or a lone surrogate.",
    }

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            self.fail("not_object")
        where = unstorable_text(data)
        if where:
            self.fail("unstorable", path=where)
        # DRF's JSONField would serialise the value once more to prove it can be: it came from
        # the API's JSON parser (no NaN, no other types), so it can.
        return data


class StrictSerializer(serializers.Serializer):
    """Refuses fields it does not know, so a typo is reported instead of ignored."""

    def get_fields(self) -> dict[str, serializers.Field]:
        """The declared fields, copied for this instance.

        DRF deep-copies them, which builds every field again from its arguments: 0.4 ms of an
        agent's create, more than the rest of its validation. For a plain field a shallow copy
        is enough: `bind()` gives each copy its own name and parent, and validating keeps
        nothing in the containers (validators, choices, error messages) the copies share with
        the class's field. A field holding other fields (a list's child, a nested serializer)
        is still deep-copied, so its inner fields are bound to this instance's copy.
        """
        return {
            name: copy.deepcopy(field) if _holds_fields(field) else copy.copy(field)
            for name, field in self._declared_fields.items()
        }

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Word the shared validators' messages once, now, before requests share them.

        DRF words a validator's message (e.g. "no more than 200 characters") on first use and
        caches the text in an object that is not safe for two threads to fill at once; the
        copies above share those validators, so their first use must not be concurrent.
        """
        super().__init_subclass__(**kwargs)
        for field in cls._declared_fields.values():
            for validator in [] if _holds_fields(field) else field.validators:
                str(getattr(validator, "message", ""))

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, dict):
            raise serializers.ValidationError({"non_field_errors": ["A JSON object is required."]})
        unknown = sorted(set(data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)


def _holds_fields(field: serializers.Field) -> bool:
    return isinstance(field, serializers.BaseSerializer) or any(
        hasattr(field, name) for name in ("child", "child_relation")
    )
