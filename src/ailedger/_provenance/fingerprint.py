"""Dataset fingerprints: an RFC 9162 Merkle root over a file or folder (DESIGN §5).

Two modes, both defined by ``types.py``:

- **files**: one leaf per file, the RFC 8785 JSON of ``{"path", "sha256", "size"}``;
- **records**: one leaf per record of the CSV/TSV/JSONL files (a line without its line
  ending; a CSV/TSV header line and empty lines are not records).

Leaves follow the files in path order: POSIX paths relative to the dataset root,
sorted by their UTF-8 bytes (a single file's path is its base name).

Files are hashed in 1 MiB chunks (memory stays flat whatever their size) on a thread
pool: ``hashlib`` releases the GIL on buffers over 2 KiB, and so do ``read`` and
``stat``, so threads use every core without pickling data between processes. Small
files are batched per task so the pool's per-task cost does not dominate.

Unchanged files are not read again: a stat cache keyed by absolute path remembers
``(size, mtime_ns, ino, ctime_ns) -> sha256``. A file whose timestamps are within
``racy_window_ns`` of the scan is hashed but not cached, because a write in the
same timestamp tick would leave its stat unchanged (git's "racily clean" problem).
"""

from __future__ import annotations

import csv
import errno
import hashlib
import json
import os
import sqlite3
import stat as statmod
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rfc8785

from ..errors import InputError
from ..merkle import EMPTY_ROOT, leaf_hash, node_hash

__all__ = [
    "CHUNK",
    "MODES",
    "RECORD_SUFFIXES",
    "FileEntry",
    "Fingerprint",
    "StatCache",
    "file_leaf",
    "fingerprint",
    "iter_records",
    "manifest_bytes",
    "record_format",
]

CHUNK = 1 << 20
MODES = ("files", "records")
# Records mode decides the format by the file name: what the suffix says is what the
# file is declared to be. Anything else is refused rather than guessed.
RECORD_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
_SMALL = 1 << 20  # files below this are batched per task
_BATCH_FILES = 256
_BATCH_BYTES = 8 << 20
RACY_WINDOW_NS = 1_000_000_000


@dataclass(frozen=True)
class FileEntry:
    """One file of a dataset: its manifest line."""

    path: str
    size: int
    sha256: str
    records: int | None = None

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"path": self.path, "sha256": self.sha256, "size": self.size}
        if self.records is not None:
            d["records"] = self.records
        return d


@dataclass(frozen=True)
class Fingerprint:
    """The result of fingerprinting a file or folder."""

    mode: str
    root: str  # hex
    leaves: int
    files: tuple[FileEntry, ...]
    total_bytes: int
    schema: dict[str, Any] | None
    cache_hits: int = 0
    seconds: float = 0.0
    # records mode: the concatenated 32-byte leaf hashes, in leaf order
    leaf_hashes: bytes = field(default=b"", repr=False)

    def manifest(self) -> dict[str, Any]:
        return {"version": 1, "mode": self.mode, "files": [f.as_dict() for f in self.files]}

    def manifest_bytes(self) -> bytes:
        return manifest_bytes(self.manifest())


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    """The stored form of a manifest: RFC 8785 canonical JSON."""
    return bytes(rfc8785.dumps(manifest))


def file_leaf(path: str, sha256: str, size: int) -> bytes:
    """Files-mode leaf: the RFC 8785 JSON of ``{"path", "sha256", "size"}``.

    Built by hand because it runs once per file: keys are already in RFC 8785 order,
    and ``json.dumps(ensure_ascii=False)`` escapes a string exactly as RFC 8785 does
    (``\\"``, ``\\\\``, ``\\b\\f\\n\\r\\t``, other controls as lowercase ``\\u00xx``).
    """
    try:
        p = json.dumps(path, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as e:
        raise InputError(f"{path!r}: file names must be valid UTF-8") from e
    return b'{"path":' + p + b',"sha256":"' + sha256.encode() + b'","size":' + b"%d}" % size


def record_format(path: str) -> str | None:
    """``csv``, ``tsv`` or ``jsonl`` from the file name's suffix; None for other files."""
    return RECORD_SUFFIXES.get(os.path.splitext(path)[1].lower())


# -- stat cache --------------------------------------------------------------------------

_CACHE_DDL = """
CREATE TABLE IF NOT EXISTS datasets_stat_cache (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL,
    sha256 TEXT NOT NULL
) WITHOUT ROWID
"""

_Key = tuple[int, int, int, int]  # size, mtime_ns, ino, ctime_ns


class StatCache:
    """``datasets_stat_cache`` in a SQLite file: absolute path → (stat key, sha256)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        db.execute(_CACHE_DDL)
        db.commit()

    def load(self, prefix: str) -> dict[str, tuple[_Key, str]]:
        """Every entry at or under ``prefix`` in one query (a primary-key range scan)."""
        if prefix.endswith(os.sep):
            lo, hi = prefix, prefix[:-1] + chr(ord(os.sep) + 1)
            rows = self._db.execute(
                "SELECT path, size, mtime_ns, ino, ctime_ns, sha256 FROM datasets_stat_cache"
                " WHERE path >= ? AND path < ?",
                (lo, hi),
            )
        else:
            rows = self._db.execute(
                "SELECT path, size, mtime_ns, ino, ctime_ns, sha256 FROM datasets_stat_cache"
                " WHERE path = ?",
                (prefix,),
            )
        return {r[0]: ((r[1], r[2], r[3], r[4]), r[5]) for r in rows}

    def store(self, rows: Iterable[tuple[str, _Key, str]]) -> None:
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO datasets_stat_cache"
                " (path, size, mtime_ns, ino, ctime_ns, sha256) VALUES (?, ?, ?, ?, ?, ?)",
                ((p, k[0], k[1], k[2], k[3], h) for p, k, h in rows),
            )


def _key(st: os.stat_result) -> _Key:
    return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)


# -- walking -----------------------------------------------------------------------------


@dataclass
class _Item:
    rel: str
    abspath: str
    st: os.stat_result


def _walk(root: Path, exclude: Sequence[Path]) -> list[_Item]:
    """Every regular file under ``root``, following symlinks, refusing loops."""
    top = os.path.abspath(root)
    try:
        st = os.stat(top)
    except OSError as e:
        raise _stat_error(str(root), e) from e
    if statmod.S_ISREG(st.st_mode):
        return [_Item(os.path.basename(top), top, st)]
    if not statmod.S_ISDIR(st.st_mode):
        raise InputError(f"{root}: not a regular file or folder")
    skip = {os.path.abspath(x) for x in exclude}
    seen: dict[tuple[int, int], str] = {(st.st_dev, st.st_ino): str(root)}
    out: list[_Item] = []
    stack: list[tuple[str, str]] = [(top, "")]
    while stack:
        d, rel = stack.pop()
        try:
            entries = list(os.scandir(d))
        except OSError as e:
            raise InputError(f"cannot read folder {d}: {e.strerror}") from e
        for ent in entries:
            p = ent.path
            r = f"{rel}{ent.name}"
            if p in skip:
                continue
            try:
                est = ent.stat(follow_symlinks=True)
            except OSError as e:
                raise _stat_error(p, e) from e
            if statmod.S_ISDIR(est.st_mode):
                k = (est.st_dev, est.st_ino)
                if k in seen:
                    raise InputError(
                        f"{p}: folder reached twice (a symlink loop or a second link to"
                        f" {seen[k]}); remove the link or fingerprint a narrower path"
                    )
                seen[k] = p
                stack.append((p, r + "/"))
            elif statmod.S_ISREG(est.st_mode):
                out.append(_Item(r, p, est))
            else:
                raise InputError(
                    f"{p}: not a regular file (FIFO, socket or device); remove it or"
                    " fingerprint a narrower path"
                )
    for it in out:
        try:
            it.rel.encode("utf-8")
        except UnicodeEncodeError as e:
            raise InputError(f"{it.abspath!r}: file names must be valid UTF-8") from e
    # Code-point order equals UTF-8 byte order for valid (surrogate-free) strings.
    out.sort(key=lambda it: it.rel)
    return out


def _stat_error(path: str, e: OSError) -> InputError:
    if e.errno == errno.ELOOP:
        return InputError(f"{path}: symlink loop")
    if e.errno == errno.ENOENT:
        if os.path.islink(path):
            return InputError(f"{path}: broken symlink (its target does not exist)")
        return InputError(f"{path}: no such file or folder")
    return InputError(f"cannot read {path}: {e.strerror}")


# -- hashing -----------------------------------------------------------------------------


class _Records:
    """Splits a byte stream into records and leaf-hashes them as it goes."""

    def __init__(self, fmt: str) -> None:
        self.header = fmt in ("csv", "tsv")
        self.first: bytes | None = None  # header (csv/tsv) or first record (jsonl)
        self.hashes: list[bytes] = []
        self._tail = b""

    def feed(self, data: bytes) -> None:
        buf = self._tail + data if self._tail else data
        lines = buf.split(b"\n")
        self._tail = lines.pop()
        for line in lines:
            self._line(line)

    def close(self) -> None:
        if self._tail:
            self._line(self._tail)
            self._tail = b""

    def _line(self, line: bytes) -> None:
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line:
            return
        if self.first is None:
            self.first = line
            if self.header:
                return
        self.hashes.append(hashlib.sha256(b"\x00" + line).digest())


def iter_records(data: bytes, fmt: str) -> Iterator[bytes]:
    """The records of one file's bytes, exactly as records mode counts them."""
    header = fmt in ("csv", "tsv")
    first = True
    for line in data.split(b"\n"):
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line:
            continue
        if first:
            first = False
            if header:
                continue
        yield line


@dataclass
class _Hashed:
    sha256: str
    size: int
    key: _Key
    records: _Records | None = None


_local = threading.local()


def _buffer() -> memoryview:
    buf: memoryview | None = getattr(_local, "buf", None)
    if buf is None:
        buf = memoryview(bytearray(CHUNK))
        _local.buf = buf
    return buf


def _hash_stream(f: Any, h: Any, rec: _Records | None) -> int:
    """Read ``f`` to the end in 1 MiB chunks into ``h`` (and ``rec``); return bytes read."""
    buf = _buffer()
    total = 0
    while True:
        n = f.readinto(buf)
        if not n:
            return total
        chunk = buf[:n]
        h.update(chunk)
        if rec is not None:
            rec.feed(bytes(chunk))
        total += n


def _hash_file(it: _Item, fmt: str | None) -> _Hashed:
    try:
        f = open(it.abspath, "rb", buffering=0)  # noqa: SIM115 - closed below
    except OSError as e:
        raise _stat_error(it.abspath, e) from e
    try:
        before = os.fstat(f.fileno())
        if not statmod.S_ISREG(before.st_mode):
            raise InputError(f"{it.abspath}: not a regular file")
        h = hashlib.sha256()
        rec = _Records(fmt) if fmt is not None else None
        try:
            n = _hash_stream(f, h, rec)
        except OSError as e:
            raise InputError(f"cannot read {it.abspath}: {e.strerror}") from e
    finally:
        f.close()
    try:
        after = os.stat(it.abspath)
    except OSError as e:
        raise InputError(f"{it.abspath}: changed while hashing (it is gone now)") from e
    if n != before.st_size or _key(after)[:3] != _key(before)[:3]:
        raise InputError(
            f"{it.abspath}: changed while hashing (size, mtime or inode differ);"
            " fingerprint it again once nothing writes to it"
        )
    if rec is not None:
        rec.close()
    return _Hashed(h.hexdigest(), n, _key(before), rec)


def _batches(items: list[_Item]) -> list[list[_Item]]:
    big = sorted((i for i in items if i.st.st_size >= _SMALL), key=lambda i: -i.st.st_size)
    out: list[list[_Item]] = [[i] for i in big]
    cur: list[_Item] = []
    size = 0
    for i in items:
        if i.st.st_size >= _SMALL:
            continue
        cur.append(i)
        size += i.st.st_size
        if len(cur) >= _BATCH_FILES or size >= _BATCH_BYTES:
            out.append(cur)
            cur, size = [], 0
    if cur:
        out.append(cur)
    return out


# -- schema ------------------------------------------------------------------------------


def _schema(fmt: str, first: bytes | None, path: str, strict: bool = True) -> dict[str, Any] | None:
    if first is None:
        return None
    try:
        text = first.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None
    if fmt in ("csv", "tsv"):
        try:
            row = next(csv.reader([text], delimiter="\t" if fmt == "tsv" else ","))
        except (csv.Error, StopIteration):
            return None
        return {"format": fmt, "columns": row, "source": path}
    try:
        obj = json.loads(text)
    except ValueError as e:
        if not strict:
            return None
        raise InputError(f"{path}: the first record is not JSON ({e})") from e
    if not isinstance(obj, dict):
        return None
    return {"format": "jsonl", "keys": list(obj), "source": path}


def _first_line(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
    except OSError:
        return None
    for line in head.split(b"\n")[:-1] if b"\n" in head else [head]:
        line = line.rstrip(b"\r")
        if line:
            return line
    return None


# -- the fingerprint ---------------------------------------------------------------------


class _RootBuilder:
    """RFC 9162 root over leaf hashes fed in order, in O(log n) memory."""

    def __init__(self) -> None:
        self._stack: list[tuple[int, bytes]] = []
        self.count = 0

    def add(self, h: bytes) -> None:
        height = 0
        st = self._stack
        while st and st[-1][0] == height:
            h = node_hash(st.pop()[1], h)
            height += 1
        st.append((height, h))
        self.count += 1

    def root(self) -> bytes:
        if not self._stack:
            return EMPTY_ROOT
        acc = self._stack[-1][1]
        for _, h in reversed(self._stack[:-1]):
            acc = node_hash(h, acc)
        return acc


def fingerprint(
    path: str | os.PathLike[str],
    *,
    records: bool = False,
    cache: StatCache | None = None,
    workers: int | None = None,
    exclude: Sequence[Path] = (),
    racy_window_ns: int = RACY_WINDOW_NS,
    progress: Callable[[int], None] | None = None,
) -> Fingerprint:
    """Fingerprint a file or folder.

    @param path      a regular file or a folder (symlinks to files and folders are followed)
    @param records   records mode: one leaf per CSV/TSV/JSONL record instead of per file
    @param cache     stat cache; unchanged files are not read again (files mode)
    @param workers   hashing threads (default: the number of cores)
    @param exclude   paths to leave out (the workspace, when it sits inside the dataset)
    @return the manifest entries, root, counts and schema
    @raise InputError on a missing or unreadable path, a symlink loop, a non-regular
           file, a file changing while hashed, or (records mode) a file of another format
    """
    t0 = time.perf_counter()
    scan_ns = time.time_ns()
    root_path = Path(path)
    items = _walk(root_path, exclude)
    fmts: list[str | None] = [record_format(i.rel) for i in items]
    if records:
        if not items:
            raise InputError(f"{path}: no CSV/TSV/JSONL files to read records from")
        for it, fmt in zip(items, fmts, strict=True):
            if fmt is None:
                raise InputError(
                    f"{it.abspath}: records mode reads only .csv, .tsv, .jsonl and .ndjson"
                    " files; fingerprint without --records, or move it out"
                )
    results: dict[str, _Hashed] = {}
    hits = 0
    cached: dict[str, tuple[_Key, str]] = {}
    if cache is not None and items:
        top = os.path.abspath(root_path)
        cached = cache.load(top + os.sep if os.path.isdir(top) else top)
    todo: list[_Item] = []
    for it in items:
        c = cached.get(it.abspath)
        if not records and c is not None and c[0] == _key(it.st):
            results[it.abspath] = _Hashed(c[1], it.st.st_size, c[0])
            hits += 1
        else:
            todo.append(it)
    fmt_of = dict(zip((i.abspath for i in items), fmts, strict=True))

    def work(batch: list[_Item]) -> list[tuple[str, _Hashed]]:
        return [(i.abspath, _hash_file(i, fmt_of[i.abspath] if records else None)) for i in batch]

    nworkers = max(1, workers or os.cpu_count() or 1)
    batches = _batches(todo)
    if nworkers == 1 or len(batches) <= 1:
        done = [work(b) for b in batches]
    else:
        with ThreadPoolExecutor(nworkers, thread_name_prefix="ailedger-hash") as pool:
            done = list(pool.map(work, batches))
    for part in done:
        for p, r in part:
            results[p] = r
            if progress is not None:
                progress(1)
    if cache is not None and todo:
        fresh = [
            (i.abspath, results[i.abspath].key, results[i.abspath].sha256)
            for i in todo
            if max(results[i.abspath].key[1], results[i.abspath].key[3]) < scan_ns - racy_window_ns
        ]
        cache.store(fresh)

    builder = _RootBuilder()
    entries: list[FileEntry] = []
    leaf_hashes: list[bytes] = []
    total = 0
    schema: dict[str, Any] | None = None
    for it, fmt in zip(items, fmts, strict=True):
        r = results[it.abspath]
        total += r.size
        if records:
            rec = r.records
            assert rec is not None
            for h in rec.hashes:
                builder.add(h)
            leaf_hashes.extend(rec.hashes)
            entries.append(FileEntry(it.rel, r.size, r.sha256, len(rec.hashes)))
            if schema is None and fmt is not None:
                schema = _schema(fmt, rec.first, it.rel)
        else:
            builder.add(leaf_hash(file_leaf(it.rel, r.sha256, r.size)))
            entries.append(FileEntry(it.rel, r.size, r.sha256))
    if not records:
        # The first tabular file in path order describes the data (one short read).
        for it, fmt in zip(items, fmts, strict=True):
            if fmt is not None:
                schema = _schema(fmt, _first_line(it.abspath), it.rel, strict=False)
                break
    return Fingerprint(
        mode="records" if records else "files",
        root=builder.root().hex(),
        leaves=builder.count,
        files=tuple(entries),
        total_bytes=total,
        schema=schema,
        cache_hits=hits,
        seconds=time.perf_counter() - t0,
        leaf_hashes=b"".join(leaf_hashes),
    )
