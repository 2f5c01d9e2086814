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

from ._crypto.keys import keyid_of
from ._log.note import Checkpoint, Verifier
from ._log.receipt import Receipt
from ._statements import dsse, intoto
from .errors import Error, VerificationError


@dataclass(frozen=True)
class ReceiptResult:
    """What a verified receipt proves: entry ``index`` is in the signed tree ``checkpoint``."""

    index: int
    checkpoint: Checkpoint
    statement: dict[str, Any] | None  # the verified in-toto statement (None: raw entry)
    signers: tuple[str, ...]  # DSSE keyids whose signatures verified
    extra: bytes | None


def verify_receipt(
    receipt: str | bytes,
    entry: bytes,
    verifier_key: str | Verifier,
    trusted_keys: Mapping[str, bytes] | None = None,
) -> ReceiptResult:
    """Verify a ``tlog-proof@v1`` receipt for ``entry`` against the log's verifier key.

    Checks the checkpoint's Ed25519 signed note (origin = key name), then the
    RFC 9162 inclusion proof of ``entry`` at the receipt's index. Then, if the
    entry is a DSSE envelope, one of its signatures MUST verify with a trusted
    key: ``trusted_keys``, or by default the log's own key (the one in the
    verifier key, which signs both statements and checkpoints — DESIGN §2).
    An envelope nobody trusted signed fails; an entry that is not an envelope
    (raw bytes) is proven included and reported with ``statement=None``.
    """
    v = verifier_key if isinstance(verifier_key, Verifier) else _parse_verifier(verifier_key)
    r = Receipt.parse(receipt)
    cp = r.verify(entry, v)
    if trusted_keys is None:
        trusted_keys = {keyid_of(v.public): v.public}
    if not _looks_like_envelope(entry):
        return ReceiptResult(r.index, cp, None, (), r.extra)
    statement, signers = verify_envelope(entry, trusted_keys)
    return ReceiptResult(r.index, cp, statement, signers, r.extra)


def _looks_like_envelope(entry: bytes) -> bool:
    """True if the entry is a JSON object with DSSE's fields (then it MUST verify as one)."""
    try:
        doc = json.loads(entry)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return False
    return isinstance(doc, dict) and ("payloadType" in doc or "signatures" in doc)


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
        if intoto.canonical(st) != payload:
            # Signed JSON MUST be canonical (DESIGN §3): otherwise duplicate keys or
            # odd encodings could be read differently by different parsers.
            raise VerificationError("statement payload is not RFC 8785 canonical JSON")
    except (ValueError, RecursionError, Error) as e:
        raise VerificationError(f"envelope payload is not an in-toto statement: {e}") from e
    return st, tuple(good)


def _parse_verifier(text: str) -> Verifier:
    try:
        return Verifier.parse(text)
    except Error as e:
        raise VerificationError(str(e)) from e
