"""The agent API's JSON parsing: strict, size-limited, and never a 500 for any input.

`StrictJSONParser` is DRF's parser for the API's DRF views; `json_body` reads a request for the
views that are not DRF's (the guardrails check). Both decode with `decode_json`.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest
from rest_framework import exceptions
from rest_framework.parsers import JSONParser

from oversight.api_errors import ApiError, PayloadTooLarge
from oversight.fields import MAX_JSON_DEPTH, nested_deeper_than


def decode_json(raw: bytes) -> Any:
    """NaN/Infinity refused; absurd nesting is a 400, not a RecursionError (a 500)."""
    too_deep = exceptions.ParseError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels.")
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except RecursionError:
        raise too_deep from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise exceptions.ParseError(f"Malformed JSON: {exc}") from None
    if nested_deeper_than(data):
        raise too_deep
    return data


class StrictJSONParser(JSONParser):
    """JSON bodies up to the size limit, decoded by `decode_json`."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        request = (parser_context or {}).get("request")
        declared = request.META.get("CONTENT_LENGTH") if request is not None else None
        if declared and declared.isdigit() and int(declared) > limit:
            raise PayloadTooLarge(limit)
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise PayloadTooLarge(limit)
        return decode_json(raw)


def json_body(request: HttpRequest) -> Any:
    """The request's JSON body, for a view that is not DRF's; raises `ApiError` (415 for
    another media type, 413 over the size limit, 400 for malformed JSON) as DRF's views do."""
    try:
        raw = request.body
    except RequestDataTooBig:
        raise PayloadTooLarge(settings.DATA_UPLOAD_MAX_MEMORY_SIZE) from None
    media_type = request.content_type or ""
    if not raw and not media_type:
        return {}  # no body at all: as DRF, the fields are each reported missing
    if media_type != "application/json":
        raise ApiError(
            status_code=415,
            code="unsupported_media_type",
            message=f'Unsupported media type "{media_type}" in request; send application/json.',
        )
    try:
        return decode_json(raw)
    except exceptions.ParseError as exc:
        raise ApiError(status_code=400, code="malformed_json", message=str(exc.detail)) from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")
