"""Re-fingerprinting through a warm stat cache: the whole-tree shortcut reuses a result
only while every file's path and stat key are unchanged, and every kind of change is
still caught; the walk split with a helper process gives the same files and digest."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import rfc8785

from ailedger import InputError, merkle
from ailedger._provenance import fingerprint as fpmod
from ailedger._provenance.fingerprint import Fingerprint, StatCache, fingerprint


def expected_root(files: dict[str, bytes]) -> str:
    order = sorted(files, key=lambda p: p.encode("utf-8"))
    return merkle.root(
        [
            rfc8785.dumps(
                {"path": p, "sha256": hashlib.sha256(files[p]).hexdigest(), "size": len(files[p])}
            )
            for p in order
        ]
    ).hex()


def write(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)


def same_result(a: Fingerprint, b: Fingerprint) -> bool:
    """Everything but timings and hit counts."""
    keys = ("mode", "root", "leaves", "paths", "sizes", "shas", "records", "total_bytes", "schema")
    return all(getattr(a, k) == getattr(b, k) for k in keys)


FILES = {f"s{i % 3}/f{i:02d}.bin": bytes([i]) * (10 + i) for i in range(12)} | {
    "top.csv": b"a,b\n1,2\n"
}


def warm(tmp_path: Path, files: dict[str, bytes] = FILES) -> tuple[Path, StatCache]:
    d = tmp_path / "d"
    write(d, files)
    cache = StatCache(sqlite3.connect(tmp_path / "provenance.sqlite"))
    fingerprint(d, cache=cache, racy_window_ns=0)
    return d, cache


def tick() -> None:
    # File timestamps advance by the kernel's clock tick (up to 10 ms); wait past one so
    # the next write gets a new ctime, as any later edit by a user would.
    time.sleep(0.03)


def test_warm_result_equals_cold_and_reads_nothing(tmp_path: Path, reads: list[str]) -> None:
    d, cache = warm(tmp_path)
    reads.clear()
    again = fingerprint(d, cache=cache, racy_window_ns=0)
    cold = fingerprint(d)
    assert reads == sorted(FILES)  # only the cold run read anything
    assert same_result(again, cold) and again.root == expected_root(FILES)
    assert again.cache_hits == len(FILES) and cold.cache_hits == 0
    assert again.schema == {"format": "csv", "columns": ["a", "b"], "source": "top.csv"}
    assert again.manifest_bytes() == cold.manifest_bytes()


def test_edit_with_same_size_and_restored_mtime_is_caught_by_ctime(
    tmp_path: Path, reads: list[str]
) -> None:
    d, cache = warm(tmp_path)
    p = d / "s1" / "f04.bin"
    st0 = p.stat()
    tick()
    p.write_bytes(b"\xee" * st0.st_size)  # same size, same inode
    os.utime(p, ns=(st0.st_atime_ns, st0.st_mtime_ns))  # mtime put back exactly
    st1 = p.stat()
    assert (st1.st_size, st1.st_mtime_ns, st1.st_ino) == (st0.st_size, st0.st_mtime_ns, st0.st_ino)
    assert st1.st_ctime_ns != st0.st_ctime_ns
    reads.clear()
    fp = fingerprint(d, cache=cache, racy_window_ns=0)
    assert reads == ["s1/f04.bin"]
    assert fp.root == expected_root({**FILES, "s1/f04.bin": b"\xee" * st0.st_size})


def test_size_change_with_restored_mtime_is_caught(tmp_path: Path, reads: list[str]) -> None:
    d, cache = warm(tmp_path)
    p = d / "s0" / "f00.bin"
    st0 = p.stat()
    p.write_bytes(b"\x00" * (st0.st_size + 1))
    os.utime(p, ns=(st0.st_atime_ns, st0.st_mtime_ns))
    reads.clear()
    fp = fingerprint(d, cache=cache, racy_window_ns=0)
    assert reads == ["s0/f00.bin"]
    assert fp.root == expected_root({**FILES, "s0/f00.bin": b"\x00" * (st0.st_size + 1)})


def test_rename_add_and_remove_are_caught(tmp_path: Path) -> None:
    d, cache = warm(tmp_path)
    files = dict(FILES)

    os.rename(d / "s2" / "f02.bin", d / "s2" / "g02.bin")  # same inode, new path
    files["s2/g02.bin"] = files.pop("s2/f02.bin")
    fp = fingerprint(d, cache=cache, racy_window_ns=0)
    assert fp.root == expected_root(files) and "s2/g02.bin" in fp.paths

    (d / "s0" / "new.bin").write_bytes(b"added")
    files["s0/new.bin"] = b"added"
    fp = fingerprint(d, cache=cache, racy_window_ns=0)
    assert fp.root == expected_root(files) and fp.leaves == len(files)

    (d / "s1" / "f01.bin").unlink()
    del files["s1/f01.bin"]
    fp = fingerprint(d, cache=cache, racy_window_ns=0)
    assert fp.root == expected_root(files) and "s1/f01.bin" not in fp.paths

    # And back to a state seen before: a fresh cold run agrees with the cached one.
    assert same_result(fingerprint(d, cache=cache, racy_window_ns=0), fingerprint(d))


def test_file_replaced_by_another_inode_is_caught(tmp_path: Path, reads: list[str]) -> None:
    d, cache = warm(tmp_path)
    p = d / "s0" / "f03.bin"
    st0 = p.stat()
    tmp = d / "s0" / "tmp"
    tmp.write_bytes(b"\x07" * st0.st_size)
    os.utime(tmp, ns=(st0.st_atime_ns, st0.st_mtime_ns))
    os.replace(tmp, p)
    reads.clear()
    fp = fingerprint(d, cache=cache, racy_window_ns=0)
    assert reads == ["s0/f03.bin"]
    assert fp.root == expected_root({**FILES, "s0/f03.bin": b"\x07" * st0.st_size})


def test_file_changing_while_hashed_after_a_warm_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d, cache = warm(tmp_path)
    target = d / "s1" / "f07.bin"
    target.write_bytes(b"x" * 5000)
    real = fpmod._hash_stream

    def tampering(f: Any, h: Any, rec: Any) -> int:
        n = real(f, h, rec)
        with open(target, "ab") as w:
            w.write(b"more")
        return n

    monkeypatch.setattr(fpmod, "_hash_stream", tampering)
    with pytest.raises(InputError, match=r"f07\.bin: changed while hashing"):
        fingerprint(d, cache=cache, racy_window_ns=0, workers=1)


def test_racy_tree_is_not_reused(tmp_path: Path, reads: list[str]) -> None:
    write(tmp_path / "d", {"fresh.bin": b"just written"})
    cache = StatCache(sqlite3.connect(tmp_path / "provenance.sqlite"))
    fingerprint(tmp_path / "d", cache=cache)  # default window: too fresh to trust
    reads.clear()
    assert fingerprint(tmp_path / "d", cache=cache).cache_hits == 0
    assert reads == ["fresh.bin"]


def test_foreign_tree_rows_are_ignored(tmp_path: Path) -> None:
    """A damaged or edited row (any column, the root included) is not trusted."""
    d, _ = warm(tmp_path)
    db = sqlite3.connect(tmp_path / "provenance.sqlite")
    for bad in ("sizes = x'00'", "shas = x'00'", "paths = x'ff'", "root = 'not-a-root'",
                "root = '" + "0" * 64 + "'", "seal = x'00'"):
        with db:
            db.execute(f"UPDATE datasets_tree_v1 SET {bad}")
        assert StatCache(db).tree(str(d)) is None
        fp = fingerprint(d, cache=StatCache(db), racy_window_ns=0)
        assert fp.root == expected_root(FILES)  # per-file cache instead, same result


# -- the walk split ------------------------------------------------------------------------


BIG = {f"{i % 7}/{i // 7}/x{i}.bin": b"%d" % i for i in range(60)}


def test_helper_share_gives_the_same_files_and_digest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reads: list[str]
) -> None:
    monkeypatch.setattr(fpmod, "SPLIT_AFTER_FILES", 1)
    started: list[int] = []
    real_init = fpmod._Helper.__init__

    def init(self: Any, *a: Any) -> None:
        real_init(self, *a)
        started.append(len(self.part))

    monkeypatch.setattr(fpmod._Helper, "__init__", init)
    d = tmp_path / "d"
    write(d, BIG)
    alone = fingerprint(d, workers=1)
    assert started == [] and alone.root == expected_root(BIG)
    split = fingerprint(d, workers=2)
    assert started and started[0] >= 1 and same_result(split, alone)

    # A cache filled by one process is hit by two: the digest does not depend on it.
    cache = StatCache(sqlite3.connect(tmp_path / "provenance.sqlite"))
    fingerprint(d, cache=cache, racy_window_ns=0, workers=1)
    reads.clear()
    hit = fingerprint(d, cache=cache, racy_window_ns=0, workers=2)
    assert reads == [] and hit.cache_hits == len(BIG) and same_result(hit, alone)
    # ... and a change inside the helper's share is seen.
    (d / "0" / "0" / "x0.bin").write_bytes(b"changed!")
    changed = fingerprint(d, cache=cache, racy_window_ns=0, workers=2)
    assert reads == ["0/0/x0.bin"]
    assert changed.root == expected_root({**BIG, "0/0/x0.bin": b"changed!"})


def test_helper_share_reports_loops_and_special_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fpmod, "SPLIT_AFTER_FILES", 1)
    d = tmp_path / "d"
    write(d, BIG)
    # Folders 0.. are pushed in listing order; put a trap in every one so whichever
    # share reads it, the error is found.
    for k in range(7):
        (d / str(k) / "back").symlink_to(d)
    for workers in (1, 2):
        with pytest.raises(InputError, match="folder reached twice"):
            fingerprint(d, workers=workers)
    for k in range(7):
        (d / str(k) / "back").unlink()
        os.mkfifo(d / str(k) / "pipe")
    for workers in (1, 2):
        with pytest.raises(InputError, match=r"pipe: not a regular file"):
            fingerprint(d, workers=workers)


def test_helper_that_cannot_start_falls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fpmod, "SPLIT_AFTER_FILES", 1)
    d = tmp_path / "d"
    write(d, BIG)
    want = fingerprint(d, workers=1)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-python"))
    assert same_result(fingerprint(d, workers=2), want)
    monkeypatch.setattr(sys, "executable", "/bin/false")  # starts, then dies at once
    assert same_result(fingerprint(d, workers=2), want)


def test_schema_source_is_the_first_tabular_path(tmp_path: Path) -> None:
    # "a.cſv" (long s) is not ".csv" to record_format; "B.TSV" is, case-insensitively,
    # and it sorts before "c/x.csv".
    write(tmp_path / "d", {"a.cſv": b"no,no\n", "B.TSV": b"k\tv\n", "c/x.csv": b"x\n", "z": b""})
    assert fingerprint(tmp_path / "d").schema == {
        "format": "tsv",
        "columns": ["k", "v"],
        "source": "B.TSV",
    }
    assert fpmod._files_schema(["a.cſv", "b.jsonl.bak"], str) is None


def test_schema_skips_a_file_named_only_by_the_suffix(tmp_path: Path) -> None:
    """`.csv` has no suffix (it is a hidden file's name): the schema comes from b.csv."""
    d = tmp_path / "d"
    d.mkdir()
    (d / ".csv").write_text("x,y\n1,2\n")
    (d / "b.csv").write_text("a,b\n1,2\n")
    fp = fpmod.fingerprint(d)
    assert fp.schema == {"format": "csv", "columns": ["a", "b"], "source": "b.csv"}
