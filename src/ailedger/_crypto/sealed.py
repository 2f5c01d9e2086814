"""``ailedger-sealed/v1``: streaming, chunked AES-256-GCM encryption at rest (docs/encryption.md).

A sealed stream is a 72-byte header followed by one or more chunks::

    header  = magic "ailedger-sealed/v1" (18) | aead id 0x01 (1) | flags 0x00 (1)
            | chunk size, uint32 big-endian (4) | stream id (16) | binding = SHA-256(context) (32)
    chunk_i = AES-256-GCM(subkey, nonce_i, plaintext_i, aad_i)   (len(plaintext_i) + 16 bytes)

    subkey  = HKDF-SHA256(ikm = data key, salt = stream id,
                          info = "ailedger-sealed/v1 subkey" | header digest)
    nonce_i = 0x00000000 | uint64 big-endian i
    aad_i   = header digest (32) | uint64 big-endian i (8) | final flag 0x00/0x01 (1)
    header digest = SHA-256(header)

Every chunk but the last carries exactly ``chunk size`` plaintext bytes; the last one
(flag 0x01) carries 0..chunk size bytes, and is the only chunk of an empty stream. This is
the STREAM construction (Hoang, Reyhanitabar, Rogaway, Vizár 2015): the index in the nonce
and AAD pins each chunk to its position, the final flag makes truncation at a chunk
boundary and appending detectable, and the header digest in the AAD ties every chunk to
this stream's header (stream id, chunk size, binding).

Why per-stream subkeys instead of a random nonce prefix: one data key seals every file of a
dataset, possibly 100,000s of them, and a 32-bit random prefix collides (birthday bound)
after ~2^16 streams, which in GCM leaks the XOR of plaintexts and the authentication key.
A subkey derived from a 128-bit random stream id makes (key, nonce) pairs unique by
construction for ~2^64 streams per data key, with deterministic counters inside a stream,
and costs one HKDF call (a few µs) per file.

Decryption fails closed: each chunk is authenticated before any of its bytes leave this
module, and a stream is complete only when the iterator ends without raising.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import InputError, VerificationError

__all__ = [
    "AEAD_NAME",
    "DEFAULT_CHUNK",
    "HEADER_SIZE",
    "KEY_SIZE",
    "MAGIC",
    "MAX_CHUNK",
    "SCHEME",
    "TAG_SIZE",
    "Header",
    "Readable",
    "SealInfo",
    "Writable",
    "iter_open",
    "new_key",
    "open_bytes",
    "open_stream",
    "read_header",
    "seal_bytes",
    "seal_stream",
    "sealed_size",
]

SCHEME: Final = "ailedger-sealed/v1"
MAGIC: Final = SCHEME.encode()
AEAD_NAME: Final = "AES-256-GCM"
AEAD_AES_256_GCM: Final = 0x01
KEY_SIZE: Final = 32
TAG_SIZE: Final = 16
STREAM_ID_SIZE: Final = 16
DEFAULT_CHUNK: Final = 1 << 20
MAX_CHUNK: Final = 1 << 26  # a decryptor holds two chunks: bound its memory at 128 MiB
MAX_CHUNKS: Final = 1 << 63  # the index is a uint64; stay inside signed SQLite/JSON ints
_HDR: Final = struct.Struct(">18sBBI16s32s")
HEADER_SIZE: Final = _HDR.size  # 72
_SUBKEY_INFO: Final = b"ailedger-sealed/v1 subkey"
_ZERO4: Final = b"\x00\x00\x00\x00"

assert HEADER_SIZE == 72


class Readable(Protocol):
    """A binary source: ``read(n)`` returns up to n bytes, b"" at the end."""

    def read(self, n: int, /) -> bytes: ...


class Writable(Protocol):
    """A binary sink."""

    def write(self, b: bytes, /) -> int: ...


@dataclass(frozen=True)
class Header:
    """A parsed sealed-stream header."""

    chunk_size: int
    stream_id: bytes
    binding: bytes  # SHA-256 of the context the stream was sealed for
    raw: bytes  # the 72 header bytes as read

    @property
    def digest(self) -> bytes:
        return hashlib.sha256(self.raw).digest()


@dataclass(frozen=True)
class SealInfo:
    """What :func:`seal_stream` wrote."""

    plaintext_bytes: int
    sealed_bytes: int
    chunks: int
    stream_id: bytes
    plaintext_sha256: str  # hex ("" unless hashed): lets the caller check what it sealed


def new_key() -> bytes:
    """A fresh random 32-byte data key. Use one per dataset; never reuse across datasets."""
    return os.urandom(KEY_SIZE)


def sealed_size(plaintext_bytes: int, chunk_size: int = DEFAULT_CHUNK) -> int:
    """The exact size of the sealed stream of ``plaintext_bytes`` bytes."""
    chunks = max(1, -(-plaintext_bytes // chunk_size))
    return HEADER_SIZE + plaintext_bytes + chunks * TAG_SIZE


def _check_key(key: bytes) -> None:
    if not isinstance(key, (bytes, bytearray)) or len(key) != KEY_SIZE:
        raise InputError(f"a sealed-stream key is {KEY_SIZE} bytes")


def _check_chunk(chunk_size: int) -> None:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int):
        raise InputError("chunk size must be an integer")
    if not 1 <= chunk_size <= MAX_CHUNK:
        raise InputError(f"chunk size must be 1..{MAX_CHUNK} bytes, not {chunk_size}")


def _cipher(key: bytes, header: bytes) -> tuple[AESGCM, bytes]:
    hd = hashlib.sha256(header).digest()
    stream_id = header[24:40]
    sub = HKDF(
        algorithm=hashes.SHA256(), length=KEY_SIZE, salt=stream_id, info=_SUBKEY_INFO + hd
    ).derive(bytes(key))
    return AESGCM(sub), hd


def _nonce(i: int) -> bytes:
    return _ZERO4 + i.to_bytes(8, "big")


def _aad(hd: bytes, i: int, final: bool) -> bytes:
    return hd + i.to_bytes(8, "big") + (b"\x01" if final else b"\x00")


def _read_exact(src: Readable, n: int) -> bytes:
    """Up to ``n`` bytes; fewer only at end of stream (pipes and sockets return short reads)."""
    data: bytes | None = src.read(n)
    if data is None:  # a non-blocking file with nothing ready
        raise InputError("sealed streams need a blocking file object")
    if len(data) == n or not data:
        return bytes(data)
    parts = [data]
    got = len(data)
    while got < n:
        more = src.read(n - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def seal_stream(
    key: bytes,
    src: Readable,
    dst: Writable,
    *,
    context: bytes = b"",
    chunk_size: int = DEFAULT_CHUNK,
    hash_plaintext: bool = True,
) -> SealInfo:
    """Encrypt ``src`` to ``dst`` as one sealed stream, in constant memory (two chunks).

    @param key         the 32-byte data key
    @param context     what the stream is for (e.g. dataset manifest digest and file path);
                       its SHA-256 is the header binding and the decryptor must present it
    @param chunk_size  plaintext bytes per chunk, 1..2^26 (default 1 MiB)
    @param hash_plaintext  SHA-256 the plaintext as it is read (about half the cost of
                       sealing); False leaves ``plaintext_sha256`` empty
    @return sizes, chunk count, stream id and the SHA-256 of the plaintext read
    """
    _check_key(key)
    _check_chunk(chunk_size)
    stream_id = os.urandom(STREAM_ID_SIZE)
    header = _HDR.pack(
        MAGIC, AEAD_AES_256_GCM, 0, chunk_size, stream_id, hashlib.sha256(context).digest()
    )
    aead, hd = _cipher(key, header)
    dst.write(header)
    h = hashlib.sha256() if hash_plaintext else None
    total = 0
    written = HEADER_SIZE
    i = 0
    # Read one chunk ahead: a chunk is final exactly when nothing follows it.
    cur = _read_exact(src, chunk_size)
    while True:
        nxt = _read_exact(src, chunk_size) if len(cur) == chunk_size else b""
        final = not nxt
        if h is not None:
            h.update(cur)
        ct = aead.encrypt(_nonce(i), cur, _aad(hd, i, final))
        dst.write(ct)
        total += len(cur)
        written += len(ct)
        i += 1
        if final:
            break
        cur = nxt
    return SealInfo(total, written, i, stream_id, "" if h is None else h.hexdigest())


def seal_bytes(
    key: bytes, data: bytes, *, context: bytes = b"", chunk_size: int = DEFAULT_CHUNK
) -> bytes:
    """:func:`seal_stream` over an in-memory buffer."""
    import io

    out = io.BytesIO()
    seal_stream(key, io.BytesIO(data), out, context=context, chunk_size=chunk_size)
    return out.getvalue()


def read_header(src: Readable, *, context: bytes | None = None) -> Header:
    """Read and check the header; with ``context``, check the stream was sealed for it.

    @raise VerificationError on a bad magic, unknown AEAD, flags, chunk size or binding
    """
    raw = _read_exact(src, HEADER_SIZE)
    if len(raw) < HEADER_SIZE:
        raise VerificationError(
            f"sealed stream: header truncated ({len(raw)} of {HEADER_SIZE} bytes)"
        )
    magic, aead, flags, chunk, stream_id, binding = _HDR.unpack(raw)
    if magic != MAGIC:
        raise VerificationError(f"sealed stream: not an {SCHEME} stream (bad magic)")
    if aead != AEAD_AES_256_GCM or flags != 0:
        raise VerificationError(
            f"sealed stream: unsupported AEAD id {aead} or flags {flags} in the header"
        )
    if not 1 <= chunk <= MAX_CHUNK:
        raise VerificationError(f"sealed stream: chunk size {chunk} in the header is out of range")
    if context is not None and not hmac.compare_digest(binding, hashlib.sha256(context).digest()):
        raise VerificationError(
            "sealed stream: sealed for a different context (another dataset or file)"
        )
    return Header(chunk, stream_id, binding, raw)


def iter_open(key: bytes, src: Readable, *, context: bytes | None = None) -> Iterator[bytes]:
    """Decrypt a sealed stream chunk by chunk, yielding only authenticated plaintext.

    The stream is intact only if the iterator finishes without raising: a truncated
    stream yields its authentic leading chunks and then raises, so write to a temporary
    place and commit only after the end (:func:`open_stream` does not commit for you).

    @param context  the context it was sealed for; None skips the binding check (the
                    header digest still authenticates every chunk)
    @raise VerificationError naming the chunk that failed; nothing of it is yielded
    """
    _check_key(key)
    hdr = read_header(src, context=context)
    aead, hd = _cipher(key, hdr.raw)
    size = hdr.chunk_size + TAG_SIZE
    i = 0
    cur = _read_exact(src, size)
    while True:
        nxt = _read_exact(src, size) if len(cur) == size else b""
        final = not nxt
        if len(cur) < TAG_SIZE:
            raise VerificationError(
                f"sealed stream: chunk {i} is truncated ({len(cur)} bytes; the stream was cut)"
            )
        try:
            plain = aead.decrypt(_nonce(i), cur, _aad(hd, i, final))
        except InvalidTag:
            why = (
                "modified, or the stream was truncated or extended, or wrong key"
                if final
                else "modified, reordered, from another stream, or wrong key"
            )
            raise VerificationError(
                f"sealed stream: chunk {i} failed authentication ({why})"
            ) from None
        yield plain
        if final:
            return
        i += 1
        if i >= MAX_CHUNKS:
            raise VerificationError("sealed stream: too many chunks")
        cur = nxt


def open_stream(key: bytes, src: Readable, dst: Writable, *, context: bytes | None = None) -> int:
    """Decrypt ``src`` into ``dst``; returns the plaintext length.

    ``dst`` may hold authentic leading chunks when this raises: discard it on error.
    """
    n = 0
    for chunk in iter_open(key, src, context=context):
        dst.write(chunk)
        n += len(chunk)
    return n


def open_bytes(key: bytes, sealed: bytes, *, context: bytes | None = None) -> bytes:
    """Decrypt an in-memory sealed stream; all or nothing."""
    import io

    return b"".join(iter_open(key, io.BytesIO(sealed), context=context))
