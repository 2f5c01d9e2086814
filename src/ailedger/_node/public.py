"""Which blobs the node serves to anyone on ``GET /blob/sha256/<hex>``: an allow-list.

The blob store also holds things only a live grant may reach (sealed files, sealed
indexes and manifests of encrypted datasets, wrapped-key documents), and things that are
nobody's business (prediction logs, terms documents). So ``/blob`` serves a blob only if
the code that wrote it declared it public here, in ``public_blobs`` in
``provenance.sqlite``: externalised predicates of log entries (``Workspace._entry_for``)
and the manifest of a dataset registered *without* ``--encrypt`` (``add_dataset``).
Everything else is 404 on the public path. See docs/node.md §1.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ..errors import WorkspaceError

_DB = "provenance.sqlite"
_DDL = "CREATE TABLE IF NOT EXISTS public_blobs (digest TEXT PRIMARY KEY) WITHOUT ROWID"


def connect(workspace: Path) -> sqlite3.Connection:
    """A connection to the workspace's ``provenance.sqlite`` with ``public_blobs`` created."""
    try:
        db = sqlite3.connect(workspace / _DB, timeout=30, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(_DDL)
    except sqlite3.Error as e:
        raise WorkspaceError(f"{workspace / _DB}: {e}") from e
    return db


def mark_public(workspace: Path, digest: str) -> None:
    """Declare blob ``digest`` (lowercase hex sha256) servable on the public ``/blob`` path."""
    db = connect(workspace)
    try:
        db.execute("INSERT OR IGNORE INTO public_blobs VALUES (?)", (digest,))
    except sqlite3.Error as e:
        raise WorkspaceError(f"{workspace / _DB}: {e}") from e
    finally:
        db.close()


def is_public(db: sqlite3.Connection, digest: str) -> bool:
    """Whether ``digest`` was declared public (``db`` from :func:`connect`)."""
    row = db.execute("SELECT 1 FROM public_blobs WHERE digest = ?", (digest,)).fetchone()
    return row is not None
