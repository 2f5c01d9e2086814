"""Workspace creation, keys on disk, signing and recording statements."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

import ailedger
from ailedger import InputError, KeyStoreError, WorkspaceError, statement
from ailedger._statements import dsse

ST = statement(
    [{"name": "d", "digest": {"sha256": "0" * 64}}], "https://example.com/t/v1", {"n": 1}
)


def test_init_on_missing_and_empty_folder(tmp_path: Path) -> None:
    w = ailedger.Workspace.init(tmp_path / "a" / "b", name="alice")
    assert w.origin == f"ailedger.local/alice-{w.keyid[:8]}"
    assert w.verifier_key.startswith(w.origin + "+")
    assert w.address.startswith("0x") and len(w.address) == 42
    w.close()
    (tmp_path / "empty").mkdir()
    ailedger.Workspace.init(tmp_path / "empty", name="bob").close()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp leftovers


def test_init_refuses_existing_unchanged(tmp_path: Path) -> None:
    w = ailedger.Workspace.init(tmp_path / "ws", name="alice")
    w.log.append(b"keep me")
    w.close()
    before = {p: p.read_bytes() for p in (tmp_path / "ws").rglob("*") if p.is_file()}
    with pytest.raises(WorkspaceError, match="already"):
        ailedger.Workspace.init(tmp_path / "ws", name="mallory")
    after = {p: p.read_bytes() for p in (tmp_path / "ws").rglob("*") if p.is_file()}
    assert before == after
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(WorkspaceError, match="not empty"):
        ailedger.Workspace.init(tmp_path / "full")
    with pytest.raises(InputError):
        ailedger.Workspace.init(tmp_path / "n", name="bad name")


def test_keys_are_0600_and_plain_without_passphrase(ws: ailedger.Workspace) -> None:
    key = ws.path / "keys" / "identity.json"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(ws.path.stat().st_mode) == 0o700
    assert "secrets" in json.loads(key.read_text())


def test_keys_encrypted_with_passphrase(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AILEDGER_PASSPHRASE", "correct horse")
    w = ailedger.Workspace.init(tmp_path / "ws", name="enc")
    kid = w.keyid
    w.close()
    doc = json.loads((tmp_path / "ws" / "keys" / "identity.json").read_text())
    assert "secrets" not in doc and doc["encrypted"]["kdf"]["name"] == "scrypt"
    raw = (tmp_path / "ws" / "keys" / "identity.json").read_text()
    assert ailedger.Workspace.open(tmp_path / "ws").keyid == kid
    monkeypatch.setenv("AILEDGER_PASSPHRASE", "wrong")
    with pytest.raises(KeyStoreError, match="wrong"):
        ailedger.Workspace.open(tmp_path / "ws")
    monkeypatch.delenv("AILEDGER_PASSPHRASE")
    with pytest.raises(KeyStoreError, match="encrypted"):
        ailedger.Workspace.open(tmp_path / "ws")
    monkeypatch.setenv("AILEDGER_PASSPHRASE", "correct horse")
    tampered = json.loads(raw)
    ct = bytearray(tampered["encrypted"]["ciphertext"].encode())
    ct[5] = ord("A") if ct[5] != ord("A") else ord("B")
    tampered["encrypted"]["ciphertext"] = ct.decode()
    (tmp_path / "ws" / "keys" / "identity.json").write_text(json.dumps(tampered))
    with pytest.raises(KeyStoreError):
        ailedger.Workspace.open(tmp_path / "ws")


def test_refuses_world_readable_key(ws: ailedger.Workspace) -> None:
    key = ws.path / "keys" / "identity.json"
    os.chmod(key, 0o644)
    with pytest.raises(KeyStoreError, match="chmod 600"):
        ailedger.Workspace.open(ws.path)


def test_open_missing_workspace(tmp_path: Path) -> None:
    with pytest.raises(WorkspaceError, match="ailedger init"):
        ailedger.Workspace.open(tmp_path / "nope")


def test_record_signs_dsse_and_receipt_verifies(ws: ailedger.Workspace) -> None:
    i = ws.record(ST)
    entry = ws.log.get(i)
    env = dsse.parse(entry)  # canonical, well-formed
    assert env["payloadType"] == "application/vnd.in-toto+json"
    assert env["signatures"][0]["keyid"] == ws.keyid
    res = ailedger.verify_receipt(ws.receipt(i), entry, ws.verifier_key, ws.trusted_keys())
    assert res.statement == ST and res.signers == (ws.keyid,)
    assert ws.record_many([ST, ST]) == [i + 1, i + 2]


def test_record_rejects_invalid_statement_and_log_is_unchanged(ws: ailedger.Workspace) -> None:
    ws.record(ST)
    bad = dict(ST, subject=[])
    with pytest.raises(InputError):
        ws.record_many([ST, bad])
    with pytest.raises(InputError):
        ws.record(dict(ST, predicate={"x": float("nan")}))
    assert ws.log.size == 1


def test_large_predicate_goes_to_blob_store(ws: ailedger.Workspace) -> None:
    big = statement(ST["subject"], "https://example.com/big/v1", {"blob": "x" * 100_000})
    i = ws.record(big)
    entry = ws.log.get(i)
    assert len(entry) < 64 * 1024
    st, _ = ailedger.verify_envelope(entry, ws.trusted_keys())
    ref = st["predicate"]["externalPredicate"]
    assert ref["predicateType"] == "https://example.com/big/v1"
    blob = ws.blobs.get(ref["digest"]["sha256"])
    assert json.loads(blob) == big["predicate"]


def test_blob_store_detects_modification(ws: ailedger.Workspace) -> None:
    d = ws.blobs.put(b"hello")
    path = ws.path / "blobs" / "sha256" / d[:2] / d
    path.write_bytes(b"hellO")
    with pytest.raises(ailedger.VerificationError):
        ws.blobs.get(d)
    with pytest.raises(ailedger.NotFoundError):
        ws.blobs.get("0" * 64)
    with pytest.raises(InputError):
        ws.blobs.get("../../etc/passwd")


def test_trusting_another_key(ws: ailedger.Workspace, tmp_path: Path) -> None:
    other = ailedger.Workspace.init(tmp_path / "other", name="bob")
    env = other.sign(ST)
    with pytest.raises(ailedger.VerificationError):
        dsse.verify(env, ws.trusted_keys())
    assert ws.trust(other.ed25519_public) == other.keyid
    reopened = ailedger.Workspace.open(ws.path)
    assert dsse.verify(env, reopened.trusted_keys())[1] == [other.keyid]
    reopened.close()
    other.close()
