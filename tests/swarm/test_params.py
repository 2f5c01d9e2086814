from __future__ import annotations

import hashlib
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ailedger import InputError, VerificationError
from ailedger._swarm.params import MAGIC, decode, digest, encode

# Pinned: changing the encoding changes every committed digest.
FIXED = {"w": np.array([[1.0, -2.0], [0.5, 3.0]], dtype=np.float32), "b": np.array(0.25)}
FIXED_DIGEST = hashlib.sha256(encode(FIXED)).hexdigest()


def test_fixed_layout_and_digest() -> None:
    data = encode(FIXED)
    header = b'{"tensors":[{"dtype":"<f4","name":"w","shape":[2,2]},{"dtype":"<f8","name":"b","shape":[]}]}'
    assert data == (
        MAGIC
        + struct.pack("<I", len(header))
        + header
        + struct.pack("<4f", 1.0, -2.0, 0.5, 3.0)
        + struct.pack("<d", 0.25)
    )
    assert digest(FIXED) == FIXED_DIGEST


def test_pinned_digest() -> None:
    assert digest(FIXED) == PINNED


PINNED = "7abb365b4abfb2b4986e000621599143389b5de5a02dbcde2ca7dec2e5631daf"


def test_byte_order_and_layout_normalised() -> None:
    a = {"w": np.asfortranarray(np.arange(6, dtype=">f4").reshape(2, 3))}
    b = {"w": np.arange(6, dtype="<f4").reshape(2, 3)}
    assert encode(a) == encode(b)
    assert digest(a) == digest(b) == hashlib.sha256(encode(b)).hexdigest()


_dtypes = st.sampled_from([np.dtype("<f4"), np.dtype("<f8"), np.dtype(">f4"), np.dtype(">f8")])


@st.composite
def _params(draw: st.DrawFn) -> dict[str, np.ndarray]:
    names = draw(st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=4, unique=True))
    out = {}
    for n in names:
        dt = draw(_dtypes)
        shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))
        out[n] = draw(hnp.arrays(dt, shape, elements=st.floats(-1e6, 1e6, width=dt.itemsize * 8)))
    return out


@settings(max_examples=60, deadline=None)
@given(_params())
def test_round_trip(p: dict[str, np.ndarray]) -> None:
    data = encode(p)
    q = decode(data)
    assert list(q) == list(p)
    for k in p:
        assert q[k].dtype.itemsize == p[k].dtype.itemsize
        assert q[k].shape == p[k].shape
        assert np.array_equal(q[k], p[k])
    assert encode(q) == data
    assert decode(data, expected_digest=digest(p))


@settings(max_examples=60, deadline=None)
@given(_params(), st.data())
def test_any_corruption_refused_or_changes_digest(p: dict[str, np.ndarray], data: st.DataObject) -> None:
    enc = encode(p)
    cut = data.draw(st.integers(0, len(enc) - 1))
    with pytest.raises(InputError):
        decode(enc[:cut])
    with pytest.raises(InputError):
        decode(enc + b"\x00")
    with pytest.raises(VerificationError):
        decode(enc, expected_digest="0" * 64)


def _raw(header: bytes, body: bytes = b"") -> bytes:
    return MAGIC + struct.pack("<I", len(header)) + header + body


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"ailedger-params/v2\n",
        _raw(b'{"tensors":[]}'),
        _raw(b'{"tensors": [{"dtype":"<f4","name":"a","shape":[]}]}', b"\0" * 4),  # not canonical
        _raw(b'{"tensors":[{"dtype":"<i4","name":"a","shape":[]}]}', b"\0" * 4),
        _raw(b'{"tensors":[{"dtype":">f4","name":"a","shape":[]}]}', b"\0" * 4),
        _raw(b'{"tensors":[{"dtype":"<f4","name":"","shape":[]}]}', b"\0" * 4),
        _raw(b'{"tensors":[{"dtype":"<f4","name":"a","shape":[-1]}]}'),
        _raw(b'{"tensors":[{"dtype":"<f4","name":"a","shape":[1.0]}]}', b"\0" * 4),
        _raw(b'{"tensors":[{"dtype":"<f4","name":"a","shape":[true]}]}', b"\0" * 4),
        _raw(b'{"tensors":[{"dtype":"<f4","name":"a","shape":[],"x":1}]}', b"\0" * 4),
        _raw(b'{"tensors":[{"dtype":"<f4","name":"a","shape":[]},{"dtype":"<f4","name":"a","shape":[]}]}', b"\0" * 8),
        _raw(b'{"tensors":[{"dtype":"<f4","name":"a","shape":[]}],"tensors":[]}', b"\0" * 4),
        _raw(b'{"tensors":[{"dtype":"<f4","name":"a","shape":[1000000000000]}]}'),
        _raw(b"\xff\xfe"),
        MAGIC + struct.pack("<I", 1 << 30),
    ],
)
def test_malformed_refused(data: bytes) -> None:
    with pytest.raises(InputError):
        decode(data)


def test_nonfinite() -> None:
    p = {"a": np.array([1.0, np.nan])}
    with pytest.raises(InputError, match="NaN"):
        encode(p)
    data = encode(p, allow_nonfinite=True)
    with pytest.raises(InputError, match="NaN"):
        decode(data)
    assert np.isnan(decode(data, allow_nonfinite=True)["a"][1])
    with pytest.raises(InputError):
        encode({"a": np.array([np.inf], dtype=np.float32)})


@pytest.mark.parametrize(
    "bad", [{}, {"a": np.array([1, 2])}, {"a": np.array([1], dtype=np.float16)}, {"": np.zeros(1)}, [1.0]]
)
def test_bad_params_refused(bad: object) -> None:
    with pytest.raises(InputError):
        encode(bad)  # type: ignore[arg-type]


def test_decoded_arrays_are_writable_copies() -> None:
    q = decode(encode(FIXED))
    q["w"][0, 0] = 9
    assert FIXED["w"][0, 0] == 1.0
