"""The cheaper request and fetch paths keep every guarantee of the slower ones.

Cheap head reads and per-head caches must still decide each request on the chain state
of that moment; the streamed, single-pass fetch must still refuse short, long and
altered blobs and leave nothing behind; files-mode verification without a second read
must agree with a real re-fingerprint.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from ailedger._chain import EmbeddedBackend
from ailedger._crypto import sealed
from ailedger._node import gateway
from ailedger._node.client import NodeClient, _BlobStream, fetch
from ailedger._provenance import encrypted
from ailedger._provenance.datasets import find_dataset
from ailedger._provenance.fingerprint import fingerprint
from ailedger.errors import ChainError, NotFoundError, VerificationError

from .test_gateway import PURPOSE, World, _grant, _same_tree, _sealed_blob, flipped
from .test_gateway import world as world  # the shared fixture

# -- the request path ---------------------------------------------------------------


def test_a_revoke_mined_between_two_blob_requests_refuses_the_second(world: World) -> None:
    purpose = "fast-revoke"
    rid, _ = world.req.agreements().request(world.offer, purpose)
    _grant(world.owner, rid)
    enc = encrypted.encryption_of(world.owner, "shared")
    assert enc is not None
    target = f"/data/{rid}/blob/{enc.files[0].sealed_sha256}?purpose={purpose}"
    with NodeClient(world.url, world.req._identity.ed25519, world.req.address) as c:
        for _ in range(3):  # warm every cache: the view at this head, the grant binding
            assert c._http.send(c.signed(target)).status_code == 200
        # Mined through the owner's own chain handle, not the node's: the node learns of
        # it only by reading the head of the shared chain file.
        world.owner.agreements().revoke(rid)
        r = c._http.send(c.signed(target))
        assert r.status_code == 403 and "revoked" in r.json()["error"]


def test_the_view_cache_follows_the_head(world: World) -> None:
    deployment = world.owner.deployment.contracts
    node_chain = EmbeddedBackend(world.owner.path / "chain.sqlite", create=False)
    try:
        view = gateway.ChainAgreementsView(
            node_chain, deployment["DataAgreements"], deployment["IdentityRegistry"]
        )
        rid, _ = world.req.agreements().request(world.offer, "fast-view")
        _grant(world.owner, rid)
        before = view.request(rid)
        assert before is not None and before.status.name == "GRANTED"
        assert view.request(rid) is before  # same head: served from the cache
        world.owner.agreements().revoke(rid)
        after = view.request(rid)
        assert after is not None and after.status.name == "REVOKED"
        head = world.owner.chain.block_number()
        assert view.chain_time() == world.owner.chain.block_timestamp(head)
    finally:
        node_chain.close()


def test_head_reads_see_blocks_mined_through_another_handle(tmp_path: Path) -> None:
    path = tmp_path / "chain.sqlite"
    a = EmbeddedBackend(path)
    b = EmbeddedBackend(path, create=False)
    try:
        assert b.block_number() == a.block_number() == 0
        receipt = a.fund("0x" + "11" * 20, 1)
        assert b.block_number() == receipt.block_number == 1
        assert b.block_timestamp(1) == a.block_timestamp(1) >= b.block_timestamp(0)
        with pytest.raises(ChainError, match="block 2 does not exist"):
            b.block_timestamp(2)
    finally:
        a.close()
        b.close()


def test_grant_bindings_are_cached_after_the_first_request(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real = gateway._registration_for

    def counting(ws: Any, grant: gateway.Grant) -> Any:
        calls.append(grant.request_id)
        return real(ws, grant)

    monkeypatch.setattr(gateway, "_registration_for", counting)
    rec = find_dataset(world.owner, "shared")
    assert rec is not None
    grant = gateway.Grant(
        world.rid, world.offer, world.req.address.lower(), world.req.keyid,
        world.req.x25519_public, PURPOSE, 2**40, rec.manifest_digest, None,
    )  # fmt: skip
    cache = gateway.DatasetCache()
    a = gateway.served_dataset(world.owner, rec.manifest_digest, grant, cache)
    b = gateway.served_dataset(world.owner, rec.manifest_digest, grant, cache)
    assert a is b and calls == [world.rid]
    # Another dataset digest for the same request id is not served from that binding.
    with pytest.raises(NotFoundError):
        gateway.served_dataset(world.owner, "0" * 64, grant, cache)


# -- the streamed download ------------------------------------------------------------


class _Pieces(httpx.SyncByteStream):
    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = pieces

    def __iter__(self) -> Iterator[bytes]:
        yield from self.pieces


def _stream(pieces: list[bytes], size: int) -> _BlobStream:
    return _BlobStream(httpx.Response(200, stream=_Pieces(pieces)), "ab" * 32, size)


def test_blob_stream_reads_exact_sizes_across_pieces() -> None:
    data = bytes(range(256)) * 40
    pieces = [data[i : i + 700] for i in range(0, len(data), 700)]
    s = _stream(pieces, len(data))
    got = [s.read(n) for n in (1, 1000, 3, 5000, 10_000)]
    assert [len(g) for g in got] == [1, 1000, 3, 5000, len(data) - 6004]
    assert b"".join(got) == data
    assert s.read(10) == b"" and s.read(1) == b""


def test_blob_stream_refuses_long_and_short_bodies() -> None:
    with pytest.raises(VerificationError, match="longer than the 10 bytes"):
        _stream([b"x" * 6, b"x" * 6], 10).read(100)
    s = _stream([b"x" * 6], 10)
    with pytest.raises(VerificationError, match="truncated: 6 of 10 bytes"):
        s.read(100)


# -- single-pass decryption -----------------------------------------------------------


@pytest.mark.parametrize(
    "names",
    [
        ["a", "b/c", "b-c", "b.c", "z/y/x", "é", "日本/語", "A"],
        ["only"],
        [],
    ],
)
def test_files_fingerprint_without_a_second_read_matches_fingerprint(
    tmp_path: Path, names: list[str]
) -> None:
    root = tmp_path / "d"
    root.mkdir()
    rows = []
    for i, n in enumerate(names):
        p = root / n
        p.parent.mkdir(parents=True, exist_ok=True)
        body = (n.encode() * i)[: i * 37]
        p.write_bytes(body)
        rows.append((n, len(body), hashlib.sha256(body).hexdigest()))
    want = fingerprint(root, workers=1)
    got = encrypted._files_fingerprint(list(reversed(rows)))
    assert got.root == want.root
    assert got.manifest_bytes() == want.manifest_bytes()
    assert (got.leaves, got.total_bytes) == (want.leaves, want.total_bytes)


def _decrypt(manifest_files: list[dict[str, Any]], sealed_by_path: dict[str, bytes], out: Path):  # type: ignore[no-untyped-def]
    key = bytes(range(32))
    mbytes = json.dumps({"files": manifest_files, "mode": "files", "version": 1}).encode()
    digest = hashlib.sha256(mbytes).hexdigest()

    @contextmanager
    def source(rel: str) -> Iterator[tuple[Any, None]]:
        ctx = encrypted.file_context(digest, rel)
        yield io.BytesIO(sealed.seal_bytes(key, sealed_by_path[rel], context=ctx)), None

    return encrypted._decrypt_all(key, mbytes, digest, source, out, None)


def test_a_manifest_naming_a_path_twice_is_refused_cleanly(tmp_path: Path) -> None:
    entry = {"path": "a", "sha256": hashlib.sha256(b"hi").hexdigest(), "size": 2}
    with pytest.raises(VerificationError, match="clashes"):
        _decrypt([entry, entry], {"a": b"hi"}, tmp_path / "o")
    nested = {"path": "a/b", "sha256": entry["sha256"], "size": 2}
    with pytest.raises(VerificationError, match="clashes"):
        _decrypt([entry, nested], {"a": b"hi", "a/b": b"hi"}, tmp_path / "o")
    assert not (tmp_path / "o").exists()
    assert not list(tmp_path.iterdir())  # staging removed


def test_write_behind_keeps_order_and_reraises_write_errors() -> None:
    out = io.BytesIO()
    with encrypted._WriteBehind(out) as w:
        for i in range(50):
            w.write(bytes([i]) * 1000)
    assert out.getvalue() == b"".join(bytes([i]) * 1000 for i in range(50))
    assert (w.n, w.h.hexdigest()) == (50_000, hashlib.sha256(out.getvalue()).hexdigest())

    class Full(io.RawIOBase):
        def write(self, b: Any) -> int:
            raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"), encrypted._WriteBehind(Full()) as w:
        for _ in range(10):
            w.write(b"x" * 100)


def test_fetch_through_the_write_behind_thread(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(encrypted, "_WRITE_BEHIND_MIN", 0)  # every file, not only big ones
    out = world.tmp / "o-behind"
    fetch(world.req, world.url, f"request:{world.rid}", out)
    _same_tree(world.data, out)
    # The last chunk: earlier ones were already handed to the writer.
    with flipped(_sealed_blob(world), -100), pytest.raises(VerificationError, match="tampered"):
        fetch(world.req, world.url, f"request:{world.rid}", world.tmp / "o-behind-bad")
    assert not (world.tmp / "o-behind-bad").exists()
    assert not [p for p in world.tmp.iterdir() if p.name.startswith(".o-behind-bad")]
