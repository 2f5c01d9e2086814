"""Encrypted datasets: sealed files in the blob store, the data key wrapped with HPKE.

``add_dataset(..., encrypt=True)`` fingerprints the plaintext exactly as an ordinary
dataset (so a grantee verifies what it decrypted), then:

1. draws a fresh 32-byte data key;
2. seals every file (``ailedger-sealed/v1``, ``_crypto/sealed.py``) into the blob store,
   each bound to ``file_context(manifest digest, path)`` so a sealed file cannot be moved
   to another path or dataset; the plaintext read while sealing is hashed and must equal
   the fingerprint (a file changed in between is refused);
3. stores a **sealed index** blob naming each file's ciphertext blob (digest, size);
4. adds an ``encryption`` section to the DATASET predicate that commits to that index;
5. wraps the data key to the workspace's own X25519 key (``_crypto/hpke_wrap.py``) and
   keeps the wrapped-key document in ``encrypted_keys`` and as a blob.

The blob store never holds plaintext of an encrypted dataset; the manifest (paths, sizes,
plaintext SHA-256s) stays in the clear, as for any dataset. See docs/encryption.md.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
import queue
import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any, BinaryIO, Final

import rfc8785
from cryptography.hazmat.primitives.asymmetric import x25519

from .._crypto import hpke_wrap, sealed
from ..errors import Error, InputError, NotFoundError, VerificationError, WorkspaceError
from . import types as vocab

if TYPE_CHECKING:
    from .._workspace import Workspace
    from .datasets import DatasetRecord
    from .fingerprint import Fingerprint

__all__ = [
    "INDEX_TYPE",
    "DecryptResult",
    "EncryptedDataset",
    "SealedFile",
    "dataset_key",
    "decrypt_dataset",
    "decrypt_with_wrapped_key",
    "encryption_of",
    "file_context",
    "load_sealed_index",
    "open_sealed_file",
    "wrap_dataset_key",
    "wrapped_key_for",
]

INDEX_TYPE: Final = "ailedger/sealed-index/v1"
_FILE_CONTEXT: Final = b"ailedger/dataset-file/v1\x00"
_DB: Final = "provenance.sqlite"
_DDL: Final = (
    """CREATE TABLE IF NOT EXISTS encrypted_keys (
    dataset_name TEXT NOT NULL,
    version INTEGER NOT NULL,
    recipient_keyid TEXT NOT NULL,
    wrapped_doc TEXT NOT NULL,
    PRIMARY KEY (dataset_name, version, recipient_keyid)
)""",
    """CREATE TABLE IF NOT EXISTS encrypted_datasets (
    dataset_name TEXT NOT NULL,
    version INTEGER NOT NULL,
    manifest_digest TEXT NOT NULL,
    index_digest TEXT NOT NULL,
    chunk INTEGER NOT NULL,
    PRIMARY KEY (dataset_name, version)
)""",
)


@dataclass(frozen=True)
class SealedFile:
    """One file of an encrypted dataset: its plaintext entry and its ciphertext blob."""

    path: str
    size: int  # plaintext
    sha256: str  # plaintext
    sealed_sha256: str  # the blob
    sealed_size: int


@dataclass(frozen=True)
class EncryptedDataset:
    """The encryption of one registered dataset version."""

    name: str
    version: int
    manifest_digest: str
    index_digest: str
    chunk: int
    files: tuple[SealedFile, ...]


# What a grantee may hand decrypt_with_wrapped_key per path (see there).
SealedSource = (
    bytes
    | str
    | os.PathLike[str]
    | BinaryIO
    | Callable[[], AbstractContextManager[sealed.Readable]]
)


@dataclass(frozen=True)
class DecryptResult:
    """What a verified decryption wrote."""

    out_dir: str
    files: int
    bytes: int
    root: str
    manifest_digest: str


@dataclass(frozen=True)
class _Sealed:
    """The outcome of sealing a dataset, before its statement exists."""

    key: bytes
    index_digest: str
    index_size: int
    chunk: int
    wrapped_doc: str
    owner_keyid: str

    def predicate(self) -> dict[str, Any]:
        return encryption_predicate(self.chunk, self.index_digest, self.index_size)


def encryption_predicate(chunk: int, index_digest: str, index_size: int) -> dict[str, Any]:
    """The ``encryption`` section of a DATASET predicate (additive to ``types.py``)."""
    return {
        "scheme": sealed.SCHEME,
        "aead": sealed.AEAD_NAME,
        "chunk": chunk,
        "keyWrapping": hpke_wrap.KEY_WRAPPING,
        "index": {
            "digest": vocab.digest(index_digest),
            "size": index_size,
            "mediaType": "application/json",
        },
    }


def file_context(manifest_digest: str, path: str) -> bytes:
    """The sealed-stream context of one dataset file: binds it to the dataset and path."""
    return _FILE_CONTEXT + bytes.fromhex(manifest_digest) + path.encode("utf-8")


# -- storage -----------------------------------------------------------------------------


@contextmanager
def _db(ws: Workspace) -> Iterator[sqlite3.Connection]:
    try:
        db = sqlite3.connect(ws.path / _DB, timeout=30, isolation_level="DEFERRED")
    except sqlite3.Error as e:
        raise WorkspaceError(f"{ws.path / _DB}: {e}") from e
    try:
        db.execute("PRAGMA journal_mode=WAL")
        ensure_tables(db)
        yield db
    except sqlite3.Error as e:
        raise WorkspaceError(f"provenance database: {e}") from e
    finally:
        db.close()


def ensure_tables(db: sqlite3.Connection) -> None:
    """Create this module's tables (idempotent)."""
    for ddl in _DDL:
        db.execute(ddl)


class _HashingWriter:
    def __init__(self, f: sealed.Writable) -> None:
        self.f = f
        self.h = hashlib.sha256()
        self.n = 0

    def write(self, b: bytes) -> int:
        self.h.update(b)
        self.n += len(b)
        return self.f.write(b)


_WRITE_BEHIND_MIN = 4 * sealed.DEFAULT_CHUNK


class _WriteBehind:
    """Hashes and writes plaintext chunks on a second thread, in order.

    ``hashlib`` and file writes release the GIL, so the next chunk is received and
    decrypted while this one is hashed and written (on a slow disk the write is the
    largest cost of a fetch). Only authenticated chunks are handed over; at most
    ``depth`` are queued, so memory stays bounded (a few chunks). Use as a context manager: leaving
    it waits for every write, and re-raises a write error.
    """

    def __init__(self, f: sealed.Writable, depth: int = 2) -> None:
        self._f = f
        self._q: queue.Queue[bytes | None] = queue.Queue(depth)
        self._err: BaseException | None = None
        self.h = hashlib.sha256()
        self.n = 0
        self._t = threading.Thread(target=self._run, name="ailedger-write", daemon=True)
        self._t.start()

    def _run(self) -> None:
        while (b := self._q.get()) is not None:
            if self._err is None:  # after an error keep draining, so put() never blocks
                try:
                    self.h.update(b)
                    self._f.write(b)
                except BaseException as e:  # re-raised on the caller's thread
                    self._err = e

    def write(self, b: bytes) -> int:
        if self._err is not None:
            raise self._err
        self._q.put(b)
        self.n += len(b)
        return len(b)

    def __enter__(self) -> _WriteBehind:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        self._q.put(None)
        self._t.join()
        if exc_type is None and self._err is not None:
            raise self._err


class _HashingReader:
    def __init__(self, f: sealed.Readable) -> None:
        self.f = f
        self.h = hashlib.sha256()

    def read(self, n: int, /) -> bytes:
        b = self.f.read(n)
        self.h.update(b)
        return b


def _blob_root(ws: Workspace) -> Path | None:
    from .._cas.blobs import LocalBlobStore

    # The documented LocalBlobStore layout (``<root>/sha256/ab/<hex>``), so a sealed
    # file streams to and from disk instead of passing through memory whole.
    return ws.path / "blobs" if isinstance(ws.blobs, LocalBlobStore) else None


def _blob_path(root: Path, digest: str) -> Path:
    return root / "sha256" / digest[:2] / digest


def _seal_into_blobs(
    ws: Workspace, key: bytes, src: Path, context: bytes, chunk: int
) -> tuple[str, int, sealed.SealInfo]:
    root = _blob_root(ws)
    try:
        with open(src, "rb") as f:
            if root is None:
                buf = io.BytesIO()
                info = sealed.seal_stream(key, f, buf, context=context, chunk_size=chunk)
                data = buf.getvalue()
                return ws.blobs.put(data), len(data), info
            root.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=root, prefix=".tmp-sealed-")
            try:
                with os.fdopen(fd, "wb") as out:
                    w = _HashingWriter(out)
                    info = sealed.seal_stream(key, f, w, context=context, chunk_size=chunk)
                    out.flush()
                    os.fsync(out.fileno())
                digest = w.h.hexdigest()
                target = _blob_path(root, digest)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            return digest, w.n, info
    except OSError as e:
        raise InputError(f"cannot read {src} to encrypt it: {e.strerror or e}") from e


@contextmanager
def _open_blob(ws: Workspace, digest: str) -> Iterator[IO[bytes]]:
    root = _blob_root(ws)
    if root is None:
        yield io.BytesIO(ws.blobs.get(digest))
        return
    try:
        f = open(_blob_path(root, digest), "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError as e:
        raise NotFoundError(f"no blob sha256:{digest} (the sealed file is missing)") from e
    with f:
        yield f


def seal_dataset(
    ws: Workspace,
    src: str | os.PathLike[str],
    fp: Fingerprint,
    manifest_digest: str,
    *,
    chunk_size: int = sealed.DEFAULT_CHUNK,
) -> _Sealed:
    """Seal every file of ``fp`` (read from ``src``) under a fresh key; store the index
    and the key wrapped to the workspace's own X25519 key. Called by ``add_dataset``.

    @raise InputError if a file cannot be read or changed since it was fingerprinted
    """
    sealed._check_chunk(chunk_size)
    p = Path(src)
    is_dir = p.is_dir()
    key = sealed.new_key()
    files: list[dict[str, Any]] = []
    for rel, size, sha in zip(fp.paths, fp.sizes, fp.shas, strict=True):
        fpath = p.joinpath(*rel.split("/")) if is_dir else p
        digest, n, info = _seal_into_blobs(
            ws, key, fpath, file_context(manifest_digest, rel), chunk_size
        )
        if (info.plaintext_bytes, info.plaintext_sha256) != (size, sha):
            raise InputError(
                f"{fpath} changed while it was being registered; nothing was recorded,"
                " run the command again"
            )
        files.append({"path": rel, "sha256": digest, "size": n})
    index: dict[str, Any] = {
        "type": INDEX_TYPE,
        "scheme": sealed.SCHEME,
        "aead": sealed.AEAD_NAME,
        "chunk": chunk_size,
        "manifest": vocab.digest(manifest_digest),
        "files": files,
    }
    ib = bytes(rfc8785.dumps(index))
    idigest = ws.blobs.put(ib)
    doc = hpke_wrap.wrap_key(key, ws.x25519_public, manifest_digest)
    ws.blobs.put(doc.encode())
    return _Sealed(key, idigest, len(ib), chunk_size, doc, hpke_wrap.x25519_keyid(ws.x25519_public))


def record_sealed(
    db: sqlite3.Connection, name: str, version: int, manifest_digest: str, s: _Sealed
) -> None:
    """Insert a sealed dataset's rows, inside the caller's registry transaction."""
    ensure_tables(db)
    db.execute(
        "INSERT INTO encrypted_datasets VALUES (?,?,?,?,?)",
        (name, version, manifest_digest, s.index_digest, s.chunk),
    )
    db.execute(
        "INSERT OR REPLACE INTO encrypted_keys VALUES (?,?,?,?)",
        (name, version, s.owner_keyid, s.wrapped_doc),
    )


# -- lookups -----------------------------------------------------------------------------


def _record(ws: Workspace, name: str, version: int | None) -> DatasetRecord:
    from .datasets import find_dataset, list_datasets

    if version is None:
        rec = find_dataset(ws, name)
    else:
        rec = next((r for r in list_datasets(ws, name) if r.version == version), None)
    if rec is None:
        v = "" if version is None else f" version {version}"
        raise NotFoundError(f"no dataset named {name!r}{v}: see `ailedger data list`")
    return rec


def load_sealed_index(ws: Workspace, index_digest: str) -> dict[str, Any]:
    """The sealed index blob, checked against its digest and shape."""
    try:
        data = ws.blobs.get(index_digest)
    except Error as e:
        raise NotFoundError(f"sealed index sha256:{index_digest} is missing: {e}") from e
    return parse_sealed_index(data, index_digest)


def parse_sealed_index(data: bytes, index_digest: str | None = None) -> dict[str, Any]:
    """Parse a sealed index; with ``index_digest``, check the bytes hash to it."""
    if index_digest is not None and not hmac.compare_digest(
        hashlib.sha256(data).hexdigest(), index_digest
    ):
        raise VerificationError("sealed index does not match its digest")
    try:
        d = json.loads(data)
        ok = (
            isinstance(d, dict)
            and d.get("type") == INDEX_TYPE
            and d.get("scheme") == sealed.SCHEME
            and isinstance(d.get("files"), list)
            and all(
                isinstance(f, dict)
                and isinstance(f.get("path"), str)
                and isinstance(f.get("sha256"), str)
                and isinstance(f.get("size"), int)
                for f in d["files"]
            )
        )
    except (ValueError, UnicodeDecodeError):
        ok = False
    if not ok:
        raise VerificationError(f"not an {INDEX_TYPE} document")
    out: dict[str, Any] = d
    return out


def encryption_of(ws: Workspace, name: str, version: int | None = None) -> EncryptedDataset | None:
    """The encryption of dataset ``name`` (latest version by default); None if plain."""
    from .datasets import load_manifest

    rec = _record(ws, name, version)
    with _db(ws) as db:
        row = db.execute(
            "SELECT index_digest, chunk FROM encrypted_datasets"
            " WHERE dataset_name = ? AND version = ?",
            (rec.name, rec.version),
        ).fetchone()
    if row is None:
        return None
    idx = load_sealed_index(ws, row[0])
    manifest = load_manifest(ws, rec)
    plain = {f["path"]: f for f in manifest["files"]}
    files = []
    for f in idx["files"]:
        m = plain.get(f["path"])
        if m is None:
            raise VerificationError(f"sealed index names {f['path']!r}, not in the manifest")
        files.append(SealedFile(f["path"], m["size"], m["sha256"], f["sha256"], f["size"]))
    return EncryptedDataset(
        rec.name, rec.version, rec.manifest_digest, row[0], int(row[1]), tuple(files)
    )


def _need_encrypted(ws: Workspace, name: str, version: int | None) -> EncryptedDataset:
    enc = encryption_of(ws, name, version)
    if enc is None:
        raise InputError(
            f"dataset {name!r} is not encrypted (register it with `ailedger data add --encrypt`)"
        )
    return enc


def wrapped_key_for(
    ws: Workspace, name: str, recipient_keyid: str, version: int | None = None
) -> str | None:
    """The stored wrapped-key document of dataset ``name`` for one recipient, or None."""
    rec = _record(ws, name, version)
    with _db(ws) as db:
        row = db.execute(
            "SELECT wrapped_doc FROM encrypted_keys"
            " WHERE dataset_name = ? AND version = ? AND recipient_keyid = ?",
            (rec.name, rec.version, recipient_keyid),
        ).fetchone()
    return None if row is None else str(row[0])


def dataset_key(ws: Workspace, name: str, version: int | None = None) -> bytes:
    """The data key of an encrypted dataset, unwrapped with the workspace's X25519 key."""
    enc = _need_encrypted(ws, name, version)
    kid = hpke_wrap.x25519_keyid(ws.x25519_public)
    doc = wrapped_key_for(ws, name, kid, enc.version)
    if doc is None:
        raise NotFoundError(f"dataset {name!r} has no key wrapped to this workspace")
    return hpke_wrap.unwrap_key(doc, ws._identity.x25519, dataset_digest=enc.manifest_digest)


def wrap_dataset_key(
    ws: Workspace,
    name: str,
    recipient_x25519_public: bytes | x25519.X25519PublicKey,
    *,
    version: int | None = None,
) -> str:
    """Wrap dataset ``name``'s key to a grantee's X25519 public key; store and return it.

    @return the wrapped-key document (canonical JSON); its sha256 is what a grant names
    """
    enc = _need_encrypted(ws, name, version)
    key = dataset_key(ws, name, enc.version)
    doc = hpke_wrap.wrap_key(key, recipient_x25519_public, enc.manifest_digest)
    kid = hpke_wrap.parse_wrapped_key(doc).recipient_keyid
    ws.blobs.put(doc.encode())
    with _db(ws) as db, db:
        db.execute(
            "INSERT OR REPLACE INTO encrypted_keys VALUES (?,?,?,?)",
            (enc.name, enc.version, kid, doc),
        )
    return doc


# -- decrypting --------------------------------------------------------------------------


@dataclass(frozen=True)
class OpenedFile:
    """A decrypted file: its plaintext length and SHA-256 (hex)."""

    size: int
    sha256: str


def open_sealed_file(
    ws_or_key: Workspace | bytes,
    src: sealed.Readable,
    dst: sealed.Writable,
    *,
    manifest_digest: str,
    path: str,
    name: str | None = None,
) -> OpenedFile:
    """Decrypt one sealed dataset file from ``src`` into ``dst``.

    @param ws_or_key  the 32-byte data key, or the owner's workspace (then ``name``)
    @param path       the file's path in the manifest (the sealed stream is bound to it)
    @return plaintext size and SHA-256; compare them with the manifest entry
    @raise VerificationError on any tampering; ``dst`` then holds only authenticated
           leading chunks and must be discarded
    """
    if isinstance(ws_or_key, (bytes, bytearray)):
        key = bytes(ws_or_key)
    else:
        if name is None:
            raise InputError("open_sealed_file with a workspace needs the dataset name")
        key = dataset_key(ws_or_key, name)
    h = hashlib.sha256()
    n = 0
    for chunk in sealed.iter_open(key, src, context=file_context(manifest_digest, path)):
        h.update(chunk)
        dst.write(chunk)
        n += len(chunk)
    return OpenedFile(n, h.hexdigest())


def _safe_rel(path: str) -> tuple[str, ...]:
    parts = PurePosixPath(path).parts
    if (
        not path
        or path.startswith("/")
        or "\\" in path
        or "\x00" in path
        or any(p in ("", ".", "..") for p in parts)
        or "/".join(parts) != path
    ):
        raise VerificationError(f"manifest path {path!r} is not a safe relative path")
    return parts


def _blame_blob(
    reader: _HashingReader, sealed_sha: str | None, rel: str, e: VerificationError
) -> None:
    """After a chunk failed: if the blob is not the one the sealed index names, say so.

    Reads the rest of the blob (bounded by its source) to hash it: a different blob
    means it was tampered with or swapped in transit or at rest; the same blob means
    the key or the stream itself is wrong, and ``e`` says how.
    """
    if sealed_sha is None:
        return
    try:
        while reader.read(sealed.DEFAULT_CHUNK):
            pass
    except (Error, OSError):
        return  # the source failed too (cut off): the chunk error stands
    if not hmac.compare_digest(reader.h.hexdigest(), sealed_sha):
        raise VerificationError(
            f"{rel}: the sealed blob is not sha256:{sealed_sha} of the sealed index (tampered): {e}"
        ) from e


def _files_fingerprint(files: list[tuple[str, int, str]]) -> Fingerprint:
    """What :func:`fingerprint` returns in files mode for a folder holding exactly these
    files (path, size, SHA-256), without reading them again."""
    from ..merkle import leaf_hash, root_from_leaf_hashes
    from .fingerprint import Fingerprint, file_leaf

    files = sorted(files)  # fingerprint's path order: code points = UTF-8 bytes
    paths = tuple(f[0] for f in files)
    sizes = tuple(f[1] for f in files)
    shas = tuple(f[2] for f in files)
    root = root_from_leaf_hashes([leaf_hash(file_leaf(p, h, n)) for p, n, h in files])
    return Fingerprint("files", root.hex(), len(files), paths, sizes, shas, None, sum(sizes), None)


def _decrypt_all(
    key: bytes,
    manifest_bytes: bytes,
    manifest_digest: str,
    open_source: Callable[[str], Any],
    out_dir: str | os.PathLike[str],
    expected_root: str | None,
) -> DecryptResult:
    """Decrypt every manifest file into a staging folder, verify, then move into place."""
    from .fingerprint import fingerprint

    if not hmac.compare_digest(hashlib.sha256(manifest_bytes).hexdigest(), manifest_digest):
        raise VerificationError("manifest does not match the dataset digest")
    try:
        manifest = json.loads(manifest_bytes)
        files = manifest["files"]
        mode = manifest["mode"]
        if mode not in ("files", "records") or not isinstance(files, list):
            raise ValueError
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise VerificationError("manifest is malformed") from e
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out} exists and is not an empty folder: choose a new output folder")
    parent = out.absolute().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=parent, prefix=f".{out.name}.decrypting-"))
    except OSError as e:
        raise InputError(f"cannot create {out}: {e.strerror or e}") from e
    try:
        total = 0
        opened: list[tuple[str, int, str]] = []
        for f in files:
            rel = f["path"]
            parts = _safe_rel(rel)
            dst = staging.joinpath(*parts)
            try:
                dst.parent.mkdir(parents=True, exist_ok=True)
                w = open(dst, "xb")  # noqa: SIM115 - closed below
            except (FileExistsError, NotADirectoryError, IsADirectoryError) as e:
                # Staging is ours and starts empty: only a manifest naming one path
                # twice (or as both a file and a folder) gets here.
                raise VerificationError(f"manifest path {rel!r} clashes with another") from e
            except OSError as e:
                raise InputError(f"cannot write {dst}: {e.strerror or e}") from e
            with w, open_source(rel) as (src, sealed_sha):
                reader = _HashingReader(src)
                # A second thread only pays off over several chunks; a dataset of many
                # small files would otherwise start one thread per file.
                size = f.get("size")
                behind = isinstance(size, int) and size > _WRITE_BEHIND_MIN
                try:
                    with _WriteBehind(w) if behind else nullcontext(_HashingWriter(w)) as out_w:
                        ctx = file_context(manifest_digest, rel)
                        for chunk in sealed.iter_open(key, reader, context=ctx):
                            out_w.write(chunk)
                except VerificationError as e:
                    _blame_blob(reader, sealed_sha, rel, e)
                    raise
                got = OpenedFile(out_w.n, out_w.h.hexdigest())
                # Read to the end: a streamed source checks its length there, and the
                # digest below must cover every byte the blob has.
                if reader.read(1):
                    raise VerificationError(f"{rel}: bytes follow the end of the sealed stream")
                if sealed_sha is not None and not hmac.compare_digest(
                    reader.h.hexdigest(), sealed_sha
                ):
                    raise VerificationError(f"{rel}: sealed blob differs from the sealed index")
            if (got.size, got.sha256) != (f["size"], f["sha256"]):
                raise VerificationError(f"{rel}: decrypted bytes differ from the manifest")
            total += got.size
            opened.append((rel, got.size, got.sha256))
        # Files mode: the leaves are (path, SHA-256, size) of each file, which were just
        # computed over the exact bytes written, so the staged data is not read a second
        # time. Records mode needs every record, so it re-reads.
        if mode == "files":
            fp = _files_fingerprint(opened)
        else:
            fp = fingerprint(staging, records=True, workers=1)
        if not hmac.compare_digest(
            hashlib.sha256(fp.manifest_bytes()).hexdigest(), manifest_digest
        ):
            raise VerificationError("decrypted data does not re-fingerprint to the manifest")
        if expected_root is not None and fp.root != expected_root:
            raise VerificationError(
                f"decrypted data has root {fp.root}, not the registered {expected_root}"
            )
        if out.exists():
            out.rmdir()
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return DecryptResult(str(out), len(files), total, fp.root, manifest_digest)


def decrypt_dataset(
    ws: Workspace,
    name: str,
    out_dir: str | os.PathLike[str],
    *,
    version: int | None = None,
) -> DecryptResult:
    """Decrypt every file of an encrypted dataset into ``out_dir`` (new or empty) and
    check the plaintext re-fingerprints to the registered manifest and root.

    Nothing appears in ``out_dir`` unless every check passed.
    @raise VerificationError on any tampering; NotFoundError/InputError on bad input
    """
    from .datasets import load_manifest

    enc = _need_encrypted(ws, name, version)
    rec = _record(ws, name, enc.version)
    key = dataset_key(ws, name, enc.version)
    mbytes = ws.blobs.get(rec.manifest_digest)
    load_manifest(ws, rec)  # digest check with the registry's error message
    by_path = {f.path: f for f in enc.files}

    @contextmanager
    def source(rel: str) -> Iterator[tuple[IO[bytes], str | None]]:
        sf = by_path.get(rel)
        if sf is None:
            raise VerificationError(f"{rel}: not in the sealed index")
        with _open_blob(ws, sf.sealed_sha256) as f:
            yield f, sf.sealed_sha256

    return _decrypt_all(key, mbytes, rec.manifest_digest, source, out_dir, rec.root)


def decrypt_with_wrapped_key(
    wrapped_doc: str | bytes | Mapping[str, Any],
    x25519_private: x25519.X25519PrivateKey,
    sealed_blobs_by_path: Mapping[str, SealedSource],
    manifest: bytes,
    *,
    out_dir: str | os.PathLike[str],
    expected_root: str | None = None,
    sealed_index: bytes | None = None,
) -> DecryptResult:
    """Decrypt a dataset as a grantee, without the owner's workspace.

    @param wrapped_doc           the key wrapped to ``x25519_private``'s public key
    @param sealed_blobs_by_path  manifest path -> sealed bytes, a file path, a binary
                                 file object positioned at the header, or a callable
                                 opening a stream of it (called once, when that file is
                                 decrypted; read to its end, then closed)
    @param manifest              the exact manifest blob; its sha256 must be the dataset
                                 digest the key was wrapped for
    @param expected_root         the root of the signed DATASET statement, if known
    @param sealed_index          the sealed index blob: each blob is then checked by digest
    @return the verified result; ``out_dir`` is written only when every check passed
    @raise VerificationError on a wrong recipient, dataset, key, or any tampering
    """
    mdigest = hashlib.sha256(manifest).hexdigest()
    key = hpke_wrap.unwrap_key(wrapped_doc, x25519_private, dataset_digest=mdigest)
    shas: dict[str, str] = {}
    if sealed_index is not None:
        idx = parse_sealed_index(sealed_index)
        if idx.get("manifest") != vocab.digest(mdigest):
            raise VerificationError("sealed index is for another dataset")
        shas = {f["path"]: f["sha256"] for f in idx["files"]}

    @contextmanager
    def source(rel: str) -> Iterator[tuple[sealed.Readable, str | None]]:
        s = sealed_blobs_by_path.get(rel)
        if s is None:
            raise VerificationError(f"{rel}: no sealed file given for it")
        want = shas.get(rel) if sealed_index is not None else None
        if sealed_index is not None and want is None:
            raise VerificationError(f"{rel}: not in the sealed index")
        if isinstance(s, (bytes, bytearray)):
            yield io.BytesIO(s), want
        elif callable(s):
            with s() as f:
                yield f, want
        elif isinstance(s, (str, os.PathLike)):
            try:
                f = open(s, "rb")  # noqa: SIM115 - closed below
            except OSError as e:
                raise InputError(f"cannot read sealed file {s}: {e.strerror or e}") from e
            with f:
                yield f, want
        else:
            yield s, want

    return _decrypt_all(key, manifest, mdigest, source, out_dir, expected_root)
