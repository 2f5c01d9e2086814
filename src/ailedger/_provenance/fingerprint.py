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
from typing import Any, NamedTuple

import rfc8785

from ..errors import InputError
from ..merkle import EMPTY_ROOT

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


class FileEntry(NamedTuple):
    """One file of a dataset: its manifest line (a NamedTuple: 100,000s are built)."""

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
    # Parallel columns rather than one object per file: building 100,000s of small
    # objects would cost as much as the stat cache saves. ``files`` builds them on demand.
    paths: tuple[str, ...]
    sizes: tuple[int, ...]
    shas: tuple[str, ...]
    records: tuple[int, ...] | None  # per-file record counts (records mode)
    total_bytes: int
    schema: dict[str, Any] | None
    cache_hits: int = 0
    seconds: float = 0.0
    # records mode: the concatenated 32-byte leaf hashes, in leaf order
    leaf_hashes: bytes = field(default=b"", repr=False)

    @property
    def file_count(self) -> int:
        return len(self.paths)

    @property
    def files(self) -> tuple[FileEntry, ...]:
        recs: Iterable[int | None] = self.records or [None] * len(self.paths)
        return tuple(map(FileEntry, self.paths, self.sizes, self.shas, recs))

    def manifest(self) -> dict[str, Any]:
        return {"version": 1, "mode": self.mode, "files": [f.as_dict() for f in self.files]}

    def manifest_bytes(self) -> bytes:
        """RFC 8785 JSON of :meth:`manifest`, built directly (a test pins it to rfc8785)."""
        recs: Iterable[int | None] = self.records or [None] * len(self.paths)
        parts = [
            b'{"path":' + _json_str(p)
            + (b"" if r is None else b',"records":%d' % r)
            + b',"sha256":"' + h.encode() + b'","size":' + b"%d}" % n
            for p, n, h, r in zip(self.paths, self.sizes, self.shas, recs, strict=True)
        ]  # fmt: skip
        return (
            b'{"files":[' + b",".join(parts) + b'],"mode":' + _json_str(self.mode)
            + b',"version":1}'
        )  # fmt: skip


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    """The stored form of any manifest object: RFC 8785 canonical JSON."""
    return bytes(rfc8785.dumps(manifest))


def _json_str(s: str) -> bytes:
    # RFC 8785 strings: only '"', '\\' and controls are escaped; json.dumps with
    # ensure_ascii=False escapes exactly those, the same way (lowercase \u00xx).
    if '"' not in s and "\\" not in s and s.isprintable():
        b = s.encode("utf-8", "strict") if not s.isascii() else s.encode()
        return b'"' + b + b'"'
    return json.dumps(s, ensure_ascii=False).encode("utf-8")


def file_leaf(path: str, sha256: str, size: int) -> bytes:
    """Files-mode leaf: the RFC 8785 JSON of ``{"path", "sha256", "size"}``.

    Built by hand because it runs once per file: keys are already in RFC 8785 order,
    and ``json.dumps(ensure_ascii=False)`` escapes a string exactly as RFC 8785 does
    (``\\"``, ``\\\\``, ``\\b\\f\\n\\r\\t``, other controls as lowercase ``\\u00xx``).
    """
    try:
        p = _json_str(path)
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
_Row = tuple[str, int, int, int, int, str]  # path, size, mtime_ns, ino, ctime_ns, sha256


class StatCache:
    """``datasets_stat_cache`` in a SQLite file: absolute path → (stat key, sha256)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        db.execute(_CACHE_DDL)
        db.commit()

    def load(self, prefix: str) -> dict[str, _Row]:
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
        return {r[0]: r for r in rows}

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

# (relative POSIX path, absolute path, stat): plain tuples, as 100,000s are built.
_Item = tuple[str, str, os.stat_result]


def _walk(root: Path, exclude: Sequence[Path]) -> list[_Item]:
    """Every regular file under ``root``, following symlinks, refusing loops."""
    top = os.path.abspath(root)
    try:
        st = os.stat(top)
    except OSError as e:
        raise _stat_error(str(root), e) from e
    if statmod.S_ISREG(st.st_mode):
        return [(os.path.basename(top), top, st)]
    if not statmod.S_ISDIR(st.st_mode):
        raise InputError(f"{root}: not a regular file or folder")
    skip = {os.path.abspath(x) for x in exclude}
    seen: dict[tuple[int, int], str] = {(st.st_dev, st.st_ino): str(root)}
    out: list[_Item] = []
    append = out.append
    isreg = statmod.S_ISREG
    stack: list[tuple[str, str]] = [(top, "")]
    while stack:
        d, rel = stack.pop()
        try:
            with os.scandir(d) as it:
                entries = list(it)
        except OSError as e:
            raise InputError(f"cannot read folder {d}: {e.strerror}") from e
        for ent in entries:
            try:
                est = ent.stat()  # follows symlinks
            except OSError as e:
                raise _stat_error(ent.path, e) from e
            if isreg(est.st_mode):
                p = ent.path
                if p not in skip:
                    append((rel + ent.name, p, est))
                continue
            p = ent.path
            if p in skip:
                continue
            if statmod.S_ISDIR(est.st_mode):
                k = (est.st_dev, est.st_ino)
                if k in seen:
                    raise InputError(
                        f"{p}: folder reached twice (a symlink loop or a second link to"
                        f" {seen[k]}); remove the link or fingerprint a narrower path"
                    )
                seen[k] = p
                stack.append((p, rel + ent.name + "/"))
            else:
                raise InputError(
                    f"{p}: not a regular file (FIFO, socket or device); remove it or"
                    " fingerprint a narrower path"
                )
    try:
        "".join([i[0] for i in out]).encode("utf-8")
    except UnicodeEncodeError:
        for i in out:
            try:
                i[0].encode("utf-8")
            except UnicodeEncodeError as e:
                raise InputError(f"{i[1]!r}: file names must be valid UTF-8") from e
    # Code-point order equals UTF-8 byte order for valid (surrogate-free) strings.
    out.sort(key=lambda i: i[0])
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
    path = it[1]
    try:
        f = open(path, "rb", buffering=0)  # noqa: SIM115 - closed below
    except OSError as e:
        raise _stat_error(path, e) from e
    try:
        before = os.fstat(f.fileno())
        if not statmod.S_ISREG(before.st_mode):
            raise InputError(f"{path}: not a regular file")
        h = hashlib.sha256()
        rec = _Records(fmt) if fmt is not None else None
        try:
            n = _hash_stream(f, h, rec)
        except OSError as e:
            raise InputError(f"cannot read {path}: {e.strerror}") from e
    finally:
        f.close()
    try:
        after = os.stat(path)
    except OSError as e:
        raise InputError(f"{path}: changed while hashing (it is gone now)") from e
    if n != before.st_size or _key(after)[:3] != _key(before)[:3]:
        raise InputError(
            f"{path}: changed while hashing (size, mtime or inode differ);"
            " fingerprint it again once nothing writes to it"
        )
    if rec is not None:
        rec.close()
    return _Hashed(h.hexdigest(), n, _key(before), rec)


def _batches(items: list[_Item]) -> list[list[_Item]]:
    big = sorted((i for i in items if i[2].st_size >= _SMALL), key=lambda i: -i[2].st_size)
    out: list[list[_Item]] = [[i] for i in big]
    cur: list[_Item] = []
    size = 0
    for i in items:
        n = i[2].st_size
        if n >= _SMALL:
            continue
        cur.append(i)
        size += n
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
    n = len(items)
    if records:
        if not items:
            raise InputError(f"{path}: no CSV/TSV/JSONL files to read records from")
        for it in items:
            if record_format(it[0]) is None:
                raise InputError(
                    f"{it[1]}: records mode reads only .csv, .tsv, .jsonl and .ndjson"
                    " files; fingerprint without --records, or move it out"
                )
    shas: list[str] = [""] * n
    hits = 0
    todo: list[int] = []
    if cache is not None and items and not records:
        top = os.path.abspath(root_path)
        cached = cache.load(top + os.sep if os.path.isdir(top) else top)
        get = cached.get
        for i, (_, ap, st) in enumerate(items):
            row = get(ap)
            # the hot loop of a re-fingerprint: one dict lookup, four int compares
            if (
                row is not None
                and row[1] == st.st_size
                and row[2] == st.st_mtime_ns
                and row[3] == st.st_ino
                and row[4] == st.st_ctime_ns
            ):
                shas[i] = row[5]
            else:
                todo.append(i)
        hits = n - len(todo)
    else:
        todo = list(range(n))

    hashed: dict[int, _Hashed] = {}
    if todo:
        pos = {items[i][1]: i for i in todo}

        def work(batch: list[_Item]) -> list[tuple[int, _Hashed]]:
            return [
                (pos[i[1]], _hash_file(i, record_format(i[0]) if records else None)) for i in batch
            ]

        nworkers = max(1, workers or os.cpu_count() or 1)
        batches = _batches([items[i] for i in todo])
        if nworkers == 1 or len(batches) <= 1:
            done = [work(b) for b in batches]
        else:
            with ThreadPoolExecutor(nworkers, thread_name_prefix="ailedger-hash") as pool:
                done = list(pool.map(work, batches))
        for part in done:
            for i, h in part:
                hashed[i] = h
                shas[i] = h.sha256
            if progress is not None:
                progress(len(part))
        if cache is not None:
            limit = scan_ns - racy_window_ns
            cache.store(
                (items[i][1], h.key, h.sha256)
                for i, h in hashed.items()
                if h.key[1] < limit and h.key[3] < limit
            )

    schema: dict[str, Any] | None = None
    leaf_hashes = b""
    paths = [it[0] for it in items]
    recs: list[int] | None = None
    if records:
        recs = []
        chunks: list[bytes] = []
        sizes = []
        for i, it in enumerate(items):
            h = hashed[i]
            rec = h.records
            assert rec is not None
            chunks.append(b"".join(rec.hashes))
            recs.append(len(rec.hashes))
            sizes.append(h.size)
            fmt = record_format(it[0])
            if schema is None and fmt is not None:
                schema = _schema(fmt, rec.first, it[0])
        leaf_hashes = b"".join(chunks)
        hashes = [leaf_hashes[k : k + 32] for k in range(0, len(leaf_hashes), 32)]
    else:
        # Sizes come from the bytes actually hashed, or the stat that matched the cache.
        sizes = [it[2].st_size for it in items]
        for i, h in hashed.items():
            sizes[i] = h.size
        hashes = _file_leaf_hashes(paths, shas, sizes)
        # The first tabular file in path order describes the data (one short read).
        suffixes = tuple(RECORD_SUFFIXES)
        for it in items:
            if it[0][-7:].lower().endswith(suffixes):
                fmt = record_format(it[0])
                if fmt is not None:
                    schema = _schema(fmt, _first_line(it[1]), it[0], strict=False)
                    break
    return Fingerprint(
        mode="records" if records else "files",
        root=_root(hashes).hex(),
        leaves=len(hashes),
        paths=tuple(paths),
        sizes=tuple(sizes),
        shas=tuple(shas),
        records=None if recs is None else tuple(recs),
        total_bytes=sum(sizes),
        schema=schema,
        cache_hits=hits,
        seconds=time.perf_counter() - t0,
        leaf_hashes=leaf_hashes,
    )


def _file_leaf_hashes(paths: list[str], shas: list[str], sizes: list[int]) -> list[bytes]:
    """Leaf hashes of files-mode leaves, equal to ``leaf_hash(file_leaf(...))`` each."""
    sha = hashlib.sha256
    joined = "".join(paths)
    if joined.isascii() and joined.isprintable() and '"' not in joined and "\\" not in joined:
        # No path needs escaping: format all leaves directly (most datasets).
        return [
            sha(b"\x00" + f'{{"path":"{p}","sha256":"{h}","size":{n}}}'.encode()).digest()
            for p, h, n in zip(paths, shas, sizes, strict=True)
        ]
    return [
        sha(b"\x00" + file_leaf(p, h, n)).digest()
        for p, h, n in zip(paths, shas, sizes, strict=True)
    ]


def _root(hashes: list[bytes]) -> bytes:
    """RFC 9162 root over leaf hashes, level by level.

    Pairing neighbours and carrying an odd last node up unchanged gives the same tree
    as RFC 9162's split at the largest power of two below n (every left subtree is
    complete), and runs as one comprehension per level instead of a Python loop per
    node. Tests pin it to :func:`ailedger.merkle.root_from_leaf_hashes`.
    """
    if not hashes:
        return EMPTY_ROOT
    sha = hashlib.sha256
    level = hashes
    while len(level) > 1:
        nxt = [
            sha(b"\x01" + a + b).digest() for a, b in zip(level[0::2], level[1::2], strict=False)
        ]
        if len(level) & 1:
            nxt.append(level[-1])
        level = nxt
    return level[0]
