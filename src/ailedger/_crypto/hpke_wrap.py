"""Wrapping a 32-byte data key to an X25519 public key with HPKE (RFC 9180), docs/encryption.md.

Suite: base mode, KEM DHKEM(X25519, HKDF-SHA256) (0x0020), KDF HKDF-SHA256 (0x0001),
AEAD AES-256-GCM (0x0002), single-shot (``cryptography``'s ``hpke.Suite``). AES-256-GCM
rather than ChaCha20-Poly1305 so the whole data path needs one primitive, with AES-NI.

``info`` binds the wrapped key to its use::

    info = "ailedger/wrapped-key/v1" | 0x00 | dataset manifest digest (32 bytes)
         | recipient X25519 public key (32 bytes)

so a wrapped key only opens for the recipient it names and only as the key of the
dataset it names: moving it to another dataset or recipient fails the AEAD.

The wrapped-key document is RFC 8785 canonical JSON::

    {"type": "ailedger/wrapped-key/v1",
     "suite": {"mode": "base", "kem": 32, "kdf": 1, "aead": 2},
     "recipient": {"keyid": sha256 hex of the raw X25519 public key},
     "dataset": {"sha256": manifest digest hex},
     "enc": base64 (32 bytes), "ciphertext": base64 (48 bytes)}
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import rfc8785
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke, serialization
from cryptography.hazmat.primitives.asymmetric import x25519

from ..errors import InputError, VerificationError

__all__ = [
    "KEY_WRAPPING",
    "SUITE",
    "WRAPPED_KEY_TYPE",
    "WrappedKey",
    "parse_wrapped_key",
    "unwrap_key",
    "wrap_info",
    "wrap_key",
    "x25519_keyid",
]

WRAPPED_KEY_TYPE: Final = "ailedger/wrapped-key/v1"
KEY_WRAPPING: Final = "HPKE-base X25519-HKDF-SHA256 AES-256-GCM"
# RFC 9180 §7 registry ids.
KEM_ID: Final = 0x0020
KDF_ID: Final = 0x0001
AEAD_ID: Final = 0x0002
SUITE: Final = {"mode": "base", "kem": KEM_ID, "kdf": KDF_ID, "aead": AEAD_ID}
ENC_SIZE: Final = 32
DATA_KEY_SIZE: Final = 32
_CT_SIZE: Final = DATA_KEY_SIZE + 16
_INFO_PREFIX: Final = WRAPPED_KEY_TYPE.encode() + b"\x00"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
_RAW = serialization.Encoding.Raw
_RAW_PUB = serialization.PublicFormat.Raw


@dataclass(frozen=True)
class WrappedKey:
    """A parsed wrapped-key document."""

    recipient_keyid: str
    dataset_digest: str
    enc: bytes
    ciphertext: bytes


def x25519_keyid(public: bytes) -> str:
    """A recipient key id: lowercase hex SHA-256 of the raw 32-byte X25519 public key."""
    return hashlib.sha256(public).hexdigest()


def _public_bytes(pub: bytes | x25519.X25519PublicKey) -> bytes:
    if isinstance(pub, x25519.X25519PublicKey):
        return pub.public_bytes(_RAW, _RAW_PUB)
    if not isinstance(pub, (bytes, bytearray)) or len(pub) != 32:
        raise InputError("an X25519 public key is 32 raw bytes (64 hex digits)")
    return bytes(pub)


def _digest(d: str) -> bytes:
    if not isinstance(d, str) or not _HEX64.fullmatch(d):
        raise InputError(f"not a sha256 hex digest: {d!r}")
    return bytes.fromhex(d)


def wrap_info(dataset_digest: str, recipient_public: bytes) -> bytes:
    """The HPKE ``info`` string binding a wrapped key to a dataset and a recipient."""
    return _INFO_PREFIX + _digest(dataset_digest) + _public_bytes(recipient_public)


def wrap_key(
    data_key: bytes, recipient_public: bytes | x25519.X25519PublicKey, dataset_digest: str
) -> str:
    """Wrap ``data_key`` to ``recipient_public`` for the dataset whose manifest digest is
    ``dataset_digest``.

    @return the wrapped-key document, canonical JSON (UTF-8 text, no trailing newline)
    """
    if not isinstance(data_key, (bytes, bytearray)) or len(data_key) != DATA_KEY_SIZE:
        raise InputError(f"a data key is {DATA_KEY_SIZE} bytes")
    pub = _public_bytes(recipient_public)
    try:
        pk = x25519.X25519PublicKey.from_public_bytes(pub)
        out = _SUITE.encrypt(bytes(data_key), pk, info=wrap_info(dataset_digest, pub))
    except ValueError as e:  # e.g. a low-order point: the DH output is all zero
        raise InputError(f"cannot wrap to this X25519 public key: {e}") from e
    doc: dict[str, Any] = {
        "type": WRAPPED_KEY_TYPE,
        "suite": SUITE,
        "recipient": {"keyid": x25519_keyid(pub)},
        "dataset": {"sha256": dataset_digest},
        "enc": base64.b64encode(out[:ENC_SIZE]).decode(),
        "ciphertext": base64.b64encode(out[ENC_SIZE:]).decode(),
    }
    return bytes(rfc8785.dumps(doc)).decode()


def _fail(what: str) -> VerificationError:
    return VerificationError(f"wrapped key: {what}")


def _b64(v: Any, n: int, field: str) -> bytes:
    try:
        if not isinstance(v, str):
            raise ValueError
        b = base64.b64decode(v, validate=True)
    except (binascii.Error, ValueError) as e:
        raise _fail(f"{field} is not base64") from e
    if len(b) != n:
        raise _fail(f"{field} is {len(b)} bytes, not {n}")
    return b


def parse_wrapped_key(doc: str | bytes | Mapping[str, Any]) -> WrappedKey:
    """Parse and shape-check a wrapped-key document (no decryption).

    @raise VerificationError on anything malformed or an unknown type or suite
    """
    if isinstance(doc, (str, bytes)):
        try:
            d = json.loads(doc)
        except (ValueError, UnicodeDecodeError) as e:
            raise _fail(f"not JSON ({e})") from e
    else:
        d = dict(doc)
    if not isinstance(d, dict) or d.get("type") != WRAPPED_KEY_TYPE:
        raise _fail(f"not a wrapped-key document (type must be {WRAPPED_KEY_TYPE})")
    if d.get("suite") != SUITE:
        raise _fail(f"unsupported HPKE suite {d.get('suite')!r} (want {SUITE})")
    rk = d.get("recipient")
    ds = d.get("dataset")
    kid = rk.get("keyid") if isinstance(rk, dict) else None
    dd = ds.get("sha256") if isinstance(ds, dict) else None
    if not isinstance(kid, str) or not _HEX64.fullmatch(kid):
        raise _fail("recipient.keyid must be 64 lowercase hex digits")
    if not isinstance(dd, str) or not _HEX64.fullmatch(dd):
        raise _fail("dataset.sha256 must be 64 lowercase hex digits")
    enc = _b64(d.get("enc"), ENC_SIZE, "enc")
    ct = _b64(d.get("ciphertext"), _CT_SIZE, "ciphertext")
    return WrappedKey(kid, dd, enc, ct)


def unwrap_key(
    doc: str | bytes | Mapping[str, Any],
    private_key: x25519.X25519PrivateKey,
    *,
    dataset_digest: str | None = None,
) -> bytes:
    """Open a wrapped-key document with the recipient's X25519 private key.

    @param dataset_digest  the manifest digest the caller expects the key to be for;
                           None trusts the document's (the AEAD still binds it)
    @return the 32-byte data key
    @raise VerificationError for another recipient, another dataset, or any tampering
    """
    w = parse_wrapped_key(doc)
    pub = private_key.public_key().public_bytes(_RAW, _RAW_PUB)
    if not hmac.compare_digest(w.recipient_keyid, x25519_keyid(pub)):
        raise _fail(
            f"wrapped for recipient {w.recipient_keyid[:16]}…, not this key"
            f" ({x25519_keyid(pub)[:16]}…)"
        )
    if dataset_digest is not None and not hmac.compare_digest(w.dataset_digest, dataset_digest):
        raise _fail(f"wrapped for dataset sha256:{w.dataset_digest}, not sha256:{dataset_digest}")
    try:
        key = _SUITE.decrypt(
            w.enc + w.ciphertext, private_key, info=wrap_info(w.dataset_digest, pub)
        )
    except (InvalidTag, ValueError) as e:
        raise _fail("does not open with this key (tampered, or bound to another dataset)") from e
    if len(key) != DATA_KEY_SIZE:
        raise _fail("the unwrapped key is not 32 bytes")
    return key
