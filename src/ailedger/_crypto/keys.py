"""The workspace identity: an Ed25519, an X25519 and a secp256k1 key (DESIGN §2).

The three private keys live in one JSON file, mode 0600. When
``AILEDGER_PASSPHRASE`` is set they are sealed with ChaCha20-Poly1305 under a
key derived by scrypt, so a copied file is useless without the passphrase; the
KDF parameters travel with the file so they can be raised later.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, x25519
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from ..errors import KeyStoreError

PASSPHRASE_ENV = "AILEDGER_PASSPHRASE"
_FORMAT = "ailedger-keys/v1"
# scrypt cost: about 0.1 s here; interactive-login strength per RFC 7914 guidance.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**15, 8, 1

_RAW = serialization.Encoding.Raw
_RAW_PRIV = serialization.PrivateFormat.Raw
_RAW_PUB = serialization.PublicFormat.Raw
_NOENC = serialization.NoEncryption()


def keyid_of(ed25519_public: bytes) -> str:
    """DSSE ``keyid``: lowercase hex SHA-256 of the raw 32-byte Ed25519 public key."""
    return hashlib.sha256(ed25519_public).hexdigest()


@dataclass(frozen=True)
class Identity:
    """A workspace's private keys, loaded in memory."""

    ed25519: ed25519.Ed25519PrivateKey
    x25519: x25519.X25519PrivateKey
    secp256k1: bytes  # 32-byte private scalar, the form eth-account takes

    @classmethod
    def generate(cls) -> Identity:
        sk = ec.generate_private_key(ec.SECP256K1())
        scalar = sk.private_numbers().private_value.to_bytes(32, "big")
        return cls(ed25519.Ed25519PrivateKey.generate(), x25519.X25519PrivateKey.generate(), scalar)

    @property
    def ed25519_public(self) -> bytes:
        return self.ed25519.public_key().public_bytes(_RAW, _RAW_PUB)

    @property
    def x25519_public(self) -> bytes:
        return self.x25519.public_key().public_bytes(_RAW, _RAW_PUB)

    @property
    def keyid(self) -> str:
        return keyid_of(self.ed25519_public)

    @property
    def address(self) -> str:
        """The checksummed Ethereum address of the secp256k1 account."""
        from eth_account import Account  # deferred: eth-account is slow to import

        return str(Account.from_key(self.secp256k1).address)

    def _secrets(self) -> dict[str, str]:
        return {
            "ed25519": self.ed25519.private_bytes(_RAW, _RAW_PRIV, _NOENC).hex(),
            "x25519": self.x25519.private_bytes(_RAW, _RAW_PRIV, _NOENC).hex(),
            "secp256k1": self.secp256k1.hex(),
        }

    @classmethod
    def _from_secrets(cls, d: dict[str, Any]) -> Identity:
        try:
            ed = ed25519.Ed25519PrivateKey.from_private_bytes(bytes.fromhex(d["ed25519"]))
            xk = x25519.X25519PrivateKey.from_private_bytes(bytes.fromhex(d["x25519"]))
            sec = bytes.fromhex(d["secp256k1"])
        except (KeyError, TypeError, ValueError) as e:
            raise KeyStoreError("key file is corrupt: a private key is missing or malformed") from e
        if len(sec) != 32:
            raise KeyStoreError("key file is corrupt: the secp256k1 key is not 32 bytes")
        return cls(ed, xk, sec)

    # -- storage -----------------------------------------------------------------

    def save(self, path: Path, passphrase: str | None) -> None:
        """Write the key file with mode 0600 from the first byte (never world-readable)."""
        secrets = self._secrets()
        doc: dict[str, Any] = {
            "format": _FORMAT,
            "public": {
                "ed25519": self.ed25519_public.hex(),
                "x25519": self.x25519_public.hex(),
                "address": self.address,
            },
        }
        if passphrase:
            salt, nonce = os.urandom(16), os.urandom(12)
            key = _kdf(passphrase, salt, _SCRYPT_N, _SCRYPT_R, _SCRYPT_P)
            ct = ChaCha20Poly1305(key).encrypt(
                nonce, json.dumps(secrets).encode(), _FORMAT.encode()
            )
            doc["encrypted"] = {
                "kdf": {
                    "name": "scrypt",
                    "n": _SCRYPT_N,
                    "r": _SCRYPT_R,
                    "p": _SCRYPT_P,
                    "salt": _b64(salt),
                },
                "cipher": "chacha20-poly1305",
                "nonce": _b64(nonce),
                "ciphertext": _b64(ct),
            }
        else:
            doc["secrets"] = secrets
        data = json.dumps(doc, indent=2).encode() + b"\n"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)

    @classmethod
    def load(cls, path: Path, passphrase: str | None) -> Identity:
        try:
            st = path.stat()
            raw = path.read_bytes()
        except FileNotFoundError as e:
            raise KeyStoreError(f"key file {path} is missing") from e
        except OSError as e:
            raise KeyStoreError(f"cannot read key file {path}: {e.strerror}") from e
        if stat.S_IMODE(st.st_mode) & 0o077:
            raise KeyStoreError(
                f"key file {path} is readable by others (mode {stat.S_IMODE(st.st_mode):o});"
                f" run: chmod 600 {path}"
            )
        try:
            doc = json.loads(raw)
            if doc.get("format") != _FORMAT:
                raise ValueError
        except (ValueError, AttributeError) as e:
            raise KeyStoreError(f"key file {path} is not an ailedger key file") from e
        if "secrets" in doc:
            ident = cls._from_secrets(doc["secrets"])
        else:
            ident = cls._from_secrets(_unseal(doc.get("encrypted"), passphrase, path))
        if doc.get("public", {}).get("ed25519") != ident.ed25519_public.hex():
            raise KeyStoreError(f"key file {path} is corrupt: public and private keys differ")
        return ident


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def _kdf(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.encode())


def _unseal(enc: Any, passphrase: str | None, path: Path) -> dict[str, Any]:
    if not passphrase:
        raise KeyStoreError(f"the keys in {path} are encrypted: set {PASSPHRASE_ENV}")
    try:
        kdf = enc["kdf"]
        if kdf["name"] != "scrypt" or enc["cipher"] != "chacha20-poly1305":
            raise ValueError
        n, r, p = int(kdf["n"]), int(kdf["r"]), int(kdf["p"])
        if not (2 <= n <= 2**22 and 1 <= r <= 32 and 1 <= p <= 16 and 128 * n * r <= 2**28):
            raise ValueError  # refuse parameters that would hang or exhaust memory
        salt = base64.b64decode(kdf["salt"], validate=True)
        nonce = base64.b64decode(enc["nonce"], validate=True)
        ct = base64.b64decode(enc["ciphertext"], validate=True)
    except (KeyError, TypeError, ValueError) as e:
        raise KeyStoreError(f"key file {path} is corrupt: bad encryption header") from e
    try:
        plain = ChaCha20Poly1305(_kdf(passphrase, salt, n, r, p)).decrypt(
            nonce, ct, _FORMAT.encode()
        )
    except InvalidTag as e:
        raise KeyStoreError(
            f"cannot decrypt {path}: wrong {PASSPHRASE_ENV} or the file was modified"
        ) from e
    result: dict[str, Any] = json.loads(plain)
    return result


def ed25519_public_from_raw(raw: bytes) -> ed25519.Ed25519PublicKey:
    try:
        return ed25519.Ed25519PublicKey.from_public_bytes(raw)
    except ValueError as e:
        raise KeyStoreError("not a 32-byte Ed25519 public key") from e
