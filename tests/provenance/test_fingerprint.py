"""Dataset fingerprints: roots against an independent computation, ordering, records
mode, the stat cache, and every bad input (changing files, loops, unreadable paths)."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ailedger import InputError, merkle
from ailedger._provenance import fingerprint as fpmod
from ailedger._provenance.fingerprint import StatCache, file_leaf, fingerprint


def expected_files_root(files: dict[str, bytes]) -> tuple[str, list[bytes]]:
    """The files-mode root computed independently: rfc8785 leaves, UTF-8 byte order."""
    order = sorted(files, key=lambda p: p.encode("utf-8"))
    leaves = [
        rfc8785.dumps(
            {"path": p, "sha256": hashlib.sha256(files[p]).hexdigest(), "size": len(files[p])}
        )
        for p in order
    ]
    return merkle.root(leaves).hex(), leaves


def write(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)


def cache_in(tmp: Path) -> StatCache:
    return StatCache(sqlite3.connect(tmp / "provenance.sqlite"))


def test_files_root_and_manifest(tmp_path: Path) -> None:
    files = {
        "a/b": b"1",
        "a-c": b"22",  # '-' (0x2d) sorts before '/' (0x2f): "a-c" < "a/b"
        "B": b"",
        "z.bin": os.urandom(3 * fpmod.CHUNK + 7),  # several chunks
        "é/x": b"accent",  # non-ASCII sorts after ASCII in UTF-8
        'q"uote\\s': b"escaped path",
        "sub/deeper/c.txt": b"c",
    }
    write(tmp_path / "d", files)
    fp = fingerprint(tmp_path / "d")
    root, leaves = expected_files_root(files)
    assert fp.root == root and fp.leaves == len(files) and fp.mode == "files"
    assert list(fp.paths) == sorted(files, key=lambda p: p.encode())
    assert fp.paths[:3] == ("B", "a-c", "a/b")
    assert fp.total_bytes == sum(len(v) for v in files.values())
    assert [file_leaf(f.path, f.sha256, f.size) for f in fp.files] == leaves
    assert fp.manifest_bytes() == rfc8785.dumps(fp.manifest())
    assert fp.manifest()["version"] == 1 and fp.manifest()["mode"] == "files"
    assert set(fp.manifest()["files"][0]) == {"path", "sha256", "size"}
    assert fingerprint(tmp_path / "d", workers=1).root == root


def test_single_file_path_is_base_name(tmp_path: Path) -> None:
    write(tmp_path, {"deep/data.bin": b"hello"})
    fp = fingerprint(tmp_path / "deep" / "data.bin")
    assert fp.paths == ("data.bin",)
    assert fp.root == expected_files_root({"data.bin": b"hello"})[0]


def test_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "e").mkdir()
    fp = fingerprint(tmp_path / "e")
    assert fp.leaves == 0 and fp.root == merkle.EMPTY_ROOT.hex()


_NAMES = st.text(
    alphabet=st.sampled_from(list('aZ09-_. é"\\\n\t~ß中')), min_size=1, max_size=6
).filter(lambda s: s not in (".", "..") and "/" not in s)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.dictionaries(
        st.lists(_NAMES, min_size=1, max_size=3).map("/".join), st.binary(max_size=64), max_size=8
    )
)
def test_root_matches_independent_computation(
    tmp_path_factory: Any, files: dict[str, bytes]
) -> None:
    # A path that is a prefix folder of another cannot also be a file; drop those.
    names = sorted(files)
    files = {n: v for n, v in files.items() if not any(m.startswith(n + "/") for m in names)}
    d = tmp_path_factory.mktemp("h")
    write(d, files)
    assert fingerprint(d).root == expected_files_root(files)[0]
    # Both leaf encoders (fast batch and per-leaf) agree with RFC 8785.
    for p, v in files.items():
        h = hashlib.sha256(v).hexdigest()
        want = rfc8785.dumps({"path": p, "sha256": h, "size": len(v)})
        assert file_leaf(p, h, len(v)) == want
        assert fpmod._file_leaf_hashes([p], [h], [len(v)]) == [merkle.leaf_hash(want)]


@given(st.lists(st.binary(min_size=32, max_size=32), max_size=70))
def test_level_root_equals_rfc9162(hashes: list[bytes]) -> None:
    assert fpmod._root(hashes) == merkle.root_from_leaf_hashes(hashes)


# -- records mode -----------------------------------------------------------------------


def test_records_mode(tmp_path: Path) -> None:
    write(
        tmp_path / "d",
        {
            "b.csv": b"id,name\r\n1,ann\r\n\r\n2,bob",  # CRLF, a blank line, no final newline
            "a.jsonl": b'{"x": 1, "y": 2}\n{"x": 3}\n\n',
            "c/t.tsv": b"k\tv\nq\t1\n",
        },
    )
    fp = fingerprint(tmp_path / "d", records=True)
    records = [b'{"x": 1, "y": 2}', b'{"x": 3}', b"1,ann", b"2,bob", b"q\t1"]
    assert fp.mode == "records" and fp.leaves == 5
    assert fp.root == merkle.root(records).hex()
    assert fp.records == (2, 2, 1)
    assert [f["records"] for f in fp.manifest()["files"]] == [2, 2, 1]
    assert fp.manifest_bytes() == rfc8785.dumps(fp.manifest())
    assert fp.leaf_hashes == b"".join(merkle.leaf_hash(r) for r in records)
    assert fp.schema == {"format": "jsonl", "keys": ["x", "y"], "source": "a.jsonl"}
    # Records do not depend on how the bytes fall into 1 MiB chunks.
    big = b"h\n" + b"".join(b"row%07d\n" % i for i in range(200_000))
    write(tmp_path / "e", {"big.csv": big})
    fp2 = fingerprint(tmp_path / "e" / "big.csv", records=True)
    assert fp2.leaves == 200_000
    assert fp2.root == merkle.root([b"row%07d" % i for i in range(200_000)]).hex()
    assert fp2.schema == {"format": "csv", "columns": ["h"], "source": "big.csv"}


def test_schema_in_files_mode(tmp_path: Path) -> None:
    write(tmp_path / "d", {"x.bin": b"z", "y/t.csv": b'\xef\xbb\xbfa,"b,c"\n1,2\n'})
    assert fingerprint(tmp_path / "d").schema == {
        "format": "csv",
        "columns": ["a", "b,c"],
        "source": "y/t.csv",
    }
    write(tmp_path / "e", {"bad.jsonl": b"not json\n"})
    assert fingerprint(tmp_path / "e").schema is None  # files mode does not judge content


def test_records_mode_refuses_other_files(tmp_path: Path) -> None:
    write(tmp_path / "d", {"a.csv": b"h\n1\n", "notes.txt": b"hi"})
    with pytest.raises(InputError, match=r"notes\.txt: records mode reads only"):
        fingerprint(tmp_path / "d", records=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no CSV/TSV/JSONL files"):
        fingerprint(tmp_path / "empty", records=True)
    write(tmp_path / "j", {"bad.jsonl": b"not json\n"})
    with pytest.raises(InputError, match="first record is not JSON"):
        fingerprint(tmp_path / "j", records=True)


# -- stat cache ---------------------------------------------------------------------------


def test_stat_cache_hits_and_invalidation(tmp_path: Path, reads: list[str]) -> None:
    files = {f"f{i}.bin": bytes([i]) * 100 for i in range(10)}
    write(tmp_path / "d", files)
    cache = cache_in(tmp_path)
    d = tmp_path / "d"
    first = fingerprint(d, cache=cache, racy_window_ns=0)
    assert first.cache_hits == 0

    read = reads
    read.clear()
    again = fingerprint(d, cache=cache, racy_window_ns=0)
    assert (again.cache_hits, again.root, read) == (10, first.root, [])

    # Same size, new content, mtime moved: only that file is read again.
    p = d / "f3.bin"
    st0 = p.stat()
    p.write_bytes(b"\xff" * 100)
    os.utime(p, ns=(st0.st_atime_ns, st0.st_mtime_ns + 5_000_000_000))
    third = fingerprint(d, cache=cache, racy_window_ns=0)
    assert read == ["f3.bin"] and third.cache_hits == 9
    assert third.root == expected_files_root({**files, "f3.bin": b"\xff" * 100})[0]

    # Size change with the mtime put back exactly: size (and ctime) still catch it.
    read.clear()
    st1 = p.stat()
    p.write_bytes(b"\x01" * 101)
    os.utime(p, ns=(st1.st_atime_ns, st1.st_mtime_ns))
    fourth = fingerprint(d, cache=cache, racy_window_ns=0)
    assert read == ["f3.bin"]
    assert fourth.root == expected_files_root({**files, "f3.bin": b"\x01" * 101})[0]


def test_stat_cache_skips_racy_files(tmp_path: Path) -> None:
    write(tmp_path / "d", {"new.bin": b"just written"})
    cache = cache_in(tmp_path)
    fingerprint(tmp_path / "d", cache=cache)  # default window: too fresh to trust
    assert fingerprint(tmp_path / "d", cache=cache).cache_hits == 0


# -- bad input ----------------------------------------------------------------------------


def test_file_changed_while_hashing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "d", {"a.bin": b"x" * 5000, "b.bin": b"y"})
    target = tmp_path / "d" / "a.bin"
    real = fpmod._hash_stream

    def tampering(f: Any, h: Any, rec: Any) -> int:
        n = real(f, h, rec)
        if os.fstat(f.fileno()).st_size == 5000:  # mid-hash of a.bin: a writer appends
            with open(target, "ab") as w:
                w.write(b"more")
        return n

    monkeypatch.setattr(fpmod, "_hash_stream", tampering)
    with pytest.raises(InputError, match=r"a\.bin: changed while hashing"):
        fingerprint(tmp_path / "d", workers=1)


def test_file_replaced_while_hashing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "d", {"a.bin": b"x" * 10})
    target = tmp_path / "d" / "a.bin"
    real = fpmod._hash_stream

    def replacing(f: Any, h: Any, rec: Any) -> int:
        n = real(f, h, rec)
        tmp = target.with_name("new")
        tmp.write_bytes(b"z" * 10)  # same size, new inode
        os.replace(tmp, target)
        return n

    monkeypatch.setattr(fpmod, "_hash_stream", replacing)
    with pytest.raises(InputError, match="changed while hashing"):
        fingerprint(target)


def test_symlinks_followed_and_loops_refused(tmp_path: Path) -> None:
    write(tmp_path / "real", {"x.bin": b"x"})
    d = tmp_path / "d"
    write(d, {"own.bin": b"o"})
    (d / "link.bin").symlink_to(tmp_path / "real" / "x.bin")  # file symlink: followed
    (d / "linked").symlink_to(tmp_path / "real")  # folder symlink: followed once
    fp = fingerprint(d)
    assert (
        fp.root == expected_files_root({"link.bin": b"x", "linked/x.bin": b"x", "own.bin": b"o"})[0]
    )

    (d / "linked" / "back").symlink_to(d)  # now d/linked/back -> d: a loop
    with pytest.raises(InputError, match="folder reached twice"):
        fingerprint(d)
    (d / "linked" / "back").unlink()
    (d / "twice").symlink_to(tmp_path / "real")  # a second way into real/
    with pytest.raises(InputError, match="folder reached twice"):
        fingerprint(d)
    (d / "twice").unlink()
    (d / "self").symlink_to(d / "self")
    with pytest.raises(InputError, match=r"self: symlink loop"):
        fingerprint(d)


def test_unreadable_inputs(tmp_path: Path) -> None:
    # Tests run as root, where chmod 000 does not stop reads, so "unreadable" is
    # exercised with what root cannot hash either: a broken symlink, a FIFO (which
    # must never be opened: that would block), and a missing path.
    with pytest.raises(InputError, match="no such file or folder"):
        fingerprint(tmp_path / "missing")
    d = tmp_path / "d"
    write(d, {"ok.bin": b"1"})
    (d / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(InputError, match=r"dangling: broken symlink"):
        fingerprint(d)
    (d / "dangling").unlink()
    os.mkfifo(d / "pipe")
    with pytest.raises(InputError, match=r"pipe: not a regular file"):
        fingerprint(d)
    with pytest.raises(InputError, match="not a regular file or folder"):
        fingerprint(d / "pipe")


def test_exclude(tmp_path: Path) -> None:
    write(tmp_path / "d", {"a": b"1", "ws/log": b"2"})
    fp = fingerprint(tmp_path / "d", exclude=[tmp_path / "d" / "ws"])
    assert fp.paths == ("a",)


def test_non_utf8_name_refused(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    with open(os.path.join(os.fsencode(d), b"bad\xff.bin"), "wb") as f:
        f.write(b"x")
    with pytest.raises(InputError, match="file names must be valid UTF-8"):
        fingerprint(d)
