"""Verifying an artifact's lineage: every signature, proof, checkpoint, anchor and blob.

``verify_artifact`` walks the lineage graph (from a workspace or from an export bundle)
and checks each statement:

1. ``signature`` — the DSSE envelope verifies under a trusted key (the workspace's
   trusted keys; for a bundle, the log's own key or a key bound on chain by the
   IdentityRegistry, or one the caller passes);
2. ``checkpoint`` — the receipt's checkpoint is signed by the log's verifier key;
3. ``inclusion`` — the entry is in that checkpoint's tree (RFC 9162);
4. ``anchor`` — the checkpoint is anchored on chain (CheckpointRegistry; skipped offline);
5. ``data`` — the blobs its predicate commits to (dataset manifest and fingerprint
   root, prediction leaves and root, an external predicate) match, and, where present
   locally, the artifact file and a dataset's files.

It fails closed: the report is ok only if at least one statement was checked and every
check passed. Each failure names the statement (log index, predicateType), the check
and the reason.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import merkle
from .._log.note import Checkpoint, Verifier, open_checkpoint
from .._log.receipt import Receipt
from .._verify import verify_envelope
from ..errors import Error, InputError, NotFoundError, VerificationError
from . import types as t
from .bundle import Bundle, bundle_verifier, load_bundle
from .fingerprint import file_leaf
from .lineage import (
    _HEX64,
    LineageGraph,
    Ref,
    StatementNode,
    WorkspaceSource,
    annotate,
    build_graph,
    effective,
    file_digest,
    keyids_of,
    parse_entry,
    resolve_artifact,
)

if TYPE_CHECKING:
    from .._anchor import AnchorCheck
    from .._chain import ChainBackend, CheckpointRegistryClient, IdentityRegistryClient
    from .._workspace import Workspace

OK = "✔"
FAIL = "✘"


@dataclass(frozen=True)
class Check:
    """One check: what was checked, on which statement, and the outcome."""

    check: str  # signature, checkpoint, inclusion, anchor, data, artifact, log key, ...
    ok: bool
    detail: str
    index: int | None = None
    predicate_type: str | None = None

    def line(self) -> str:
        where = f"[{self.index}] " if self.index is not None else ""
        kind = f" {_short(self.predicate_type)}" if self.predicate_type else ""
        return f"{OK if self.ok else FAIL} {where}{self.check}{kind}: {self.detail}"


@dataclass
class VerifyReport:
    """Every check made, in order; ``ok`` only if there was at least one and all passed."""

    digest: str
    name: str | None
    checks: list[Check] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    graph: LineageGraph | None = None
    # Inputs the graph names but no statement in it produced (name, kind, digest): a
    # dataset here is a failed check, anything else a warning ("no recorded history").
    unrecorded: list[Ref] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def summary(self) -> str:
        if self.ok:
            n = len({c.index for c in self.checks if c.index is not None})
            return f"verified: {len(self.checks)} checks on {n} statements passed"
        f = self.failures
        if not f:
            return "NOT verified: nothing was checked"
        first = f[0]
        where = (
            f"statement {first.index} ({_short(first.predicate_type)}) "
            if first.index is not None
            else ""
        )
        return (
            f"NOT verified: {len(f)} check(s) failed; first: {where}{first.check}: {first.detail}"
        )


def _short(ptype: str | None) -> str:
    return {
        t.TRAINING: "training run",
        t.DATASET: "dataset",
        t.EVALUATION: "evaluation",
        t.PREDICTIONS: "predictions",
        t.FEDERATED_ROUND: "swarm round",
        t.SWARM_CONTRIBUTION: "swarm contribution",
    }.get(ptype or "", ptype or "")


# -- the entry point ---------------------------------------------------------------


def verify_artifact(
    source: Workspace | Bundle | Mapping[str, Any],
    artifact: str | os.PathLike[str] | None = None,
    *,
    offline: bool = False,
    chain: str | None = None,
    contracts: str | os.PathLike[str] | None = None,
    verifier_key: str | None = None,
    trusted_keys: Mapping[str, bytes] | None = None,
    trust_bundle_key: bool = False,
) -> VerifyReport:
    """Verify the lineage of ``artifact`` from a workspace or a bundle.

    @param source a Workspace, a parsed :class:`Bundle`, or a bundle dict
    @param artifact a file path (its bytes are checked), ``sha256:<hex>``, a dataset name
           (workspace only); for a bundle, None means the bundle's artifact
    @param offline check signatures, checkpoints, proofs and data, not the chain
    @param chain JSON-RPC URL or embedded chain file to check anchors on (default: the
           workspace's chain; a bundle needs one unless offline)
    @param contracts deployment.json naming the CheckpointRegistry/IdentityRegistry to trust
    @param verifier_key the log's C2SP verifier key, as the verifier knows it
    @param trusted_keys extra DSSE keys (keyid → raw Ed25519) the verifier trusts
    @param trust_bundle_key accept a bundle's log key with nothing else binding it (a
           warning is recorded); otherwise that is a failed ``log key`` check
    @return the report; never raises for a failed check, only for unusable input
    """
    from .._workspace import Workspace

    if isinstance(source, Workspace):
        return _verify_workspace(
            source, artifact, offline, chain, contracts, verifier_key, trusted_keys
        )
    b = source if isinstance(source, Bundle) else load_bundle(source)
    return _verify_bundle(
        b, artifact, offline, chain, contracts, verifier_key, trusted_keys, trust_bundle_key
    )


# -- shared checking of one statement ------------------------------------------------


class _Checker:
    def __init__(self, report: VerifyReport, verifier: Verifier | None) -> None:
        self.r = report
        self.verifier = verifier
        self.anchor_fn: Callable[[Checkpoint], AnchorCheck] | None = None
        self.anchor_skip: str | None = None
        self._anchors: dict[tuple[int, bytes], AnchorCheck | Exception] = {}
        self._notes: dict[str, Checkpoint] = {}
        # From a bundle there is no data to rebuild a records-mode root from.
        self.bundle = False
        # A swarm member's Ed25519 key by address (from the IdentityRegistry); None: no
        # chain to ask, so peers' contribution signatures are not checked (a warning).
        self.member_key: Callable[[str], bytes | None] | None = None

    def add(self, check: str, ok: bool, detail: str, n: StatementNode | None = None) -> None:
        self.r.checks.append(
            Check(
                check,
                ok,
                detail,
                None if n is None else n.index,
                None if n is None else n.predicate_type,
            )
        )

    def statement(
        self,
        n: StatementNode,
        receipt: str | None,
        keys: Mapping[str, bytes],
        blob: Callable[[str], bytes | None],
        omitted: Iterable[str] = (),
        names: Mapping[str, str] | None = None,
    ) -> None:
        # 1. signature
        try:
            if not keys:
                raise VerificationError("no trusted signer keys")
            _, good = verify_envelope(n.entry, keys)
            who = ", ".join((names or {}).get(k) or f"keyid {k[:16]}…" for k in good)
            self.add("signature", True, f"DSSE signed by {who}", n)
        except Error as e:
            claimed = ", ".join(k[:16] + "…" for k in n.keyids) or "none"
            self.add("signature", False, f"{e} (claimed keyid {claimed})", n)
        # 2-3. checkpoint and inclusion
        cp = None
        if receipt is None:
            self.add("inclusion", False, "no receipt for this statement", n)
        elif self.verifier is None:
            self.add("checkpoint", False, "no trusted log verifier key", n)
        else:
            try:
                rc = Receipt.parse(receipt)
                if rc.checkpoint not in self._notes:  # one signature check per checkpoint
                    self._notes[rc.checkpoint] = open_checkpoint(rc.checkpoint, self.verifier)
                cp = self._notes[rc.checkpoint]
                self.add("checkpoint", True, f"{cp.origin} size {cp.size}, signed by the log", n)
            except Error as e:
                self.add("checkpoint", False, str(e), n)
                rc = None
            if rc is not None and cp is not None:
                try:
                    if rc.index != n.index:
                        raise VerificationError(f"receipt is for entry {rc.index}, not {n.index}")
                    merkle.verify_inclusion(
                        merkle.leaf_hash(n.entry), rc.index, cp.size, rc.proof, cp.root
                    )
                    self.add(
                        "inclusion", True, f"entry {n.index} is in the tree of size {cp.size}", n
                    )
                except Error as e:
                    self.add("inclusion", False, f"{e} (entry or proof edited?)", n)
                    cp = None
        # 4. anchor
        if self.anchor_skip is not None:
            pass
        elif cp is not None and self.anchor_fn is not None:
            key = (cp.size, cp.root)
            if key not in self._anchors:
                try:
                    self._anchors[key] = self.anchor_fn(cp)
                except Exception as e:
                    self._anchors[key] = e
            res = self._anchors[key]
            if isinstance(res, Exception):
                msg = str(res) if isinstance(res, Error) else f"{type(res).__name__}: {res}"
                self.add("anchor", False, msg, n)
            else:
                how = (
                    "anchored"
                    if res.exact
                    else f"covered by the anchor of size {res.anchored_size}"
                )
                self.add(
                    "anchor",
                    True,
                    f"size {cp.size} {how} on chain {res.chain_id} block {res.block_number}"
                    f" at {_utc(res.timestamp)}",
                    n,
                )
        elif cp is not None:
            self.add("anchor", False, "no chain to check the anchor on", n)
        # 5. data the predicate commits to
        self.data(n, blob, set(omitted))

    def data(
        self, n: StatementNode, blob: Callable[[str], bytes | None], omitted: set[str]
    ) -> None:
        if n.external_blob is not None:
            d = n.external_blob
            data = _get(blob, d)
            if isinstance(data, bytes) and hashlib.sha256(data).hexdigest() == d:
                self.add("data", True, f"external predicate blob sha256:{d[:16]}… matches", n)
            else:
                # Never accepted as omitted: without it the statement's dependencies
                # would silently vanish from the graph.
                why = "left out of the bundle" if d in omitted and data is None else _why(data)
                self.add("data", False, f"external predicate blob sha256:{d}: {why}", n)
                return
        _, pred, _ = effective(n.statement, lambda d: _ok_blob(blob, d))
        if n.predicate_type == t.DATASET:
            self._dataset(n, pred, blob, omitted)
        elif n.predicate_type == t.PREDICTIONS:
            self._predictions(n, pred, blob, omitted)
        elif n.predicate_type == t.FEDERATED_ROUND:
            self._contributions(n, pred, blob)

    def _contributions(
        self, n: StatementNode, pred: Mapping[str, Any], blob: Callable[[str], bytes | None]
    ) -> None:
        """Re-check each member's contribution the round statement relies on: the envelope
        kept by digest, its signature under the member's registered key, its subject (the
        committed update) and that it names the datasets the round statement records."""
        from .._swarm import contribution

        sw = pred.get("swarm")
        swarm = (
            {"id": sw.get("id"), "chainId": sw.get("chainId"), "contract": sw.get("contract")}
            if isinstance(sw, dict)
            else None
        )
        for m in pred.get("members") or []:
            if not isinstance(m, dict) or not isinstance(m.get("contribution"), dict):
                continue  # no update this round, or a statement from before contributions
            ct, addr = m["contribution"], str(m.get("address"))
            upd = m.get("update")
            update = upd.get("digest", {}).get("sha256") if isinstance(upd, dict) else None
            if ct.get("verified") is not True:
                self.r.warnings.append(
                    f"statement {n.index}: the contribution of {addr} was not verified when"
                    f" the round ran ({ct.get('reason')}): its datasets are not recorded"
                )
                continue
            env = ct.get("envelope")
            d = env.get("sha256") if isinstance(env, dict) else None
            if not (isinstance(d, str) and _HEX64.fullmatch(d)) or swarm is None:
                self.add("contribution", False, f"{addr}: no envelope digest or swarm", n)
                continue
            data = _get(blob, d)
            if not (isinstance(data, bytes) and hashlib.sha256(data).hexdigest() == d):
                self.add("contribution", False, f"{addr}: envelope sha256:{d}: {_why(data)}", n)
                continue
            try:
                key = self.member_key(addr) if self.member_key is not None else None
                datasets = contribution.check(
                    data, key, swarm=swarm, r=pred.get("round"), member=addr,
                    update=str(update),
                )  # fmt: skip
                if datasets != m.get("datasets"):
                    raise VerificationError(
                        "the datasets recorded are not those its signed contribution names"
                    )
            except Error as e:
                self.add("contribution", False, f"{addr}: {e}", n)
                continue
            names = ", ".join(str(x["name"]) for x in datasets) or "no datasets named"
            if key is None:
                self.r.warnings.append(
                    f"statement {n.index}: the contribution of {addr} ({names}) matches its"
                    " digest, but its signature was not checked: the member's key is on chain"
                )
                continue
            self.add(
                "contribution", True,
                f"{addr} signed its update sha256:{str(update)[:16]}… ({names})", n,
            )  # fmt: skip

    def _blob(
        self,
        n: StatementNode,
        obj: object,
        what: str,
        blob: Callable[[str], bytes | None],
        omitted: set[str],
    ) -> bytes | None:
        d = obj.get("digest", {}).get("sha256") if isinstance(obj, dict) else None
        if not (isinstance(d, str) and _HEX64.fullmatch(d)):
            self.add("data", False, f"predicate names no {what} digest", n)
            return None
        data = _get(blob, d)
        size = obj.get("size") if isinstance(obj, dict) else None
        if isinstance(data, bytes) and hashlib.sha256(data).hexdigest() == d:
            if isinstance(size, int) and size != len(data):
                self.add("data", False, f"{what} is {len(data)} bytes, predicate says {size}", n)
                return None
            return data
        if data is None and d in omitted:
            # The omitted list is the bundle's word; the size is the signed predicate's.
            # Only a blob the predicate says is over the export limit may be left out.
            from . import bundle as bdl

            limit = bdl.MAX_BLOB
            if isinstance(size, int) and not isinstance(size, bool) and size > limit:
                self.r.warnings.append(
                    f"statement {n.index}: {what} sha256:{d[:16]}… ({size} bytes, over the"
                    f" {limit}-byte bundle limit) was left out of the bundle: not checked"
                )
                return None
            self.add(
                "data",
                False,
                f"{what} sha256:{d} was left out of the bundle, but the signed predicate says"
                f" it is {size if isinstance(size, int) else 'of unknown size'}"
                f"{' bytes' if isinstance(size, int) else ''}, not over the {limit}-byte"
                " limit (bundle edited?)",
                n,
            )
            return None
        self.add("data", False, f"{what} sha256:{d}: {_why(data)}", n)
        return None

    def _dataset(
        self,
        n: StatementNode,
        pred: Mapping[str, Any],
        blob: Callable[[str], bytes | None],
        omitted: set[str],
    ) -> None:
        data = self._blob(n, pred.get("manifest"), "dataset manifest", blob, omitted)
        if data is None:
            return
        fp = pred.get("fingerprint") if isinstance(pred.get("fingerprint"), dict) else {}
        assert isinstance(fp, dict)
        try:
            man = json.loads(data)
            files = man["files"]
            mode = man.get("mode", fp.get("mode", "files"))
            if mode != "files" and self.bundle:
                # The root is over the records themselves, which a bundle never carries:
                # say so rather than count the manifest digest as the dataset verified.
                self.r.warnings.append(
                    f"statement {n.index}: dataset manifest matches its digest, but the"
                    f" {mode}-mode fingerprint root can only be rebuilt from the data itself:"
                    " not checked"
                )
                return
            if mode != "files":
                self.add(
                    "data",
                    True,
                    f"dataset manifest matches ({len(files)} files; record leaves are"
                    " checked against the data itself)",
                    n,
                )
                return
            leaves = [
                file_leaf(str(f["path"]), _hex64(f["sha256"]), _count(f["size"]))
                for f in sorted(files, key=lambda f: str(f["path"]).encode())
            ]
        except (ValueError, KeyError, TypeError, Error) as e:
            self.add("data", False, f"dataset manifest is malformed: {e}", n)
            return
        root = merkle.root(leaves).hex()
        if root != fp.get("root"):
            self.add(
                "data",
                False,
                f"dataset fingerprint root {fp.get('root')} does not match the manifest ({root})",
                n,
            )
            return
        self.add(
            "data", True, f"dataset manifest and fingerprint root match ({len(leaves)} files)", n
        )

    def _predictions(
        self,
        n: StatementNode,
        pred: Mapping[str, Any],
        blob: Callable[[str], bytes | None],
        omitted: set[str],
    ) -> None:
        data = self._blob(n, pred.get("leaves"), "prediction leaves", blob, omitted)
        if data is None:
            return
        lines = data.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        root = merkle.root(lines).hex()
        if root != pred.get("root") or pred.get("count") != len(lines):
            self.add(
                "data",
                False,
                f"prediction leaves give root {root} over {len(lines)} leaves; predicate says"
                f" {pred.get('root')} over {pred.get('count')}",
                n,
            )
            return
        self.add("data", True, f"{len(lines)} prediction leaves match the batch root", n)


def _get(blob: Callable[[str], bytes | None], d: str) -> bytes | Exception | None:
    try:
        return blob(d)
    except Error as e:
        return e


def _ok_blob(blob: Callable[[str], bytes | None], d: str) -> bytes | None:
    r = _get(blob, d)
    return r if isinstance(r, bytes) else None


def _msg(e: BaseException) -> str:
    return str(e) if isinstance(e, Error) else f"{type(e).__name__}: {e}"


def _why(data: bytes | Exception | None) -> str:
    if data is None:
        return "missing"
    if isinstance(data, Exception):
        return str(data)
    return "content does not match its digest (modified)"


def _hex64(v: object) -> str:
    if not isinstance(v, str) or len(v) != 64 or v.strip("0123456789abcdef"):
        raise ValueError(f"not a sha256 hex digest: {v!r}")
    return v


def _count(v: object) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ValueError(f"not a file size: {v!r}")
    return v


def _utc(ts: int) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- chains --------------------------------------------------------------------------


def _open_chain(
    chain: str, contracts: str | os.PathLike[str] | Mapping[str, Any]
) -> tuple[ChainBackend, CheckpointRegistryClient, IdentityRegistryClient]:
    from .._anchor import chain_spec, open_backend, registry
    from .._chain import Deployment, IdentityRegistryClient

    backend = open_backend(chain_spec(chain))
    try:
        dep = (
            Deployment.from_dict(dict(contracts))
            if isinstance(contracts, Mapping)
            else Deployment.load(os.fspath(contracts))
        )
        dep.validate(backend)
        ids = IdentityRegistryClient(backend, dep.contracts["IdentityRegistry"])
        return backend, registry(backend, dep), ids
    except BaseException:
        backend.close()
        raise


def _name_on_chain(ids: IdentityRegistryClient, key: bytes) -> str | None:
    acct = ids.account_of(key)
    ident = ids.resolve(acct) if acct else None
    if ident is None or ident.revoked or ident.ed25519 != key:
        return None
    return ident.name


# -- workspace -------------------------------------------------------------------------


def _verify_workspace(
    ws: Workspace,
    artifact: str | os.PathLike[str] | None,
    offline: bool,
    chain: str | None,
    contracts: str | os.PathLike[str] | None,
    verifier_key: str | None,
    trusted_keys: Mapping[str, bytes] | None,
) -> VerifyReport:
    from .._anchor import check_anchor

    if artifact is None:
        raise InputError("name the artifact to verify: a file, sha256:<hex> or a dataset name")
    art = resolve_artifact(artifact, ws)
    report = VerifyReport(art.digest, art.name)
    ck = _Checker(report, ws.verifier)
    if verifier_key is not None and verifier_key.strip() != ws.verifier_key:
        ck.add("log key", False, "the verifier key given is not this workspace log's key")
    src = WorkspaceSource(ws)
    try:
        try:
            g = build_graph(src, art.digest, art.name)
        except NotFoundError as e:
            if art.path is None:
                raise
            ck.add("artifact", False, f"{art.path}: {e}")
            return report
    finally:
        src.close()
    annotate(ws, g)
    report.graph = g
    _unrecorded(ck, g, "log")
    if art.path is not None:
        made = any(art.digest in {r.digest for r in g.nodes[i].subjects} for i in g.producers)
        ck.add(
            "artifact",
            True,
            f"{art.path} sha256:{art.digest[:16]}… is "
            + (
                "the subject of a recorded statement"
                if made
                else "referenced by recorded statements"
            ),
        )
    backend = None
    ids_fn: Callable[[], IdentityRegistryClient] | None = None if offline else ws.identity_registry
    if offline:
        ck.anchor_skip = "offline"
        report.warnings.append("anchors not checked (--offline)")
    elif chain is not None:
        if contracts is None:
            raise InputError("--chain needs --contracts (the deployment.json to trust)")
        backend, reg, ids = _open_chain(chain, contracts)
        ck.anchor_fn = lambda cp: check_anchor(cp, ws.verifier, reg, ws.log)
        ids_fn = lambda: ids  # noqa: E731
    else:
        try:
            reg = ws.registry()
            ck.anchor_fn = lambda cp: check_anchor(cp, ws.verifier, reg, ws.log)
        except Error as e:
            msg = str(e)
            ck.anchor_fn = lambda cp: _raise(msg)
    keys = dict(ws.trusted_keys())
    keys.update(trusted_keys or {})
    names = {ws.keyid: ws.name}
    ck.member_key = _member_keys(ids_fn, {ws.address.lower(): ws.ed25519_public})
    witnessed = [s for s in ws.log.checkpoint_sizes() if ws.log.witness(s)]
    notes: dict[int | None, str] = {}
    try:
        for n in g:
            size = next((s for s in witnessed if s > n.index), None)
            try:
                receipt = _receipt(ws, n.index, size, notes)
            except Error as e:
                ck.add("inclusion", False, f"no receipt: {e}", n)
                continue
            ck.statement(n, receipt, keys, ws.blobs.get, names=names)
            _local_dataset(ck, ws, n)
    finally:
        if backend is not None:
            backend.close()
    return report


def _member_keys(
    ids: Callable[[], IdentityRegistryClient] | None, known: Mapping[str, bytes]
) -> Callable[[str], bytes | None]:
    """Address → Ed25519 key: ``known`` ones, else the IdentityRegistry (``ids``; None:
    offline, no key). Raises VerificationError for an unknown or revoked identity."""
    from .._swarm.contribution import member_key

    opened: list[IdentityRegistryClient] = []

    def key(addr: str) -> bytes | None:
        if addr.lower() in known:
            return known[addr.lower()]
        if ids is None:
            return None
        if not opened:
            try:
                opened.append(ids())
            except Error as e:
                raise VerificationError(f"cannot read the IdentityRegistry: {e}") from None
        return member_key(opened[0], addr)

    return key


def _unrecorded(ck: _Checker, g: LineageGraph, where: str) -> None:
    """Report every input without a producer in the graph, so dropping a statement (from
    a bundle, or never recording it) is visible: a dataset must have its registration."""
    seen: set[str] = set()
    for n in g:
        if n.index not in g.walked:
            continue  # an input's producer reached from a referrer: its inputs were not looked up
        for dep in n.dependencies:
            ref = dep.ref
            if ref.kind == t.KIND_MEMBER_DATASET:
                continue  # registered in that member's log: its contribution check covers it
            producers = dep.producers or (g.producers if ref.digest == g.digest else [])
            if ref.kind == t.KIND_DATASET:
                if any(g.nodes[j].predicate_type == t.DATASET for j in producers):
                    continue
            elif producers:
                continue
            if ref.digest in seen:
                continue
            seen.add(ref.digest)
            ck.r.unrecorded.append(ref)
            label = f"{ref.name + ' ' if ref.name else ''}sha256:{ref.digest}"
            if ref.kind == t.KIND_DATASET:
                ck.add("lineage", False, f"dataset {label} has no registration in the {where}", n)
            else:
                ck.r.warnings.append(
                    f"statement {n.index}: {ref.kind or 'input'} {label}: no recorded history"
                )


def _receipt(ws: Workspace, index: int, size: int | None, notes: dict[int | None, str]) -> str:
    """``ws.receipt``, with each checkpoint read (or signed) once per verification."""
    if size not in notes:
        notes[size] = ws.log.checkpoint() if size is None else ws.log.checkpoint_at(size)
    note = notes[size]
    cp = Checkpoint.from_note(note)
    proof = ws.log.inclusion_proof(index, cp.size)
    ref = ws.log.witness(cp.size)
    return Receipt(index, tuple(proof), note, ref.encode() if ref else None).text()


def _raise(msg: str) -> Any:
    raise VerificationError(msg)


def _local_dataset(ck: _Checker, ws: Workspace, n: StatementNode) -> None:
    """Re-fingerprint a dataset's files when the datasets module knows where they are.

    Only two things may skip the check, each with a warning: no source path recorded, or
    that path not present on this machine. Anything else that goes wrong (an unreadable
    file, a file the registered mode cannot parse, a symlink loop) is a failed check:
    data that cannot be re-fingerprinted is not data that was verified.
    """
    if n.predicate_type != t.DATASET:
        return
    name = ck.r.graph.effective_predicates.get(n.index, {}).get("name") if ck.r.graph else None
    if not isinstance(name, str):
        return
    try:
        from . import datasets
    except ImportError:
        return
    find = getattr(datasets, "find_dataset", None)
    verify_ds = getattr(datasets, "verify_dataset", None)
    if find is None or verify_ds is None:
        return
    try:
        rec = find(ws, name)
    except Exception as e:
        ck.add("dataset files", False, f"cannot read the dataset registry: {_msg(e)}", n)
        return
    if rec is None:
        ck.r.warnings.append(
            f"statement {n.index}: dataset {name!r} is not in this workspace's dataset"
            " registry: its local files were not checked"
        )
        return
    if getattr(rec, "manifest_digest", None) not in {r.digest for r in n.subjects}:
        ck.r.warnings.append(
            f"statement {n.index}: dataset {name!r} was registered again since: the local"
            " files are checked against the latest version only"
        )
        return
    raw = None
    for attr in ("path", "source", "source_path", "root"):
        v = rec.get(attr) if isinstance(rec, dict) else getattr(rec, attr, None)
        if isinstance(v, (str, os.PathLike)):
            raw = v
            break
    if raw is None:
        ck.r.warnings.append(
            f"statement {n.index}: dataset {name!r} has no source path recorded:"
            " its local files were not checked"
        )
        return
    path = Path(raw)
    if not os.path.lexists(path):
        ck.r.warnings.append(
            f"statement {n.index}: dataset {name!r}: {path} is not present on this machine:"
            " its local files were not checked"
        )
        return
    try:
        diff = verify_ds(ws, name, path)
    except Exception as e:
        ck.add("dataset files", False, f"{path} cannot be re-fingerprinted: {_msg(e)}", n)
        return
    if getattr(diff, "ok", False):
        ck.add("dataset files", True, f"{path} matches the registered fingerprint", n)
    else:
        parts = [
            f"{what} {', '.join(list(v)[:5])}{'…' if len(v) > 5 else ''}"
            for what, v in (
                ("changed:", getattr(diff, "changed", ())),
                ("added:", getattr(diff, "added", ())),
                ("removed:", getattr(diff, "removed", ())),
            )
            if v
        ]
        ck.add(
            "dataset files",
            False,
            f"{path} differs from the registered dataset ({'; '.join(parts) or 'root differs'})",
            n,
        )


# -- bundle ----------------------------------------------------------------------------


def _verify_bundle(
    b: Bundle,
    artifact: str | os.PathLike[str] | None,
    offline: bool,
    chain: str | None,
    contracts: str | os.PathLike[str] | None,
    verifier_key: str | None,
    trusted_keys: Mapping[str, bytes] | None,
    trust_bundle_key: bool,
) -> VerifyReport:
    from .._anchor import check_anchor

    report = VerifyReport(b.digest, b.name)
    ck = _Checker(report, None)
    ck.bundle = True
    # The artifact the user holds must be the one the bundle is about.
    if artifact is not None:
        text = os.fspath(artifact)
        if text.startswith("sha256:"):
            got, label = resolve_artifact(text).digest, text
        else:
            p = Path(text)
            if not p.exists():
                raise InputError(f"{text}: no such file")
            got, label = file_digest(p), str(p)
        if got == b.digest:
            ck.add("artifact", True, f"{label} sha256:{got[:16]}… is the bundle's artifact")
        else:
            ck.add(
                "artifact",
                False,
                f"{label} has sha256:{got}, but the bundle is about sha256:{b.digest}"
                " (the file was changed, or this is the wrong bundle)",
            )
    # Which log key to trust, and what binds it.
    try:
        v = bundle_verifier(b)
    except VerificationError as e:
        ck.add("log key", False, str(e))
        return report
    if verifier_key is not None:
        try:
            given = Verifier.parse(verifier_key.strip())
        except Error as e:
            raise InputError(f"--verifier-key: {e}") from None
        if str(given) != str(v):
            ck.add(
                "log key",
                False,
                f"the bundle's log key {v} is not the one given ({given}): edited or another log",
            )
            return report
        ck.add("log key", True, "the bundle's log key is the one given (--verifier-key)")
    ck.verifier = v
    backend = None
    ids = None
    key_bound = verifier_key is not None
    if offline:
        ck.anchor_skip = "offline"
        report.warnings.append("anchors not checked (--offline)")
    elif chain is None:
        ck.add(
            "anchor",
            False,
            "no chain to check anchors on: pass --chain and --contracts, or --offline",
        )
    else:
        dep: Any = contracts
        if contracts is None:
            dep = (b.chain or {}).get("deployment")
            if not isinstance(dep, dict):
                raise InputError("--chain needs --contracts: the bundle names no deployment")
            report.warnings.append(
                "contracts taken from the bundle: pass --contracts with a deployment.json you"
                " trust to make the chain bind the log key"
            )
        try:
            backend, reg, ids = _open_chain(chain, dep)
        except Error as e:
            ck.add("anchor", False, f"cannot use the chain: {e}")
        else:
            ck.anchor_fn = lambda cp: check_anchor(cp, v, reg, None)
            if contracts is not None:  # a registry the verifier chose can bind the key
                key_bound = _bound_on_chain(ck, reg, v) or key_bound
    # DSSE keys: the log's own key is bound with the log key; others need the chain.
    keys: dict[str, bytes] = dict(trusted_keys or {})
    names: dict[str, str] = {}
    for kid, key in b.signers.items():
        if hashlib.sha256(key).hexdigest() != kid:
            ck.add("signer", False, f"bundle signer {kid[:16]}… carries another key (edited)")
            continue
        if key == v.public:
            keys[kid] = key
            names[kid] = _log_signer_name(v, b.signer_names.get(kid))
        elif ids is not None:
            try:
                nm = _name_on_chain(ids, key)
            except Exception as e:
                nm = None
                report.warnings.append(f"signer {kid[:16]}…: identity lookup failed: {e}")
            if nm is not None:
                keys[kid] = key
                names[kid] = f"{nm} (IdentityRegistry)"
    if ids is not None:
        ck.member_key = _member_keys(lambda: ids, {})
    if not key_bound:
        msg = (
            "key taken from the bundle: check it out of band"
            f" ({v}) — pass the log's verifier key with --verifier-key, bind it with --chain"
            " and --contracts, or accept it with --trust-bundle-key"
        )
        if trust_bundle_key:
            report.warnings.append(msg)
        else:
            ck.add("log key", False, msg)
    # Every statement the bundle carries is checked, reachable or not, so an edited
    # entry can never just drop out of the graph.
    src = b.source()
    try:
        g = build_graph(src, b.digest, b.name)
        report.graph = g
        _unrecorded(ck, g, "bundle")
    except NotFoundError as e:
        g = None
        ck.add("lineage", False, f"the bundle has no statement about its artifact: {e}")
    try:
        for idx in sorted(b.entries):
            n = g.nodes.get(idx) if g is not None else None
            if n is None:
                n = _node(idx, b.entries[idx], src.blob)
            if n is None:
                # Not a statement any more (edited?): still check what can be checked,
                # so the report says exactly how the entry differs from what was logged.
                ck.r.checks.append(
                    Check(
                        "statement", False, "entry is not a DSSE in-toto statement (edited?)", idx
                    )
                )
                n = _raw_node(idx, b.entries[idx])
            n.signer = next((names[k] for k in n.keyids if k in names), None)
            ck.statement(n, b.receipts.get(idx), keys, src.blob, b.omitted, names)
    finally:
        if backend is not None:
            backend.close()
    return report


def _log_signer_name(v: Verifier, claimed: str | None) -> str:
    """The log key's name (its origin, checked against the key), plus any bundle-given name.

    A bundle's ``signers[kid].name`` is not signed by anything, so it is shown only
    labelled as a claim: a bundle can call itself "EU Notified Body (IdentityRegistry)".
    """
    if not claimed or claimed == v.name:
        return v.name
    shown = json.dumps(claimed[:80], ensure_ascii=True)  # quoted, one line, bounded
    return f"{v.name} (log key), {shown} (claimed by the bundle)"


def _bound_on_chain(ck: _Checker, reg: CheckpointRegistryClient, v: Verifier) -> bool:
    from .._chain import log_id_of

    try:
        info = reg.log_info(log_id_of(v.name))
    except Exception as e:  # chain libraries raise anything; fail closed
        ck.add("log key", False, f"cannot read the CheckpointRegistry: {e}")
        return False
    if info is None:
        ck.add("log key", False, f"log {v.name} is not registered on chain {reg.backend.chain_id}")
        return False
    if info.verifier_key != str(v):
        ck.add(
            "log key", False, f"the chain binds log {v.name} to another key: {info.verifier_key}"
        )
        return False
    ck.add(
        "log key",
        True,
        f"bound on chain {reg.backend.chain_id} by CheckpointRegistry {reg.address}",
    )
    return True


def _raw_node(idx: int, entry: bytes) -> StatementNode:
    try:
        env = json.loads(entry)
    except ValueError:
        env = {}
    sigs = env.get("signatures") if isinstance(env, dict) else None
    keyids = tuple(
        str(s.get("keyid", ""))
        for s in (sigs if isinstance(sigs, list) else [])
        if isinstance(s, dict)
    )
    return StatementNode(idx, "", {}, env if isinstance(env, dict) else {}, entry, keyids, [], [])


def _node(idx: int, entry: bytes, blob: Callable[[str], bytes | None]) -> StatementNode | None:
    parsed = parse_entry(entry)
    if parsed is None:
        return None
    env, st = parsed
    ptype, _pred, ext = effective(st, blob)
    from .lineage import subjects

    return StatementNode(
        index=idx,
        predicate_type=ptype,
        statement=st,
        envelope=env,
        entry=entry,
        keyids=keyids_of(env),
        subjects=subjects(st),
        dependencies=[],
        external_blob=ext,
    )
