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
A whole unchanged tree is recognised by one digest over every file's path and stat
key, and its stored result is reused without touching the per-file rows.

The walk costs one ``stat`` per file, the floor of any re-check that still catches an
in-place edit; past a few thousand files a helper process stats half of the tree
(see :class:`_Helper`), because threads cannot share that work.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import json
import marshal as _marshal
import os
import re
import sqlite3
import stat as statmod
import threading
import time
from array import array
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
# A path ending in one of RECORD_SUFFIXES (ASCII case-insensitive, as record_format
# lowers the suffix) and a NUL, the separator of _files_schema's joined paths.
_TABULAR = re.compile(
    "(?:" + "|".join(re.escape(x) for x in RECORD_SUFFIXES) + ")\0", re.IGNORECASE | re.ASCII
)
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

_TREE_DDL = """
CREATE TABLE IF NOT EXISTS datasets_tree_v1 (
    top TEXT PRIMARY KEY,
    digest BLOB NOT NULL,
    paths BLOB NOT NULL,
    sizes BLOB NOT NULL,
    shas BLOB NOT NULL,
    root TEXT NOT NULL,
    seal BLOB NOT NULL
)
"""

_Key = tuple[int, int, int, int]  # size, mtime_ns, ino, ctime_ns
_Row = tuple[str, int, int, int, int, str]  # path, size, mtime_ns, ino, ctime_ns, sha256


class _Tree(NamedTuple):
    """A whole folder's last files-mode fingerprint and the walk digest it belongs to."""

    digest: bytes
    paths: list[str]
    sizes: list[int]
    shas: list[str]
    root: str


class StatCache:
    """The stat cache in a SQLite file.

    ``datasets_stat_cache``: absolute path → (stat key, sha256), per file.
    ``datasets_tree_v1``: a dataset root → its last files-mode result and the digest
    of the walk that produced it (every path with its size, mtime, inode, ctime and
    device). A walk with the same digest finds exactly the same files with the same
    stat keys, which is what the per-file comparison checks, so the result is reused
    as a whole: no per-file rows to load, no leaves to hash.
    """

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        db.execute(_CACHE_DDL)
        db.execute(_TREE_DDL)
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

    def tree(self, top: str) -> _Tree | None:
        """The stored result for ``top`` (use it only if its digest is the walk's)."""
        row = self._db.execute(
            "SELECT digest, paths, sizes, shas, root, seal FROM datasets_tree_v1 WHERE top = ?",
            (top,),
        ).fetchone()
        if row is None:
            return None
        digest, pblob, sblob, hblob, root, seal = row
        if not isinstance(root, str) or _tree_seal(digest, pblob, sblob, hblob, root) != seal:
            return None  # damaged, or not written by this code: recompute instead
        try:
            paths = bytes(pblob).decode("utf-8").split("\0") if pblob else []
        except UnicodeDecodeError:
            return None
        n = len(paths)
        if len(sblob) != 8 * n or len(hblob) != 32 * n:
            return None  # not written by this code: ignore it
        sizes = array("q")
        sizes.frombytes(sblob)
        # One C call and a split instead of a slice per file.
        shas = bytes(hblob).hex("\n", 32).split("\n") if n else []
        return _Tree(bytes(digest), paths, sizes.tolist(), shas, root)

    def store_tree(self, top: str, t: _Tree) -> None:
        pblob = "\0".join(t.paths).encode("utf-8")  # a file name never holds NUL
        sblob = array("q", t.sizes).tobytes()
        hblob = bytes.fromhex("".join(t.shas))
        with self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO datasets_tree_v1"
                " (top, digest, paths, sizes, shas, root, seal) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (top, t.digest, pblob, sblob, hblob, t.root,
                 _tree_seal(t.digest, pblob, sblob, hblob, t.root)),
            )  # fmt: skip


def _tree_seal(digest: bytes, paths: bytes, sizes: bytes, shas: bytes, root: str) -> bytes:
    # The root is returned without recomputing 100k leaves (that would cost more than the
    # whole re-check): one hash over every stored column catches a damaged or hand-edited
    # row (a few ms). Not a MAC: whoever can write the workspace can forge any cache —
    # the per-file stat cache too. "v1" is the leaf format (datasets_tree_v1 likewise).
    h = hashlib.sha256(b"ailedger-tree-cache/v1\0")
    for part in (bytes(digest), bytes(paths), bytes(sizes), bytes(shas), root.encode()):
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.digest()


# -- walking -----------------------------------------------------------------------------

# One file found by the walk: (relative POSIX path, size, mtime_ns, ino, ctime_ns, dev).
# Plain tuples, as 100,000s are built; the absolute path is ``top + "/" + rel``, because
# the walk joins names and never resolves symlinks.
_File = tuple[str, int, int, int, int, int]
_DirKey = tuple[int, int]  # st_dev, st_ino
# A walk error as data, so a helper process can report it: (kind, path, errno, detail).
_Bad = tuple[str, str, int, str]
# Past this many files with folders still to read, the walk hands half of them to a
# helper process (see _Helper): a bigger tree is worth its ≈ 10 ms start-up.
SPLIT_AFTER_FILES = 4096


def _scan(
    stack: list[tuple[str, str]], skip: set[str], seen: dict[_DirKey, str], budget: int
) -> tuple[list[_File], list[tuple[int, int, str]], _Bad | None]:
    """Read the folders on ``stack`` (absolute, relative-prefix) and everything below.

    Returns after ``budget`` files (``-1``: none) once a folder is done, leaving the rest
    on ``stack``. Stdlib only and no module globals: a helper process runs this very
    source (:func:`inspect.getsource`). One ``stat`` per entry, relative to an open
    folder descriptor (no path lookup from the root), following symlinks like the rest
    of the walk.
    """
    import os
    import stat

    isreg, isdir, st = stat.S_ISREG, stat.S_ISDIR, os.stat
    flags = os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0)
    files: list[_File] = []
    dirs: list[tuple[int, int, str]] = []
    append = files.append
    while stack:
        d, rel = stack.pop()
        try:
            fd = os.open(d, flags)
        except OSError as e:
            return files, dirs, ("dir", d, e.errno or 0, e.strerror or str(e))
        try:
            try:
                names = os.listdir(fd)
            except OSError as e:
                return files, dirs, ("dir", d, e.errno or 0, e.strerror or str(e))
            for name in names:
                try:
                    s = st(name, dir_fd=fd)
                except OSError as e:
                    return files, dirs, ("stat", d + "/" + name, e.errno or 0, e.strerror or "")
                m = s.st_mode
                if isreg(m):
                    if not skip or d + "/" + name not in skip:
                        size, ino, dev = s.st_size, s.st_ino, s.st_dev
                        append((rel + name, size, s.st_mtime_ns, ino, s.st_ctime_ns, dev))
                    continue
                p = d + "/" + name
                if p in skip:
                    continue
                if not isdir(m):
                    return files, dirs, ("special", p, 0, "")
                k = (s.st_dev, s.st_ino)
                if k in seen:
                    return files, dirs, ("twice", p, 0, seen[k])
                seen[k] = p
                dirs.append((k[0], k[1], p))
                stack.append((p, rel + name + "/"))
        finally:
            os.close(fd)
        if 0 <= budget <= len(files) and stack:
            break
    return files, dirs, None


def _walk_error(bad: _Bad) -> InputError:
    kind, path, err, detail = bad
    if kind == "dir":
        return InputError(f"cannot read folder {path}: {detail}")
    if kind == "stat":
        return _stat_error(path, OSError(err, detail))
    if kind == "special":
        return InputError(
            f"{path}: not a regular file (FIFO, socket or device); remove it or"
            " fingerprint a narrower path"
        )
    return InputError(
        f"{path}: folder reached twice (a symlink loop or a second link to"
        f" {detail}); remove the link or fingerprint a narrower path"
    )


_HELPER_MAIN = """
import hashlib, marshal, os, sys
r, w = sys.stdin.buffer, sys.stdout.buffer
def send(obj):
    b = marshal.dumps(obj)
    w.write(len(b).to_bytes(8, "little") + b)
    w.flush()
stack, skip, seen, want_digest = marshal.loads(r.read(int.from_bytes(r.read(8), "little")))
files, dirs, bad = _scan(stack, set(skip), {(a, b): p for a, b, p in seen}, -1)
send((hashlib.sha256(marshal.dumps(files, 0)).digest() if want_digest else b"", dirs, bad))
if r.read(1) == b"f":
    send(files)
os._exit(0)  # skip freeing 100,000s of objects: the parent waits for this exit
"""


class _Helper:
    """A second process that walks part of the tree, so the stats use both cores.

    Threads do not help here: each ``stat`` drops and retakes the GIL, and two threads
    handing it back and forth 100,000s of times run slower than one. A fresh interpreter
    (``-I -S``, stdlib only, ≈ 10 ms to start) runs :func:`_scan` on the folders it is
    given and answers with the digest of its files first, sending the files themselves
    only when asked: an unchanged tree never ships them. Any failure of the helper falls
    back to walking its part in this process.
    """

    _source: str | None = None

    def __init__(
        self, part: list[tuple[str, str]], skip: set[str], seen: dict[_DirKey, str], digest: bool
    ) -> None:
        self.part = list(part)
        src = self._source
        if src is None:
            import inspect

            src = "from __future__ import annotations\n" + inspect.getsource(_scan) + _HELPER_MAIN
            _Helper._source = src
        import subprocess
        import sys

        if not sys.executable:
            raise OSError("no interpreter to start a walk helper with")
        req = _marshal.dumps(
            (part, sorted(skip), [(k[0], k[1], p) for k, p in seen.items()], digest)
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", src],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._in, self._out = self.proc.stdin, self.proc.stdout
        try:
            self._in.write(len(req).to_bytes(8, "little") + req)
            self._in.flush()
        except OSError:
            self.close()
            raise

    def _recv(self) -> Any:
        n = int.from_bytes(self._out.read(8), "little")
        data = self._out.read(n)
        if len(data) != n or n == 0:
            raise OSError("walk helper stopped early")
        return _marshal.loads(data)

    def summary(self) -> tuple[bytes, list[tuple[int, int, str]], _Bad | None]:
        digest, dirs, bad = self._recv()
        return digest, [tuple(x) for x in dirs], None if bad is None else tuple(bad)

    def files(self) -> list[_File]:
        self._in.write(b"f")
        self._in.close()
        files: list[_File] = self._recv()
        return files

    def close(self) -> None:
        if not self._in.closed:
            # Its files were never asked for (an error or a cache hit on our side): stop
            # it rather than wait for it to walk its whole share.
            with contextlib.suppress(OSError):
                self.proc.kill()
        with contextlib.suppress(OSError):
            self._in.close()
        self._out.close()
        # ChildProcessError: a host that ignores SIGCHLD has reaped it already.
        with contextlib.suppress(ChildProcessError):
            self.proc.wait()


class _Walk:
    """Every regular file under a dataset root, in walk order (not yet sorted).

    ``digest`` covers every file's path and stat key, split the same way as the walk
    was; two walks of an unchanged tree give the same digest, and any change to a
    path, size, mtime, ctime, inode or device changes it.
    """

    def __init__(self, top: str, single: bool, skip: set[str]) -> None:
        self.top = top
        self.single = single
        self.skip = skip
        self.files: list[_File] = []
        self.parts: list[bytes] = []  # sha256 of each share's files (marshal version 0)
        self._helper: _Helper | None = None
        self.digest_valid = True

    @property
    def digest(self) -> bytes:
        # Marshal version 0 writes no back-references, so equal lists of (str, int...)
        # tuples give equal bytes, and its type tags and lengths make it unambiguous.
        return hashlib.sha256((b"F" if self.single else b"D") + b"".join(self.parts)).digest()

    def abspath(self, rel: str) -> str:
        return self.top if self.single else self.top + "/" + rel

    def items(self) -> list[_File]:
        """All files sorted by path (fetching the helper's share first)."""
        h = self._helper
        if h is not None:
            self._helper = None
            try:
                self.files += h.files()
            except (OSError, ValueError, EOFError, TypeError):
                # Loops across the two shares were checked from the helper's summary.
                more, _, bad = _scan(list(h.part), self.skip, {}, -1)
                if bad is not None:
                    raise _walk_error(bad) from None
                self.files += more
                # The helper's digest is of ITS walk, not this one: the tree is not stored.
                self.digest_valid = False
            finally:
                h.close()
        out = self.files
        try:
            "".join([f[0] for f in out]).encode("utf-8")
        except UnicodeEncodeError:
            for f in out:
                try:
                    f[0].encode("utf-8")
                except UnicodeEncodeError as e:
                    raise InputError(
                        f"{self.abspath(f[0])!r}: file names must be valid UTF-8"
                    ) from e
        # Code-point order equals UTF-8 byte order for valid (surrogate-free) strings.
        out.sort()
        return out

    def close(self) -> None:
        if self._helper is not None:
            self._helper.close()
            self._helper = None


def _walk(
    root: Path,
    exclude: Sequence[Path],
    *,
    digest: bool = False,
    split: bool = False,
    meanwhile: Callable[[], object] | None = None,
) -> _Walk:
    """Walk ``root`` (following symlinks, refusing loops and special files).

    Past :data:`SPLIT_AFTER_FILES` files, half of the folders still to read form a
    second share; with ``split`` a :class:`_Helper` reads it while this process reads
    the rest. With ``digest``, fill :attr:`_Walk.parts`. ``meanwhile`` runs once this
    process has read its share, while the helper may still be reading.
    """
    top = os.path.abspath(root)
    try:
        st = os.stat(top)
    except OSError as e:
        raise _stat_error(str(root), e) from e
    if statmod.S_ISREG(st.st_mode):
        w = _Walk(top, True, set())
        w.files.append(
            (
                os.path.basename(top),
                st.st_size,
                st.st_mtime_ns,
                st.st_ino,
                st.st_ctime_ns,
                st.st_dev,
            )
        )
        if digest:
            w.parts.append(hashlib.sha256(_marshal.dumps(w.files, 0)).digest())
        return w
    if not statmod.S_ISDIR(st.st_mode):
        raise InputError(f"{root}: not a regular file or folder")
    skip = {os.path.abspath(x) for x in exclude}
    w = _Walk(top, False, skip)
    seen: dict[_DirKey, str] = {(st.st_dev, st.st_ino): str(root)}
    stack: list[tuple[str, str]] = [(top, "")]
    # The tree is cut into two shares the same way whether or not a helper reads one
    # of them, so the digest does not depend on ``split`` (nor on the core count).
    files, _, bad = _scan(stack, skip, seen, SPLIT_AFTER_FILES)
    part: list[tuple[str, str]] = []
    helper: _Helper | None = None
    if bad is None and len(stack) >= 2:
        half = len(stack) // 2
        # The oldest folders (bottom of the stack) are the shallowest: likely the
        # biggest subtrees, which keeps the two shares close in size.
        part, stack[:] = stack[:half], stack[half:]
        if split:
            try:
                helper = w._helper = _Helper(part, skip, seen, digest)
            except (OSError, ValueError, TypeError):  # no source, no interpreter
                helper = None
    try:
        if bad is None:
            more, _, bad = _scan(stack, skip, seen, -1)
            files += more
        w.files = files
        if digest:
            w.parts.append(hashlib.sha256(_marshal.dumps(files, 0)).digest())
        if part and bad is None:
            if meanwhile is not None:
                meanwhile()
            summary = None
            if helper is not None:
                try:
                    summary = helper.summary()
                except (OSError, ValueError, EOFError, TypeError):
                    w.close()  # it failed: read its share here instead
            if summary is None:
                other, _, bad = _scan(part, skip, seen, -1)
                pdigest = hashlib.sha256(_marshal.dumps(other, 0)).digest() if digest else b""
                files += other
            else:
                pdigest, hdirs, bad = summary
                for dev, ino, p in hdirs:
                    if bad is None and (dev, ino) in seen:
                        bad = ("twice", p, 0, seen[(dev, ino)])
            if digest:
                w.parts.append(pdigest)
    except BaseException:
        w.close()  # never leave a helper behind (an interrupt, a bug)
        raise
    if bad is not None:
        w.close()
        raise _walk_error(bad)
    return w


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


# A file to hash: (relative path, absolute path, size at the walk).
_Item = tuple[str, str, int]


def _key(st: os.stat_result) -> _Key:
    return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)


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
    big = sorted((i for i in items if i[2] >= _SMALL), key=lambda i: -i[2])
    out: list[list[_Item]] = [[i] for i in big]
    cur: list[_Item] = []
    size = 0
    for i in items:
        n = i[2]
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
    nworkers = max(1, workers or os.cpu_count() or 1)
    tree_cache = cache is not None and not records
    stored: list[_Tree | None] = []

    def prefetch() -> None:
        if cache is not None:
            stored.append(cache.tree(os.path.abspath(path)))

    w = _walk(Path(path), exclude, digest=tree_cache, split=nworkers > 1, meanwhile=prefetch)
    try:
        if cache is not None and tree_cache:
            # Read while the helper finished its share, when there was one.
            t = stored[0] if stored else cache.tree(w.top)
            if t is not None and t.digest == w.digest:
                # Same files, same stat keys as when this result was stored.
                return Fingerprint(
                    mode="files",
                    root=t.root,
                    leaves=len(t.paths),
                    paths=tuple(t.paths),
                    sizes=tuple(t.sizes),
                    shas=tuple(t.shas),
                    records=None,
                    total_bytes=sum(t.sizes),
                    schema=_files_schema(t.paths, w.abspath),
                    cache_hits=len(t.paths),
                    seconds=time.perf_counter() - t0,
                )
        found = w.items()
    finally:
        w.close()
    n = len(found)
    paths = [f[0] for f in found]
    if records:
        if not found:
            raise InputError(f"{path}: no CSV/TSV/JSONL files to read records from")
        for p in paths:
            if record_format(p) is None:
                raise InputError(
                    f"{w.abspath(p)}: records mode reads only .csv, .tsv, .jsonl and .ndjson"
                    " files; fingerprint without --records, or move it out"
                )
    shas: list[str] = [""] * n
    hits = 0
    todo: list[int] = []
    if cache is not None and found and not records:
        cached = cache.load(w.top if w.single else w.top + os.sep)
        get = cached.get
        top = w.top + "/"
        for i, f in enumerate(found):
            row = get(w.top if w.single else top + f[0])
            # one dict lookup, four int compares: (size, mtime_ns, ino, ctime_ns)
            if row is not None and row[1:5] == f[1:5]:
                shas[i] = row[5]
            else:
                todo.append(i)
        hits = n - len(todo)
    else:
        todo = list(range(n))

    hashed: dict[int, _Hashed] = {}
    if todo:
        pos = {found[i][0]: i for i in todo}

        def work(batch: list[_Item]) -> list[tuple[int, _Hashed]]:
            return [
                (pos[i[0]], _hash_file(i, record_format(i[0]) if records else None)) for i in batch
            ]

        batches = _batches([(found[i][0], w.abspath(found[i][0]), found[i][1]) for i in todo])
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
                (w.abspath(found[i][0]), h.key, h.sha256)
                for i, h in hashed.items()
                if h.key[1] < limit and h.key[3] < limit
            )

    schema: dict[str, Any] | None = None
    leaf_hashes = b""
    recs: list[int] | None = None
    if records:
        recs = []
        chunks: list[bytes] = []
        sizes = []
        for i, p in enumerate(paths):
            h = hashed[i]
            rec = h.records
            assert rec is not None
            chunks.append(b"".join(rec.hashes))
            recs.append(len(rec.hashes))
            sizes.append(h.size)
            fmt = record_format(p)
            if schema is None and fmt is not None:
                schema = _schema(fmt, rec.first, p)
        leaf_hashes = b"".join(chunks)
        root = _root([leaf_hashes[k : k + 32] for k in range(0, len(leaf_hashes), 32)]).hex()
        leaves = len(leaf_hashes) // 32
    else:
        # Sizes come from the bytes actually hashed, or the stat that matched the cache.
        sizes = [f[1] for f in found]
        for i, h in hashed.items():
            sizes[i] = h.size
        root = _root(_file_leaf_hashes(paths, shas, sizes)).hex()
        leaves = n
        schema = _files_schema(paths, w.abspath)
        if cache is not None:
            limit = scan_ns - racy_window_ns
            # Stored only when every file is past the racy window and every file hashed
            # now still had the stat key the walk saw: then the digest describes them.
            if w.digest_valid and all(f[2] < limit and f[4] < limit for f in found) and all(
                h.key == found[i][1:5] for i, h in hashed.items()
            ):
                cache.store_tree(w.top, _Tree(w.digest, paths, sizes, shas, root))
    return Fingerprint(
        mode="records" if records else "files",
        root=root,
        leaves=leaves,
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


def _files_schema(paths: Sequence[str], abspath: Callable[[str], str]) -> dict[str, Any] | None:
    """The first tabular file in path order describes the data (one short read)."""
    # One regex pass over all paths instead of a Python test per path: at 100,000 files
    # that loop alone cost a fifth of an unchanged re-check.
    joined = "\0".join(paths) + "\0"
    pos = 0
    while (m := _TABULAR.search(joined, pos)) is not None:
        p = joined[joined.rfind("\0", 0, m.start()) + 1 : m.end() - 1]
        fmt = record_format(p)
        if fmt is not None:
            return _schema(fmt, _first_line(abspath(p)), p, strict=False)
        pos = m.end()  # a name that is only the suffix (".csv") has none: keep looking
    return None


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
