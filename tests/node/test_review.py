"""Fixes from the security review of the data gateway (docs/node.md §1, §3-§5)."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from ailedger._node import gateway
from ailedger._node.auth import sign_headers
from ailedger._node.client import NodeClient, fetch
from ailedger._provenance.datasets import add_dataset, find_dataset
from ailedger._provenance.encrypted import encryption_of

from .test_gateway import PURPOSE, World, _grant, _same_tree, _status
from .test_gateway import world as world  # the shared fixture


def _public(w: World, digest: str) -> int:
    return httpx.get(f"{w.url}/blob/sha256/{digest}").status_code


def test_public_blob_path_never_serves_a_grant_s_data(world: World) -> None:
    da = world.req.agreements()
    rid, _ = da.request(world.offer, "public-path")
    _grant(world.owner, rid)
    fetch(world.req, world.url, f"request:{rid}", world.tmp / "o-pub")
    world.owner.agreements().revoke(rid)
    info = da.request_info(rid)
    offer = da.offer_info(world.offer)
    enc = encryption_of(world.owner, "shared")
    assert info is not None and offer is not None and enc is not None
    private = {
        "wrapped key named by the grant": info.wrapped_key.hex(),
        "manifest named by the offer": offer.dataset.hex(),
        "sealed index": enc.index_digest,
        **{f"sealed {f.path}": f.sealed_sha256 for f in enc.files},
        "any other blob (terms, prediction logs)": world.owner.blobs.put(b"secret terms"),
    }
    for what, d in private.items():
        assert (world.owner.path / "blobs" / "sha256" / d[:2] / d).exists(), what
        assert _public(world, d) == 404, what
    # The gateway refuses the revoked grant on every path too.
    assert _status(world, world.req, rid, "public-path") == 403
    with NodeClient(world.url, world.req._identity.ed25519, world.req.address) as c:
        for d in private.values():
            r = c._http.send(c.signed(f"/data/{rid}/blob/{d}?purpose=public-path"))
            assert r.status_code == 403
    # What is public stays public: a plain dataset's manifest, an externalised predicate.
    plain = world.tmp / "plain"
    plain.mkdir()
    (plain / "x.txt").write_text("public\n")
    rec = add_dataset(world.owner, plain, name="plain")
    r = httpx.get(f"{world.url}/blob/sha256/{rec.manifest_digest}")
    assert r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == rec.manifest_digest
    st = {"_type": "https://in-toto.io/Statement/v1",
          "subject": [{"name": "big", "digest": {"sha256": "ab" * 32}}],
          "predicateType": "https://example.com/big/v1", "predicate": {"pad": "x" * 70_000}}  # fmt: skip
    ext = world.owner._entry_for(st)
    import base64
    import json

    payload = json.loads(base64.b64decode(json.loads(ext)["payload"]))
    d = payload["predicate"]["externalPredicate"]["digest"]["sha256"]
    assert _public(world, d) == 200


def test_a_body_on_a_gateway_get_is_refused_unread(world: World) -> None:
    target = f"/data/{world.rid}?purpose={PURPOSE}"

    def endless() -> Iterator[bytes]:
        for _ in range(16):
            yield b"\0" * (1 << 20)

    for body in (b"x" * 10, endless()):
        r = httpx.request("GET", world.url + target, content=body)
        assert r.status_code == 400 and "must not have a body" in r.json()["error"]
    # Signed, correctly, but still with a body: refused before the signature is looked at.
    h = sign_headers(world.req._identity.ed25519, world.req.address, world.owner.origin, "GET",
                     target, body=b"x")  # fmt: skip
    r = httpx.request("GET", world.url + target, headers=h, content=b"x")
    assert r.status_code == 400


def _nonces(w: World) -> int:
    db = sqlite3.connect(w.owner.path / "provenance.sqlite")
    try:
        return int(db.execute("SELECT count(*) FROM node_nonces").fetchone()[0])
    finally:
        db.close()


def test_unbound_keys_cannot_fill_the_replay_cache(world: World) -> None:
    with NodeClient(world.url, world.req._identity.ed25519, world.req.address) as c:
        c.release(world.rid, PURPOSE)  # a bound key's nonce is recorded
    before = _nonces(world)
    for _ in range(5):
        key = ed25519.Ed25519PrivateKey.generate()
        # The grantee's account, a self-made key; and an account with no identity.
        assert _status(world, world.req, world.rid, key=key) == 401
    stranger = "0x" + "11" * 20
    target = f"/data/{world.rid}?purpose={PURPOSE}"
    h = sign_headers(ed25519.Ed25519PrivateKey.generate(), stranger, world.owner.origin, "GET", target)
    assert httpx.get(world.url + target, headers=h).status_code == 401
    assert _nonces(world) == before


def test_bad_request_ids_are_404_not_503(world: World) -> None:
    for rid in (-1, 0, 2**256, 2**64):
        assert _status(world, world.req, rid) == 404, rid


def test_access_statements_coalesce_per_grant(world: World) -> None:
    with NodeClient(world.url, world.req._identity.ed25519, world.req.address) as c:
        first: dict[str, Any] = c.release(world.rid, PURPOSE)
        size = world.owner.log.size
        again: dict[str, Any] = c.release(world.rid, PURPOSE)
    assert again["access"]["index"] == first["access"]["index"]
    assert world.owner.log.size == size


def test_registering_the_same_data_again_keeps_grants(world: World) -> None:
    rid, _ = world.req.agreements().request(world.offer, "copy")
    _grant(world.owner, rid)
    copy = add_dataset(world.owner, world.data, name="shared-copy", encrypt=True)
    assert copy.manifest_digest == find_dataset(world.owner, "shared").manifest_digest  # type: ignore[union-attr]
    out = world.tmp / "o-copy"
    fetch(world.req, world.url, f"request:{rid}", out)
    _same_tree(world.data, out)


def test_served_datasets_are_cached(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = gateway._load

    def counting(*a: Any) -> Any:
        calls.append(a[1:3])
        return real(*a)

    monkeypatch.setattr(gateway, "_load", counting)
    cache = gateway.DatasetCache()
    rec = find_dataset(world.owner, "shared")
    assert rec is not None
    a = gateway.served_dataset(world.owner, rec.manifest_digest, cache=cache)
    b = gateway.served_dataset(world.owner, rec.manifest_digest, cache=cache)
    assert a is b and len(calls) == 1
