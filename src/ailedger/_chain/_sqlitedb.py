"""A py-evm ``AtomicDatabaseAPI`` over one SQLite key-value table.

Every atomic batch py-evm writes is applied in one SQLite transaction. The
embedded backend additionally wraps a whole chain transaction (execute, mine,
persist) in an outer SQLite transaction (:meth:`SQLiteKV.transaction`); batches
then join it, so a block is either fully on disk or not at all.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from eth.abc import AtomicWriteBatchAPI
from eth.db.atomic import AtomicDBWriteBatch
from eth.db.backends.base import BaseAtomicDB

from ..errors import ChainError

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS kv (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)


class _SQLiteWriteBatch(AtomicDBWriteBatch):
    def _commit(self) -> None:
        target = self._write_target_db
        assert isinstance(target, SQLiteKV)
        diff = self._diff()
        with target.transaction():
            target._conn.executemany(
                "INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)",
                ((bytes(k), bytes(v)) for k, v in diff.pending_items()),
            )
            target._conn.executemany(
                "DELETE FROM kv WHERE k = ?", ((bytes(k),) for k in diff.deleted_keys())
            )


class SQLiteKV(BaseAtomicDB):
    """Key-value store for py-evm in a SQLite file (WAL, synchronous=FULL)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._conn = sqlite3.connect(
                str(self.path), isolation_level=None, timeout=60.0, check_same_thread=False
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            # FULL: a returned receipt survives power loss too, not only a crash.
            self._conn.execute("PRAGMA synchronous=FULL")
            for stmt in _SCHEMA:
                self._conn.execute(stmt)
        except sqlite3.Error as exc:
            raise ChainError(
                f"cannot open the embedded chain database {self.path}: {exc}"
            ) from None
        self._depth = 0

    # -- transactions -------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One SQLite write transaction; nested uses join the outermost one."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._conn.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield
        except BaseException:
            self._depth = 0
            self._conn.execute("ROLLBACK")
            raise
        self._depth = 0
        self._conn.execute("COMMIT")

    # -- py-evm DatabaseAPI ---------------------------------------------------
    def __getitem__(self, key: bytes) -> bytes:
        row = self._conn.execute("SELECT v FROM kv WHERE k = ?", (bytes(key),)).fetchone()
        if row is None:
            raise KeyError(key)
        return bytes(row[0])

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self._conn.execute(
            "INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)", (bytes(key), bytes(value))
        )

    def __delitem__(self, key: bytes) -> None:
        cur = self._conn.execute("DELETE FROM kv WHERE k = ?", (bytes(key),))
        if cur.rowcount == 0:
            raise KeyError(key)

    def _exists(self, key: bytes) -> bool:
        row = self._conn.execute("SELECT 1 FROM kv WHERE k = ?", (bytes(key),)).fetchone()
        return row is not None

    @contextmanager
    def atomic_batch(self) -> Iterator[AtomicWriteBatchAPI]:
        with _SQLiteWriteBatch._commit_unless_raises(self) as batch:
            yield batch

    # -- metadata -------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self._conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def close(self) -> None:
        self._conn.close()
