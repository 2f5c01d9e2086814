"""C2SP tlog-tiles (https://c2sp.org/tlog-tiles) over the log's stored hashes.

A level-``L`` tile ``N`` is the run of Merkle Tree Hashes at tree height ``8·L`` with
indices ``N·256 … N·256+255``: ``MTH(D[(N·256+i)·256^L : (N·256+i+1)·256^L])``. The log
(``_log/store.py``) already stores every full subtree hash (``entries.leaf`` for height 0,
``nodes`` with ``id = height << 50 | index`` above), so a tile is one range read — no
hashing. Tiles are read through a read-only SQLite connection of our own, so serving
never takes the log's write lock.
"""

from __future__ import annotations

import re
import sqlite3
import struct
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError, LogError, NotFoundError

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT  # 256 hashes
HASH_SIZE = 32
MAX_LEVEL = 63
_LEVEL_SHIFT = 50  # the log's node id encoding: height << 50 | index
_ELEM = re.compile(r"[0-9]{3}")
_DEC = re.compile(r"0|[1-9][0-9]*")


@dataclass(frozen=True)
class TileRef:
    """One tile: ``level`` (``None`` for an entry bundle), ``index``, ``width`` (256 = full)."""

    level: int | None
    index: int
    width: int

    @property
    def partial(self) -> bool:
        return self.width < TILE_WIDTH

    def path(self) -> str:
        """The URL path of this tile, e.g. ``tile/0/x001/x234/067.p/8``."""
        head = "tile/entries" if self.level is None else f"tile/{self.level}"
        tail = f".p/{self.width}" if self.partial else ""
        return f"{head}/{encode_index(self.index)}{tail}"


def encode_index(n: int) -> str:
    """The tlog-tiles ``<N>`` encoding: zero-padded 3-digit elements, all but the last
    prefixed with ``x`` (1234067 → ``x001/x234/067``; 5 → ``005``)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise InputError(f"tile index must be a non-negative integer, got {n!r}")
    groups = []
    while True:
        groups.append(f"{n % 1000:03d}")
        n //= 1000
        if n == 0:
            break
    groups.reverse()
    return "/".join(["x" + g for g in groups[:-1]] + [groups[-1]])


def parse_tile_path(level: str, rest: str) -> TileRef:
    """Parse ``<L>`` (or ``entries``) and ``<N>[.p/<W>]`` of a tile URL, strictly.

    @raise NotFoundError for anything that is not a canonical tile path (the spec's
           encodings have exactly one spelling per tile, so aliases are refused)
    """
    if level == "entries":
        lvl: int | None = None
    elif _DEC.fullmatch(level) and int(level) <= MAX_LEVEL:
        lvl = int(level)
    else:
        raise NotFoundError(f"not a tile level: {level!r} (0..{MAX_LEVEL} or 'entries')")
    width = TILE_WIDTH
    parts = rest.split("/")
    if len(parts) >= 2 and parts[-2].endswith(".p"):
        w = parts[-1]
        if not _DEC.fullmatch(w) or not 1 <= int(w) < TILE_WIDTH:
            raise NotFoundError(f"not a partial tile width: {w!r} (1..255)")
        width = int(w)
        parts = [*parts[:-2], parts[-2][:-2]]
    if not parts or len(parts) > 7:  # 7 groups already exceed 2^63 / 256
        raise NotFoundError(f"not a tile index path: {rest!r}")
    n = 0
    for i, p in enumerate(parts):
        last = i == len(parts) - 1
        digits = p if last else p[1:] if p.startswith("x") else ""
        if not _ELEM.fullmatch(digits):
            raise NotFoundError(f"not a tile index path: {rest!r}")
        n = n * 1000 + int(digits)
    if len(parts) > 1 and parts[0] == "x000":
        raise NotFoundError(f"not a canonical tile index path (leading x000): {rest!r}")
    return TileRef(lvl, n, width)


def tiles_for_size(size: int) -> list[TileRef]:
    """Every hash tile a tree of ``size`` is made of (full and partial), lowest level first.

    E.g. 70,000 → 273 full level-0 tiles, a level-0 partial of width 112, one full
    level-1 tile, a level-1 partial of width 17 and a level-2 partial of width 1.
    """
    out: list[TileRef] = []
    level = 0
    while True:
        count = size >> (TILE_HEIGHT * level)  # full subtree hashes at this height
        if count == 0:
            break
        out.extend(TileRef(level, n, TILE_WIDTH) for n in range(count // TILE_WIDTH))
        if count % TILE_WIDTH:
            out.append(TileRef(level, count // TILE_WIDTH, count % TILE_WIDTH))
        level += 1
    return out


class TileReader:
    """Reads tiles and entry bundles from a log's SQLite file (read-only)."""

    def __init__(self, log_path: Path) -> None:
        try:
            self._db = sqlite3.connect(
                f"file:{log_path}?mode=ro", uri=True, check_same_thread=False, timeout=30.0
            )
        except sqlite3.Error as e:
            raise LogError(f"cannot open {log_path} to serve tiles: {e}") from e

    def close(self) -> None:
        self._db.close()

    def size(self) -> int:
        row = self._db.execute("SELECT max(idx) FROM entries").fetchone()
        return 0 if row[0] is None else int(row[0]) + 1

    def _span(self, ref: TileRef) -> tuple[int, int]:
        """Check the tile exists in the current tree; return [first, last+1) hash indices."""
        height = 0 if ref.level is None else TILE_HEIGHT * ref.level
        count = self.size() >> height
        lo = ref.index * TILE_WIDTH
        hi = lo + ref.width
        if hi > count:
            raise NotFoundError(f"{ref.path()} is beyond the tree (its size is {self.size()})")
        return lo, hi

    def tile(self, ref: TileRef) -> bytes:
        """The concatenated hashes of a hash tile (``ref.width`` × 32 bytes)."""
        if ref.level is None:
            raise InputError("an entry bundle is not a hash tile")
        lo, hi = self._span(ref)
        height = TILE_HEIGHT * ref.level
        if height == 0:
            rows = self._db.execute(
                "SELECT leaf FROM entries WHERE idx >= ? AND idx < ? ORDER BY idx", (lo, hi)
            ).fetchall()
        else:
            base = height << _LEVEL_SHIFT
            rows = self._db.execute(
                "SELECT hash FROM nodes WHERE id >= ? AND id < ? ORDER BY id",
                (base | lo, base | hi),
            ).fetchall()
        if len(rows) != hi - lo:
            raise LogError(
                f"log storage is missing hashes of {ref.path()}: run `ailedger log fsck`"
            )
        return b"".join(bytes(r[0]) for r in rows)

    def bundle(self, ref: TileRef) -> bytes:
        """An entry bundle: each entry as a big-endian uint16 length, then its bytes."""
        if ref.level is not None:
            raise InputError("a hash tile is not an entry bundle")
        lo, hi = self._span(ref)
        rows = self._db.execute(
            "SELECT data FROM entries WHERE idx >= ? AND idx < ? ORDER BY idx", (lo, hi)
        ).fetchall()
        if len(rows) != hi - lo:
            raise LogError(f"log storage is missing entries of {ref.path()}")
        out = bytearray()
        for (data,) in rows:
            b = bytes(data)
            if len(b) > 0xFFFF:
                # Entries are ≤ 64 KiB (DESIGN §3) but uint16 stops one byte short.
                raise LogError(f"entry of {len(b)} bytes does not fit a tlog-tiles bundle")
            out += struct.pack(">H", len(b)) + b
        return bytes(out)
