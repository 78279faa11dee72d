"""The transparency log's public face (SPEC §7): the latest signed checkpoint for any witness
(no login), and RFC 6962 inclusion and consistency proofs for compliance staff, as JSON."""

from __future__ import annotations

import base64

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_safe

from accounts.decorators import role_required
from accounts.models import Role
from audit import checkpoints, merkle, tree


@require_safe
@login_not_required
def latest_checkpoint(request: HttpRequest) -> JsonResponse:
    """`{"origin", "size", "root_hash", "note", "public_key"}`; 404 before the first."""
    checkpoint = checkpoints.latest()
    if checkpoint is None:
        return _error(404, "no_checkpoint", "No checkpoint has been signed yet.")
    response = JsonResponse(checkpoints.as_json(checkpoint))
    response["Cache-Control"] = "no-cache"
    return response


@require_safe
@role_required(Role.COMPLIANCE)
def inclusion(request: HttpRequest) -> JsonResponse:
    """`?seq=N&size=M`: the proof that event N is in the tree of the first M events."""
    asked = _range(request, "seq", "size")
    if isinstance(asked, JsonResponse):
        return asked
    sequence, size = asked
    hashes = tree.inclusion_proof(sequence - 1, size)
    return JsonResponse(_proof(sequence - 1, size, hashes))


@require_safe
@role_required(Role.COMPLIANCE)
def consistency(request: HttpRequest) -> JsonResponse:
    """`?from=A&to=B`: the proof that the tree of B events extends the tree of A."""
    asked = _range(request, "from", "to")
    if isinstance(asked, JsonResponse):
        return asked
    old, new = asked
    hashes = tree.consistency_proof(old, new)
    body = _proof(old - 1, new, hashes)
    body.update(
        first_size=old,
        first_root=_b64(tree.root(old)),
        second_root=_b64(tree.root(new)),
    )
    return JsonResponse(body)


def _proof(index: int, size: int, hashes: list[bytes]) -> dict[str, object]:
    return {
        "leaf_index": index,
        "tree_size": size,
        "hashes": [_b64(digest) for digest in hashes],
        "root_hash": _b64(merkle.root(size, tree.lookup)),
    }


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def _range(request: HttpRequest, first: str, last: str) -> tuple[int, int] | JsonResponse:
    """Two whole numbers with 1 <= first <= last, and the tree built up to `last`; else the
    error to answer."""
    low, high = _number(request, first), _number(request, last)
    if isinstance(low, JsonResponse):
        return low
    if isinstance(high, JsonResponse):
        return high
    if not 1 <= low <= high:
        return _error(400, "invalid", f"{first} must be between 1 and {last}.")
    built = _built(high)
    return built if built is not None else (low, high)


def _number(request: HttpRequest, name: str) -> int | JsonResponse:
    raw = request.GET.get(name, "")
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        return _error(400, "invalid", f"{name} must be a whole number.")
    return int(raw)


def _built(size: int) -> JsonResponse | None:
    """Extend the tree first when `size` is past it; 404 when the log has fewer events."""
    if tree.size() < size and tree.extend() < size:
        return _error(404, "not_found", f"The log has fewer than {size} events.")
    return None


def _error(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message}}, status=status)
