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
    sequence, size = _number(request, "seq"), _number(request, "size")
    if isinstance(sequence, JsonResponse):
        return sequence
    if isinstance(size, JsonResponse):
        return size
    if not 1 <= sequence <= size:
        return _error(400, "invalid", "seq must be between 1 and size.")
    built = _built(size)
    if isinstance(built, JsonResponse):
        return built
    hashes = tree.inclusion_proof(sequence - 1, size)
    return JsonResponse(_proof(sequence - 1, size, hashes))


@require_safe
@role_required(Role.COMPLIANCE)
def consistency(request: HttpRequest) -> JsonResponse:
    """`?from=A&to=B`: the proof that the tree of B events extends the tree of A."""
    old, new = _number(request, "from"), _number(request, "to")
    if isinstance(old, JsonResponse):
        return old
    if isinstance(new, JsonResponse):
        return new
    if not 1 <= old <= new:
        return _error(400, "invalid", "from must be between 1 and to.")
    built = _built(new)
    if isinstance(built, JsonResponse):
        return built
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
