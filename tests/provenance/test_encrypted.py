"""Encrypted datasets: `data add --encrypt`, `data decrypt`, key wrapping to grantees."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import x25519

import ailedger
from ailedger._crypto import hpke_wrap, sealed
from ailedger._provenance import encrypted
from ailedger._provenance.datasets import add_dataset, find_dataset, load_manifest
from ailedger._statements import dsse
from ailedger.errors import InputError, NotFoundError, VerificationError

from ..conftest import PYTHON, cli_env

MARK = b"DISTINCTIVE-PLAINTEXT-7f3a9c"


def make_data(root: Path) -> Path:
    d = root / "data"
    (d / "sub").mkdir(parents=True)
    (d / "a.txt").write_bytes(MARK + b" first file\n")
    (d / "empty.bin").write_bytes(b"")
    (d / "sub" / "b.csv").write_bytes(
        b"id,v\n" + b"".join(b"%d,%s\n" % (i, MARK) for i in range(50))
    )
    # several chunks at a 4 KiB chunk size, the marker in the middle of a chunk
    big = bytearray(os.urandom(3 * 4096 + 7))
    big[5000 : 5000 + len(MARK)] = MARK
    (d / "sub" / "big.bin").write_bytes(bytes(big))
    (d / "exact.bin").write_bytes(os.urandom(2 * 4096))
    return d


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ailedger.Workspace, Path]]:
    tmp = tmp_path_factory.mktemp("enc")
    w = ailedger.Workspace.init(tmp / "ws", name="owner")
    yield w, make_data(tmp)
    w.close()


def statement(ws: ailedger.Workspace, index: int) -> dict:  # type: ignore[type-arg]
    env = dsse.parse(ws.log.get(index))
    return json.loads(dsse.b64decode_any(env["payload"]))  # type: ignore[no-any-return]


def all_blobs(ws: ailedger.Workspace) -> list[Path]:
    return [p for p in (ws.path / "blobs").rglob("*") if p.is_file()]


def test_add_encrypted_then_decrypt(env: tuple[ailedger.Workspace, Path], tmp_path: Path) -> None:
    ws, data = env
    plain = add_dataset(ws, data, name="plain")
    rec = add_dataset(ws, data, name="secret", encrypt=True, chunk_size=4096)
    assert rec.created and rec.root == plain.root  # fingerprint over the plaintext
    assert rec.manifest_digest == plain.manifest_digest
    st = statement(ws, rec.index)
    enc = encrypted.encryption_of(ws, "secret")
    assert enc is not None
    assert st["predicate"]["encryption"] == {
        "scheme": "ailedger-sealed/v1",
        "aead": "AES-256-GCM",
        "chunk": 4096,
        "keyWrapping": "HPKE-base X25519-HKDF-SHA256 AES-256-GCM",
        "index": {
            "digest": {"sha256": enc.index_digest},
            "size": len(ws.blobs.get(enc.index_digest)),
            "mediaType": "application/json",
        },
    }
    assert "encryption" not in statement(ws, plain.index)["predicate"]
    assert encrypted.encryption_of(ws, "plain") is None
    # the index lists every manifest file, in manifest order, with its ciphertext blob
    manifest = load_manifest(ws, rec)
    assert [f.path for f in enc.files] == [f["path"] for f in manifest["files"]]
    for f in enc.files:
        blob = ws.blobs.get(f.sealed_sha256)
        assert len(blob) == f.sealed_size == sealed.sealed_size(f.size, 4096)
        assert blob.startswith(b"ailedger-sealed/v1")
    out = tmp_path / "out"
    r = encrypted.decrypt_dataset(ws, "secret", out)
    assert (r.files, r.bytes, r.root) == (5, rec.bytes, rec.root)
    for p in data.rglob("*"):
        if p.is_file():
            assert (out / p.relative_to(data)).read_bytes() == p.read_bytes()
    # the wrapped key is stored as a blob and in the table, for this workspace's key
    kid = hpke_wrap.x25519_keyid(ws.x25519_public)
    doc = encrypted.wrapped_key_for(ws, "secret", kid)
    assert doc is not None and hashlib.sha256(doc.encode()).hexdigest() in ws.blobs
    assert encrypted.dataset_key(ws, "secret") == hpke_wrap.unwrap_key(doc, ws._identity.x25519)


def test_blob_store_holds_no_plaintext(env: tuple[ailedger.Workspace, Path]) -> None:
    ws, data = env
    before = set(all_blobs(ws))
    add_dataset(ws, data, name="only-ciphertext", encrypt=True, chunk_size=4096)
    new = set(all_blobs(ws)) - before
    assert new  # the sealed files (other blobs may be shared with earlier versions)
    for p in all_blobs(ws):
        b = p.read_bytes()
        if MARK in b:
            # only a plain dataset's blobs may hold it; none exist (manifests hold hashes)
            raise AssertionError(f"plaintext in blob {p}")
    # nor any 32-byte window of the random file
    big = (data / "sub" / "big.bin").read_bytes()
    for p in new:
        assert big[100:132] not in p.read_bytes()


def test_readd_unchanged_and_switch(env: tuple[ailedger.Workspace, Path], tmp_path: Path) -> None:
    ws, data = env
    a = add_dataset(ws, data, name="sw", encrypt=True)
    b = add_dataset(ws, data, name="sw", encrypt=True)
    assert not b.created and b.version == a.version
    c = add_dataset(ws, data, name="sw")  # same data, now unencrypted: a new version
    assert c.created and c.version == a.version + 1
    assert encrypted.encryption_of(ws, "sw") is None
    with pytest.raises(InputError, match="not encrypted"):
        encrypted.decrypt_dataset(ws, "sw", tmp_path / "o")
    r = encrypted.decrypt_dataset(ws, "sw", tmp_path / "o", version=a.version)
    assert r.root == a.root
    with pytest.raises(InputError, match="chunk size only applies"):
        add_dataset(ws, data, name="sw", chunk_size=4096)
    with pytest.raises(InputError, match="chunk size"):
        add_dataset(ws, data, name="sw2", encrypt=True, chunk_size=0)
    assert find_dataset(ws, "sw2") is None


def test_single_file_and_records_mode(env: tuple[ailedger.Workspace, Path], tmp_path: Path) -> None:
    ws, data = env
    f = add_dataset(ws, data / "a.txt", name="one", encrypt=True)
    r = encrypted.decrypt_dataset(ws, "one", tmp_path / "one")
    assert r.root == f.root and (tmp_path / "one" / "a.txt").read_bytes() == MARK + b" first file\n"
    g = add_dataset(ws, data / "sub" / "b.csv", name="recs", records=True, encrypt=True)
    r = encrypted.decrypt_dataset(ws, "recs", tmp_path / "recs")
    assert r.root == g.root and g.leaves == 50


def test_decrypt_refuses_tampering(env: tuple[ailedger.Workspace, Path], tmp_path: Path) -> None:
    ws, data = env
    add_dataset(ws, data, name="tamper", encrypt=True, chunk_size=4096)
    enc = encrypted.encryption_of(ws, "tamper")
    assert enc is not None
    big = next(f for f in enc.files if f.path == "sub/big.bin")
    path = ws.path / "blobs" / "sha256" / big.sealed_sha256[:2] / big.sealed_sha256
    orig = path.read_bytes()
    try:
        os.chmod(path, 0o644)
        bad = bytearray(orig)
        bad[sealed.HEADER_SIZE + 4096 + 16 + 10] ^= 1  # chunk 1
        path.write_bytes(bytes(bad))
        with pytest.raises(VerificationError, match="chunk 1"):
            encrypted.decrypt_dataset(ws, "tamper", tmp_path / "o")
        assert not (tmp_path / "o").exists()
        assert not [p for p in tmp_path.iterdir() if "decrypting" in p.name]  # staging gone
        path.write_bytes(orig[: sealed.HEADER_SIZE + 2 * (4096 + 16)])  # cut at a boundary
        with pytest.raises(VerificationError, match=r"chunk 1.*truncated"):
            encrypted.decrypt_dataset(ws, "tamper", tmp_path / "o")
        # a sealed file of another path of this dataset (same key) in its place
        other = next(f for f in enc.files if f.path == "exact.bin")
        path.write_bytes(ws.blobs.get(other.sealed_sha256))
        with pytest.raises(VerificationError, match="different context"):
            encrypted.decrypt_dataset(ws, "tamper", tmp_path / "o")
    finally:
        path.write_bytes(orig)
    assert encrypted.decrypt_dataset(ws, "tamper", tmp_path / "o").files == 5


def test_swap_in_from_another_dataset(env: tuple[ailedger.Workspace, Path], tmp_path: Path) -> None:
    ws, data = env
    add_dataset(ws, data, name="ds1", encrypt=True)
    (tmp_path / "d2").mkdir()
    (tmp_path / "d2" / "a.txt").write_bytes(b"another dataset\n")
    add_dataset(ws, tmp_path / "d2", name="ds2", encrypt=True)
    e1, e2 = encrypted.encryption_of(ws, "ds1"), encrypted.encryption_of(ws, "ds2")
    assert e1 is not None and e2 is not None
    m1 = ws.blobs.get(e1.manifest_digest)
    k1 = encrypted.dataset_key(ws, "ds1")
    doc1 = encrypted.wrapped_key_for(ws, "ds1", hpke_wrap.x25519_keyid(ws.x25519_public))
    assert doc1 is not None
    blobs = {f.path: ws.blobs.get(f.sealed_sha256) for f in e1.files}
    blobs["a.txt"] = ws.blobs.get(e2.files[0].sealed_sha256)  # same path, other dataset
    with pytest.raises(VerificationError, match="different context"):
        encrypted.decrypt_with_wrapped_key(
            doc1, ws._identity.x25519, blobs, m1, out_dir=tmp_path / "x"
        )
    # the other dataset's wrapped key on this dataset's manifest
    doc2 = encrypted.wrapped_key_for(ws, "ds2", hpke_wrap.x25519_keyid(ws.x25519_public))
    assert doc2 is not None
    with pytest.raises(VerificationError, match="wrapped for dataset"):
        encrypted.decrypt_with_wrapped_key(
            doc2, ws._identity.x25519, blobs, m1, out_dir=tmp_path / "x"
        )
    assert not (tmp_path / "x").exists()
    assert k1 != encrypted.dataset_key(ws, "ds2")


def test_grantee_decrypts_without_the_workspace(
    env: tuple[ailedger.Workspace, Path], tmp_path: Path
) -> None:
    ws, data = env
    rec = add_dataset(ws, data, name="shared", encrypt=True, chunk_size=4096)
    grantee = x25519.X25519PrivateKey.generate()
    gpub = grantee.public_key().public_bytes_raw()
    doc = encrypted.wrap_dataset_key(ws, "shared", gpub)
    assert encrypted.wrapped_key_for(ws, "shared", hpke_wrap.x25519_keyid(gpub)) == doc
    enc = encrypted.encryption_of(ws, "shared")
    assert enc is not None
    # what a gateway ships: the manifest, the sealed index, the sealed blobs, the wrapped key
    manifest = ws.blobs.get(rec.manifest_digest)
    index = ws.blobs.get(enc.index_digest)
    src = tmp_path / "fetched"
    src.mkdir()
    blobs: dict[str, object] = {}
    for i, f in enumerate(enc.files):
        p = src / f"{i}.sealed"
        p.write_bytes(ws.blobs.get(f.sealed_sha256))
        blobs[f.path] = p if i % 2 else open(p, "rb")  # noqa: SIM115 - paths and file objects
    r = encrypted.decrypt_with_wrapped_key(
        doc,
        grantee,
        blobs,
        manifest,
        out_dir=tmp_path / "g",
        expected_root=rec.root,  # type: ignore[arg-type]
        sealed_index=index,
    )
    assert r.root == rec.root and r.files == 5
    assert (tmp_path / "g" / "a.txt").read_bytes() == (data / "a.txt").read_bytes()
    # an eavesdropper's key, a wrong root, a missing file, a manifest that is not the one
    other = x25519.X25519PrivateKey.generate()
    fresh = {f.path: ws.blobs.get(f.sealed_sha256) for f in enc.files}
    with pytest.raises(VerificationError, match="wrapped for recipient"):
        encrypted.decrypt_with_wrapped_key(doc, other, fresh, manifest, out_dir=tmp_path / "e")
    with pytest.raises(VerificationError, match="not the registered"):
        encrypted.decrypt_with_wrapped_key(
            doc, grantee, fresh, manifest, out_dir=tmp_path / "e", expected_root="00" * 32
        )
    with pytest.raises(VerificationError, match="no sealed file"):
        encrypted.decrypt_with_wrapped_key(
            doc, grantee, {k: v for k, v in fresh.items() if k != "a.txt"}, manifest,
            out_dir=tmp_path / "e",
        )  # fmt: skip
    with pytest.raises(VerificationError, match="wrapped for dataset"):
        encrypted.decrypt_with_wrapped_key(
            doc, grantee, fresh, manifest + b" ", out_dir=tmp_path / "e"
        )
    assert not (tmp_path / "e").exists()
    with pytest.raises(InputError, match="not an empty folder"):
        encrypted.decrypt_with_wrapped_key(doc, grantee, fresh, manifest, out_dir=tmp_path / "g")


def test_path_traversal_in_a_manifest_is_refused(tmp_path: Path) -> None:
    key = sealed.new_key()
    grantee = x25519.X25519PrivateKey.generate()
    m = json.dumps(
        {
            "files": [{"path": "../evil", "sha256": "00" * 32, "size": 1}],
            "mode": "files",
            "version": 1,
        }
    ).encode()
    md = hashlib.sha256(m).hexdigest()
    doc = hpke_wrap.wrap_key(key, grantee.public_key().public_bytes_raw(), md)
    blob = sealed.seal_bytes(key, b"x", context=encrypted.file_context(md, "../evil"))
    with pytest.raises(VerificationError, match="not a safe relative path"):
        encrypted.decrypt_with_wrapped_key(
            doc, grantee, {"../evil": blob}, m, out_dir=tmp_path / "o"
        )
    assert not (tmp_path / "evil").exists() and not (tmp_path / "o").exists()


def test_unknown_and_unencrypted(env: tuple[ailedger.Workspace, Path], tmp_path: Path) -> None:
    ws, data = env
    add_dataset(ws, data, name="plain-only")
    with pytest.raises(NotFoundError):
        encrypted.decrypt_dataset(ws, "nope", tmp_path / "o")
    with pytest.raises(InputError, match="not encrypted"):
        encrypted.wrap_dataset_key(ws, "plain-only", b"\x09" * 32)


def test_file_changed_while_sealing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    w = ailedger.Workspace.init(tmp_path / "ws", name="o")
    try:
        d = tmp_path / "d"
        d.mkdir()
        (d / "f").write_bytes(b"before")
        real = encrypted.seal_dataset

        def racing(ws, src, fp, md, **kw):  # type: ignore[no-untyped-def]
            (d / "f").write_bytes(b"after!")
            return real(ws, src, fp, md, **kw)

        monkeypatch.setattr(encrypted, "seal_dataset", racing)
        with pytest.raises(InputError, match="changed while it was being registered"):
            add_dataset(w, d, name="race", encrypt=True)
        assert find_dataset(w, "race") is None and w.log.size == 0
    finally:
        w.close()


# -- the real CLI ------------------------------------------------------------------------


def cli(home: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess[bytes]:
    p = subprocess.run(
        [PYTHON, "-m", "ailedger", *args], env=cli_env(home), capture_output=True, timeout=120
    )
    if ok:
        assert p.returncode == 0, p.stderr.decode()
    else:
        assert p.returncode != 0, p.stdout.decode()
        err = p.stderr.decode()
        assert "Traceback" not in err and err.count("\n") == 1, err
        assert err.startswith("ailedger: error: ")
    return p


def test_cli_round_trip_and_errors(tmp_path: Path) -> None:
    home = tmp_path / "ws"
    cli(home, "init", "--name", "owner")
    data = make_data(tmp_path)
    out = cli(home, "data", "add", str(data), "--name", "d", "--encrypt", "--chunk-size", "4096")
    text = out.stdout.decode()
    assert "encrypted: ailedger-sealed/v1 AES-256-GCM, 4096-byte chunks, 5 sealed blobs" in text
    root = next(x for x in text.splitlines() if x.startswith("root:")).split()[1]
    plain = cli(home, "data", "add", str(data), "--name", "p").stdout.decode()
    assert f"root:      {root}" in plain  # same fingerprint as the unencrypted add
    for p in (home / "blobs").rglob("*"):
        if p.is_file():
            assert MARK not in p.read_bytes(), p
    r = cli(home, "data", "decrypt", "d", "-o", str(tmp_path / "out")).stdout.decode()
    assert f"ok: root {root} matches" in r
    assert (tmp_path / "out" / "sub" / "big.bin").read_bytes() == (
        data / "sub" / "big.bin"
    ).read_bytes()
    # a grantee's wrapped key from the CLI opens with the grantee's private key
    g = x25519.X25519PrivateKey.generate()
    doc = cli(home, "data", "wrap-key", "d", g.public_key().public_bytes_raw().hex()).stdout
    assert len(hpke_wrap.unwrap_key(doc.strip(), g)) == 32
    # one-line errors
    cli(home, "data", "decrypt", "d", "-o", str(tmp_path / "out"), ok=False)  # not empty
    cli(home, "data", "decrypt", "p", "-o", str(tmp_path / "o2"), ok=False)  # not encrypted
    cli(home, "data", "decrypt", "nope", "-o", str(tmp_path / "o2"), ok=False)
    cli(home, "data", "decrypt", "d", "--version", "9", "-o", str(tmp_path / "o2"), ok=False)
    cli(home, "data", "add", str(data), "--chunk-size", "4096", ok=False)  # without --encrypt
    cli(home, "data", "add", str(data), "--encrypt", "--chunk-size", "0", ok=False)
    cli(home, "data", "add", str(tmp_path / "missing"), "--encrypt", ok=False)
    cli(home, "data", "wrap-key", "d", "zz", ok=False)
    cli(home, "data", "wrap-key", "d", "00" * 32, ok=False)  # low-order point
    # a tampered blob: decrypt fails closed, nothing written
    enc_blob = max(
        (
            p
            for p in (home / "blobs").rglob("*")
            if p.is_file() and p.read_bytes()[:18] == sealed.MAGIC
        ),
        key=lambda p: p.stat().st_size,
    )
    b = bytearray(enc_blob.read_bytes())
    b[-1] ^= 1
    enc_blob.chmod(0o644)
    enc_blob.write_bytes(bytes(b))
    p = cli(home, "data", "decrypt", "d", "-o", str(tmp_path / "o3"), ok=False)
    assert b"chunk" in p.stderr or b"modified on disk" in p.stderr
    assert not (tmp_path / "o3").exists()
