"""Model parameters and their canonical, content-addressed encoding.

A model's parameters are an ordered mapping ``name -> numpy array`` whose arrays are
``float32`` or ``float64``. :func:`encode` turns them into one byte string that is the
same on every machine for the same arrays (little-endian, C order, canonical JSON
header), :func:`decode` is its strict inverse and :func:`digest` is the SHA-256 of the
encoding — the value a swarm member commits on chain.

Layout (``docs/swarm-aggregation.md`` has it byte by byte)::

    b"ailedger-params/v1\\n"          19 bytes, magic
    header length                   4 bytes, unsigned little-endian
    header                          RFC 8785 JSON {"tensors":[{"dtype","name","shape"}...]}
    data                            each tensor's little-endian C-order bytes, in order
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from collections.abc import Mapping
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
import rfc8785

from ..errors import InputError, VerificationError

__all__ = [
    "DTYPES",
    "MAGIC",
    "MAX_HEADER",
    "Params",
    "decode",
    "digest",
    "encode",
    "normalise",
]

Params: TypeAlias = dict[str, npt.NDArray[np.floating[Any]]]
"""Ordered mapping of tensor name to a float32 / float64 array (insertion order matters)."""

MAGIC = b"ailedger-params/v1\n"
MAX_HEADER = 64 << 20
MAX_NAME = 1024
# Only little-endian IEEE-754 binary32 / binary64: the two dtypes every framework shares
# and whose bytes have one meaning everywhere.
DTYPES: dict[str, np.dtype[Any]] = {"<f4": np.dtype("<f4"), "<f8": np.dtype("<f8")}
_LEN = struct.Struct("<I")


def _check_name(name: object, where: str) -> str:
    if not isinstance(name, str) or not name:
        raise InputError(f"{where}: a tensor name must be a non-empty string, got {name!r}")
    if len(name) > MAX_NAME:
        raise InputError(f"{where}: tensor name longer than {MAX_NAME} characters")
    return name


def normalise(
    params: Mapping[str, Any], *, allow_nonfinite: bool = False
) -> Params:
    """Validate parameters and return them as little-endian C-contiguous arrays.

    @param params: ordered mapping name -> array-like of float32 or float64 (any byte order).
    @param allow_nonfinite: accept NaN and ±Inf (refused by default: they poison every
        aggregation rule and usually mean training diverged).
    @return: a new dict in the same order; arrays already in canonical form are not copied.
    @raise InputError: empty mapping, bad name, non-float dtype, NaN/Inf.
    """
    if not isinstance(params, Mapping):
        raise InputError(f"parameters must be a mapping name -> array, got {type(params).__name__}")
    if not params:
        raise InputError("parameters are empty: a model needs at least one tensor")
    out: Params = {}
    for name, value in params.items():
        _check_name(name, "parameters")
        arr = np.asarray(value)
        if arr.dtype.kind != "f" or arr.dtype.itemsize not in (4, 8):
            raise InputError(
                f"tensor {name!r} has dtype {arr.dtype}; only float32 and float64 are supported"
            )
        want = np.dtype("<f4") if arr.dtype.itemsize == 4 else np.dtype("<f8")
        # not ascontiguousarray: it turns a 0-d array into shape (1,)
        arr = np.asarray(arr, dtype=want, order="C")
        if not allow_nonfinite and not bool(np.isfinite(arr).all()):
            raise InputError(f"tensor {name!r} contains NaN or infinity")
        out[name] = arr
    return out


def _header(params: Params) -> bytes:
    tensors = [
        {"dtype": arr.dtype.str, "name": name, "shape": list(arr.shape)}
        for name, arr in params.items()
    ]
    try:
        return rfc8785.dumps({"tensors": tensors})
    except (rfc8785.CanonicalizationError, ValueError, TypeError) as e:
        raise InputError(f"tensor names cannot be encoded as canonical JSON: {e}") from e


def encode(params: Mapping[str, Any], *, allow_nonfinite: bool = False) -> bytes:
    """Encode parameters canonically: same arrays, same bytes, on every machine.

    @param params: ordered mapping name -> float32/float64 array; the order is kept.
    @param allow_nonfinite: accept NaN/±Inf values.
    @return: magic || u32le(len(header)) || header || tensor bytes.
    @raise InputError: see :func:`normalise`.
    """
    p = normalise(params, allow_nonfinite=allow_nonfinite)
    header = _header(p)
    if len(header) > MAX_HEADER:
        raise InputError(f"parameter header is {len(header)} bytes, over {MAX_HEADER}")
    parts = [MAGIC, _LEN.pack(len(header)), header]
    parts.extend(arr.tobytes(order="C") for arr in p.values())
    return b"".join(parts)


def digest(params: Mapping[str, Any], *, allow_nonfinite: bool = False) -> str:
    """SHA-256 (lowercase hex) of :func:`encode` — the update's content address.

    @return: 64 hex characters.
    """
    h = hashlib.sha256()
    p = normalise(params, allow_nonfinite=allow_nonfinite)
    header = _header(p)
    h.update(MAGIC)
    h.update(_LEN.pack(len(header)))
    h.update(header)
    for arr in p.values():
        # hashing the buffer directly avoids a second full copy of a large model
        h.update(arr.reshape(-1).view(np.uint8).data)
    return h.hexdigest()


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d: dict[str, Any] = {}
    for k, v in pairs:
        if k in d:
            raise InputError(f"parameter header: duplicate key {k!r}")
        d[k] = v
    return d


def _reject_constant(name: str) -> Any:
    raise InputError(f"parameter header: {name} is not allowed in JSON")


def decode(
    data: bytes | bytearray | memoryview,
    *,
    allow_nonfinite: bool = False,
    expected_digest: str | None = None,
) -> Params:
    """Strictly decode :func:`encode` output.

    Refuses a wrong magic, a truncated or oversized header, a header that is not exactly
    the canonical JSON :func:`encode` would write, an unknown dtype, duplicate or empty
    names, a data section of the wrong length (including trailing bytes) and, unless
    allowed, NaN/Inf.

    @param data: the encoded bytes.
    @param allow_nonfinite: accept NaN/±Inf values.
    @param expected_digest: if given, the SHA-256 hex the bytes must hash to.
    @return: a new ordered dict of writable arrays.
    @raise InputError: the bytes are not a valid encoding.
    @raise VerificationError: the bytes do not hash to ``expected_digest``.
    """
    buf = bytes(data)
    if expected_digest is not None:
        got = hashlib.sha256(buf).hexdigest()
        if got != expected_digest.lower():
            raise VerificationError(
                f"parameter bytes hash to {got}, not the committed digest {expected_digest}"
            )
    if not buf.startswith(MAGIC):
        raise InputError("not an ailedger-params/v1 encoding (bad magic)")
    pos = len(MAGIC)
    if len(buf) < pos + _LEN.size:
        raise InputError("parameter encoding truncated before the header length")
    (hlen,) = _LEN.unpack_from(buf, pos)
    pos += _LEN.size
    if hlen > MAX_HEADER:
        raise InputError(f"parameter header length {hlen} is over {MAX_HEADER}")
    if len(buf) < pos + hlen:
        raise InputError("parameter encoding truncated inside the header")
    raw = buf[pos : pos + hlen]
    pos += hlen
    try:
        header = json.loads(
            raw.decode("utf-8"),
            object_pairs_hook=_no_duplicates,
            parse_constant=_reject_constant,
        )
    except (UnicodeDecodeError, ValueError) as e:
        if isinstance(e, InputError):
            raise
        raise InputError(f"parameter header is not valid JSON: {e}") from e
    if not isinstance(header, dict) or set(header) != {"tensors"}:
        raise InputError('parameter header must be exactly {"tensors": [...]}')
    tensors = header["tensors"]
    if not isinstance(tensors, list) or not tensors:
        raise InputError("parameter header: tensors must be a non-empty list")
    specs: list[tuple[str, np.dtype[Any], tuple[int, ...]]] = []
    seen: set[str] = set()
    for i, t in enumerate(tensors):
        if not isinstance(t, dict) or set(t) != {"dtype", "name", "shape"}:
            raise InputError(f"parameter header: tensor {i} must have exactly dtype, name, shape")
        name = _check_name(t["name"], f"parameter header tensor {i}")
        if name in seen:
            raise InputError(f"parameter header: duplicate tensor name {name!r}")
        seen.add(name)
        dt = t["dtype"]
        if not isinstance(dt, str) or dt not in DTYPES:
            raise InputError(f"tensor {name!r}: dtype {dt!r} is not one of {sorted(DTYPES)}")
        shape = t["shape"]
        if not isinstance(shape, list) or not all(
            type(s) is int and s >= 0 for s in shape
        ):
            raise InputError(f"tensor {name!r}: shape must be a list of non-negative integers")
        specs.append((name, DTYPES[dt], tuple(shape)))
    # Re-encoding must give the very same header bytes: one encoding per value, so two
    # members can never commit different digests for the same parameters.
    canon = rfc8785.dumps(
        {"tensors": [{"dtype": d.str, "name": n, "shape": list(s)} for n, d, s in specs]}
    )
    if canon != raw:
        raise InputError("parameter header is not in canonical (RFC 8785) form")
    out: Params = {}
    for name, dt, shape in specs:
        nbytes = math.prod(shape) * dt.itemsize
        if len(buf) - pos < nbytes:
            raise InputError(f"parameter data truncated in tensor {name!r}")
        arr = np.frombuffer(buf, dtype=dt, count=math.prod(shape), offset=pos).reshape(shape)
        pos += nbytes
        if not allow_nonfinite and not bool(np.isfinite(arr).all()):
            raise InputError(f"tensor {name!r} contains NaN or infinity")
        out[name] = arr.copy()
    if pos != len(buf):
        raise InputError(f"{len(buf) - pos} trailing bytes after the parameter data")
    return out
