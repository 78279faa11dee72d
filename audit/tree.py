"""The audit log's Merkle tree, kept in the database (`MerkleNode`) and extended as events
commit (SPEC §7; `audit.merkle` has the hashing).

`extend()` adds the events appended since the last call: it reads only those (their hashes, in
sequence order) and the O(log n) right-edge subtrees it continues from, and writes each complete
subtree once, when its last leaf arrives. Beat calls it before every checkpoint, and a proof or
export calls it first, so the tree is never more than a few seconds behind and a proof never
reads the whole log: a root or a proof is O(log n) stored subtrees (`lookup`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from django.db import transaction
from django.db.models import Q

from audit import merkle
from audit.models import AuditEvent, MerkleNode, TreeState

# Leaves read per query while extending.
BATCH = 20_000


def size() -> int:
    """How many leaves the stored tree holds."""
    return TreeState.objects.filter(pk=1).values_list("size", flat=True).first() or 0


def lookup(parts: Iterable[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
    """The hashes of complete subtrees (level, index): level 0 from the events' hashes, the
    others from `MerkleNode`, in one query each. Raises KeyError for one not built yet."""
    wanted = list(dict.fromkeys(parts))
    found: dict[tuple[int, int], bytes] = {}
    leaves = [index for level, index in wanted if level == 0]
    if leaves:
        rows = AuditEvent.objects.filter(sequence__in=[i + 1 for i in leaves])
        for sequence, digest in rows.values_list("sequence", "hash"):
            found[(0, sequence - 1)] = merkle.leaf_hash(bytes.fromhex(digest))
    nodes = [(level, index) for level, index in wanted if level > 0]
    for chunk in _chunks(nodes, 500):
        condition = Q()
        for level, index in chunk:
            condition |= Q(level=level, index=index)
        for level, index, stored in MerkleNode.objects.filter(condition).values_list(
            "level", "index", "hash"
        ):
            found[(level, index)] = bytes(stored)
    missing = [part for part in wanted if part not in found]
    if missing:
        raise KeyError(f"subtrees not built (yet): {missing[:5]}")
    return found


def _chunks[T](items: list[T], n: int) -> Iterator[list[T]]:
    for start in range(0, len(items), n):
        yield items[start : start + n]


def root(tree_size: int) -> bytes:
    return merkle.root(tree_size, lookup)


def inclusion_proof(index: int, tree_size: int) -> list[bytes]:
    return merkle.proof(merkle.inclusion_ranges(index, tree_size), lookup)


def consistency_proof(old: int, new: int) -> list[bytes]:
    return merkle.proof(merkle.consistency_ranges(old, new), lookup)


def extend(limit: int | None = None) -> int:
    """Add the events committed since the last extension (at most `limit`); returns the tree's
    size. One extender at a time (the state row is locked); appenders are never blocked."""
    with transaction.atomic():
        state, _ = TreeState.objects.select_for_update().get_or_create(pk=1)
        built = state.size
        frontier = _frontier(built)
        head = AuditEvent.objects.order_by("-sequence").values_list("sequence", flat=True).first()
        target = head or 0
        if limit is not None:
            target = min(target, built + limit)
        new_nodes: list[MerkleNode] = []
        index = built
        while index < target:
            rows = (
                AuditEvent.objects.filter(
                    sequence__gt=index, sequence__lte=min(target, index + BATCH)
                )
                .order_by("sequence")
                .values_list("sequence", "hash")
            )
            for sequence, digest in rows:
                if sequence != index + 1:
                    raise ValueError(f"event {index + 1} is missing: the tree stops before it")
                _push(frontier, index, merkle.leaf_hash(bytes.fromhex(digest)), new_nodes)
                index += 1
            if len(new_nodes) >= BATCH:
                MerkleNode.objects.bulk_create(new_nodes, batch_size=5_000)
                new_nodes.clear()
        if new_nodes:
            MerkleNode.objects.bulk_create(new_nodes, batch_size=5_000)
        if index != built:
            TreeState.objects.filter(pk=1).update(size=index)
        return index


def _frontier(tree_size: int) -> list[tuple[int, int, bytes]]:
    """The right edge of the tree of `tree_size` leaves: its complete subtrees, left to right,
    as (level, index, hash)."""
    parts = merkle.subtrees(0, tree_size)
    hashes = lookup(parts) if parts else {}
    return [(level, index, hashes[(level, index)]) for level, index in parts]


def _push(
    frontier: list[tuple[int, int, bytes]], leaf: int, digest: bytes, new: list[MerkleNode]
) -> None:
    """Add leaf `leaf` to the right edge, merging equal levels into the complete subtrees they
    make (each stored once)."""
    frontier.append((0, leaf, digest))
    while len(frontier) >= 2 and frontier[-1][0] == frontier[-2][0]:
        level, _, right = frontier.pop()
        _, left_index, left = frontier.pop()
        parent = (level + 1, left_index >> 1, merkle.node_hash(left, right))
        frontier.append(parent)
        new.append(MerkleNode(level=parent[0], index=parent[1], hash=parent[2]))


def recompute_root(hashes: Iterable[str]) -> tuple[int, bytes]:
    """The root of the tree over event hashes given in sequence order, computed from scratch in
    O(log n) memory (verification: it trusts nothing stored). Returns (size, root)."""
    frontier: list[tuple[int, bytes]] = []
    count = 0
    for digest in hashes:
        frontier.append((0, merkle.leaf_hash(bytes.fromhex(digest))))
        count += 1
        while len(frontier) >= 2 and frontier[-1][0] == frontier[-2][0]:
            level, right = frontier.pop()
            _, left = frontier.pop()
            frontier.append((level + 1, merkle.node_hash(left, right)))
    return count, fold(frontier)


def fold(frontier: list[tuple[int, bytes]]) -> bytes:
    """The root from a right edge (left to right): folded from the right, as RFC 6962 does."""
    if not frontier:
        return merkle.EMPTY_ROOT
    folded = frontier[-1][1]
    for _, digest in reversed(frontier[:-1]):
        folded = merkle.node_hash(digest, folded)
    return folded
