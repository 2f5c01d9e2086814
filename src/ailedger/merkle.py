"""RFC 9162 Merkle tree hashing and proof verification (stable public API).

These are the normative algorithms of RFC 9162 §2.1 (identical to RFC 6962 for
SHA-256): a leaf is ``SHA-256(0x00 || entry)``, an interior node is
``SHA-256(0x01 || left || right)``, and the empty tree hashes to
``SHA-256("")``. Proof verification follows RFC 9162 §2.1.3.2 (inclusion) and
§2.1.4.2 (consistency) and fails closed: every malformed input raises
:class:`ailedger.VerificationError`, nothing returns ``False``.

Besides the verifiers this module has plain reference functions (``root``,
``inclusion_proof``, ``consistency_proof``) that work on an in-memory list of
leaf hashes. The log uses its stored subtree hashes instead; these are for
callers and tests that hold all leaves.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from .errors import InputError, VerificationError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root",
    "root_from_inclusion_proof",
    "root_from_leaf_hashes",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

_sha256 = hashlib.sha256


def leaf_hash(data: bytes) -> bytes:
    """RFC 9162 §2.1.1 leaf hash: ``SHA-256(0x00 || data)``."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InputError(f"a log entry is bytes, not {type(data).__name__}")
    return _sha256(b"\x00" + bytes(data)).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 §2.1.1 interior node hash: ``SHA-256(0x01 || left || right)``."""
    return _sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def root_from_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    """Merkle tree hash (MTH) over already leaf-hashed entries.

    Iterative: fold full subtrees left to right, then fold the right edge from the
    right, which gives exactly the recursive definition's result.
    """
    if not hashes:
        return EMPTY_ROOT
    stack: list[tuple[int, bytes]] = []  # (height, hash) of full subtrees
    for h in hashes:
        height = 0
        while stack and stack[-1][0] == height:
            h = node_hash(stack.pop()[1], h)
            height += 1
        stack.append((height, h))
    acc = stack[-1][1]
    for _, h in reversed(stack[:-1]):
        acc = node_hash(h, acc)
    return acc


def root(leaves: Sequence[bytes]) -> bytes:
    """Merkle tree hash of a list of leaf *data* (not yet leaf-hashed) → 32 bytes."""
    return root_from_leaf_hashes([leaf_hash(x) for x in leaves])


def inclusion_proof(index: int, hashes: Sequence[bytes]) -> list[bytes]:
    """RFC 9162 §2.1.3.1 PATH(index, D[n]) over a list of leaf hashes."""
    n = len(hashes)
    if not 0 <= index < n:
        raise VerificationError(f"index {index} is outside a tree of size {n}")
    out: list[bytes] = []
    lo, hi, m = 0, n, index
    # Iterative form of PATH: descend and collect siblings top-down, then reverse.
    while hi - lo > 1:
        k = _split(hi - lo)
        if m < k:
            out.append(root_from_leaf_hashes(hashes[lo + k : hi]))
            hi = lo + k
        else:
            out.append(root_from_leaf_hashes(hashes[lo : lo + k]))
            lo, m = lo + k, m - k
    out.reverse()
    return out


def consistency_proof(size1: int, hashes: Sequence[bytes]) -> list[bytes]:
    """RFC 9162 §2.1.4.1 PROOF(size1, D[n]) over a list of leaf hashes."""
    n = len(hashes)
    if not 0 < size1 <= n:
        raise VerificationError(f"no consistency proof from size {size1} to {n}")
    out: list[bytes] = []
    lo, hi, m, complete = 0, n, size1, True
    while True:
        if m == hi - lo:
            if not complete:
                out.append(root_from_leaf_hashes(hashes[lo:hi]))
            break
        k = _split(hi - lo)
        if m <= k:
            out.append(root_from_leaf_hashes(hashes[lo + k : hi]))
            hi = lo + k
        else:
            out.append(root_from_leaf_hashes(hashes[lo : lo + k]))
            lo, m, complete = lo + k, m - k, False
    out.reverse()
    return out


def _check_hash(h: object, what: str) -> bytes:
    if not isinstance(h, (bytes, bytearray)) or len(h) != HASH_SIZE:
        raise VerificationError(f"{what} is not a {HASH_SIZE}-byte hash")
    return bytes(h)


def _check_size(v: object, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise VerificationError(f"{what} must be a non-negative integer")
    return v


def root_from_inclusion_proof(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes]
) -> bytes:
    """Recompute the root an inclusion proof commits to (RFC 9162 §2.1.3.2).

    Raises :class:`VerificationError` when the proof cannot belong to ``index``
    in a tree of ``size`` (wrong length, index out of range, bad hash sizes).
    """
    index = _check_size(index, "index")
    size = _check_size(size, "tree size")
    if index >= size:
        raise VerificationError(f"index {index} is not below tree size {size}")
    r = _check_hash(leaf_hash, "leaf hash")
    proof = list(proof or [])
    fn, sn = index, size - 1
    for i, p in enumerate(proof):
        p = _check_hash(p, f"proof hash {i}")
        if sn == 0:
            raise VerificationError("inclusion proof is longer than the tree allows")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError("inclusion proof is shorter than the tree requires")
    return r


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf_hash`` is at ``index`` of the tree ``(size, root)``.

    Returns ``None`` on success and raises :class:`ailedger.VerificationError`
    otherwise (RFC 9162 §2.1.3.2).
    """
    expected = _check_hash(root, "root")
    got = root_from_inclusion_proof(leaf_hash, index, size, proof)
    if not hmac.compare_digest(got, expected):
        raise VerificationError("inclusion proof does not lead to the expected root")


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Check that tree ``(size2, root2)`` extends tree ``(size1, root1)``.

    RFC 9162 §2.1.4.2. A consistency check from the empty tree proves nothing
    and is rejected, as is any ``size1 > size2``. Raises
    :class:`ailedger.VerificationError` on any failure.
    """
    size1 = _check_size(size1, "size1")
    size2 = _check_size(size2, "size2")
    proof = list(proof or [])
    if size1 == 0:
        raise VerificationError("a consistency proof from the empty tree proves nothing")
    if size1 > size2:
        raise VerificationError(f"size1 {size1} is greater than size2 {size2}")
    if not isinstance(root1, (bytes, bytearray)) or not isinstance(root2, (bytes, bytearray)):
        raise VerificationError("roots must be bytes")
    if size1 == size2:
        if proof:
            raise VerificationError("trees of equal size need an empty consistency proof")
        if not hmac.compare_digest(bytes(root1), bytes(root2)):
            raise VerificationError("trees of equal size have different roots")
        return
    r1 = _check_hash(root1, "root1")
    r2 = _check_hash(root2, "root2")
    if not proof:
        raise VerificationError("consistency proof is empty")
    path = [_check_hash(p, f"proof hash {i}") for i, p in enumerate(proof)]
    if size1 & (size1 - 1) == 0:  # size1 is a power of two: its root is the first node
        path.insert(0, r1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise VerificationError("consistency proof is longer than the trees allow")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError("consistency proof is shorter than the trees require")
    if not hmac.compare_digest(fr, r1):
        raise VerificationError("consistency proof does not lead to the old root")
    if not hmac.compare_digest(sr, r2):
        raise VerificationError("consistency proof does not lead to the new root")
