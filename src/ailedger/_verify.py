"""Checking what others hand you: receipts, envelopes, statements.

Every function here fails closed: it raises :class:`ailedger.VerificationError`
unless everything it was asked to check verified, and it refuses to run with
nothing to check against (no verifier key, no trusted keys).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._log.note import Checkpoint, Verifier
from ._log.receipt import Receipt
from ._statements import dsse, intoto
from .errors import Error, VerificationError


@dataclass(frozen=True)
class ReceiptResult:
    """What a verified receipt proves: entry ``index`` is in the signed tree ``checkpoint``."""

    index: int
    checkpoint: Checkpoint
    statement: dict[str, Any] | None  # the in-toto statement, when the entry is an envelope
    signers: tuple[str, ...]  # DSSE keyids that verified (empty when not checked)
    extra: bytes | None


def verify_receipt(
    receipt: str | bytes,
    entry: bytes,
    verifier_key: str | Verifier,
    trusted_keys: Mapping[str, bytes] | None = None,
) -> ReceiptResult:
    """Verify a ``tlog-proof@v1`` receipt for ``entry`` against the log's verifier key.

    Checks the checkpoint's Ed25519 signed note (origin = key name), then the
    RFC 9162 inclusion proof of ``entry`` at the receipt's index. If
    ``trusted_keys`` is given, the entry must also be a DSSE envelope signed by
    one of them whose payload is an in-toto Statement v1.
    """
    v = verifier_key if isinstance(verifier_key, Verifier) else _parse_verifier(verifier_key)
    r = Receipt.parse(receipt)
    cp = r.verify(entry, v)
    statement = None
    signers: tuple[str, ...] = ()
    if trusted_keys is not None:
        statement, signers = verify_envelope(entry, trusted_keys)
    else:
        statement = _try_statement(entry)
    return ReceiptResult(r.index, cp, statement, signers, r.extra)


def verify_envelope(
    entry: bytes, trusted_keys: Mapping[str, bytes]
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Verify a canonical DSSE envelope carrying an in-toto statement."""
    try:
        env = dsse.parse(entry)
    except Error as e:
        raise VerificationError(str(e)) from e
    if env["payloadType"] != dsse.INTOTO_PAYLOAD_TYPE:
        raise VerificationError(f"unexpected payloadType {env['payloadType']!r}")
    payload, good = dsse.verify(env, trusted_keys)
    try:
        st = json.loads(payload)
        intoto.validate(st)
    except (ValueError, Error) as e:
        raise VerificationError(f"envelope payload is not an in-toto statement: {e}") from e
    return st, tuple(good)


def _try_statement(entry: bytes) -> dict[str, Any] | None:
    try:
        env = json.loads(entry)
        st = json.loads(dsse.b64decode_any(env["payload"]))
        intoto.validate(st)
    except (ValueError, TypeError, KeyError, Error):
        return None
    return st if isinstance(st, dict) else None


def _parse_verifier(text: str) -> Verifier:
    try:
        return Verifier.parse(text)
    except Error as e:
        raise VerificationError(str(e)) from e
