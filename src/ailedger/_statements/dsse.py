"""DSSE envelopes signed with Ed25519 (https://github.com/secure-systems-lab/dsse).

The signature covers ``PAE(payloadType, payload)`` =
``"DSSEv1" SP len(type) SP type SP len(body) SP body`` with decimal byte lengths.
Verifiers accept standard and URL-safe base64 (DSSE protocol), and fail closed:
an envelope passes only if a signature by one of the given keys verifies.
An envelope's log form is its RFC 8785 canonical JSON.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from ..errors import InputError, VerificationError

INTOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"

Envelope = dict[str, Any]


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE pre-authentication encoding."""
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def sign(payload: bytes, payload_type: str, key: ed25519.Ed25519PrivateKey, keyid: str) -> Envelope:
    sig = key.sign(pae(payload_type, payload))
    return {
        "payload": base64.b64encode(payload).decode(),
        "payloadType": payload_type,
        "signatures": [{"keyid": keyid, "sig": base64.b64encode(sig).decode()}],
    }


def to_bytes(env: Envelope) -> bytes:
    """The RFC 8785 canonical JSON of an envelope: its form in the log."""
    sigs = env["signatures"]
    if (
        len(sigs) == 1
        and set(env) == {"payload", "payloadType", "signatures"}
        and set(sigs[0]) == {"keyid", "sig"}
        and _plain(env["payload"], env["payloadType"], sigs[0]["keyid"], sigs[0]["sig"])
    ):
        # Fast path, byte-identical to rfc8785 (a test pins it): every value is a
        # string that needs no escaping, and the keys are already in UTF-16 order.
        payload, ptype = env["payload"], env["payloadType"]
        kid, sig = sigs[0]["keyid"], sigs[0]["sig"]
        return (
            f'{{"payload":"{payload}","payloadType":"{ptype}",'
            f'"signatures":[{{"keyid":"{kid}","sig":"{sig}"}}]}}'
        ).encode()
    return rfc8785.dumps(env)


def _plain(*values: object) -> bool:
    for v in values:
        if not isinstance(v, str) or not v.isascii() or not v.isprintable():
            return False
        if '"' in v or "\\" in v:
            return False
    return True


def parse(data: bytes, *, require_canonical: bool = True) -> Envelope:
    """Parse an envelope from JSON bytes, checking its shape (not its signatures)."""
    try:
        env = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise InputError(f"not a DSSE envelope: invalid JSON ({e})") from e
    if not isinstance(env, dict):
        raise InputError("not a DSSE envelope: expected a JSON object")
    for k in ("payload", "payloadType"):
        if not isinstance(env.get(k), str):
            raise InputError(f"not a DSSE envelope: {k!r} must be a string")
    sigs = env.get("signatures")
    if not isinstance(sigs, list) or not sigs:
        raise InputError("DSSE envelope has no signatures")
    for s in sigs:
        if not isinstance(s, dict) or not isinstance(s.get("sig"), str):
            raise InputError("DSSE envelope has a malformed signature")
        if "keyid" in s and not isinstance(s["keyid"], str):
            raise InputError("DSSE envelope has a non-string keyid")
    if require_canonical:
        try:
            canonical = rfc8785.dumps(env)
        except (rfc8785.CanonicalizationError, ValueError, TypeError) as e:
            raise InputError(f"envelope cannot be canonicalised: {e}") from e
        if canonical != data:
            raise InputError(
                "envelope is not RFC 8785 canonical JSON; log entries must be canonical"
                " (re-serialise it canonically, e.g. with the rfc8785 package)"
            )
    return env


def b64decode_any(s: str) -> bytes:
    """Standard or URL-safe base64, padded or not (DSSE allows either)."""
    if not isinstance(s, str):
        raise VerificationError("base64 field is not a string")
    t = s.strip()
    t = t.replace("-", "+").replace("_", "/")
    t += "=" * (-len(t) % 4)
    try:
        return base64.b64decode(t, validate=True)
    except (binascii.Error, ValueError) as e:
        raise VerificationError("envelope field is not valid base64") from e


def verify(env: Envelope, keys: Mapping[str, bytes]) -> tuple[bytes, list[str]]:
    """Verify an envelope against trusted Ed25519 keys (keyid → raw public key).

    Returns the payload and the keyids whose signatures verified. Raises
    :class:`VerificationError` unless at least one trusted signature verifies.
    """
    if not keys:
        raise VerificationError("no trusted keys: refusing to accept any signature")
    try:
        payload = b64decode_any(env["payload"])
        message = pae(env["payloadType"], payload)
        sigs = env["signatures"]
    except (KeyError, TypeError, AttributeError) as e:
        raise VerificationError("malformed DSSE envelope") from e
    good: list[str] = []
    for s in sigs if isinstance(sigs, list) else []:
        if not isinstance(s, dict):
            continue
        sig = b64decode_any(s.get("sig", ""))
        candidates = [s["keyid"]] if s.get("keyid") in keys else list(keys)
        for kid in candidates:
            try:
                ed25519.Ed25519PublicKey.from_public_bytes(keys[kid]).verify(sig, message)
            except (InvalidSignature, ValueError, TypeError):
                continue
            if kid not in good:
                good.append(kid)
            break
    if not good:
        raise VerificationError("no valid signature by a trusted key on the DSSE envelope")
    return payload, good
