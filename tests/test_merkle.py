"""RFC 9162 hashing and proofs: the peer's vectors and properties against a plain recursive reference."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ailedger import VerificationError, merkle

from .conftest import VECTORS

CASES = sorted(VECTORS.glob("**/*.json"))


def test_vectors_present() -> None:
    assert len(CASES) >= 190, f"expected the peer's vectors at {VECTORS}"


@pytest.mark.parametrize("path", CASES, ids=lambda p: str(p.relative_to(VECTORS)))
def test_vector(path: Path) -> None:
    d = json.loads(path.read_text())
    b = base64.b64decode
    proof = [b(p) for p in d["proof"] or []]
    if "leafIdx" in d:
        call = lambda: merkle.verify_inclusion(  # noqa: E731
            b(d["leafHash"]), d["leafIdx"], d["treeSize"], proof, b(d["root"])
        )
    else:
        call = lambda: merkle.verify_consistency(  # noqa: E731
            d["size1"], d["size2"], proof, b(d["root1"]), b(d["root2"])
        )
    if d["wantErr"]:
        with pytest.raises(VerificationError):
            call()
    else:
        call()


# -- a plain recursive reference, straight from RFC 9162 §2.1 ----------------------


def ref_mth(d: list[bytes]) -> bytes:
    n = len(d)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + d[0]).digest()
    k = 1 << ((n - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:])).digest()


def ref_path(m: int, d: list[bytes]) -> list[bytes]:
    n = len(d)
    if n == 1:
        return []
    k = 1 << ((n - 1).bit_length() - 1)
    if m < k:
        return [*ref_path(m, d[:k]), ref_mth(d[k:])]
    return [*ref_path(m - k, d[k:]), ref_mth(d[:k])]


def ref_subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [ref_mth(d)]
    k = 1 << ((n - 1).bit_length() - 1)
    if m <= k:
        return [*ref_subproof(m, d[:k], b), ref_mth(d[k:])]
    return [*ref_subproof(m - k, d[k:], False), ref_mth(d[:k])]


def test_known_values() -> None:
    assert merkle.root([]) == hashlib.sha256(b"").digest()
    assert merkle.leaf_hash(b"") == bytes.fromhex(
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    )
    assert (
        merkle.node_hash(b"a" * 32, b"b" * 32)
        == hashlib.sha256(b"\x01" + b"a" * 32 + b"b" * 32).digest()
    )


leaves = st.lists(st.binary(max_size=8), min_size=1, max_size=70)


@settings(max_examples=150, deadline=None)
@given(leaves, st.data())
def test_proofs_match_reference(d: list[bytes], data: st.DataObject) -> None:
    hashes = [merkle.leaf_hash(x) for x in d]
    n = len(d)
    assert merkle.root(d) == ref_mth(d)
    i = data.draw(st.integers(0, n - 1))
    proof = merkle.inclusion_proof(i, hashes)
    assert proof == ref_path(i, d)
    merkle.verify_inclusion(hashes[i], i, n, proof, ref_mth(d))
    m = data.draw(st.integers(1, n))
    cproof = merkle.consistency_proof(m, hashes)
    assert cproof == ref_subproof(m, d, True)
    merkle.verify_consistency(m, n, cproof, ref_mth(d[:m]), ref_mth(d))


def _mutations(proof: list[bytes]) -> list[list[bytes]]:
    out = []
    for j in range(len(proof)):
        flipped = bytearray(proof[j])
        flipped[j % 32] ^= 1
        out.append([*proof[:j], bytes(flipped), *proof[j + 1 :]])
        out.append(proof[:j] + proof[j + 1 :])
    out.append([*proof, b"\x00" * 32])
    out.append([b"\x00" * 32, *proof])
    if len(proof) > 1:
        out.append(list(reversed(proof)))
    return [p for p in out if p != proof]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=4), min_size=2, max_size=40, unique=True), st.data())
def test_mutated_proofs_rejected(d: list[bytes], data: st.DataObject) -> None:
    hashes = [merkle.leaf_hash(x) for x in d]
    n = len(d)
    r = merkle.root(d)
    i = data.draw(st.integers(0, n - 1))
    proof = merkle.inclusion_proof(i, hashes)
    for bad in _mutations(proof):
        with pytest.raises(VerificationError):
            merkle.verify_inclusion(hashes[i], i, n, bad, r)
    with pytest.raises(VerificationError):
        merkle.verify_inclusion(hashes[i], n, n, proof, r)
    with pytest.raises(VerificationError):
        merkle.verify_inclusion(merkle.leaf_hash(b"other"), i, n, proof, r)
    m = data.draw(st.integers(1, n - 1))
    cproof = merkle.consistency_proof(m, hashes)
    r1 = merkle.root(d[:m])
    for bad in _mutations(cproof):
        with pytest.raises(VerificationError):
            merkle.verify_consistency(m, n, bad, r1, r)
    with pytest.raises(VerificationError):
        merkle.verify_consistency(m, n, cproof, r, r1)


@pytest.mark.parametrize(
    "args",
    [
        (b"\x00" * 31, 0, 1, [], b"\x00" * 32),
        (b"\x00" * 32, 0, 1, [], b"\x00" * 33),
        (b"\x00" * 32, 1, 1, [], b"\x00" * 32),
        (b"\x00" * 32, -1, 1, [], b"\x00" * 32),
        (b"\x00" * 32, 0, 2, [b"\x00" * 31], b"\x00" * 32),
        ("not bytes", 0, 1, [], b"\x00" * 32),
        (b"\x00" * 32, True, 2, [b"\x00" * 32], b"\x00" * 32),
    ],
)
def test_inclusion_bad_input_fails_closed(args: tuple) -> None:  # type: ignore[type-arg]
    with pytest.raises(VerificationError):
        merkle.verify_inclusion(*args)


def test_consistency_rejects_empty_tree_and_bad_hashes() -> None:
    h = b"\x11" * 32
    with pytest.raises(VerificationError):
        merkle.verify_consistency(0, 0, [], merkle.EMPTY_ROOT, merkle.EMPTY_ROOT)
    with pytest.raises(VerificationError):
        merkle.verify_consistency(1, 2, [h[:31]], h, h)
    with pytest.raises(VerificationError):
        merkle.verify_consistency(1, 2, [h], h[:31], h)
    with pytest.raises(VerificationError):
        merkle.verify_consistency(1, 2, [h] * 64, h, h)
