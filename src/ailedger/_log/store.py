"""The RFC 9162 Merkle log, stored in one SQLite file.

Layout (all in one database, so one transaction covers an append):

- ``entries(idx, leaf, data)``: entry bytes and their RFC 9162 leaf hash;
- ``nodes(id, hash)``: every *full* interior subtree hash, ``id = level << 50 | index``
  (level ≥ 1). A proof or a historical root is then O(log n) point reads;
- ``checkpoints(size, root, note)``: every signed checkpoint ever issued, so
  proofs are only served against a checkpoint that exists;
- ``meta``: origin and format version.

Durability: WAL with ``synchronous=FULL``; an index is returned only after the
transaction holding its entry and every node it completes has committed, so a
crash (even SIGKILL) loses nothing that was acknowledged and leaves no partial
batch. Appends take SQLite's write lock (``BEGIN IMMEDIATE``), so two processes
appending to one log serialise instead of corrupting it.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .. import merkle
from ..errors import InputError, LogError, NotFoundError, VerificationError
from .note import Checkpoint, Verifier, open_checkpoint

MAX_ENTRY = 64 * 1024
_LEVEL_SHIFT = 50
_FORMAT = "ailedger-log/v1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entries(idx INTEGER PRIMARY KEY, leaf BLOB NOT NULL, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS nodes(id INTEGER PRIMARY KEY, hash BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoints(
    size INTEGER PRIMARY KEY, root BLOB NOT NULL, note TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS witnesses(size INTEGER PRIMARY KEY, ref TEXT NOT NULL);
"""

Signer = Callable[[str], str]  # checkpoint text -> signed note


def _nid(level: int, index: int) -> int:
    return (level << _LEVEL_SHIFT) | index


def _pow2_ranges(lo: int, hi: int) -> list[tuple[int, int]]:
    """Split [lo, hi) into maximal aligned power-of-two subtrees, left to right: (level, index)."""
    out = []
    while lo < hi:
        level = (lo & -lo).bit_length() - 1 if lo else 63
        while (1 << level) > hi - lo:
            level -= 1
        out.append((level, lo >> level))
        lo += 1 << level
    return out


@dataclass(frozen=True)
class FsckReport:
    size: int
    checkpoints: int
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


class Log:
    """An append-only Merkle log of byte entries (each ≤ 64 KiB).

    Obtain one from :attr:`ailedger.Workspace.log`. The log stores and proves
    bytes; it does not parse them.
    """

    def __init__(
        self,
        path: Path,
        origin: str,
        signer: Signer,
        verifier: Verifier,
        state_path: Path | None = None,
    ) -> None:
        self._path = Path(path)
        # The last signed checkpoint, kept outside the database: restoring an older
        # log.sqlite must not let us sign a second, different tree of some size.
        self._state_path = state_path
        self._origin = origin
        self._sign = signer
        self._verifier = verifier
        try:
            self._db = sqlite3.connect(str(path), isolation_level=None, timeout=30.0)
            self._db.executescript("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; " + _SCHEMA)
            row = self._db.execute("SELECT value FROM meta WHERE key='format'").fetchone()
        except sqlite3.DatabaseError as e:
            raise LogError(f"{path} is not a usable log database: {e}") from e
        if row is None:
            with self._tx():
                self._db.executemany(
                    "INSERT OR IGNORE INTO meta VALUES (?, ?)",
                    [("format", _FORMAT), ("origin", origin)],
                )
        elif row[0] != _FORMAT:
            raise LogError(f"{path}: unsupported log format {row[0]!r}")
        self._size = -1
        self._stack: list[bytes] = []
        self._node_cache: dict[int, bytes] = {}

    # -- plumbing ------------------------------------------------------------------

    def close(self) -> None:
        self._db.close()

    def _tx(self) -> _Tx:
        return _Tx(self._db)

    def _db_size(self) -> int:
        row = self._db.execute("SELECT max(idx) FROM entries").fetchone()
        return 0 if row[0] is None else int(row[0]) + 1

    def _sync(self) -> None:
        """Load the right edge of the tree if another writer (or a crash) moved it."""
        n = self._db_size()
        if n != self._size:
            self._stack = [self._node(level, idx) for level, idx in _pow2_ranges(0, n)]
            self._size = n

    def _node(self, level: int, index: int) -> bytes:
        nid = _nid(level, index)
        h = self._node_cache.get(nid)
        if h is not None:
            return h
        if level == 0:
            row = self._db.execute("SELECT leaf FROM entries WHERE idx=?", (index,)).fetchone()
        else:
            row = self._db.execute("SELECT hash FROM nodes WHERE id=?", (nid,)).fetchone()
        if row is None:
            raise LogError(
                f"log storage is missing node ({level}, {index}): run `ailedger log fsck`"
            )
        h = bytes(row[0])
        if level >= 8:  # upper levels are few and hot in every proof
            self._node_cache[nid] = h
        return h

    def _range_hash(self, lo: int, hi: int) -> bytes:
        return self._range_hashes([(lo, hi)])[0]

    def _range_hashes(self, ranges: list[tuple[int, int]]) -> list[bytes]:
        """Hashes of the subtrees over each [lo, hi), fetching every stored node in two queries.

        A proof needs O(log n) nodes; reading them one query each costs more than
        the hashing, so collect the ids first and fetch them together.
        """
        parts = [_pow2_ranges(lo, hi) for lo, hi in ranges]
        cache = self._node_cache
        want0: set[int] = set()
        want: set[int] = set()
        for ps in parts:
            for level, idx in ps:
                nid = _nid(level, idx)
                if nid not in cache:
                    (want0 if level == 0 else want).add(idx if level == 0 else nid)
        got: dict[int, bytes] = {}  # level-0 ids are the leaf index itself (0 << 50 | i)
        for query, ids in (
            ("SELECT idx, leaf FROM entries WHERE idx IN ({})", want0),
            ("SELECT id, hash FROM nodes WHERE id IN ({})", want),
        ):
            ids_l = sorted(ids)
            for k in range(0, len(ids_l), 500):  # stay under SQLite's variable limit
                chunk = ids_l[k : k + 500]
                for key, h in self._db.execute(query.format(",".join("?" * len(chunk))), chunk):
                    got[int(key)] = bytes(h)
        out = []
        for ps in parts:
            hashes = []
            for level, idx in ps:
                nid = _nid(level, idx)
                h = cache.get(nid) or got.get(nid)
                if h is None:
                    raise LogError(
                        f"log storage is missing node ({level}, {idx}): run `ailedger log fsck`"
                    )
                if level >= 6 and len(cache) < 1_000_000:  # upper levels: few, in every proof
                    cache[nid] = h
                hashes.append(h)
            acc = hashes[-1]
            for h in reversed(hashes[:-1]):
                acc = merkle.node_hash(h, acc)
            out.append(acc)
        return out

    # -- reading -------------------------------------------------------------------

    @property
    def origin(self) -> str:
        return self._origin

    @property
    def size(self) -> int:
        """The number of committed entries."""
        return self._db_size()

    def get(self, index: int) -> bytes:
        _check_index(index)
        row = self._db.execute("SELECT data FROM entries WHERE idx=?", (index,)).fetchone()
        if row is None:
            raise NotFoundError(f"no entry {index}: the log has {self.size} entries")
        return bytes(row[0])

    def root(self, size: int | None = None) -> bytes:
        """The RFC 9162 root of the tree's first ``size`` entries (default: all)."""
        with self._read():
            n = self._check_size(size)
            return self._range_hash(0, n) if n else merkle.EMPTY_ROOT

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """RFC 9162 §2.1.3.1 inclusion proof of ``index`` in the tree of ``size``."""
        _check_index(index)
        with self._read():
            n = self._check_size(size)
            if index >= n:
                raise NotFoundError(f"index {index} is not in a tree of size {n}")
            ranges: list[tuple[int, int]] = []
            lo, hi, m = 0, n, index
            while hi - lo > 1:
                k = 1 << ((hi - lo - 1).bit_length() - 1)
                if m < k:
                    ranges.append((lo + k, hi))
                    hi = lo + k
                else:
                    ranges.append((lo, lo + k))
                    lo, m = lo + k, m - k
            ranges.reverse()
            return self._range_hashes(ranges)

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        """RFC 9162 §2.1.4.1 proof that the tree of ``size2`` extends that of ``size1``."""
        _check_index(size1)
        with self._read():
            n = self._check_size(size2)
            if not 0 < size1 <= n:
                raise NotFoundError(
                    f"no consistency proof from size {size1} to {n}: need 0 < old ≤ new"
                )
            ranges: list[tuple[int, int]] = []
            lo, hi, m, complete = 0, n, size1, True
            while m != hi - lo:
                k = 1 << ((hi - lo - 1).bit_length() - 1)
                if m <= k:
                    ranges.append((lo + k, hi))
                    hi = lo + k
                else:
                    ranges.append((lo, lo + k))
                    lo, m, complete = lo + k, m - k, False
            if not complete:
                ranges.append((lo, hi))
            ranges.reverse()
            return self._range_hashes(ranges)

    def _check_size(self, size: int | None) -> int:
        n = self._db_size()
        if size is None:
            return n
        _check_index(size)
        if size > n:
            raise NotFoundError(f"size {size} is beyond the tree (size {n})")
        return size

    def _read(self) -> _Tx:
        # One read transaction per call, so a concurrent appender can't show us half a batch.
        return _Tx(self._db, "BEGIN")

    # -- appending -----------------------------------------------------------------

    def append(self, entry: bytes) -> int:
        """Append one entry durably; return its index once committed."""
        return self.append_many([entry])[0]

    def append_many(self, entries: Iterable[bytes]) -> list[int]:
        """Append entries in one durable transaction; all or none are added."""
        batch = [_check_entry(e, i) for i, e in enumerate(entries)]
        if not batch:
            return []
        sha = hashlib.sha256
        with self._tx():
            self._sync()
            start = self._size
            stack = list(self._stack)
            rows = []
            nodes = []
            i = start
            for data in batch:
                h = sha(b"\x00" + data).digest()
                rows.append((i, h, data))
                idx, level = i, 0
                while idx & 1:
                    h = sha(b"\x01" + stack.pop() + h).digest()
                    idx >>= 1
                    level += 1
                    nodes.append(((level << _LEVEL_SHIFT) | idx, h))
                stack.append(h)
                i += 1
            try:
                self._db.executemany("INSERT INTO entries VALUES (?,?,?)", rows)
                self._db.executemany("INSERT INTO nodes VALUES (?,?)", nodes)
            except sqlite3.IntegrityError as e:
                raise LogError(f"log storage conflict while appending: {e}") from e
            new_edge = (i, stack)
        # Only after COMMIT (in _Tx.__exit__) does the in-memory edge move forward.
        self._size, self._stack = new_edge
        return list(range(start, i))

    # -- checkpoints ---------------------------------------------------------------

    def checkpoint(self) -> str:
        """The signed note of the current tree, signing a new one if the tree grew."""
        with self._tx():
            self._sync()
            n = self._size
            last = self._db.execute(
                "SELECT size, root, note FROM checkpoints ORDER BY size DESC LIMIT 1"
            ).fetchone()
            if last is not None and last[0] == n:
                return str(last[2])
            root = self._stack_root()
            self._check_signed_state(n)
            if last is not None:
                # Never sign a checkpoint inconsistent with one already issued: the
                # stored tree must still reproduce the last signed root.
                old = self._range_hash(0, last[0]) if last[0] else merkle.EMPTY_ROOT
                if old != bytes(last[1]):
                    raise LogError(
                        "refusing to sign: the stored tree no longer matches the last"
                        " checkpoint (run `ailedger log fsck`)"
                    )
            note = self._sign(Checkpoint(self._origin, n, root).text())
            self._save_signed_state(note)
            self._db.execute(
                "INSERT INTO checkpoints VALUES (?,?,?,?)", (n, root, note, time.time())
            )
            return note

    def _check_signed_state(self, n: int) -> None:
        if self._state_path is None or not self._state_path.exists():
            return
        try:
            cp = open_checkpoint(self._state_path.read_text(), self._verifier)
        except (OSError, VerificationError) as e:
            raise LogError(f"{self._state_path} is unreadable or not this log's: {e}") from e
        if n < cp.size:
            raise LogError(
                f"refusing to sign: a checkpoint of size {cp.size} was already signed but the log"
                f" has {n} entries (was log.sqlite restored from an older copy?)"
            )
        if cp.size and self._range_hash(0, cp.size) != cp.root:
            raise LogError(
                f"refusing to sign: the stored tree at size {cp.size} differs from the checkpoint"
                " already signed for that size (split view); run `ailedger log fsck`"
            )

    def _save_signed_state(self, note: str) -> None:
        if self._state_path is None:
            return
        tmp = self._state_path.with_name(self._state_path.name + ".tmp")
        with open(tmp, "w") as f:
            f.write(note)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._state_path)

    def _stack_root(self) -> bytes:
        if not self._stack:
            return merkle.EMPTY_ROOT
        acc = self._stack[-1]
        for h in reversed(self._stack[:-1]):
            acc = merkle.node_hash(h, acc)
        return acc

    def latest_checkpoint(self) -> str | None:
        row = self._db.execute("SELECT note FROM checkpoints ORDER BY size DESC LIMIT 1").fetchone()
        return None if row is None else str(row[0])

    def checkpoint_at(self, size: int) -> str:
        """The signed checkpoint issued for tree ``size``; proofs are only served against these."""
        _check_index(size)
        row = self._db.execute("SELECT note FROM checkpoints WHERE size=?", (size,)).fetchone()
        if row is None:
            raise NotFoundError(
                f"no checkpoint was issued at size {size}: run `ailedger log checkpoint` first"
            )
        return str(row[0])

    def set_witness(self, size: int, ref: str) -> None:
        """Remember where the checkpoint of ``size`` was witnessed (an anchor reference).

        Opaque to the log; a cache of facts that verifiers re-check at the source.
        """
        self.checkpoint_at(size)  # only checkpoints that were issued can be witnessed
        with self._tx():
            self._db.execute("INSERT OR REPLACE INTO witnesses VALUES (?, ?)", (size, ref))

    def witness(self, size: int) -> str | None:
        row = self._db.execute("SELECT ref FROM witnesses WHERE size=?", (size,)).fetchone()
        return None if row is None else str(row[0])

    def checkpoint_sizes(self) -> list[int]:
        return [int(r[0]) for r in self._db.execute("SELECT size FROM checkpoints ORDER BY size")]

    # -- integrity -----------------------------------------------------------------

    def fsck(self) -> FsckReport:
        """Recompute every leaf, node and checkpoint root from the entries.

        Streams the entries once and compares each recomputed hash with what is
        stored, so memory stays O(log n) whatever the size. Any modified byte in
        an entry, a stored hash or a checkpoint shows up as a problem.
        """
        problems: list[str] = []

        def problem(msg: str) -> None:
            if len(problems) < 50:
                problems.append(msg)

        with self._read():
            cps = self._db.execute(
                "SELECT size, root, note FROM checkpoints ORDER BY size"
            ).fetchall()
            cp_at = {int(s): (bytes(r), str(n)) for s, r, n in cps}
            cursors: dict[int, Iterator[tuple[int, bytes]]] = {}

            def stored(level: int) -> Iterator[tuple[int, bytes]]:
                lo, hi = _nid(level, 0), _nid(level + 1, 0)
                cur = self._db.execute(
                    "SELECT id, hash FROM nodes WHERE id>=? AND id<? ORDER BY id", (lo, hi)
                )
                return ((int(i), bytes(h)) for i, h in cur)

            expected_nodes = 0
            stack: list[bytes] = []
            n = 0
            if 0 in cp_at:
                self._fsck_checkpoint(0, merkle.EMPTY_ROOT, cp_at, problem)
            for idx, leaf, data in self._db.execute(
                "SELECT idx, leaf, data FROM entries ORDER BY idx"
            ):
                if idx != n:
                    # Every later hash depends on the missing entry: report and stop.
                    problem(f"entry {n} is missing (next stored index is {idx})")
                    break
                if not isinstance(data, bytes) or not isinstance(leaf, bytes):
                    problem(f"entry {n}: stored with the wrong type (not a blob)")
                    data = data.encode() if isinstance(data, str) else bytes(data or b"")
                h = merkle.leaf_hash(data)
                if h != leaf:
                    problem(f"entry {n}: data does not match its stored leaf hash")
                j, level = n, 0
                while j & 1:
                    h = merkle.node_hash(stack.pop(), h)
                    j >>= 1
                    level += 1
                    expected_nodes += 1
                    cur = cursors.get(level)
                    if cur is None:
                        cur = cursors[level] = stored(level)
                    got = next(cur, None)
                    if got is None or got[0] != _nid(level, j):
                        problem(f"node ({level}, {j}) is missing")
                    elif got[1] != h:
                        problem(f"node ({level}, {j}) does not match the entries")
                stack.append(h)
                n += 1
                if n in cp_at:
                    r = stack[-1]
                    for left in reversed(stack[:-1]):
                        r = merkle.node_hash(left, r)
                    self._fsck_checkpoint(n, r, cp_at, problem)
            total = self._db.execute("SELECT count(*) FROM nodes").fetchone()[0]
            if total != expected_nodes and not problems:
                problem(f"{total - expected_nodes} unexpected stored nodes")
            for cp_size in cp_at:
                if cp_size > n:
                    problem(f"checkpoint at size {cp_size} is beyond the log (size {n})")
        return FsckReport(n, len(cp_at), tuple(problems))

    def _fsck_checkpoint(
        self,
        size: int,
        root: bytes,
        cp_at: dict[int, tuple[bytes, str]],
        problem: Callable[[str], None],
    ) -> None:
        stored_root, note = cp_at[size]
        if stored_root != root:
            problem(f"checkpoint at size {size}: root does not match the entries")
        try:
            cp = open_checkpoint(note, self._verifier)
        except VerificationError as e:
            problem(f"checkpoint at size {size}: {e}")
            return
        if cp.size != size or cp.root != root:
            problem(f"checkpoint at size {size}: signed note does not match the entries")


class _Tx:
    """A SQLite transaction as a context manager; rolls back on any exception."""

    def __init__(self, db: sqlite3.Connection, begin: str = "BEGIN IMMEDIATE") -> None:
        self._db = db
        self._begin = begin
        self._nested = False

    def __enter__(self) -> _Tx:
        if self._db.in_transaction:
            self._nested = True  # a read inside a write: already isolated
            return self
        try:
            self._db.execute(self._begin)
        except sqlite3.OperationalError as e:
            raise LogError(f"log database is busy or unwritable: {e}") from e
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if self._nested:
            return
        if exc_type is None:
            try:
                self._db.execute("COMMIT")
            except sqlite3.Error as e:
                self._db.execute("ROLLBACK")
                raise LogError(f"could not commit to the log: {e}") from e
        else:
            self._db.execute("ROLLBACK")


def _check_index(v: object) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise InputError(f"expected a non-negative integer, got {v!r}")
    if v >= 2**63:  # SQLite's integers, and any log that will ever exist
        raise NotFoundError(f"{v} is beyond any log (the limit is 2^63 - 1)")


def _check_entry(e: object, i: int) -> bytes:
    if not isinstance(e, (bytes, bytearray, memoryview)):
        raise InputError(f"entry {i} is not bytes")
    b = bytes(e)
    if len(b) > MAX_ENTRY:
        raise InputError(
            f"entry {i} is {len(b)} bytes; the limit is {MAX_ENTRY} (store large content"
            " in the blob store and log its digest)"
        )
    return b
