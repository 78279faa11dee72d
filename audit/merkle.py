"""The audit log as a Merkle tree (RFC 6962 §2.1, RFC 9162 §2.1): hashing, roots and proofs.

Pure functions over hashes; where the subtree hashes come from is the caller's (`audit.tree`
keeps them in the database). Leaf *i* (from 0) is the event with sequence *i* + 1; its leaf
input is the 32 raw bytes of the event's chain hash, so its leaf hash is
SHA-256(0x00 ‖ those bytes), and an interior node is SHA-256(0x01 ‖ left ‖ right).

A *complete subtree* (level L, index i) covers leaves [i·2^L, (i+1)·2^L). Every hash a root or a
proof needs is either such a subtree or is combined from O(log n) of them along the right edge
of the tree, so with complete subtrees stored once each (they never change), a root or a proof
costs O(log n) lookups and never a pass over the log.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

EMPTY_ROOT = hashlib.sha256(b"").digest()

# (level, index) → the complete subtree's hash.
type Lookup = Callable[[Iterable[tuple[int, int]]], dict[tuple[int, int], bytes]]


def leaf_hash(event_hash: bytes) -> bytes:
    """A leaf's hash from its input (here: an event's 32-byte chain hash)."""
    return hashlib.sha256(b"\x00" + event_hash).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _largest_power_of_two_below(n: int) -> int:
    """k, the largest power of two smaller than n (n > 1), as RFC 6962 splits trees."""
    return 1 << ((n - 1).bit_length() - 1)


# --- which complete subtrees a range of leaves is made of ---------------------------------------


def subtrees(start: int, end: int) -> list[tuple[int, int]]:
    """The complete subtrees (level, index) that MTH(D[start:end]) combines, left to right, for
    a range RFC 6962's recursion produces (start is a multiple of the range's split)."""
    found: list[tuple[int, int]] = []
    while start < end:
        size = end - start
        if size & (size - 1) == 0 and start % size == 0:
            level = size.bit_length() - 1
            found.append((level, start >> level))
            break
        k = _largest_power_of_two_below(size)
        level = k.bit_length() - 1
        found.append((level, start >> level))
        start += k
    return found


def range_hash(start: int, end: int, lookup: Lookup) -> bytes:
    """MTH(D[start:end]) from stored complete subtrees: RFC 6962 folds the right edge from the
    right (the last two subtrees first)."""
    if start == end:
        return EMPTY_ROOT
    parts = subtrees(start, end)
    hashes = lookup(parts)
    folded = hashes[parts[-1]]
    for part in reversed(parts[:-1]):
        folded = node_hash(hashes[part], folded)
    return folded


def root(size: int, lookup: Lookup) -> bytes:
    """MTH of the first `size` leaves."""
    return range_hash(0, size, lookup)


# --- proofs (RFC 6962 §2.1.1, §2.1.2) -------------------------------------------------------


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The leaf ranges whose hashes make the inclusion proof of leaf `index` in a tree of
    `size` leaves, in the proof's order (nearest the leaf first)."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of {size}")
    ranges: list[tuple[int, int]] = []
    start, end = 0, size
    while end - start > 1:
        k = _largest_power_of_two_below(end - start)
        if index - start < k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start += k
    return list(reversed(ranges))


def consistency_ranges(old: int, new: int) -> list[tuple[int, int]]:
    """The leaf ranges whose hashes make the consistency proof from `old` to `new` leaves
    (RFC 6962 §2.1.2's SUBPROOF), in the proof's order."""
    if not 0 < old <= new:
        raise ValueError(f"no consistency proof from {old} to {new}")
    if old == new:
        return []
    ranges: list[tuple[int, int]] = []

    def subproof(m: int, start: int, end: int, whole: bool) -> None:
        n = end - start
        if m == n:
            if not whole:
                ranges.append((start, end))
            return
        k = _largest_power_of_two_below(n)
        if m <= k:
            subproof(m, start, start + k, whole)
            ranges.append((start + k, end))
        else:
            subproof(m - k, start + k, end, False)
            ranges.append((start, start + k))

    subproof(old, 0, new, True)
    return ranges


def proof(ranges: Sequence[tuple[int, int]], lookup: Lookup) -> list[bytes]:
    """The hashes of `ranges`, with one lookup of every complete subtree they need."""
    needed = list(dict.fromkeys(part for start, end in ranges for part in subtrees(start, end)))
    found = lookup(needed)

    def known(parts: Iterable[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        return {part: found[part] for part in parts}

    return [range_hash(start, end, known) for start, end in ranges]


def in_memory(leaves: Sequence[bytes]) -> Lookup:
    """A lookup over leaf hashes held in memory (tests, and a verifier's recomputation)."""
    memo: dict[tuple[int, int], bytes] = {}

    def subtree(level: int, index: int) -> bytes:
        key = (level, index)
        if key not in memo:
            if level == 0:
                memo[key] = leaves[index]
            else:
                memo[key] = node_hash(
                    subtree(level - 1, 2 * index), subtree(level - 1, 2 * index + 1)
                )
        return memo[key]

    return lambda parts: {part: subtree(*part) for part in parts}


# --- verification (RFC 9162 §2.1.3.2, §2.1.4.2), used by the tests and the offline verifier --


def verify_inclusion(
    index: int, size: int, leaf: bytes, hashes: Sequence[bytes], expected_root: bytes
) -> bool:
    """Whether `hashes` prove leaf hash `leaf` at `index` in the tree of `size` with
    `expected_root`."""
    if not 0 <= index < size:
        return False
    fn, sn = index, size - 1
    computed = leaf
    for sibling in hashes:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            computed = node_hash(sibling, computed)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            computed = node_hash(computed, sibling)
        fn >>= 1
        sn >>= 1
    return sn == 0 and computed == expected_root


def verify_consistency(
    old: int, new: int, old_root: bytes, new_root: bytes, hashes: Sequence[bytes]
) -> bool:
    """Whether `hashes` prove the tree of `new` leaves with `new_root` extends the tree of
    `old` leaves with `old_root`."""
    if old == new:
        return not hashes and old_root == new_root
    if not 0 < old < new:
        return False
    path = list(hashes)
    if old & (old - 1) == 0:  # a power of two: the old root is the proof's first node
        path.insert(0, old_root)
    if not path:
        return False
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for node in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(node, fr)
            sr = node_hash(node, sr)
            while fn & 1 == 0 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, node)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root
