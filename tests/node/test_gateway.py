"""The data gateway end to end: a real chain, a real server, real fetches and refusals."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from ailedger import Workspace
from ailedger._node import app as node_app
from ailedger._node.app import create_app
from ailedger._node.auth import sign_headers
from ailedger._node.client import NodeClient, NodeError, fetch
from ailedger._provenance import types as vocab
from ailedger._provenance.datasets import add_dataset
from ailedger._provenance.encrypted import encryption_of, wrap_dataset_key
from ailedger._statements import dsse
from ailedger.errors import NotFoundError, VerificationError

from .conftest import running

PURPOSE = "training"


@dataclass
class World:
    owner: Workspace
    req: Workspace
    other: Workspace
    url: str
    offer: int
    rid: int
    data: Path
    name: str
    tmp: Path


def _join(owner: Workspace, path: Path, name: str) -> Workspace:
    return Workspace.init(
        path,
        name=name,
        chain=str(owner.path / "chain.sqlite"),
        contracts=owner.path / "deployment.json",
    )


def _grant(owner: Workspace, rid: int, ttl: int = 90_000) -> None:
    da = owner.agreements()
    info = da.request_info(rid)
    assert info is not None
    ident = owner.identity_registry().resolve(info.requester)
    assert ident is not None
    doc = wrap_dataset_key(owner, "shared", ident.x25519)
    head = owner.chain.block_timestamp(owner.chain.block_number())
    # Blocks mined in a burst run ahead of wall time: count from the later clock.
    da.grant(rid, max(int(time.time()), head) + ttl, hashlib.sha256(doc.encode()).digest())


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("gw")
    data = tmp / "shared"
    (data / "sub").mkdir(parents=True)
    (data / "a.bin").write_bytes(os.urandom(300_000))
    (data / "sub" / "b.txt").write_text("hello\n" * 1000)
    (data / "empty").write_bytes(b"")
    owner = Workspace.init(tmp / "owner", name="owner")
    add_dataset(owner, data, encrypt=True, chunk_size=65536)
    enc = encryption_of(owner, "shared")
    assert enc is not None
    offer, _ = owner.agreements().offer(
        bytes.fromhex(enc.manifest_digest), max_duration=2 * 86400, response_window=86400
    )
    req = _join(owner, tmp / "req", "req")
    other = _join(owner, tmp / "other", "other")
    rid, _ = req.agreements().request(offer, PURPOSE)
    _grant(owner, rid)
    with running(create_app(owner.path)) as url:
        yield World(owner, req, other, url, offer, rid, data, "shared", tmp)
    for w in (owner, req, other):
        w.close()


def _same_tree(a: Path, b: Path) -> None:
    fa = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    fb = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert fa == fb
    for p in fa:
        assert (a / p).read_bytes() == (b / p).read_bytes()


def _status(w: World, who: Workspace, rid: int, purpose: str = PURPOSE, key: Any = None) -> int:
    with (
        NodeClient(w.url, key or who._identity.ed25519, who.address) as c,
        pytest.raises(NodeError) as ei,
    ):
        c.release(rid, purpose)
    assert ei.value.status is not None
    return ei.value.status


def _statement(ws: Workspace, index: int) -> dict[str, Any]:
    env = dsse.parse(ws.log.get(index))
    st: dict[str, Any] = json.loads(dsse.b64decode_any(env["payload"]))
    return st


def test_happy_path_fetch_decrypt_verify_and_both_logs(world: World) -> None:
    out = world.tmp / "out-happy"
    r = fetch(world.req, world.url, f"request:{world.rid}", out)
    _same_tree(world.data, out)
    assert (r.request_id, r.offer_id, r.purpose, r.files) == (world.rid, world.offer, PURPOSE, 3)
    mine = _statement(world.req, r.access_index)
    assert mine["predicateType"] == vocab.DATA_ACCESS
    assert mine["subject"][0]["digest"] == {"sha256": r.manifest_digest}
    assert mine["predicate"]["role"] == "recipient"
    assert mine["predicate"]["agreement"]["requestId"] == world.rid
    assert r.provider_access_index is not None
    theirs = _statement(world.owner, r.provider_access_index)
    assert theirs["predicateType"] == vocab.DATA_ACCESS
    p = theirs["predicate"]
    assert p["role"] == "provider"
    assert p["requester"] == {"account": world.req.address.lower(), "keyid": world.req.keyid}
    assert p["agreement"]["purpose"] == PURPOSE and p["agreement"]["offerId"] == world.offer
    assert p["delivered"]["files"] == 3
    assert theirs["subject"][0] == {
        "name": "dataset:shared",
        "digest": {"sha256": r.manifest_digest},
    }
    # By offer id too (the live grant is looked up on chain).
    out2 = world.tmp / "out-offer"
    fetch(world.req, world.url, str(world.offer), out2)
    _same_tree(world.data, out2)


def test_cli_fetch_and_bad_input(world: World) -> None:
    env = {**os.environ, "AILEDGER_HOME": str(world.req.path)}
    out = world.tmp / "out-cli"
    cmd = [sys.executable, "-m", "ailedger", "data", "fetch", f"offer:{world.offer}"]
    p = subprocess.run([*cmd, "--from", world.url, "-o", str(out)], env=env, capture_output=True,
                       text=True, timeout=120)  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert "fetched 3 file(s)" in p.stdout and "ok: root" in p.stdout
    _same_tree(world.data, out)
    for args, msg in [
        (["--from", "ftp://x", "-o", str(world.tmp / "o1")], "http(s) URL"),
        (["--from", world.url, "-o", str(out)], "not an empty folder"),
    ]:
        p = subprocess.run([*cmd, *args], env=env, capture_output=True, text=True, timeout=120)
        assert p.returncode != 0
        assert p.stderr.startswith("ailedger: error:") and msg in p.stderr, p.stderr
        assert "Traceback" not in p.stderr
    p = subprocess.run(
        [sys.executable, "-m", "ailedger", "data", "fetch", "bogus:1", "--from", world.url,
         "-o", str(world.tmp / "o2")], env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert p.returncode != 0 and "not an offer or request" in p.stderr


def test_no_grant_refused(world: World) -> None:
    # Someone without a grant asking for the grantee's request: 403.
    assert _status(world, world.other, world.rid) == 403
    # A pending (not granted) request of its own: 403.
    rid, _ = world.other.agreements().request(world.offer, "evaluation")
    assert _status(world, world.other, rid, "evaluation") == 403
    # The client refuses before asking the node when it holds no live grant.
    with pytest.raises(NotFoundError, match="no live grant"):
        fetch(world.other, world.url, str(world.offer), world.tmp / "o-none")
    assert not (world.tmp / "o-none").exists()
    # An unknown request: 404.
    assert _status(world, world.req, 10_000) == 404


def test_wrong_purpose_refused(world: World) -> None:
    assert _status(world, world.req, world.rid, "marketing") == 403


def test_revoked_grant_refused(world: World) -> None:
    rid, _ = world.req.agreements().request(world.offer, "revoked-use")
    _grant(world.owner, rid)
    fetch(world.req, world.url, f"request:{rid}", world.tmp / "o-before")  # live: works
    world.owner.agreements().revoke(rid)
    assert _status(world, world.req, rid, "revoked-use") == 403
    with pytest.raises(NodeError, match="revoked"):
        fetch(world.req, world.url, f"request:{rid}", world.tmp / "o-revoked")
    assert not (world.tmp / "o-revoked").exists()


def test_expired_grant_refused(world: World) -> None:
    offer = world.offer
    try:  # a contract with a shortest grant needs an offer that allows 3 s
        manifest = encryption_of(world.owner, "shared").manifest_digest  # type: ignore[union-attr]
        offer, _ = world.owner.agreements().offer(
            bytes.fromhex(manifest), max_duration=86400, response_window=86400, min_duration=1
        )
    except TypeError:
        pass
    rid, _ = world.req.agreements().request(offer, "short")
    _grant(world.owner, rid, ttl=3)
    info = world.req.agreements().request_info(rid)
    assert info is not None
    # Let the chain's clock pass the expiry (each block is ≥ 1 s after its parent)
    # instead of waiting for the wall clock.
    chain = world.owner.chain
    while chain.block_timestamp(chain.block_number()) < info.expiry:
        chain.send_value(world.owner.account, world.owner.address, 0)
    assert _status(world, world.req, rid, "short") == 403


def test_signed_by_someone_else_refused(world: World) -> None:
    # The grantee's account, another identity's key: not the key IdentityRegistry binds.
    assert _status(world, world.req, world.rid, key=world.other._identity.ed25519) == 401


def _raw(world: World, headers: dict[str, str], target: str) -> httpx.Response:
    return httpx.get(world.url + target, headers=headers)


def test_replayed_and_stale_and_unsigned_requests_refused(world: World) -> None:
    origin = world.owner.origin
    target = f"/data/{world.rid}?purpose={PURPOSE}"
    h = sign_headers(world.req._identity.ed25519, world.req.address, origin, "GET", target)
    assert _raw(world, h, target).status_code == 200
    again = _raw(world, h, target)
    assert again.status_code == 401 and "replayed" in again.json()["error"]
    old = sign_headers(world.req._identity.ed25519, world.req.address, origin, "GET", target,
                       now=int(time.time()) - 3600)  # fmt: skip
    r = _raw(world, old, target)
    assert r.status_code == 401 and "stale" in r.json()["error"]
    # Signed for another path, or another node: the signature does not cover this one.
    other_t = f"/data/{world.rid + 1}?purpose={PURPOSE}"
    h2 = sign_headers(world.req._identity.ed25519, world.req.address, origin, "GET", other_t)
    assert _raw(world, h2, target).status_code == 401
    h3 = sign_headers(world.req._identity.ed25519, world.req.address, "elsewhere", "GET", target)
    assert _raw(world, h3, target).status_code == 401
    r = httpx.get(world.url + target)
    assert r.status_code == 401 and "missing header" in r.json()["error"]


def test_blobs_outside_the_grant_refused(world: World) -> None:
    with NodeClient(world.url, world.req._identity.ed25519, world.req.address) as c:
        r = c._http.send(c.signed(f"/data/{world.rid}/blob/{'0' * 64}?purpose={PURPOSE}"))
    assert r.status_code == 404


def _sealed_blob(world: World) -> Path:
    enc = encryption_of(world.owner, "shared")
    assert enc is not None
    big = max(enc.files, key=lambda f: f.sealed_size)
    d = big.sealed_sha256
    return world.owner.path / "blobs" / "sha256" / d[:2] / d


@contextmanager
def flipped(path: Path, offset: int) -> Iterator[None]:
    """One bit of the file at ``offset`` flipped for the duration (restored after)."""
    orig = path.read_bytes()
    bad = bytearray(orig)
    bad[offset] ^= 1
    path.write_bytes(bytes(bad))
    try:
        yield
    finally:
        path.write_bytes(orig)


def test_tampered_chunk_refused_nothing_written(world: World) -> None:
    with flipped(_sealed_blob(world), 200_000), pytest.raises(VerificationError, match="tampered"):
        fetch(world.req, world.url, f"request:{world.rid}", world.tmp / "o-tamper")
    assert not (world.tmp / "o-tamper").exists()
    assert not [p for p in world.tmp.iterdir() if p.name.startswith(".o-tamper")]


def test_truncated_download_refused_nothing_written(world: World, monkeypatch) -> None:
    path = _sealed_blob(world)
    orig = path.read_bytes()
    path.write_bytes(orig[: len(orig) // 2])
    try:
        with pytest.raises(VerificationError, match="truncated"):
            fetch(world.req, world.url, f"request:{world.rid}", world.tmp / "o-trunc")
    finally:
        path.write_bytes(orig)
    assert not (world.tmp / "o-trunc").exists()

    async def cut(p: Path, size: int):  # type: ignore[no-untyped-def]
        with open(p, "rb") as f:
            yield f.read(size // 2)  # then the connection ends short of Content-Length

    monkeypatch.setattr(node_app, "_stream_file", cut)
    with pytest.raises(VerificationError, match=r"broke off|truncated"):
        fetch(world.req, world.url, f"request:{world.rid}", world.tmp / "o-cut")
    assert not (world.tmp / "o-cut").exists()


def test_tampered_wrapped_key_refused(world: World) -> None:
    info = world.req.agreements().request_info(world.rid)
    assert info is not None
    d = info.wrapped_key.hex()
    path = world.owner.path / "blobs" / "sha256" / d[:2] / d
    orig = path.read_bytes()
    doc = json.loads(orig)
    doc["enc"] = doc["enc"][:-4] + ("AAA=" if doc["enc"][-4:] != "AAA=" else "BBB=")
    tampered = json.dumps(doc)
    path.write_bytes(tampered.encode())
    # The node falls back to its own stored copy when the blob no longer hashes right;
    # tamper that copy too, so what is served really is not what the grant names.
    import sqlite3

    db = sqlite3.connect(world.owner.path / "provenance.sqlite")
    stored = db.execute("SELECT rowid, wrapped_doc FROM encrypted_keys").fetchall()
    db.executemany("UPDATE encrypted_keys SET wrapped_doc=? WHERE rowid=?",
                   [(tampered, r) for r, _ in stored])
    db.commit()
    try:
        with pytest.raises(VerificationError, match="on-chain grant"):
            fetch(world.req, world.url, f"request:{world.rid}", world.tmp / "o-key")
    finally:
        path.write_bytes(orig)
        db.executemany("UPDATE encrypted_keys SET wrapped_doc=? WHERE rowid=?",
                       [(d, r) for r, d in stored])
        db.commit()
        db.close()
    assert not (world.tmp / "o-key").exists()


def test_openapi_and_node_info(world: World) -> None:
    spec = httpx.get(world.url + "/openapi.json").json()
    for p in ("/checkpoint", "/tile/{level}/{rest}", "/receipt/{index}", "/blob/sha256/{digest}",
              "/data/{request_id}", "/data/{request_id}/blob/{digest}", "/node"):  # fmt: skip
        assert p in spec["paths"], p
    info = httpx.get(world.url + "/node").json()
    assert info["origin"] == world.owner.origin and info["account"] == world.owner.address
