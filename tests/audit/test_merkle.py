"""The transparency log's hashing and proofs against certificate-transparency-go's RFC 6962 test
vectors (carried as data in rfc6962_vectors.json), and against a tree rebuilt from scratch for
every size up to 70 (no database)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from audit import merkle

VECTORS = json.loads((Path(__file__).parent / "rfc6962_vectors.json").read_text())
LEAVES = [merkle.leaf_hash(bytes.fromhex(x)) for x in VECTORS["leaves"]]
LOOKUP = merkle.in_memory(LEAVES)


def test_tree_heads_of_every_prefix() -> None:
    assert merkle.EMPTY_ROOT.hex() == VECTORS["empty_root"]
    for size, expected in enumerate(VECTORS["roots"], start=1):
        assert merkle.root(size, LOOKUP).hex() == expected


@pytest.mark.parametrize(
    "vector", VECTORS["inclusion"], ids=lambda v: f"{v['leaf']}-of-{v['size']}"
)
def test_inclusion_proofs_are_the_reference_ones_and_verify(vector) -> None:
    index, size = vector["leaf"] - 1, vector["size"]
    proof = merkle.proof(merkle.inclusion_ranges(index, size), LOOKUP)
    assert [h.hex() for h in proof] == vector["proof"]
    root = bytes.fromhex(VECTORS["roots"][size - 1])
    assert merkle.verify_inclusion(index, size, LEAVES[index], proof, root)


@pytest.mark.parametrize(
    "vector", VECTORS["consistency"], ids=lambda v: f"{v['first']}-to-{v['second']}"
)
def test_consistency_proofs_are_the_reference_ones_and_verify(vector) -> None:
    first, second = vector["first"], vector["second"]
    proof = merkle.proof(merkle.consistency_ranges(first, second), LOOKUP)
    assert [h.hex() for h in proof] == vector["proof"]
    old = bytes.fromhex(VECTORS["roots"][first - 1])
    new = bytes.fromhex(VECTORS["roots"][second - 1])
    assert merkle.verify_consistency(first, second, old, new, proof)


def _leaves(n: int) -> list[bytes]:
    return [merkle.leaf_hash(hashlib.sha256(str(i).encode()).digest()) for i in range(n)]


def _reference_root(leaves: list[bytes]) -> bytes:
    """RFC 6962 §2.1's MTH, written as the RFC's recursion (nothing shared with the module)."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(
        b"\x01" + _reference_root(leaves[:k]) + _reference_root(leaves[k:])
    ).digest()


def test_every_proof_of_every_tree_up_to_70_leaves_verifies() -> None:
    leaves = _leaves(70)
    lookup = merkle.in_memory(leaves)
    for size in range(1, 71):
        root = merkle.root(size, lookup)
        assert root == _reference_root(leaves[:size])
        for index in range(size):
            proof = merkle.proof(merkle.inclusion_ranges(index, size), lookup)
            assert merkle.verify_inclusion(index, size, leaves[index], proof, root)
            assert not merkle.verify_inclusion(
                index, size, leaves[index - 1] if index else b"x" * 32, proof, root
            )
        for old in range(1, size + 1):
            proof = merkle.proof(merkle.consistency_ranges(old, size), lookup)
            old_root = merkle.root(old, lookup)
            assert merkle.verify_consistency(old, size, old_root, root, proof)
            if proof:
                bent = [proof[0][:-1] + bytes([proof[0][-1] ^ 1]), *proof[1:]]
                assert not merkle.verify_consistency(old, size, old_root, root, bent)


def test_a_proof_with_a_component_removed_or_added_fails() -> None:
    size, index = 8, 5
    root = merkle.root(size, LOOKUP)
    proof = merkle.proof(merkle.inclusion_ranges(index, size), LOOKUP)
    assert not merkle.verify_inclusion(index, size, LEAVES[index], proof[:-1], root)
    assert not merkle.verify_inclusion(index, size, LEAVES[index], [*proof, root], root)
    assert not merkle.verify_inclusion(index + 1, size, LEAVES[index], proof, root)
