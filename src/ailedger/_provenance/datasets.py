"""Dataset registration, lookup, verification and membership proofs (DESIGN §5).

``add_dataset`` fingerprints a file or folder, stores the manifest in the blob store and
records a DATASET statement (``types.py``); ``datasets_registry`` in
``provenance.sqlite`` maps a name to every version registered under it (the latest
wins for lookups). ``prove_member`` builds a self-contained JSON document showing one
file or record is a leaf of the registered root, and that the signed statement naming
that root is in the log; ``check_member_proof`` verifies it with only the log's
verifier key.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import functools
import hashlib
import hmac
import json
import os
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from .. import merkle
from .._statements import dsse, intoto
from ..errors import Error, InputError, NotFoundError, VerificationError, WorkspaceError
from . import types as vocab
from .fingerprint import (
    Fingerprint,
    StatCache,
    file_leaf,
    fingerprint,
    iter_records,
    record_format,
)

if TYPE_CHECKING:
    from .._log.note import Verifier
    from .._workspace import Workspace

__all__ = [
    "PROOF_TYPE",
    "DatasetDiff",
    "DatasetRecord",
    "MemberProof",
    "add_dataset",
    "check_member_proof",
    "find_dataset",
    "list_datasets",
    "load_manifest",
    "prove_member",
    "verify_dataset",
]

PROOF_TYPE = "https://ailedger.dev/dataset-membership/v1"
_DB = "provenance.sqlite"
_REGISTRY_DDL = """
CREATE TABLE IF NOT EXISTS datasets_registry (
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    log_index INTEGER NOT NULL,
    manifest_digest TEXT NOT NULL,
    root TEXT NOT NULL,
    leaves INTEGER NOT NULL,
    mode TEXT NOT NULL,
    files INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    path TEXT,
    registered_at TEXT NOT NULL,
    leaf_hashes TEXT,
    PRIMARY KEY (name, version)
)
"""


@dataclass(frozen=True)
class DatasetRecord:
    """A registered dataset version.

    ``index`` is the log index of its DATASET statement; ``root`` the hex RFC 9162
    root; ``path`` the folder or file it was fingerprinted from (None if unknown).
    """

    name: str
    index: int
    manifest_digest: str
    root: str
    leaves: int
    mode: str
    path: str | None
    files: int = 0
    bytes: int = 0
    version: int = 1
    registered_at: str = ""
    leaf_hashes_digest: str | None = None  # records mode: blob of 32-byte leaf hashes
    created: bool = field(default=True, compare=False)  # False: identical to the latest
    cache_hits: int = field(default=0, compare=False)
    seconds: float = field(default=0.0, compare=False)


@dataclass(frozen=True)
class DatasetDiff:
    """What differs between a registered dataset and the data at a path now."""

    name: str
    changed: tuple[str, ...]
    added: tuple[str, ...]
    removed: tuple[str, ...]
    root: str  # registered
    current_root: str
    records_added: int | None = None  # records mode only
    records_removed: int | None = None

    @property
    def ok(self) -> bool:
        return not (self.changed or self.added or self.removed) and self.root == self.current_root


@dataclass(frozen=True)
class MemberProof:
    """What a verified membership proof shows."""

    dataset: str
    index: int  # log index of the DATASET statement
    root: str
    leaf_index: int
    leaves: int
    mode: str
    path: str  # files mode: from the leaf; records mode: checked against the manifest
    leaf: bytes
    tree_size: int  # size of the signed checkpoint the statement was proved in
    # records mode: the record's 0-based position within ``path``, checked against the
    # signed manifest's per-file record counts; None in files mode, and ("" path too) for
    # a records-mode proof without ``manifestContent`` (nothing to check them against)
    record: int | None = None


# -- storage -----------------------------------------------------------------------------


_F = TypeVar("_F", bound=Callable[..., Any])


def _sql_errors(fn: _F) -> _F:
    """Turn a SQLite failure (locked for 30 s, disk full) into one WorkspaceError line."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except sqlite3.Error as e:
            raise WorkspaceError(f"provenance database: {e}") from e

    return cast(_F, wrapper)


def _db(ws: Workspace) -> sqlite3.Connection:
    try:
        db = sqlite3.connect(ws.path / _DB, timeout=30, isolation_level="DEFERRED")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(_REGISTRY_DDL)
        db.commit()
    except sqlite3.Error as e:
        raise WorkspaceError(f"{ws.path / _DB}: {e}") from e
    return db


_COLS = (
    "name, version, log_index, manifest_digest, root, leaves, mode, files, bytes, path,"
    " registered_at, leaf_hashes"
)


def _row(r: tuple[Any, ...]) -> DatasetRecord:
    return DatasetRecord(
        name=r[0],
        version=r[1],
        index=r[2],
        manifest_digest=r[3],
        root=r[4],
        leaves=r[5],
        mode=r[6],
        files=r[7],
        bytes=r[8],
        path=r[9],
        registered_at=r[10],
        leaf_hashes_digest=r[11],
        created=False,
    )


@_sql_errors
def find_dataset(ws: Workspace, name: str) -> DatasetRecord | None:
    """The latest version registered under ``name``, or None."""
    db = _db(ws)
    try:
        r = db.execute(
            f"SELECT {_COLS} FROM datasets_registry WHERE name = ? ORDER BY version DESC LIMIT 1",
            (name,),
        ).fetchone()
    finally:
        db.close()
    return None if r is None else _row(r)


@_sql_errors
def list_datasets(ws: Workspace, name: str | None = None) -> list[DatasetRecord]:
    """Every registered version (of ``name``, or of all names), by name then version."""
    db = _db(ws)
    try:
        q = f"SELECT {_COLS} FROM datasets_registry"
        args: tuple[Any, ...] = ()
        if name is not None:
            q += " WHERE name = ?"
            args = (name,)
        rows = db.execute(q + " ORDER BY name, version", args).fetchall()
    finally:
        db.close()
    return [_row(r) for r in rows]


def _need(ws: Workspace, name: str) -> DatasetRecord:
    rec = find_dataset(ws, name)
    if rec is None:
        raise NotFoundError(f"no dataset named {name!r}: see `ailedger data list`")
    return rec


def load_manifest(ws: Workspace, rec: DatasetRecord) -> dict[str, Any]:
    """The manifest of ``rec`` from the blob store, checked against its digest."""
    try:
        data = ws.blobs.get(rec.manifest_digest)
    except Error as e:
        raise NotFoundError(f"manifest of dataset {rec.name!r} is missing: {e}") from e
    if hashlib.sha256(data).hexdigest() != rec.manifest_digest:
        raise VerificationError(f"manifest of dataset {rec.name!r} does not match its digest")
    m: dict[str, Any] = json.loads(data)
    return m


def _leaf_hashes(ws: Workspace, rec: DatasetRecord, manifest: Mapping[str, Any]) -> list[bytes]:
    if rec.mode == "files":
        return [
            merkle.leaf_hash(file_leaf(f["path"], f["sha256"], f["size"]))
            for f in manifest["files"]
        ]
    if rec.leaf_hashes_digest is None:
        raise NotFoundError(f"dataset {rec.name!r} has no stored record hashes")
    raw = ws.blobs.get(rec.leaf_hashes_digest)
    if len(raw) != 32 * rec.leaves:
        raise VerificationError(f"stored record hashes of dataset {rec.name!r} are damaged")
    return [raw[i : i + 32] for i in range(0, len(raw), 32)]


# -- registering -------------------------------------------------------------------------


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _check_name(name: str) -> str:
    if not name or len(name) > 200 or not name.isprintable() or name != name.strip():
        raise InputError(
            f"invalid dataset name {name!r}: 1-200 printable characters, no surrounding spaces"
        )
    return name


def _strs(values: Iterable[str], what: str) -> list[str]:
    out = list(values)
    if isinstance(values, str) or not all(isinstance(v, str) for v in out):
        raise InputError(f"{what} must be a list of strings")
    return out


def _exclude(ws: Workspace) -> list[Path]:
    return [ws.path]


def dataset_predicate(
    name: str,
    fp: Fingerprint,
    manifest_digest: str,
    manifest_size: int,
    *,
    license: str | None,
    origin: str | None,
    preparation: list[str],
    consent: list[str],
    registered_at: str,
) -> dict[str, Any]:
    """The DATASET predicate, exactly as ``types.py`` defines it."""
    return {
        "name": name,
        "fingerprint": {
            "algorithm": vocab.FINGERPRINT_ALG,
            "mode": fp.mode,
            "root": fp.root,
            "leaves": fp.leaves,
            "files": fp.file_count,
            "bytes": fp.total_bytes,
        },
        "manifest": {
            "digest": vocab.digest(manifest_digest),
            "size": manifest_size,
            "mediaType": "application/json",
        },
        "license": license,
        "origin": origin,
        "preparation": preparation,
        "schema": fp.schema,
        "consent": consent,
        "registeredAt": registered_at,
    }


@_sql_errors
def add_dataset(
    ws: Workspace,
    path: str | os.PathLike[str],
    *,
    name: str | None = None,
    license: str | None = None,
    origin: str | None = None,
    preparation: Iterable[str] = (),
    consent: Iterable[str] = (),
    records: bool = False,
    encrypt: bool = False,
    chunk_size: int | None = None,
) -> DatasetRecord:
    """Fingerprint ``path``, store its manifest, record a DATASET statement.

    @param name     registry name (default: the base name of ``path``)
    @param records  records mode: leaves are CSV/TSV/JSONL records, not files
    @param encrypt  seal every file under a fresh data key into the blob store and add
                    an ``encryption`` section to the predicate (``encrypted.py``); the
                    fingerprint is still over the plaintext
    @param chunk_size  sealed chunk size in bytes (encrypt only; default 1 MiB)
    @return the registered version; if the data and metadata equal the latest version
            of ``name``, that version is returned unchanged (``created=False``)
    @raise InputError on a bad path or name, NotFoundError never
    """
    p = Path(path)
    name = _check_name(name if name is not None else os.path.basename(os.path.abspath(p)))
    prep = _strs(preparation, "preparation")
    cons = _strs(consent, "consent")
    if chunk_size is not None and not encrypt:
        raise InputError("a chunk size only applies to an encrypted dataset (encrypt=True)")
    db = _db(ws)
    try:
        fp = fingerprint(p, records=records, cache=StatCache(db), exclude=_exclude(ws))
        mbytes = fp.manifest_bytes()
        mdigest = hashlib.sha256(mbytes).hexdigest()
        latest = find_dataset(ws, name)
        if latest is not None and latest.manifest_digest == mdigest:
            pred = _statement_of(ws, latest.index).get("predicate", {})
            if (
                pred.get("license"),
                pred.get("origin"),
                pred.get("preparation"),
                pred.get("consent"),
                pred.get("encryption") is not None,
            ) == (license, origin, prep, cons, encrypt):
                return DatasetRecord(
                    **{
                        **_asdict(latest),
                        "created": False,
                        "cache_hits": fp.cache_hits,
                        "seconds": fp.seconds,
                    }
                )
        ws.blobs.put(mbytes)
        lh_digest = ws.blobs.put(fp.leaf_hashes) if fp.mode == "records" else None
        if not encrypt:
            # A plain dataset's manifest is public on the node's /blob; an encrypted
            # one's is released only to a live grant (docs/node.md §1).
            from .._node.public import mark_public

            for public in (mdigest, lh_digest):
                if public is not None:
                    mark_public(ws.path, public)
        sealed = None
        if encrypt:
            from . import encrypted

            sealed = encrypted.seal_dataset(
                ws, p, fp, mdigest, **({} if chunk_size is None else {"chunk_size": chunk_size})
            )
        when = _now()
        pred = dataset_predicate(
            name,
            fp,
            mdigest,
            len(mbytes),
            license=license,
            origin=origin,
            preparation=prep,
            consent=cons,
            registered_at=when,
        )
        if sealed is not None:
            pred["encryption"] = sealed.predicate()
        subject = {"name": vocab.dataset_subject_name(name), "digest": vocab.digest(mdigest)}
        index = ws.record(intoto.statement([subject], vocab.DATASET, pred))
        src = os.path.abspath(p)
        with db:
            # One statement computes the next version and inserts it, so two concurrent
            # `data add` of one name cannot both take the same version number.
            db.execute(
                f"INSERT INTO datasets_registry ({_COLS})"
                " SELECT ?, COALESCE(MAX(version), 0) + 1, ?,?,?,?,?,?,?,?,?,?"
                " FROM datasets_registry WHERE name = ?",
                (
                    name,
                    index,
                    mdigest,
                    fp.root,
                    fp.leaves,
                    fp.mode,
                    fp.file_count,
                    fp.total_bytes,
                    src,
                    when,
                    lh_digest,
                    name,
                ),
            )
            (version,) = db.execute(
                "SELECT version FROM datasets_registry WHERE name = ? AND log_index = ?",
                (name, index),
            ).fetchone()
            if sealed is not None:
                from . import encrypted

                encrypted.record_sealed(db, name, version, mdigest, sealed)
    finally:
        db.close()
    return DatasetRecord(
        name=name,
        index=index,
        manifest_digest=mdigest,
        root=fp.root,
        leaves=fp.leaves,
        mode=fp.mode,
        path=src,
        files=fp.file_count,
        bytes=fp.total_bytes,
        version=version,
        registered_at=when,
        leaf_hashes_digest=lh_digest,
        created=True,
        cache_hits=fp.cache_hits,
        seconds=fp.seconds,
    )


def _asdict(r: DatasetRecord) -> dict[str, Any]:
    from dataclasses import fields

    return {f.name: getattr(r, f.name) for f in fields(r)}


def _statement_of(ws: Workspace, index: int) -> dict[str, Any]:
    env = dsse.parse(ws.log.get(index))
    st: dict[str, Any] = json.loads(dsse.b64decode_any(env["payload"]))
    return st


# -- verifying ---------------------------------------------------------------------------


@_sql_errors
def verify_dataset(ws: Workspace, name: str, path: str | os.PathLike[str]) -> DatasetDiff:
    """Re-fingerprint ``path`` in the registered mode and compare with ``name``'s manifest.

    @return changed, added and removed paths (and, in records mode, how many records
            were added and removed); ``ok`` when nothing differs
    @raise NotFoundError for an unknown name; InputError for a bad path
    """
    rec = _need(ws, name)
    manifest = load_manifest(ws, rec)
    db = _db(ws)
    try:
        fp = fingerprint(
            Path(path), records=rec.mode == "records", cache=StatCache(db), exclude=_exclude(ws)
        )
    finally:
        db.close()
    old = {f["path"]: f for f in manifest["files"]}
    new = {f.path: f for f in fp.files}
    changed = tuple(
        sorted(
            p
            for p in old.keys() & new.keys()
            if (old[p]["sha256"], old[p]["size"]) != (new[p].sha256, new[p].size)
        )
    )
    added = tuple(sorted(new.keys() - old.keys()))
    removed = tuple(sorted(old.keys() - new.keys()))
    ra: int | None = None
    rr: int | None = None
    if rec.mode == "records":
        before = Counter(_leaf_hashes(ws, rec, manifest))
        lh = fp.leaf_hashes
        after = Counter(lh[i : i + 32] for i in range(0, len(lh), 32))
        ra = sum((after - before).values())
        rr = sum((before - after).values())
    return DatasetDiff(name, changed, added, removed, rec.root, fp.root, ra, rr)


# -- membership proofs -------------------------------------------------------------------


def _record_at(src: Path, rel: str, k: int, fmt: str) -> bytes:
    p = src / rel if src.is_dir() else src
    try:
        data = p.read_bytes()
    except OSError as e:
        raise InputError(f"cannot read {p} to prove its record: {e.strerror}") from e
    for i, r in enumerate(iter_records(data, fmt)):
        if i == k:
            return r
    raise InputError(f"{p} has fewer records than when it was registered")


def prove_member(
    ws: Workspace, name: str, file: str | None = None, record: int | None = None
) -> str:
    """A JSON membership proof that ``file`` (files mode) or leaf ``record`` (records
    mode) is in dataset ``name`` (its latest version).

    ``file`` is the path as it appears in the manifest, or a path on disk inside the
    registered folder. ``record`` is the 0-based leaf index over all records. The
    document carries the leaf, its RFC 9162 inclusion proof, the signed DATASET
    statement (the exact log entry) and a receipt for it.
    """
    rec = _need(ws, name)
    manifest = load_manifest(ws, rec)
    files: list[dict[str, Any]] = manifest["files"]
    hashes = _leaf_hashes(ws, rec, manifest)
    if (file is None) == (record is None):
        raise InputError("name exactly one of a file or a record number")
    leaf_doc: dict[str, Any]
    if rec.mode == "files":
        if file is None:
            raise InputError(f"dataset {name!r} was registered per file: prove a FILE")
        i = _file_index(files, file, rec.path)
        f = files[i]
        data = file_leaf(f["path"], f["sha256"], f["size"])
        leaf_doc = {"index": i, "data": base64.b64encode(data).decode(), "path": f["path"]}
    else:
        if record is None:
            raise InputError(f"dataset {name!r} was registered per record: use --record N")
        if not 0 <= record < rec.leaves:
            raise InputError(f"record {record} is outside 0..{rec.leaves - 1}")
        i = record
        start = 0
        for f in files:
            if i < start + f["records"]:
                break
            start += f["records"]
        if rec.path is None:
            raise InputError(f"dataset {name!r} has no source path to read the record from")
        fmt = record_format(f["path"]) or "jsonl"
        data = _record_at(Path(rec.path), f["path"], i - start, fmt)
        if merkle.leaf_hash(data) != hashes[i]:
            raise InputError(
                f"record {i} ({f['path']} record {i - start}) changed since registration;"
                " it cannot be proved from the current file"
            )
        leaf_doc = {
            "index": i,
            "data": base64.b64encode(data).decode(),
            "path": f["path"],
            "record": i - start,
        }
    # Records mode: the leaf says which file and record it is, which only the manifest
    # (per-file record counts, committed to by digest in the signed statement) can back.
    manifest_content = (
        base64.b64encode(ws.blobs.get(rec.manifest_digest)).decode()
        if rec.mode == "records"
        else None
    )
    proof = merkle.inclusion_proof(i, hashes)
    doc = {
        "type": PROOF_TYPE,
        "dataset": rec.name,
        "statementIndex": rec.index,
        "manifest": vocab.digest(rec.manifest_digest),
        "mode": rec.mode,
        "root": rec.root,
        "leaves": rec.leaves,
        "leaf": leaf_doc,
        "inclusionProof": [h.hex() for h in proof],
        "entry": base64.b64encode(ws.log.get(rec.index)).decode(),
        "receipt": ws.receipt(rec.index),
    }
    if manifest_content is not None:
        doc["manifestContent"] = manifest_content
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def _file_index(files: list[dict[str, Any]], file: str, src: str | None) -> int:
    want = file.replace(os.sep, "/")
    for i, f in enumerate(files):
        if f["path"] == want:
            return i
    if src is not None and os.path.exists(file):
        absf = os.path.abspath(file)
        if os.path.isdir(src):
            rel = os.path.relpath(absf, src).replace(os.sep, "/")
        else:
            rel = os.path.basename(absf) if absf == src else ""
        for i, f in enumerate(files):
            if f["path"] == rel:
                return i
    raise NotFoundError(f"{file!r} is not a file of this dataset")


def _fail(what: str) -> VerificationError:
    return VerificationError(f"membership proof: {what}")


def check_member_proof(
    doc: str | bytes | Mapping[str, Any],
    *,
    verifier_key: str | Verifier,
    file_bytes: bytes | None = None,
) -> MemberProof:
    """Verify a membership proof document; fail closed.

    Checks, in order: the receipt (checkpoint signed by ``verifier_key``, and the
    entry's inclusion at the statement index); the entry is a DSSE envelope signed by
    the log's own key carrying a DATASET statement for this dataset whose root, leaf
    count, mode and manifest digest equal the document's; the leaf's RFC 9162
    inclusion proof leads to that root; and, with ``file_bytes``, that the leaf
    describes exactly those bytes (files mode: sha256 and size; records mode: the
    record itself).

    @raise VerificationError naming the first check that failed
    """
    from .._crypto.keys import keyid_of
    from .._log.note import Verifier
    from .._verify import verify_envelope, verify_receipt

    d = _parse_doc(doc)
    try:
        vk = verifier_key if isinstance(verifier_key, Verifier) else Verifier.parse(verifier_key)
    except Error as e:
        raise _fail(f"bad verifier key: {e}") from e
    try:
        entry = base64.b64decode(d["entry"], validate=True)
    except (binascii.Error, ValueError) as e:
        raise _fail("entry is not base64") from e
    try:
        res = verify_receipt(d["receipt"], entry, vk)
    except Error as e:
        raise _fail(f"receipt does not verify: {e}") from e
    if res.index != d["statementIndex"]:
        raise _fail(f"receipt is for entry {res.index}, not {d['statementIndex']}")
    try:
        st, _ = verify_envelope(entry, {keyid_of(vk.public): vk.public})
    except Error as e:
        raise _fail(f"statement signature: {e}") from e
    pred = st.get("predicate")
    if st.get("predicateType") != vocab.DATASET or not isinstance(pred, dict):
        raise _fail("the logged statement is not a dataset statement")
    subjects = st.get("subject", [])
    want_subject = {
        "name": vocab.dataset_subject_name(d["dataset"]),
        "digest": vocab.digest(d["manifest"]["sha256"]),
    }
    if want_subject not in subjects:
        raise _fail("the statement's subject is not this dataset's manifest")
    fpr = pred.get("fingerprint", {})
    if (fpr.get("root"), fpr.get("leaves"), fpr.get("mode")) != (
        d["root"],
        d["leaves"],
        d["mode"],
    ):
        raise _fail("root, leaf count or mode differ from the signed statement")
    leaf = d["leaf"]
    try:
        data = base64.b64decode(leaf["data"], validate=True)
        root = bytes.fromhex(d["root"])
        proof = [bytes.fromhex(h) for h in d["inclusionProof"]]
    except (binascii.Error, ValueError, TypeError) as e:
        raise _fail(f"malformed leaf or proof ({e})") from e
    try:
        merkle.verify_inclusion(merkle.leaf_hash(data), leaf["index"], d["leaves"], proof, root)
    except VerificationError as e:
        raise _fail(f"leaf is not in the dataset root: {e}") from e
    if d["mode"] == "files":
        try:
            fl = json.loads(data)
            if file_leaf(fl["path"], fl["sha256"], fl["size"]) != data:
                raise ValueError("not canonical")
        except (ValueError, KeyError, TypeError, Error) as e:
            raise _fail(f"leaf is not a file leaf ({e})") from e
        if fl["path"] != leaf.get("path"):
            raise _fail("leaf path differs from the document's path")
        if file_bytes is not None:
            got = hashlib.sha256(file_bytes).hexdigest()
            if not hmac.compare_digest(got, fl["sha256"]) or len(file_bytes) != fl["size"]:
                raise _fail(f"the file's bytes are not those of {fl['path']} in the dataset")
        path, record = str(leaf.get("path", "")), None
    else:
        path, record = _record_position(d, leaf)
        if file_bytes is not None:
            rb = file_bytes[:-1] if file_bytes.endswith(b"\n") else file_bytes
            rb = rb[:-1] if rb.endswith(b"\r") else rb
            if rb != data:
                raise _fail("the record's bytes differ from the proved record")
    return MemberProof(
        dataset=d["dataset"],
        index=d["statementIndex"],
        root=d["root"],
        leaf_index=leaf["index"],
        leaves=d["leaves"],
        mode=d["mode"],
        path=path,
        leaf=data,
        tree_size=res.checkpoint.size,
        record=record,
    )


def _record_position(d: Mapping[str, Any], leaf: Mapping[str, Any]) -> tuple[str, int | None]:
    """Records mode: the (file path, record within it) of leaf ``leaf["index"]``, taken
    from the manifest carried in the proof, whose digest the signed statement names.

    The document's ``leaf.path`` / ``leaf.record`` must agree. Without ``manifestContent``
    (proofs made before it was added) nothing backs them: ``("", None)``.
    """
    if d.get("manifestContent") is None:
        return "", None
    try:
        raw = base64.b64decode(d["manifestContent"], validate=True)
    except (binascii.Error, ValueError, TypeError) as e:
        raise _fail("manifestContent is not base64") from e
    if not hmac.compare_digest(hashlib.sha256(raw).hexdigest(), d["manifest"]["sha256"]):
        raise _fail("manifestContent is not the manifest the signed statement names")
    try:
        m = json.loads(raw)
        files = m["files"]
        counts = [(str(f["path"]), f["records"]) for f in files]
        if m.get("mode") != "records" or not all(
            isinstance(c, int) and not isinstance(c, bool) and c >= 0 for _, c in counts
        ):
            raise ValueError("not a records-mode manifest")
    except (ValueError, KeyError, TypeError) as e:
        raise _fail(f"manifest is malformed ({e})") from e
    if sum(c for _, c in counts) != d["leaves"]:
        raise _fail("the manifest's record counts do not add up to the leaf count")
    i = leaf["index"]
    start, k = 0, 0
    while k < len(counts) and i >= start + counts[k][1]:
        start += counts[k][1]
        k += 1
    if k == len(counts):
        raise _fail(f"leaf {i} is outside the manifest's records")
    path = counts[k][0]
    if leaf.get("path") != path:
        raise _fail(f"leaf path {leaf.get('path')!r} is not the manifest's file {path!r}")
    if leaf.get("record") != i - start:
        raise _fail(f"leaf record {leaf.get('record')!r} is not its position {i - start} in {path}")
    return path, i - start


def _parse_doc(doc: str | bytes | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(doc, (str, bytes)):
        try:
            d = json.loads(doc)
        except (ValueError, UnicodeDecodeError) as e:
            raise _fail(f"not JSON ({e})") from e
    else:
        d = dict(doc)
    if not isinstance(d, dict) or d.get("type") != PROOF_TYPE:
        raise _fail(f"not a dataset membership proof (type must be {PROOF_TYPE})")
    shape: dict[str, type | tuple[type, ...]] = {
        "dataset": str,
        "statementIndex": int,
        "manifest": dict,
        "mode": str,
        "root": str,
        "leaves": int,
        "leaf": dict,
        "inclusionProof": list,
        "entry": str,
        "receipt": str,
    }
    for k, t in shape.items():
        if not isinstance(d.get(k), t) or isinstance(d.get(k), bool):
            raise _fail(f"field {k!r} is missing or has the wrong type")
    if not isinstance(d["manifest"].get("sha256"), str):
        raise _fail("field 'manifest' needs a sha256 digest")
    leaf = d["leaf"]
    if not isinstance(leaf.get("index"), int) or not isinstance(leaf.get("data"), str):
        raise _fail("field 'leaf' needs an integer index and base64 data")
    if d["mode"] not in ("files", "records"):
        raise _fail(f"unknown mode {d['mode']!r}")
    return d
