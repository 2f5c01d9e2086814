"""ailedger-sealed/v1 and HPKE key wrapping: round trips and every attack failing closed."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import struct

import pytest
from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from ailedger._crypto import hpke_wrap, sealed
from ailedger.errors import InputError, VerificationError

KEY = bytes(range(32))
CTX = b"dataset-a/file-1"
H = sealed.HEADER_SIZE
T = sealed.TAG_SIZE


def seal(data: bytes, chunk: int = 16, key: bytes = KEY, ctx: bytes = CTX) -> bytes:
    return sealed.seal_bytes(key, data, context=ctx, chunk_size=chunk)


def chunks(blob: bytes, chunk: int) -> tuple[bytes, list[bytes]]:
    body = blob[H:]
    return blob[:H], [body[i : i + chunk + T] for i in range(0, len(body), chunk + T)]


def fails(blob: bytes, match: str, key: bytes = KEY, ctx: bytes | None = CTX) -> None:
    with pytest.raises(VerificationError, match=match):
        sealed.open_bytes(key, blob, context=ctx)


# -- round trips -------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 15, 16, 17, 32, 33, 3 * 16])
def test_round_trip_edges(n: int) -> None:
    data = os.urandom(n)
    blob = seal(data)
    assert len(blob) == sealed.sealed_size(n, 16)
    assert sealed.open_bytes(KEY, blob, context=CTX) == data


def test_round_trip_several_mib_default_chunk() -> None:
    data = os.urandom(3 * sealed.DEFAULT_CHUNK + 12345)
    src, out = io.BytesIO(data), io.BytesIO()
    info = sealed.seal_stream(KEY, src, out, context=CTX)
    assert info.chunks == 4 and info.plaintext_bytes == len(data)
    assert info.plaintext_sha256 == hashlib.sha256(data).hexdigest()
    assert info.sealed_bytes == len(out.getvalue()) == sealed.sealed_size(len(data))
    back = io.BytesIO()
    assert sealed.open_stream(KEY, io.BytesIO(out.getvalue()), back, context=CTX) == len(data)
    assert back.getvalue() == data


def test_exact_multiple_has_no_empty_trailing_chunk() -> None:
    blob = seal(b"x" * 32, chunk=16)
    assert len(blob) == H + 2 * (16 + T)


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=600), chunk=st.integers(1, 70))
def test_round_trip_property(data: bytes, chunk: int) -> None:
    blob = seal(data, chunk)
    assert len(blob) == sealed.sealed_size(len(data), chunk)
    assert sealed.open_bytes(KEY, blob, context=CTX) == data
    assert b"".join(sealed.iter_open(KEY, io.BytesIO(blob))) == data  # no binding check


class Trickle(io.RawIOBase):
    """A source returning at most 3 bytes per read, like a slow socket."""

    def __init__(self, data: bytes) -> None:
        self.b = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        return self.b.read(min(n, 3) if n >= 0 else 3)


def test_short_reads() -> None:
    data = os.urandom(100)
    blob = sealed.seal_stream(KEY, Trickle(data), out := io.BytesIO(), context=CTX, chunk_size=7)
    assert blob.plaintext_bytes == 100
    assert b"".join(sealed.iter_open(KEY, Trickle(out.getvalue()), context=CTX)) == data


def test_header_layout() -> None:
    blob = seal(b"hello", chunk=1000)
    magic, aead, flags, chunk, sid, binding = struct.unpack(">18sBBI16s32s", blob[:H])
    assert magic == b"ailedger-sealed/v1" and aead == 1 and flags == 0 and chunk == 1000
    assert binding == hashlib.sha256(CTX).digest()
    # Chunk 0 is plain AES-256-GCM under the HKDF subkey, nonce 0^4|0^8, AAD hd|0^8|01.
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    hd = hashlib.sha256(blob[:H]).digest()
    sub = HKDF(hashes.SHA256(), 32, sid, b"ailedger-sealed/v1 subkey" + hd).derive(KEY)
    aad = hd + bytes(8) + b"\x01"
    assert AESGCM(sub).decrypt(bytes(12), blob[H:], aad) == b"hello"


def test_streams_under_one_key_never_share_bytes() -> None:
    a, b = seal(b"\x00" * 64), seal(b"\x00" * 64)
    assert a[24:40] != b[24:40]  # stream ids
    assert a[H:] != b[H:]


def test_bad_parameters() -> None:
    with pytest.raises(InputError):
        sealed.seal_bytes(b"short", b"x")
    for c in (0, sealed.MAX_CHUNK + 1):
        with pytest.raises(InputError):
            sealed.seal_bytes(KEY, b"x", chunk_size=c)


# -- attacks -----------------------------------------------------------------------------


DATA = os.urandom(16 * 4 + 5)  # 5 chunks of 16: four full, a short final one


def test_flipped_byte_in_every_chunk_and_tag() -> None:
    blob = seal(DATA)
    _, cs = chunks(blob, 16)
    assert len(cs) == 5
    off = H
    for i, c in enumerate(cs):
        for pos in (0, len(c) - 1):  # ciphertext byte and tag byte
            bad = bytearray(blob)
            bad[off + pos] ^= 0x01
            fails(bytes(bad), f"chunk {i} failed authentication")
        off += len(c)


def test_nothing_of_a_bad_chunk_is_yielded() -> None:
    blob = bytearray(seal(DATA))
    blob[H + 2 * (16 + T) + 3] ^= 0x80  # chunk 2
    got: list[bytes] = []
    with pytest.raises(VerificationError, match="chunk 2"):
        for c in sealed.iter_open(KEY, io.BytesIO(bytes(blob)), context=CTX):
            got.append(c)
    assert got == [DATA[:16], DATA[16:32]]


def test_reordered_chunks() -> None:
    hdr, cs = chunks(seal(DATA), 16)
    cs[0], cs[1] = cs[1], cs[0]
    fails(hdr + b"".join(cs), "chunk 0")


def test_dropped_middle_chunk() -> None:
    hdr, cs = chunks(seal(DATA), 16)
    del cs[2]
    fails(hdr + b"".join(cs), "chunk 2")


def test_duplicated_chunk() -> None:
    hdr, cs = chunks(seal(DATA), 16)
    cs.insert(1, cs[1])
    fails(hdr + b"".join(cs), "chunk 2")


@pytest.mark.parametrize("keep", [1, 2, 3, 4])
def test_truncation_at_chunk_boundary(keep: int) -> None:
    hdr, cs = chunks(seal(DATA), 16)
    fails(hdr + b"".join(cs[:keep]), f"chunk {keep - 1}.*truncated or extended")


def test_truncation_mid_chunk_and_header() -> None:
    blob = seal(DATA)
    fails(blob[: H + 10], "chunk 0 is truncated")
    fails(blob[: H + 16 + T + 20], "chunk 1")
    fails(blob[:H], "chunk 0 is truncated")
    fails(blob[:40], "header truncated")
    fails(b"", "header truncated")


def test_appended_data() -> None:
    blob = seal(DATA)
    _, cs = chunks(blob, 16)
    fails(blob + cs[0], "chunk 4")
    fails(blob + b"\x00", "chunk 4")


def test_chunk_from_another_stream_same_key_same_context() -> None:
    other = os.urandom(len(DATA))
    h1, c1 = chunks(seal(DATA), 16)
    _, c2 = chunks(seal(other), 16)
    c1[1] = c2[1]
    fails(h1 + b"".join(c1), "chunk 1")
    # the whole body of another stream under this header
    fails(h1 + b"".join(c2), "chunk 0")


def test_stream_of_another_dataset() -> None:
    other = seal(DATA, key=os.urandom(32), ctx=b"dataset-b/file-1")
    fails(other, "different context")  # binding checked first
    fails(other, "chunk 0", ctx=None)  # and the key differs anyway
    # same key, another file's context: refused by the binding
    fails(seal(DATA, ctx=b"dataset-a/file-2"), "different context")
    # a header edited to claim our context: the header digest breaks every chunk
    blob = bytearray(seal(DATA, ctx=b"dataset-a/file-2"))
    blob[40:72] = hashlib.sha256(CTX).digest()
    fails(bytes(blob), "chunk 0")


@pytest.mark.parametrize(
    ("pos", "match"),
    [
        (0, "bad magic"),
        (17, "bad magic"),
        (18, "unsupported AEAD"),
        (19, "unsupported AEAD"),
        (23, "chunk 0"),  # chunk size 16 -> 17: the layout and the header digest break
        (30, "chunk 0"),  # stream id
        (50, "different context"),  # binding
    ],
)
def test_header_edits(pos: int, match: str) -> None:
    blob = bytearray(seal(DATA))
    blob[pos] ^= 0x01
    fails(bytes(blob), match)


def test_chunk_size_out_of_range_in_header() -> None:
    blob = bytearray(seal(DATA))
    blob[20:24] = (sealed.MAX_CHUNK + 1).to_bytes(4, "big")
    fails(bytes(blob), "out of range")
    blob[20:24] = bytes(4)
    fails(bytes(blob), "out of range")


def test_wrong_key() -> None:
    fails(seal(DATA), "chunk 0", key=os.urandom(32))
    fails(seal(b""), "chunk 0", key=os.urandom(32))


@settings(max_examples=40, deadline=None)
@given(data=st.binary(min_size=1, max_size=200), chunk=st.integers(1, 40), pos=st.integers(0))
def test_any_single_flip_fails(data: bytes, chunk: int, pos: int) -> None:
    blob = bytearray(seal(data, chunk))
    blob[pos % len(blob)] ^= 0x40
    with pytest.raises(VerificationError):
        sealed.open_bytes(KEY, bytes(blob), context=CTX)


# -- HPKE key wrapping -------------------------------------------------------------------


DIGEST = hashlib.sha256(b"manifest").hexdigest()
OTHER_DIGEST = hashlib.sha256(b"other manifest").hexdigest()


def _pub(sk: x25519.X25519PrivateKey) -> bytes:
    return sk.public_key().public_bytes_raw()


def test_wrap_unwrap_round_trip() -> None:
    sk = x25519.X25519PrivateKey.generate()
    doc = hpke_wrap.wrap_key(KEY, _pub(sk), DIGEST)
    d = json.loads(doc)
    assert d["type"] == "ailedger/wrapped-key/v1"
    assert d["suite"] == {"mode": "base", "kem": 32, "kdf": 1, "aead": 2}
    assert d["recipient"]["keyid"] == hashlib.sha256(_pub(sk)).hexdigest()
    assert d["dataset"] == {"sha256": DIGEST}
    assert len(base64.b64decode(d["enc"])) == 32 and len(base64.b64decode(d["ciphertext"])) == 48
    # canonical JSON: sorted keys, no spaces
    assert doc == json.dumps(d, sort_keys=True, separators=(",", ":"))
    assert hpke_wrap.unwrap_key(doc, sk, dataset_digest=DIGEST) == KEY
    assert hpke_wrap.unwrap_key(d, sk) == KEY
    assert hpke_wrap.wrap_key(KEY, sk.public_key(), DIGEST) != doc  # fresh enc each time


def test_unwrap_with_rfc9180_info_directly() -> None:
    """The document is plain RFC 9180 single-shot: another HPKE implementation opens it."""
    from cryptography.hazmat.primitives import hpke

    sk = x25519.X25519PrivateKey.generate()
    d = json.loads(hpke_wrap.wrap_key(KEY, _pub(sk), DIGEST))
    info = b"ailedger/wrapped-key/v1\x00" + bytes.fromhex(DIGEST) + _pub(sk)
    suite = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
    ct = base64.b64decode(d["enc"]) + base64.b64decode(d["ciphertext"])
    assert suite.decrypt(ct, sk, info=info) == KEY


def test_wrong_recipient() -> None:
    sk, other = x25519.X25519PrivateKey.generate(), x25519.X25519PrivateKey.generate()
    doc = hpke_wrap.wrap_key(KEY, _pub(sk), DIGEST)
    with pytest.raises(VerificationError, match="wrapped for recipient"):
        hpke_wrap.unwrap_key(doc, other)
    # relabelled to the other recipient: the info binds the real one
    d = json.loads(doc)
    d["recipient"]["keyid"] = hashlib.sha256(_pub(other)).hexdigest()
    with pytest.raises(VerificationError, match="does not open"):
        hpke_wrap.unwrap_key(d, other)


def test_wrong_dataset() -> None:
    sk = x25519.X25519PrivateKey.generate()
    doc = hpke_wrap.wrap_key(KEY, _pub(sk), DIGEST)
    with pytest.raises(VerificationError, match="wrapped for dataset"):
        hpke_wrap.unwrap_key(doc, sk, dataset_digest=OTHER_DIGEST)
    d = json.loads(doc)
    d["dataset"]["sha256"] = OTHER_DIGEST  # relabelled: the info no longer matches
    with pytest.raises(VerificationError, match="does not open"):
        hpke_wrap.unwrap_key(d, sk, dataset_digest=OTHER_DIGEST)


@pytest.mark.parametrize("field", ["enc", "ciphertext"])
@pytest.mark.parametrize("byte", [0, 31])
def test_tampered_enc_or_ciphertext(field: str, byte: int) -> None:
    sk = x25519.X25519PrivateKey.generate()
    d = json.loads(hpke_wrap.wrap_key(KEY, _pub(sk), DIGEST))
    raw = bytearray(base64.b64decode(d[field]))
    raw[byte] ^= 0x01
    d[field] = base64.b64encode(bytes(raw)).decode()
    with pytest.raises(VerificationError, match="wrapped key"):
        hpke_wrap.unwrap_key(d, sk)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda d: d.update(type="x"), "not a wrapped-key document"),
        (lambda d: d["suite"].update(aead=3), "unsupported HPKE suite"),
        (lambda d: d.update(enc="!!"), "enc is not base64"),
        (lambda d: d.update(enc=base64.b64encode(b"x" * 31).decode()), "enc is 31 bytes"),
        (lambda d: d.update(ciphertext=5), "ciphertext is not base64"),
        (lambda d: d["recipient"].update(keyid="AB"), "recipient.keyid"),
        (lambda d: d.pop("dataset"), "dataset.sha256"),
    ],
)
def test_malformed_documents(edit: object, match: str) -> None:
    sk = x25519.X25519PrivateKey.generate()
    d = json.loads(hpke_wrap.wrap_key(KEY, _pub(sk), DIGEST))
    edit(d)  # type: ignore[operator]
    with pytest.raises(VerificationError, match=match):
        hpke_wrap.unwrap_key(d, sk)
    with pytest.raises(VerificationError, match="not JSON"):
        hpke_wrap.unwrap_key("{", sk)


def test_wrap_bad_input() -> None:
    sk = x25519.X25519PrivateKey.generate()
    with pytest.raises(InputError):
        hpke_wrap.wrap_key(b"short", _pub(sk), DIGEST)
    with pytest.raises(InputError):
        hpke_wrap.wrap_key(KEY, b"\x01" * 31, DIGEST)
    with pytest.raises(InputError):
        hpke_wrap.wrap_key(KEY, _pub(sk), "sha256:" + DIGEST)
    with pytest.raises(InputError):
        hpke_wrap.wrap_key(KEY, bytes(32), DIGEST)  # the all-zero (low-order) point
