"""Export bundles: an artifact's lineage in one file another machine can verify.

Three formats:

- ``bundle`` (default): self-contained JSON (``ailedger-bundle/v1``): the log's verifier
  key and origin, the chain reference, and for every statement of the lineage its log
  entry (the canonical DSSE envelope) and a ``tlog-proof@v1`` receipt, plus the blobs
  needed to check predicates (dataset manifests, prediction leaves, external predicates),
  base64, up to a size budget. ``verify_artifact(load_bundle(...))`` checks it with no
  access to the workspace. See docs/lineage.md for the fields.
- ``intoto``: JSON lines, one canonical DSSE envelope per line (for in-toto/SLSA tools).
- ``prov-json``: W3C PROV-JSON (entities, activities, agents and their relations).
"""

from __future__ import annotations

import datetime
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import rfc8785

from .._log.note import Verifier
from ..errors import Error, InputError, VerificationError
from . import types as t
from .lineage import (
    _HEX64,
    LineageGraph,
    MemorySource,
    StatementNode,
    annotate,
    b64,
    lineage,
    unb64,
)

if TYPE_CHECKING:
    from .._workspace import Workspace

FORMAT = "ailedger-bundle/v1"
FORMATS = ("bundle", "prov-json", "intoto")
# One blob larger than this is left out (and listed as omitted). A verifier accepts an
# omission only when the *signed* predicate says the blob is larger than this, so every
# smaller blob is always included (there is no total budget: leaving out a small blob
# would make the bundle fail verification).
MAX_BLOB = 16 * 1024 * 1024


# -- writing -----------------------------------------------------------------------


def _blobs_needed(g: LineageGraph) -> list[tuple[str, str]]:
    """(digest, role) of every blob a verifier needs to check the graph's predicates."""
    out: list[tuple[str, str]] = []
    for n in g:
        if n.external_blob:
            out.append((n.external_blob, "external-predicate"))
        pred = g.effective_predicates.get(n.index, {})
        if n.predicate_type == t.DATASET:
            d = _digest_in(pred.get("manifest"))
            if d:
                out.append((d, "dataset-manifest"))
        elif n.predicate_type == t.PREDICTIONS:
            d = _digest_in(pred.get("leaves"))
            if d:
                out.append((d, "prediction-leaves"))
        elif n.predicate_type == t.FEDERATED_ROUND:
            # Peers' contributions live in their logs: the envelopes the round relied on
            # travel with the bundle so `verify` can check them again without the peers.
            for m in pred.get("members") or []:
                ct = m.get("contribution") if isinstance(m, dict) else None
                env = ct.get("envelope") if isinstance(ct, dict) else None
                d = env.get("sha256") if isinstance(env, dict) else None
                if isinstance(d, str) and _HEX64.fullmatch(d):
                    out.append((d, "swarm-contribution"))
    seen: set[str] = set()
    return [(d, r) for d, r in out if not (d in seen or seen.add(d))]  # type: ignore[func-returns-value]


def _digest_in(obj: object) -> str | None:
    if isinstance(obj, dict) and isinstance(obj.get("digest"), dict):
        v = obj["digest"].get("sha256")
        if isinstance(v, str) and _HEX64.fullmatch(v):
            return v
    return None


def export_bundle(
    ws: Workspace,
    artifact: str | os.PathLike[str],
    *,
    max_blob: int | None = None,
) -> dict[str, Any]:
    """The self-contained verification bundle of ``artifact`` (format ``ailedger-bundle/v1``).

    Receipts are against the log's latest checkpoint: anchor first (``ws.anchor()``) if the
    bundle should verify online.

    @param artifact a file path, ``sha256:<hex>`` or a dataset name
    @param max_blob leave out blobs larger than this (default :data:`MAX_BLOB`; verifiers
           accept only omissions over :data:`MAX_BLOB`)
    @return a JSON-ready dict; write it with :func:`dumps`
    @raises NotFoundError when the artifact has no history
    """
    g = lineage(ws, artifact)
    ws.log.checkpoint()  # sign the current tree so every receipt has a checkpoint
    keys = ws.trusted_keys()
    signers: dict[str, Any] = {}
    statements = []
    for n in g:
        for kid in n.keyids:
            if kid in keys and kid not in signers:
                signers[kid] = {
                    "ed25519": b64(keys[kid]),
                    "name": ws.name if kid == ws.keyid else None,
                }
        statements.append(
            {
                "index": n.index,
                "predicateType": n.predicate_type,
                "envelope": n.envelope,
                "receipt": ws.receipt(n.index),
            }
        )
    blobs: dict[str, Any] = {}
    omitted: list[dict[str, Any]] = []
    limit = MAX_BLOB if max_blob is None else max_blob
    for d, role in _blobs_needed(g):
        try:
            data = ws.blobs.get(d)
        except Error as e:
            omitted.append({"digest": {"sha256": d}, "role": role, "reason": str(e)})
            continue
        if len(data) > limit:
            omitted.append(
                {"digest": {"sha256": d}, "role": role, "size": len(data), "reason": "too large"}
            )
            continue
        blobs[d] = {"role": role, "size": len(data), "base64": b64(data)}
    chain: dict[str, Any] | None = None
    cfg = ws.chain_config
    if cfg.get("deployment"):
        chain = {
            "backend": cfg.get("backend"),
            "chain_id": cfg.get("chain_id"),
            "url": cfg.get("url"),
            "CheckpointRegistry": cfg["deployment"]["contracts"].get("CheckpointRegistry"),
            "deployment": cfg["deployment"],
        }
    return {
        "format": FORMAT,
        "created": _now(),
        "artifact": {"name": g.name, "digest": {"sha256": g.digest}},
        "log": {"origin": ws.origin, "verifier_key": ws.verifier_key, "size": ws.log.size},
        "chain": chain,
        "signers": signers,
        "statements": statements,
        "blobs": blobs,
        "omitted_blobs": omitted,
    }


def dumps(doc: Mapping[str, Any]) -> bytes:
    """Bundle bytes: indented JSON with sorted keys, ending in a newline."""
    return (json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode()


def export_intoto(ws: Workspace, artifact: str | os.PathLike[str]) -> bytes:
    """JSON lines: the canonical DSSE envelope of each statement of the lineage, log order."""
    g = lineage(ws, artifact)
    return b"".join(n.entry + b"\n" for n in g)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- reading -----------------------------------------------------------------------


@dataclass
class Bundle:
    """A parsed, structurally checked bundle (nothing cryptographic verified yet)."""

    doc: dict[str, Any]
    digest: str
    name: str | None
    verifier_key: str
    origin: str
    chain: dict[str, Any] | None
    signers: dict[str, bytes]
    signer_names: dict[str, str]
    entries: dict[int, bytes]
    receipts: dict[int, str]
    blobs: dict[str, bytes]
    omitted: set[str] = field(default_factory=set)

    def source(self) -> MemorySource:
        return MemorySource(self.entries, self.blobs)


def _need(cond: bool, what: str) -> None:
    if not cond:
        raise VerificationError(f"bundle is not valid: {what}")


def _k(key: object) -> str:
    """A JSON key as it may appear in a one-line error (keys are the bundle's, any text)."""
    text = str(key)
    return text if re.fullmatch(r"[\w.:+/=-]{1,80}", text) else json.dumps(text[:80])


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _type(doc: Mapping[str, Any], key: str, where: str, want: str, optional: bool = True) -> Any:
    """``doc[key]`` if it has JSON type ``want`` (or is absent/null when optional)."""
    v = doc.get(key)
    if v is None:
        _need(optional, f"{where}{key} is missing ({want} expected)")
        return None
    ok = {
        "text": isinstance(v, str),
        "an integer": _is_int(v),
        "an object": isinstance(v, dict),
        "a list": isinstance(v, list),
    }[want]
    _need(ok, f"{where}{key} must be {want}, not {_json_type(v)}")
    return v


def _json_type(v: object) -> str:
    if isinstance(v, bool):
        return "a boolean"
    return {
        str: "text",
        int: "an integer",
        float: "a number",
        dict: "an object",
        list: "a list",
    }.get(type(v), type(v).__name__)


def _hex_digest(obj: object, where: str) -> str:
    _need(isinstance(obj, dict), f"{where} must be an object {{sha256: hex}}")
    assert isinstance(obj, dict)
    v = obj.get("sha256")
    _need(isinstance(v, str) and bool(_HEX64.fullmatch(v)), f"{where}.sha256 must be 64 hex digits")
    assert isinstance(v, str)
    return v


def _check_envelope(env: dict[str, Any], where: str) -> None:
    """The DSSE shape (types only: the signature itself is checked by verify)."""
    _type(env, "payloadType", where, "text", optional=False)
    _type(env, "payload", where, "text", optional=False)
    sigs = _type(env, "signatures", where, "a list", optional=False)
    for k, sig in enumerate(sigs):
        _need(isinstance(sig, dict), f"{where}signatures[{k}] must be an object")
        _type(sig, "keyid", f"{where}signatures[{k}].", "text")
        _type(sig, "sig", f"{where}signatures[{k}].", "text", optional=False)


def _check_chain(chain: dict[str, Any]) -> None:
    for key in ("backend", "url", "CheckpointRegistry"):
        _type(chain, key, "chain.", "text")
    _type(chain, "chain_id", "chain.", "an integer")
    dep = _type(chain, "deployment", "chain.", "an object")
    if dep is not None:
        _type(dep, "chain_id", "chain.deployment.", "an integer", optional=False)
        _type(dep, "deployed_at_block", "chain.deployment.", "an integer")
        contracts = _type(dep, "contracts", "chain.deployment.", "an object", optional=False)
        for name, addr in contracts.items():
            _need(isinstance(addr, str), f"chain.deployment.contracts.{_k(name)} must be text")


def load_bundle(data: bytes | str | Mapping[str, Any], where: str = "bundle") -> Bundle:
    """Parse a bundle, refusing anything truncated or malformed with one clear error.

    Every field's JSON type is checked here (``bundle is not valid: <field> must be …``),
    so nothing later meets a value of a type it does not expect.

    @raises VerificationError naming the field that is wrong
    """
    if isinstance(data, Mapping):
        doc: Any = dict(data)
    else:
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError, RecursionError) as e:
            raise VerificationError(
                f"{where} is not valid JSON (truncated or edited?): {e}"
            ) from None
    _need(isinstance(doc, dict), "not a JSON object")
    _need(doc.get("format") == FORMAT, f"format must be {FORMAT!r}")
    _type(doc, "created", "", "text")
    art = _type(doc, "artifact", "", "an object", optional=False)
    digest = _hex_digest(art.get("digest"), "artifact.digest")
    _type(art, "name", "artifact.", "text")
    log = _type(doc, "log", "", "an object", optional=False)
    vk = _type(log, "verifier_key", "log.", "text", optional=False)
    origin = _type(log, "origin", "log.", "text", optional=False)
    _type(log, "size", "log.", "an integer")
    chain = _type(doc, "chain", "", "an object")
    if chain is not None:
        _check_chain(chain)
    signers: dict[str, bytes] = {}
    names: dict[str, str] = {}
    raw_signers = _type(doc, "signers", "", "an object", optional=False)
    for kid, s in raw_signers.items():
        _need(isinstance(s, dict), f"signers.{_k(kid)} must be an object")
        _type(s, "ed25519", f"signers.{_k(kid)}.", "text", optional=False)
        name = _type(s, "name", f"signers.{_k(kid)}.", "text")
        try:
            key = unb64(s.get("ed25519"), f"signer {_k(kid)} key")
        except InputError as e:
            raise VerificationError(f"bundle is not valid: {e}") from None
        _need(len(key) == 32, f"signer {_k(kid)}: an Ed25519 key is 32 bytes")
        signers[str(kid)] = key
        if name is not None:
            names[str(kid)] = name
    entries: dict[int, bytes] = {}
    receipts: dict[int, str] = {}
    sts = _type(doc, "statements", "", "a list", optional=False)
    _need(bool(sts), "statements must be a non-empty list")
    for k, s in enumerate(sts):
        _need(isinstance(s, dict), f"statements[{k}] must be an object")
        idx = s.get("index")
        _need(
            _is_int(idx) and idx >= 0,
            f"statements[{k}].index must be a non-negative integer",
        )
        _need(idx not in entries, f"statement index {idx} appears twice")
        _type(s, "predicateType", f"statements[{k}].", "text")
        env = _type(s, "envelope", f"statements[{k}].", "an object", optional=False)
        _check_envelope(env, f"statements[{k}].envelope.")
        try:
            entries[idx] = rfc8785.dumps(env)
        except (rfc8785.CanonicalizationError, ValueError, TypeError, RecursionError) as e:
            raise VerificationError(f"bundle statement {idx}: envelope is not JSON: {e}") from None
        receipts[idx] = _type(s, "receipt", f"statements[{k}].", "text", optional=False)
    blobs: dict[str, bytes] = {}
    raw_blobs = _type(doc, "blobs", "", "an object") or {}
    for d, b in raw_blobs.items():
        _need(bool(_HEX64.fullmatch(d)), f"blobs key {_k(d)} must be 64 hex digits")
        _need(isinstance(b, dict), f"blobs.{d} must be an object")
        _type(b, "role", f"blobs.{d}.", "text")
        _type(b, "size", f"blobs.{d}.", "an integer")
        _type(b, "base64", f"blobs.{d}.", "text", optional=False)
        try:
            blobs[d] = unb64(b.get("base64"), f"blob {d}")
        except InputError as e:
            raise VerificationError(f"bundle is not valid: {e}") from None
    omitted = set()
    raw_omitted = _type(doc, "omitted_blobs", "", "a list") or []
    for k, o in enumerate(raw_omitted):
        _need(isinstance(o, dict), f"omitted_blobs[{k}] must be an object")
        omitted.add(_hex_digest(o.get("digest"), f"omitted_blobs[{k}].digest"))
        _type(o, "role", f"omitted_blobs[{k}].", "text")
        _type(o, "size", f"omitted_blobs[{k}].", "an integer")
        _type(o, "reason", f"omitted_blobs[{k}].", "text")
    return Bundle(
        doc=doc,
        digest=digest,
        name=art.get("name"),
        verifier_key=vk,
        origin=origin,
        chain=chain,
        signers=signers,
        signer_names=names,
        entries=entries,
        receipts=receipts,
        blobs=blobs,
        omitted=omitted,
    )


def read_bundle(path: str | os.PathLike[str]) -> Bundle:
    """Read and parse a bundle file."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise InputError(f"{os.fspath(path)}: no such bundle file") from None
    except OSError as e:
        raise InputError(f"cannot read {os.fspath(path)}: {e.strerror}") from None
    return load_bundle(data, os.fspath(path))


def bundle_verifier(b: Bundle) -> Verifier:
    try:
        v = Verifier.parse(b.verifier_key)
    except Error as e:
        raise VerificationError(f"bundle's log verifier key is not valid (edited?): {e}") from None
    if v.name != b.origin:
        raise VerificationError("bundle's log origin does not match its verifier key's name")
    return v


# -- W3C PROV-JSON -----------------------------------------------------------------

_PROV_PREFIX = {
    "ailedger": "https://ailedger.dev/ns/prov#",
    "sha256": "urn:sha256:",
    "log": "urn:ailedger:log-entry:",
    "key": "urn:ailedger:keyid:",
}


def export_prov(ws: Workspace, artifact: str | os.PathLike[str]) -> dict[str, Any]:
    """W3C PROV-JSON of the lineage (https://www.w3.org/submissions/prov-json/).

    Entities are artifacts (``sha256:<hex>``), activities are statements
    (``log:<origin>/<index>``), agents are signing keys (``key:<keyid>``).
    """
    g = lineage(ws, artifact)
    annotate(ws, g)
    return prov_document(g, ws.origin)


def prov_document(g: LineageGraph, origin: str) -> dict[str, Any]:
    """Map a lineage graph onto PROV-JSON (see docs/lineage.md for the rules)."""
    entity: dict[str, Any] = {}
    activity: dict[str, Any] = {}
    agent: dict[str, Any] = {}
    rel: dict[str, dict[str, Any]] = {
        k: {} for k in ("wasGeneratedBy", "used", "wasAssociatedWith", "wasDerivedFrom")
    }

    def add(kind: str, body: dict[str, Any]) -> None:
        rel[kind][f"_:{kind}{len(rel[kind]) + 1}"] = body

    def ent(d: str, name: str | None, typ: str | None) -> str:
        eid = f"sha256:{d}"
        e = entity.setdefault(eid, {"ailedger:sha256": d})
        if name and "prov:label" not in e:
            e["prov:label"] = name
        if typ and "prov:type" not in e:
            e["prov:type"] = f"ailedger:{typ}"
        return eid

    for n in g:
        aid = f"log:{origin}/{n.index}"
        pred = g.effective_predicates.get(n.index, {})
        act: dict[str, Any] = {
            "prov:type": f"ailedger:{n.kind}",
            "ailedger:predicateType": n.predicate_type,
            "ailedger:logIndex": n.index,
        }
        start, end = _times(n, pred)
        if start:
            act["prov:startTime"] = start
        if end:
            act["prov:endTime"] = end
        activity[aid] = act
        for kid in n.keyids:
            gid = f"key:{kid}"
            agent.setdefault(gid, {"prov:type": "prov:SoftwareAgent"})
            if n.signer:
                agent[gid]["prov:label"] = n.signer
            add("wasAssociatedWith", {"prov:activity": aid, "prov:agent": gid})
        used = []
        for dep in n.dependencies:
            uid = ent(dep.ref.digest, dep.ref.name, dep.ref.kind)
            used.append(uid)
            add("used", {"prov:activity": aid, "prov:entity": uid})
        made = {
            t.TRAINING: "model",
            t.DATASET: "dataset",
            t.PREDICTIONS: "predictions",
            t.FEDERATED_ROUND: "model",
            t.SWARM_CONTRIBUTION: "model update",
        }
        if n.predicate_type in made:
            typ = made[n.predicate_type]
            for s in n.subjects:
                gid = ent(s.digest, s.name, typ)
                add("wasGeneratedBy", {"prov:entity": gid, "prov:activity": aid})
                for uid in used:
                    add(
                        "wasDerivedFrom",
                        {"prov:generatedEntity": gid, "prov:usedEntity": uid, "prov:activity": aid},
                    )
        else:
            for s in n.subjects:  # an evaluation (or other attestation) is *about* its subject
                uid = ent(s.digest, s.name, None)
                if uid not in used:
                    add("used", {"prov:activity": aid, "prov:entity": uid})
    doc: dict[str, Any] = {"prefix": dict(_PROV_PREFIX), "entity": entity, "activity": activity}
    doc["agent"] = agent
    doc.update({k: v for k, v in rel.items() if v})
    return doc


def _times(n: StatementNode, pred: Mapping[str, Any]) -> tuple[str | None, str | None]:
    if n.predicate_type == t.TRAINING:
        rd = pred.get("runDetails")
        md = rd.get("metadata") if isinstance(rd, dict) else None
        if isinstance(md, dict):
            s, e = md.get("startedOn"), md.get("finishedOn")
            return (s if isinstance(s, str) else None, e if isinstance(e, str) else None)
        return None, None
    if n.predicate_type == t.PREDICTIONS:
        s, e = pred.get("from"), pred.get("to")
        return (s if isinstance(s, str) else None, e if isinstance(e, str) else None)
    return n.time, n.time
