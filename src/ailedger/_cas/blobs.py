"""A content-addressed blob store in a local folder.

Blobs are named by the lowercase hex SHA-256 of their bytes
(``<root>/sha256/ab/abcdef…``). Writes go to a temporary file in the same
folder, are fsynced, then renamed into place, so a reader never sees a partial
blob and a crash leaves at most a stray temporary file. Reads re-hash, so a
modified blob is reported rather than returned.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Protocol

from ..errors import InputError, NotFoundError, VerificationError

_HEX64 = re.compile(r"[0-9a-f]{64}")


class BlobStore(Protocol):
    """The interface every blob backend implements."""

    def put(self, data: bytes) -> str: ...

    def get(self, digest: str) -> bytes: ...


class LocalBlobStore:
    def __init__(self, root: Path) -> None:
        self._root = Path(root)

    def _path(self, digest: str) -> Path:
        if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
            raise InputError(f"not a sha256 digest: {digest!r}")
        return self._root / "sha256" / digest[:2] / digest

    def put(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        path = self._path(digest)
        if path.exists():
            return digest
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return digest

    def get(self, digest: str) -> bytes:
        path = self._path(digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError as e:
            raise NotFoundError(f"no blob sha256:{digest}") from e
        if hashlib.sha256(data).hexdigest() != digest:
            raise VerificationError(f"blob sha256:{digest} was modified on disk")
        return data

    def __contains__(self, digest: str) -> bool:
        return self._path(digest).exists()


class MemoryBlobStore:
    """In-memory backend for tests and throwaway workspaces."""

    def __init__(self) -> None:
        self._blobs: dict[str, bytes] = {}

    def put(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        self._blobs[digest] = bytes(data)
        return digest

    def get(self, digest: str) -> bytes:
        try:
            return self._blobs[digest]
        except KeyError as e:
            raise NotFoundError(f"no blob sha256:{digest}") from e
