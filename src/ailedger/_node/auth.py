"""Signed HTTP requests: the requester's workspace Ed25519 key over what it asks for.

Headers (all required on gateway requests)::

    AILedger-Account:   0x… the requester's chain account (EIP-55 or lowercase)
    AILedger-Key:       hex of its raw 32-byte Ed25519 public key
    AILedger-Timestamp: unix seconds, decimal
    AILedger-Nonce:     32 lowercase hex digits (16 random bytes), fresh per request
    AILedger-Signature: base64 of the Ed25519 signature over the message below

The signed message is UTF-8 text, lines joined by ``\\n`` (no trailing newline)::

    ailedger-request/v1
    <audience: the node's log origin, as served by GET /node>
    <METHOD>
    <raw request target: path and ?query exactly as sent>
    <hex SHA-256 of the request body (of b"" for GET)>
    <timestamp>
    <nonce>
    <account, lowercase 0x hex>
    <Ed25519 public key, lowercase hex>

The node refuses a timestamp more than :data:`MAX_SKEW` seconds from its clock, and a
(key, nonce) pair it has seen within the window (:class:`NonceCache`); see docs/node.md.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import sqlite3
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from ..errors import Error

SCHEME = "ailedger-request/v1"
MAX_SKEW = 300  # seconds either way
H_ACCOUNT = "AILedger-Account"
H_KEY = "AILedger-Key"
H_TIMESTAMP = "AILedger-Timestamp"
H_NONCE = "AILedger-Nonce"
H_SIGNATURE = "AILedger-Signature"
_ADDR = re.compile(r"0x[0-9a-fA-F]{40}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_NONCE = re.compile(r"[0-9a-f]{32}")
_TS = re.compile(r"0|[1-9][0-9]{0,11}")


class UnauthenticatedError(Error):
    """The request's signature, timestamp or nonce is not acceptable (HTTP 401)."""


@dataclass(frozen=True)
class SignedRequest:
    """The authenticated facts of one request, once :func:`verify_request` passed."""

    account: str  # lowercase 0x hex
    ed25519: bytes
    timestamp: int
    nonce: str

    @property
    def keyid(self) -> str:
        return hashlib.sha256(self.ed25519).hexdigest()


def message(
    audience: str,
    method: str,
    target: str,
    body_sha256: str,
    timestamp: int,
    nonce: str,
    account: str,
    ed25519_public: bytes,
) -> bytes:
    """The exact bytes a request signature covers (see the module docstring)."""
    return "\n".join(
        [
            SCHEME,
            audience,
            method.upper(),
            target,
            body_sha256,
            str(timestamp),
            nonce,
            account.lower(),
            ed25519_public.hex(),
        ]
    ).encode("utf-8")


def sign_headers(
    key: ed25519.Ed25519PrivateKey,
    account: str,
    audience: str,
    method: str,
    target: str,
    body: bytes = b"",
    *,
    now: int | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """Headers that authenticate one request (a fresh nonce unless one is given)."""
    pub = key.public_key().public_bytes_raw()
    ts = int(time.time()) if now is None else now
    n = os.urandom(16).hex() if nonce is None else nonce
    msg = message(audience, method, target, hashlib.sha256(body).hexdigest(), ts, n, account, pub)
    return {
        H_ACCOUNT: account,
        H_KEY: pub.hex(),
        H_TIMESTAMP: str(ts),
        H_NONCE: n,
        H_SIGNATURE: base64.b64encode(key.sign(msg)).decode(),
    }


def verify_request(
    headers: Mapping[str, str],
    audience: str,
    method: str,
    target: str,
    body: bytes,
    *,
    now: float | None = None,
) -> SignedRequest:
    """Check the signature headers of a request: shape, freshness, signature.

    Replay is checked separately (:class:`NonceCache`), after the signature, so that
    unauthenticated noise cannot fill the cache.
    @raise UnauthenticatedError with a message naming what is wrong
    """
    got = {h: headers.get(h) for h in (H_ACCOUNT, H_KEY, H_TIMESTAMP, H_NONCE, H_SIGNATURE)}
    missing = [h for h, v in got.items() if not v]
    if missing:
        raise UnauthenticatedError(f"unsigned request: missing header(s) {', '.join(missing)}")
    account, key_hex, ts_s, nonce, sig_b64 = (str(v) for v in got.values())
    if not _ADDR.fullmatch(account):
        raise UnauthenticatedError(f"{H_ACCOUNT} is not a 0x-prefixed 20-byte address")
    if not _HEX64.fullmatch(key_hex):
        raise UnauthenticatedError(f"{H_KEY} must be 64 lowercase hex digits (raw Ed25519 key)")
    if not _NONCE.fullmatch(nonce):
        raise UnauthenticatedError(f"{H_NONCE} must be 32 lowercase hex digits")
    if not _TS.fullmatch(ts_s):
        raise UnauthenticatedError(f"{H_TIMESTAMP} must be unix seconds")
    ts = int(ts_s)
    clock = time.time() if now is None else now
    if abs(clock - ts) > MAX_SKEW:
        raise UnauthenticatedError(
            f"stale request: timestamp {ts} is {int(clock - ts)} s from the node's clock"
            f" (at most ±{MAX_SKEW} s); check the requester's clock"
        )
    try:
        sig = base64.b64decode(sig_b64, validate=True)
        pub_raw = bytes.fromhex(key_hex)
        pub = ed25519.Ed25519PublicKey.from_public_bytes(pub_raw)
        body_sha = hashlib.sha256(body).hexdigest()
        pub.verify(sig, message(audience, method, target, body_sha, ts, nonce, account, pub_raw))
    except (InvalidSignature, ValueError, binascii.Error):
        raise UnauthenticatedError(
            "bad request signature (signed by another key, for another node, or altered)"
        ) from None
    return SignedRequest(account.lower(), pub_raw, ts, nonce)


class NonceCache:
    """Seen (key, nonce) pairs for the timestamp window, so a request is served once.

    Kept in SQLite (``node_nonces`` in ``provenance.sqlite``, WAL) so a restarted node
    still refuses replays of requests it served before the restart. Entries expire
    after 2 × :data:`MAX_SKEW` (a request older than that is refused as stale anyway);
    at most ``limit`` live entries are held, beyond which new requests are refused
    rather than letting the cache grow without bound.
    """

    def __init__(self, path: Path | None, *, limit: int = 1_000_000) -> None:
        self._limit = limit
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            ":memory:" if path is None else str(path),
            isolation_level=None,
            check_same_thread=False,
            timeout=30.0,
        )
        # NORMAL in WAL mode survives a process crash; only an OS crash could forget
        # the last nonces, and those requests are stale minutes later anyway.
        self._db.executescript(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
            "CREATE TABLE IF NOT EXISTS node_nonces("
            " k BLOB PRIMARY KEY, expires INTEGER NOT NULL) WITHOUT ROWID;"
            "CREATE INDEX IF NOT EXISTS node_nonces_expires ON node_nonces(expires);"
        )
        self._count = int(self._db.execute("SELECT count(*) FROM node_nonces").fetchone()[0])
        self._next_prune = 0.0

    def close(self) -> None:
        self._db.close()

    def check_and_add(self, req: SignedRequest, *, now: float | None = None) -> None:
        """Remember the request's nonce; refuse one seen before.

        @raise UnauthenticatedError on a replay, or when the cache is full
        """
        clock = time.time() if now is None else now
        k = hashlib.sha256(req.ed25519 + bytes.fromhex(req.nonce)).digest()
        with self._lock:
            if clock >= self._next_prune:
                cur = self._db.execute("DELETE FROM node_nonces WHERE expires < ?", (int(clock),))
                self._count = max(0, self._count - cur.rowcount)
                self._next_prune = clock + 10
            if self._count >= self._limit:
                raise UnauthenticatedError(
                    "the node's replay cache is full: retry in a few minutes"
                )
            try:
                self._db.execute(
                    "INSERT INTO node_nonces VALUES (?, ?)",
                    (k, int(max(clock, req.timestamp)) + 2 * MAX_SKEW),
                )
            except sqlite3.IntegrityError:
                raise UnauthenticatedError(
                    "replayed request: this nonce was already used with this key"
                ) from None
            self._count += 1
