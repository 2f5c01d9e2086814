"""verify_receipt's signature policy: fail closed on envelopes nobody trusted signed."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest
import rfc8785

import ailedger
from ailedger import VerificationError, statement
from ailedger._statements import dsse, intoto

from .conftest import PYTHON, cli_env

ST = statement([{"name": "m", "digest": {"sha256": "1" * 64}}], "https://example.com/t/v1", {})


def test_valid_envelope_by_log_key_passes_by_default(ws: ailedger.Workspace) -> None:
    i = ws.record(ST)
    res = ailedger.verify_receipt(ws.receipt(i), ws.log.get(i), ws.verifier_key)
    assert res.statement == ST and res.signers == (ws.keyid,)


def test_bad_signature_fails_even_though_included(ws: ailedger.Workspace) -> None:
    env = ws.sign(ST)
    env["signatures"][0]["sig"] = base64.b64encode(b"\0" * 64).decode()
    i = ws.log.append(dsse.to_bytes(env))  # the raw log does not parse entries
    with pytest.raises(VerificationError, match="no valid signature"):
        ailedger.verify_receipt(ws.receipt(i), ws.log.get(i), ws.verifier_key)


def test_untrusted_signer_fails_unless_trusted(ws: ailedger.Workspace, tmp_path: Path) -> None:
    other = ailedger.Workspace.init(tmp_path / "o", name="bob")
    i = ws.log.append(dsse.to_bytes(other.sign(ST)))
    r, e = ws.receipt(i), ws.log.get(i)
    with pytest.raises(VerificationError):
        ailedger.verify_receipt(r, e, ws.verifier_key)
    res = ailedger.verify_receipt(r, e, ws.verifier_key, {other.keyid: other.ed25519_public})
    assert res.signers == (other.keyid,)
    # the CLI: fails without the key, passes with --signer-key
    (tmp_path / "r").write_text(r)
    (tmp_path / "e").write_bytes(e)
    args = [PYTHON, "-m", "ailedger", "verify-receipt", str(tmp_path / "r"), "--entry",
            str(tmp_path / "e"), "--verifier-key", ws.verifier_key, "--offline"]
    p = subprocess.run(args, env=cli_env(tmp_path / "none"), capture_output=True)
    assert p.returncode == 1 and p.stdout == b"" and b"no valid signature" in p.stderr
    p = subprocess.run([*args, "--signer-key", other.ed25519_public.hex()],
                       env=cli_env(tmp_path / "none"), capture_output=True)
    assert p.returncode == 0, p.stderr
    other.close()


def test_non_canonical_payload_is_rejected(ws: ailedger.Workspace) -> None:
    payload = json.dumps(ST, indent=1).encode()  # signed, but not canonical
    env = dsse.sign(payload, dsse.INTOTO_PAYLOAD_TYPE, ws._identity.ed25519, ws.keyid)
    i = ws.log.append(rfc8785.dumps(env))
    with pytest.raises(VerificationError, match="canonical"):
        ailedger.verify_receipt(ws.receipt(i), ws.log.get(i), ws.verifier_key)
    assert intoto.canonical(ST) != payload


def test_raw_entries_are_proven_but_have_no_statement(ws: ailedger.Workspace) -> None:
    i = ws.log.append(b"just bytes")
    res = ailedger.verify_receipt(ws.receipt(i), b"just bytes", ws.verifier_key)
    assert res.statement is None and res.signers == ()
