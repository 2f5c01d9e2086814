"""Lineage: the graph of statements around an artifact (DESIGN §5).

An index over the workspace log maps digests to the log entries that mention
them, so the graph can be walked both ways:

- role ``subject``: the statement is about this digest (it produced or registered it,
  or — for an evaluation — it judged it);
- role ``dependency``: the statement used this digest (a run's
  ``resolvedDependencies``, an evaluation's model and dataset, a prediction batch's model).

The index lives in ``provenance.sqlite`` (tables ``lineage_index`` and ``lineage_meta``)
and is brought up to date incrementally: only entries appended since the last scan are
read. It is a cache: every statement is re-read from the log (and re-verified by
``verify``) when a graph is built, so a stale or edited index can hide history but never
invent it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .._statements import dsse, intoto
from ..errors import InputError, NotFoundError
from . import types as t

if TYPE_CHECKING:
    from .._workspace import Workspace

EXTERNAL_PREDICATE = "https://ailedger.dev/external-predicate/v1"
SUBJECT = "subject"
DEPENDENCY = "dependency"
NAME = "name"  # dataset statements: the subject name ("dataset:<name>") in the digest column
# Statement types whose subjects are *made* by the statement (so they are the
# artifact's history); any other type's subjects are only *talked about*.
# DATA_ACCESS: a dataset received under a DataAgreements grant is "made" here by its
# access statement, so a model trained on shared data links to its grant.
# SWARM_CONTRIBUTION: a member's update is made by its contribution (from its datasets).
PRODUCING = frozenset(
    {t.TRAINING, t.DATASET, t.PREDICTIONS, t.DATA_ACCESS, t.FEDERATED_ROUND, t.SWARM_CONTRIBUTION}
)
_HEX64 = re.compile(r"[0-9a-f]{64}")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS lineage_index(
    digest TEXT NOT NULL, role TEXT NOT NULL, log_index INTEGER NOT NULL,
    PRIMARY KEY (digest, role, log_index)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS lineage_meta(
    id INTEGER PRIMARY KEY CHECK (id = 0), indexed_size INTEGER NOT NULL);
"""


# -- reading statements out of log entries -----------------------------------------


@dataclass(frozen=True)
class Ref:
    """A digest a statement mentions, with the name and kind it gives it."""

    digest: str
    name: str | None
    kind: str | None  # dataset, model, code, file, predictions... (None: unknown)


def parse_entry(entry: bytes) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(envelope, statement) of a DSSE in-toto log entry, or None for anything else.

    Nothing is verified here: that is :mod:`.verify`'s job.
    """
    try:
        env = json.loads(entry)
        if not isinstance(env, dict) or env.get("payloadType") != dsse.INTOTO_PAYLOAD_TYPE:
            return None
        st = json.loads(dsse.b64decode_any(env["payload"]))
        intoto.validate(st)
    except Exception:
        return None
    return env, st


def keyids_of(env: Mapping[str, Any]) -> tuple[str, ...]:
    """The keyids an envelope claims (unverified), whatever shape its signatures have."""
    sigs = env.get("signatures")
    return tuple(
        str(s.get("keyid", ""))
        for s in (sigs if isinstance(sigs, list) else [])
        if isinstance(s, dict)
    )


def effective(st: Mapping[str, Any], blob: Any = None) -> tuple[str, dict[str, Any], str | None]:
    """(predicateType, predicate, external blob digest) with external predicates resolved.

    ``blob`` is a callable digest → bytes | None; when the predicate was moved to the
    blob store and the blob is missing, the predicate is returned empty.
    """
    ptype = str(st.get("predicateType", ""))
    pred = st.get("predicate") or {}
    if ptype != EXTERNAL_PREDICATE:
        return ptype, dict(pred), None
    ext = pred.get("externalPredicate") if isinstance(pred, dict) else None
    if not isinstance(ext, dict):
        return ptype, {}, None
    inner = str(ext.get("predicateType", ptype))
    dig = _sha(ext.get("digest"))
    data = blob(dig) if (blob is not None and dig) else None
    if data is None or hashlib.sha256(data).hexdigest() != dig:
        return inner, {}, dig
    try:
        loaded = json.loads(data)
    except ValueError:
        return inner, {}, dig
    return inner, loaded if isinstance(loaded, dict) else {}, dig


def subjects(st: Mapping[str, Any]) -> list[Ref]:
    out = []
    for s in st.get("subject") or []:
        d = _sha(s.get("digest")) if isinstance(s, dict) else None
        if d:
            out.append(Ref(d, s.get("name"), None))
    return out


def dependencies(ptype: str, pred: Mapping[str, Any]) -> list[Ref]:
    """The digests a predicate says it used, per the shared vocabulary (types.py)."""
    out: list[Ref] = []
    if ptype == t.TRAINING:
        bd = pred.get("buildDefinition")
        deps = bd.get("resolvedDependencies") if isinstance(bd, dict) else None
        for dep in deps if isinstance(deps, list) else []:
            if not isinstance(dep, dict):
                continue
            d = _sha(dep.get("digest"))
            ann = dep.get("annotations")
            kind = ann.get("kind") if isinstance(ann, dict) else None
            if d:
                out.append(Ref(d, _str(dep.get("name")), _str(kind)))
    elif ptype == t.EVALUATION:
        for key, kind in (("model", t.KIND_MODEL), ("dataset", t.KIND_DATASET)):
            obj = pred.get(key)
            d = _sha(obj.get("digest")) if isinstance(obj, dict) else None
            if d and isinstance(obj, dict):
                out.append(Ref(d, _str(obj.get("name")), kind))
    elif ptype == t.PREDICTIONS:
        obj = pred.get("model")
        d = _sha(obj.get("digest")) if isinstance(obj, dict) else None
        if d and isinstance(obj, dict):
            out.append(Ref(d, _str(obj.get("name")), t.KIND_MODEL))
    elif ptype == t.FEDERATED_ROUND:
        # A round's global model comes from the previous global model and the updates used.
        d = _sha(pred.get("inputGlobal"))
        if d:
            out.append(Ref(d, "global model before the round", t.KIND_MODEL))
        # Then each member whose update was used, followed by the datasets its verified
        # contribution names (registered in that member's log, not necessarily this one).
        for m in pred.get("members") or []:
            upd = m.get("update") if isinstance(m, dict) else None
            d = _sha(upd.get("digest")) if isinstance(upd, dict) else None
            if not (d and isinstance(m, dict) and m.get("used")):
                continue
            ct = m.get("contribution")
            verified = isinstance(ct, dict) and ct.get("verified") is True
            note = "" if verified or not isinstance(ct, dict) else " (contribution not verified)"
            out.append(Ref(d, f"update of {m.get('address')}{note}", t.KIND_FILE))
            for ds in (m.get("datasets") or []) if verified else []:
                dd = _sha(ds.get("digest")) if isinstance(ds, dict) else None
                if dd and isinstance(ds, dict):
                    out.append(
                        Ref(dd, f"{ds.get('name')} of {m.get('address')}", t.KIND_MEMBER_DATASET)
                    )
    elif ptype == t.SWARM_CONTRIBUTION:
        for ds in pred.get("datasets") or []:
            d = _sha(ds.get("digest")) if isinstance(ds, dict) else None
            if d and isinstance(ds, dict):
                out.append(Ref(d, _str(ds.get("name")), t.KIND_DATASET))
    return out


def _sha(digest: object) -> str | None:
    if isinstance(digest, dict):
        v = digest.get("sha256")
        if isinstance(v, str) and _HEX64.fullmatch(v):
            return v
    return None


def _str(v: object) -> str | None:
    return v if isinstance(v, str) else None


def refs_of(entry: bytes, blob: Any = None) -> list[tuple[str, str]]:
    """The (digest, role) pairs an entry contributes to the index (none if not a statement)."""
    parsed = parse_entry(entry)
    if parsed is None:
        return []
    _, st = parsed
    ptype, pred, _ = effective(st, blob)
    pairs = {(r.digest, SUBJECT) for r in subjects(st)}
    pairs |= {(r.digest, DEPENDENCY) for r in dependencies(ptype, pred)}
    if ptype == t.DATASET:  # so a dataset name resolves without scanning the log
        pairs |= {(r.name, NAME) for r in subjects(st) if r.name}
    return sorted(pairs)


# -- the index ---------------------------------------------------------------------


def _connect(ws: Workspace) -> sqlite3.Connection:
    db = sqlite3.connect(str(ws.path / "provenance.sqlite"), isolation_level=None, timeout=30.0)
    db.executescript("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; " + _SCHEMA)
    return db


def _blob_getter(ws: Workspace) -> Any:
    def get(d: str) -> bytes | None:
        try:
            return ws.blobs.get(d)
        except Exception:
            return None

    return get


def update_index(ws: Workspace) -> int:
    """Index the entries appended since the last call; returns the indexed size.

    Safe to run concurrently: the scan and its high-water mark commit in one
    transaction, and a second writer re-reads the mark under the write lock.
    """
    db = _connect(ws)
    try:
        size = ws.log.size
        row = db.execute("SELECT indexed_size FROM lineage_meta WHERE id=0").fetchone()
        done = int(row[0]) if row else 0
        if done == size:
            return size
        blob = _blob_getter(ws)
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute("SELECT indexed_size FROM lineage_meta WHERE id=0").fetchone()
            done = int(row[0]) if row else 0
            if done > size:  # the log was replaced under us: rebuild rather than trust
                db.execute("DELETE FROM lineage_index")
                done = 0
            rows: list[tuple[str, str, int]] = []
            for i in range(done, size):
                rows.extend((d, role, i) for d, role in refs_of(ws.log.get(i), blob))
            db.executemany("INSERT OR IGNORE INTO lineage_index VALUES (?,?,?)", rows)
            db.execute("INSERT OR REPLACE INTO lineage_meta VALUES (0, ?)", (size,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return size
    finally:
        db.close()


# -- sources: where statements come from (a workspace, or a bundle) -----------------


class Source(Protocol):
    """What the graph walker needs: the index, the entries and the blobs."""

    def lookup(self, digest: str, role: str) -> list[int]: ...

    def entry(self, index: int) -> bytes: ...

    def blob(self, digest: str) -> bytes | None: ...


class WorkspaceSource:
    """Statements of a workspace log, found through ``lineage_index``."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        update_index(ws)
        self._db = _connect(ws)
        self._blob = _blob_getter(ws)

    def lookup(self, digest: str, role: str) -> list[int]:
        rows = self._db.execute(
            "SELECT log_index FROM lineage_index WHERE digest=? AND role=? ORDER BY log_index",
            (digest, role),
        )
        return [int(r[0]) for r in rows]

    def entry(self, index: int) -> bytes:
        return self.ws.log.get(index)

    def blob(self, digest: str) -> bytes | None:
        data: bytes | None = self._blob(digest)
        return data

    def close(self) -> None:
        self._db.close()


class MemorySource:
    """Statements given as (index, entry) pairs, indexed in memory (bundles, tests)."""

    def __init__(self, entries: Mapping[int, bytes], blobs: Mapping[str, bytes]) -> None:
        self._entries = dict(entries)
        self._blobs = dict(blobs)
        self._index: dict[tuple[str, str], list[int]] = {}
        for i in sorted(self._entries):
            for key in refs_of(self._entries[i], self.blob):
                self._index.setdefault(key, []).append(i)

    def lookup(self, digest: str, role: str) -> list[int]:
        return list(self._index.get((digest, role), []))

    def entry(self, index: int) -> bytes:
        try:
            return self._entries[index]
        except KeyError as e:
            raise NotFoundError(f"no statement {index} in the bundle") from e

    def blob(self, digest: str) -> bytes | None:
        return self._blobs.get(digest)


# -- the graph ---------------------------------------------------------------------


@dataclass
class Dependency:
    """One input of a statement, and the statements that produced it (if recorded)."""

    ref: Ref
    producers: list[int] = field(default_factory=list)


@dataclass
class StatementNode:
    """One statement of the lineage."""

    index: int
    predicate_type: str  # the effective type (external predicates resolved)
    statement: dict[str, Any]
    envelope: dict[str, Any]
    entry: bytes
    keyids: tuple[str, ...]  # as claimed by the envelope; `verify` checks them
    subjects: list[Ref]
    dependencies: list[Dependency]
    external_blob: str | None = None
    signer: str | None = None  # a name, when known
    time: str | None = None  # the time the statement claims (finishedOn, registeredAt, ...)
    anchor: str | None = None  # a human summary of the anchor covering it, when known

    @property
    def kind(self) -> str:
        return {
            t.TRAINING: "run",
            t.DATASET: "dataset",
            t.EVALUATION: "evaluation",
            t.PREDICTIONS: "predictions",
            t.DATA_ACCESS: "access",
            t.FEDERATED_ROUND: "round",
            t.SWARM_CONTRIBUTION: "contribution",
        }.get(self.predicate_type, "statement")

    @property
    def agreement(self) -> str | None:
        """For a data-access statement: "granted under request N of offer M (purpose,
        expiry) by <owner>"; None for any other statement."""
        if self.predicate_type != t.DATA_ACCESS:
            return None
        pred = self.predicate
        a, p = pred.get("agreement"), pred.get("provider")
        ag: dict[str, Any] = a if isinstance(a, dict) else {}
        pv: dict[str, Any] = p if isinstance(p, dict) else {}
        exp = ag.get("expiry")
        until = (
            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(exp))
            if isinstance(exp, int) and 0 <= exp < 1 << 40
            else "?"
        )
        return (
            f"granted under request {ag.get('requestId')} of offer {ag.get('offerId')}"
            f" ({ag.get('purpose')!r}, until {until}) by {pv.get('account')}"
        )

    @property
    def predicate(self) -> dict[str, Any]:
        p = self.statement.get("predicate")
        return p if isinstance(p, dict) else {}


@dataclass
class LineageGraph:
    """The statements around one artifact.

    ``producers`` made or registered it; their dependencies are walked recursively
    (``nodes`` holds every statement reached); ``referrers`` mention it without making
    it (evaluations, prediction batches, runs that used it as a base model).
    """

    digest: str
    name: str | None
    producers: list[int]
    referrers: list[int]
    nodes: dict[int, StatementNode]
    effective_predicates: dict[int, dict[str, Any]] = field(default_factory=dict)
    # Statements whose dependencies were resolved (the producers' history and the
    # referrers); a producer of a referrer's input is in ``nodes`` but not walked further.
    walked: set[int] = field(default_factory=set)

    def __iter__(self) -> Iterator[StatementNode]:
        return iter(self.nodes[i] for i in sorted(self.nodes))

    @property
    def indices(self) -> list[int]:
        return sorted(self.nodes)


def build_graph(src: Source, digest: str, name: str | None = None) -> LineageGraph:
    """Walk the lineage of ``digest`` in ``src``; NotFoundError if nothing mentions it."""
    nodes: dict[int, StatementNode] = {}
    preds: dict[int, dict[str, Any]] = {}

    def node(i: int) -> StatementNode | None:
        if i in nodes:
            return nodes[i]
        parsed = parse_entry(src.entry(i))
        if parsed is None:  # the index and the log disagree: the log wins
            return None
        env, st = parsed
        ptype, pred, ext = effective(st, src.blob)
        n = StatementNode(
            index=i,
            predicate_type=ptype,
            statement=st,
            envelope=env,
            entry=src.entry(i),
            keyids=keyids_of(env),
            subjects=subjects(st),
            dependencies=[Dependency(r) for r in dependencies(ptype, pred)],
            external_blob=ext,
            time=_time_of(ptype, pred),
        )
        nodes[i] = n
        preds[i] = pred
        return n

    def producers_of(d: str) -> list[int]:
        out = []
        for i in src.lookup(d, SUBJECT):
            n = node(i)
            if (
                n is not None
                and n.predicate_type in PRODUCING
                and d in {r.digest for r in n.subjects}
            ):
                out.append(i)
        return out

    producers = producers_of(digest)
    # Iterative, so a long chain of fine-tunes cannot hit the recursion limit; `seen`
    # stops cycles (a statement that depends on its own output).
    seen: set[int] = set()
    todo = list(reversed(producers))
    while todo:
        i = todo.pop()
        if i in seen:
            continue
        seen.add(i)
        for dep in nodes[i].dependencies:
            dep.producers = producers_of(dep.ref.digest)
            todo.extend(j for j in reversed(dep.producers) if j not in seen)
    referrers = []
    for i in sorted(set(src.lookup(digest, DEPENDENCY)) | set(src.lookup(digest, SUBJECT))):
        if i in producers:
            continue
        n = node(i)
        if n is None:
            continue
        mentions = {r.digest for r in n.subjects} | {d.ref.digest for d in n.dependencies}
        if digest in mentions:
            referrers.append(i)
            for dep in n.dependencies:
                if dep.ref.digest != digest:
                    dep.producers = producers_of(dep.ref.digest)
    if not producers and not referrers:
        raise NotFoundError(
            f"no history for {name + ' ' if name else ''}(sha256:{digest}): no statement in"
            " the log has it as a subject or a dependency — it was never recorded here, or"
            " the file was changed since"
        )
    if name is None:
        for i in producers + referrers:
            for r in nodes[i].subjects:
                if r.digest == digest and r.name:
                    name = r.name
                    break
            if name:
                break
    return LineageGraph(digest, name, producers, referrers, nodes, preds, seen | set(referrers))


def _time_of(ptype: str, pred: Mapping[str, Any]) -> str | None:
    if ptype == t.TRAINING:
        rd = pred.get("runDetails")
        md = rd.get("metadata") if isinstance(rd, dict) else None
        if isinstance(md, dict):
            return _str(md.get("finishedOn")) or _str(md.get("startedOn"))
        return None
    key = {
        t.DATASET: "registeredAt",
        t.EVALUATION: "evaluatedAt",
        t.PREDICTIONS: "to",
        t.DATA_ACCESS: "accessedAt",
    }.get(ptype)
    return _str(pred.get(key)) if key else None


# -- resolving what the user typed --------------------------------------------------


@dataclass(frozen=True)
class Artifact:
    """What the user asked about: a digest, and the local file it came from, if any."""

    digest: str
    name: str | None
    path: Path | None = None


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    except IsADirectoryError as e:
        raise InputError(
            f"{path} is a directory: pass a file, a sha256:<hex> or a dataset name"
        ) from e
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror}") from e
    return h.hexdigest()


def resolve_artifact(artifact: str | os.PathLike[str], ws: Workspace | None = None) -> Artifact:
    """A file path (sha256 of its bytes), ``sha256:<hex>``, or a dataset name (needs ``ws``)."""
    text = os.fspath(artifact)
    if text.startswith("sha256:"):
        hexd = text[7:].lower()
        if not _HEX64.fullmatch(hexd):
            raise InputError(f"{text}: want sha256: followed by 64 hex digits")
        return Artifact(hexd, None)
    p = Path(text)
    # A folder is never an artifact itself, so a dataset named like a local folder
    # (`ailedger verify train` next to ./train) still resolves by name.
    is_dir = p.is_dir()
    if p.exists() and not is_dir:
        return Artifact(file_digest(p), p.name, p)
    if ws is not None:
        d = _dataset_digest(ws, text)
        if d is not None:
            return Artifact(d, t.dataset_subject_name(text))
    if is_dir:
        raise InputError(
            f"{text} is a directory"
            + (" and no dataset has that name" if ws is not None else "")
            + ": pass a file, a sha256:<hex> or a dataset name"
        )
    raise InputError(
        f"{text}: no such file"
        + (", and no dataset of that name" if ws is not None else "")
        + " (pass a file path, sha256:<hex> or a dataset name)"
    )


def _dataset_digest(ws: Workspace, name: str) -> str | None:
    """The manifest digest of dataset ``name``: datasets module if present, else the log."""
    try:
        from . import datasets  # written concurrently by another module; optional here

        find = getattr(datasets, "find_dataset", None)
        if find is not None:
            rec = find(ws, name)
            for attr in ("manifest_digest", "digest", "manifest_sha256"):
                v = rec.get(attr) if isinstance(rec, dict) else getattr(rec, attr, None)
                if isinstance(v, dict):
                    v = v.get("sha256")
                if isinstance(v, str) and _HEX64.fullmatch(v):
                    return v
    except Exception:
        pass
    want = t.dataset_subject_name(name)
    src = WorkspaceSource(ws)
    try:
        # The latest registration under that name wins; the log decides, not the index.
        for i in reversed(src.lookup(want, NAME)):
            parsed = parse_entry(ws.log.get(i))
            if parsed is None or parsed[1].get("predicateType") != t.DATASET:
                continue
            for s in parsed[1].get("subject", []):
                if isinstance(s, dict) and s.get("name") == want:
                    found = _sha(s.get("digest"))
                    if found:
                        return found
    finally:
        src.close()
    return None


# -- the workspace entry point -----------------------------------------------------


def lineage(ws: Workspace, artifact: str | os.PathLike[str]) -> LineageGraph:
    """The lineage graph of ``artifact`` in the workspace log.

    @param artifact a file path (its sha256), ``sha256:<hex>``, or a dataset name
    @return the graph; every node annotated with its signer's name (when known) and anchor
    @raises NotFoundError when no statement mentions the artifact
    """
    art = resolve_artifact(artifact, ws)
    src = WorkspaceSource(ws)
    try:
        g = build_graph(src, art.digest, art.name)
    finally:
        src.close()
    annotate(ws, g)
    return g


def annotate(ws: Workspace, g: LineageGraph, *, resolve_names: bool = False) -> None:
    """Fill in signer names and anchors from the workspace (and, if asked, the chain)."""
    names = {ws.keyid: ws.name}
    keys = ws.trusted_keys()
    anchors = _witnessed(ws)
    for n in g:
        for kid in n.keyids:
            if kid not in names and resolve_names and kid in keys:
                names[kid] = _chain_name(ws, keys[kid]) or ""
            if names.get(kid):
                n.signer = names[kid]
                break
        n.anchor = _anchor_summary(anchors, n.index)


def _chain_name(ws: Workspace, ed25519: bytes) -> str | None:
    try:
        ids = ws.identity_registry()
        acct = ids.account_of(ed25519)
        ident = ids.resolve(acct) if acct else None
        return ident.name if ident is not None and not ident.revoked else None
    except Exception:
        return None


def _witnessed(ws: Workspace) -> list[tuple[int, dict[str, Any]]]:
    out = []
    for size in ws.log.checkpoint_sizes():
        ref = ws.log.witness(size)
        if ref:
            try:
                doc = json.loads(ref).get("anchor", {})
            except (ValueError, AttributeError):
                continue
            out.append((size, doc if isinstance(doc, dict) else {}))
    return out


def _anchor_summary(anchors: Iterable[tuple[int, dict[str, Any]]], index: int) -> str | None:
    for size, ref in anchors:
        if size > index:
            return f"anchored at size {size}, chain {ref.get('chain_id')} block {ref.get('block')}"
    return None


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: object, what: str) -> bytes:
    if not isinstance(text, str):
        raise InputError(f"{what} must be a base64 string")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise InputError(f"{what} is not valid base64") from e
