"""tlog-tiles conformance: paths, encodings, and the tree rebuilt from served tiles."""

from __future__ import annotations

import hashlib
import struct

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ailedger import Workspace, merkle
from ailedger._log.note import open_checkpoint
from ailedger._node.app import create_app
from ailedger._node.tiles import TileRef, encode_index, parse_tile_path, tiles_for_size
from ailedger._verify import verify_receipt
from ailedger.errors import NotFoundError

from .conftest import running


def test_index_encoding_examples_from_the_spec() -> None:
    assert encode_index(1234067) == "x001/x234/067"
    assert encode_index(0) == "000"
    assert encode_index(5) == "005"
    assert encode_index(999) == "999"
    assert encode_index(1000) == "x001/000"
    assert TileRef(0, 1234067, 256).path() == "tile/0/x001/x234/067"
    assert TileRef(2, 3, 17).path() == "tile/2/003.p/17"
    assert TileRef(None, 1000, 8).path() == "tile/entries/x001/000.p/8"


def test_tiles_for_size_examples_from_the_spec() -> None:
    t = tiles_for_size(70_000)
    full0 = [r for r in t if r.level == 0 and not r.partial]
    assert len(full0) == 273
    assert [r for r in t if r.partial] == [
        TileRef(0, 273, 112),
        TileRef(1, 1, 17),
        TileRef(2, 0, 1),
    ]
    assert [r for r in t if r.level == 1 and not r.partial] == [TileRef(1, 0, 256)]
    assert tiles_for_size(256) == [TileRef(0, 0, 256), TileRef(1, 0, 1)]
    assert tiles_for_size(0) == []


@given(st.integers(0, 2**56), st.integers(1, 256), st.sampled_from(["entries", "0", "5", "63"]))
def test_path_round_trip(n: int, w: int, level: str) -> None:
    lvl = None if level == "entries" else int(level)
    ref = TileRef(lvl, n, w)
    head = "tile/entries/" if lvl is None else f"tile/{lvl}/"
    assert ref.path().startswith(head)
    assert parse_tile_path(level, ref.path()[len(head) :]) == ref


@pytest.mark.parametrize(
    ("level", "rest"),
    [
        ("0", "1"),  # not 3 digits
        ("0", "x1/000"),
        ("0", "001/002"),  # missing x
        ("0", "x000/001"),  # non-canonical leading group
        ("0", "000.p/0"),
        ("0", "000.p/256"),
        ("0", "000.p/07"),
        ("00", "000"),
        ("64", "000"),
        ("-1", "000"),
        ("entry", "000"),
        ("0", "x001/x234/067/"),
    ],
)
def test_bad_paths_refused(level: str, rest: str) -> None:
    with pytest.raises(NotFoundError):
        parse_tile_path(level, rest)


def _mth(hashes: list[bytes]) -> bytes:
    return merkle.root_from_leaf_hashes(hashes)


def test_tree_rebuilt_from_served_tiles_matches_the_signed_checkpoint(tmp_path) -> None:
    ws = Workspace.init(tmp_path / "ws", name="t")
    entries = [b"entry %d" % i for i in range(70_000)]
    ws.log.append_many(entries)
    verifier = ws.verifier
    ws.close()
    with running(create_app(tmp_path / "ws")) as url, httpx.Client(base_url=url) as c:
        r = c.get("/checkpoint")
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/plain; charset=utf-8"
        cp = open_checkpoint(r.text, verifier)
        assert cp.size == 70_000
        level_hashes: dict[int, list[bytes]] = {}
        for ref in tiles_for_size(cp.size):
            tr = c.get("/" + ref.path())
            assert tr.status_code == 200, ref.path()
            assert tr.headers["content-type"] == "application/octet-stream"
            assert len(tr.content) == 32 * ref.width
            hs = [tr.content[i : i + 32] for i in range(0, len(tr.content), 32)]
            level_hashes.setdefault(ref.level or 0, []).extend(hs)
            if ref.level and not ref.partial:
                # Each hash of a level-L tile is the MTH of a full tile at level L-1.
                below = level_hashes[ref.level - 1]
                for i, h in enumerate(hs):
                    n = ref.index * 256 + i
                    assert h == _mth(below[n * 256 : (n + 1) * 256])
        # Independent root: split the size into aligned power-of-two subtrees, each
        # taken from the tile level whose hashes it is made of.
        subtrees: list[bytes] = []
        lo = 0
        for k in reversed(range(64)):
            if cp.size >> k & 1:
                level, r_ = divmod(k, 8)
                base = lo >> (8 * level)
                subtrees.append(_mth(level_hashes[level][base : base + (1 << r_)]))
                lo += 1 << k
        root = subtrees[-1]
        for h in reversed(subtrees[:-1]):
            root = merkle.node_hash(h, root)
        assert root == cp.root
        # Entry bundles: uint16 big-endian length-prefixed entries hashing to level 0.
        got: list[bytes] = []
        for n in range(274):
            path = f"/tile/entries/{encode_index(n)}" + (".p/112" if n == 273 else "")
            b = c.get(path).content
            i = 0
            while i < len(b):
                (ln,) = struct.unpack(">H", b[i : i + 2])
                got.append(b[i + 2 : i + 2 + ln])
                i += 2 + ln
        assert got == entries
        assert [hashlib.sha256(b"\x00" + e).digest() for e in got[:300]] == level_hashes[0][:300]
        # A smaller partial of an existing range is served; beyond the tree is not.
        assert c.get("/tile/0/273.p/5").content == b"".join(
            level_hashes[0][273 * 256 : 273 * 256 + 5]
        )
        for bad in (
            "/tile/0/273",
            "/tile/0/273.p/113",
            "/tile/1/001",
            "/tile/3/000.p/1",
            "/tile/0/1",
        ):
            r = c.get(bad)
            assert r.status_code == 404, bad
            assert "error" in r.json()
        # Receipts verify against the log's key.
        rc = c.get("/receipt/69999")
        assert rc.status_code == 200
        verify_receipt(rc.text, entries[69999], verifier)
        assert c.get("/receipt/70000").status_code == 404
        assert c.get("/openapi.json").json()["paths"]["/checkpoint"]


def test_blobs_stream_by_digest(tmp_path) -> None:
    ws = Workspace.init(tmp_path / "ws", name="t")
    data = bytes(range(256)) * 40_000  # 10 MB: several stream chunks
    d = ws.blobs.put(data)
    hidden = ws.blobs.put(b"not declared public")
    from ailedger._node.public import mark_public

    mark_public(ws.path, d)
    ws.close()
    with running(create_app(tmp_path / "ws")) as url, httpx.Client(base_url=url) as c:
        r = c.get(f"/blob/sha256/{d}")
        assert r.status_code == 200 and r.content == data
        assert r.headers["content-length"] == str(len(data))
        assert c.get("/blob/sha256/" + "0" * 64).status_code == 404
        assert c.get(f"/blob/sha256/{hidden}").status_code == 404  # allow-list only
        assert c.get("/blob/sha256/XYZ").status_code == 404
        assert c.get("/blob/sha256/" + d.upper()).status_code == 404
