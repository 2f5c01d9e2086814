"""A swarm member's contribution: which of its registered datasets made its update.

Each round a member records one signed ``SWARM_CONTRIBUTION`` statement in its own log
(subject: the update digest it commits on chain; predicate: the swarm, the round, and per
dataset its name, manifest digest, fingerprint root and where its DATASET statement is
in the member's log). Its node serves it on ``GET /swarm/<swarm>/round/<r>/contribution``
so peers can check it against the key the member registered on chain and the digest it
committed; the round statement then names every member's datasets.

``prove`` packs a member's contribution with receipts into a self-contained proof and
``check_proof`` verifies it, signatures, inclusion, anchors and the chain. Formats and the
MUST/MUST NOT rules: docs/swarm.md.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._provenance import types as t
from .._statements import intoto
from ..errors import Error, InputError, NotFoundError, VerificationError, WorkspaceError

if TYPE_CHECKING:
    from .._chain import (
        CheckpointRegistryClient,
        Identity,
        IdentityRegistryClient,
        SwarmRoundsClient,
    )
    from .._workspace import Workspace

PROOF_TYPE = "https://ailedger.dev/swarm-contribution-proof/v1"
MAX_DATASETS = 64  # keeps the statement one log entry (no external predicate to fetch)
MAX_ENVELOPE = 64 * 1024  # a contribution is one log entry, and entries are at most 64 KiB
_HEX64 = re.compile(r"[0-9a-f]{64}")
_DDL = (
    "CREATE TABLE IF NOT EXISTS swarm_contributions (chain_id INTEGER NOT NULL,"
    " contract TEXT NOT NULL, swarm INTEGER NOT NULL, round INTEGER NOT NULL,"
    " update_digest TEXT NOT NULL, envelope TEXT NOT NULL, log_index INTEGER NOT NULL,"
    " PRIMARY KEY (chain_id, contract, swarm, round))"
)

FetchContribution = Callable[[str, int, int], bytes | None]


def route(swarm_id: int, r: int) -> str:
    """The node path serving a member's contribution to round ``r`` of ``swarm_id``."""
    return f"/swarm/{swarm_id}/round/{r}/contribution"


# -- the member's side ---------------------------------------------------------------


def dataset_refs(ws: Workspace, names: list[str]) -> list[dict[str, Any]]:
    """The contribution's ``datasets`` entries for registered datasets ``names`` (latest
    version of each).

    @raise NotFoundError: a name is not registered in this workspace.
    @raise InputError: a name given twice, or too many.
    """
    from .._provenance.datasets import find_dataset

    if len(set(names)) != len(names):
        raise InputError("a dataset is named twice (--dataset)")
    if len(names) > MAX_DATASETS:
        raise InputError(f"at most {MAX_DATASETS} datasets per member")
    out = []
    for name in names:
        rec = find_dataset(ws, name)
        if rec is None:
            raise NotFoundError(
                f"no dataset named {name!r} in this workspace: register it with"
                " `ailedger data add` first"
            )
        entry = ws.log.get(rec.index)
        out.append(
            {
                "name": rec.name,
                "version": rec.version,
                "digest": t.digest(rec.manifest_digest),
                "fingerprint": {"algorithm": t.FINGERPRINT_ALG, "root": rec.root},
                "statement": {
                    "origin": ws.origin,
                    "index": rec.index,
                    "envelope": t.digest(hashlib.sha256(entry).hexdigest()),
                },
            }
        )
    return out


def statement(
    swarm: Mapping[str, Any],
    r: int,
    member: str,
    update: str,
    num_examples: int,
    datasets: list[dict[str, Any]],
) -> dict[str, Any]:
    """The contribution statement (``swarm``: ``{"id", "chainId", "contract"}``)."""
    return intoto.statement(
        [{"name": f"swarm:{swarm['id']}/round:{r}/update", "digest": t.digest(update)}],
        t.SWARM_CONTRIBUTION,
        {
            "swarm": {k: swarm[k] for k in ("id", "chainId", "contract")},
            "round": r,
            "member": member,
            "update": {"digest": t.digest(update), "numExamples": num_examples},
            "datasets": datasets,
        },
    )


@dataclass(frozen=True)
class Recorded:
    """A contribution recorded in this member's log (and served by its node)."""

    index: int
    envelope: bytes
    digest: str  # sha256 of the envelope bytes (also a blob of the store)


def _db(ws: Workspace) -> sqlite3.Connection:
    try:
        db = sqlite3.connect(ws.path / "provenance.sqlite", timeout=30, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(_DDL)
    except sqlite3.Error as e:
        raise WorkspaceError(f"{ws.path / 'provenance.sqlite'}: {e}") from None
    return db


def record(
    ws: Workspace,
    swarm: Mapping[str, Any],
    r: int,
    update: str,
    num_examples: int,
    datasets: list[dict[str, Any]],
) -> Recorded:
    """Sign and append the contribution, keep its envelope as a public blob and index it
    for the node's contribution route. Done before the commit: a member MUST NOT commit an
    update whose contribution it does not serve."""
    from .._node import public

    idx = ws.record(statement(swarm, r, ws.address, update, num_examples, datasets))
    env = ws.log.get(idx)
    d = ws.blobs.put(env)
    db = public.connect(ws.path)  # one transaction: served (allow-listed) and findable
    try:
        db.execute(_DDL)
        with db:
            db.execute("BEGIN")
            db.execute("INSERT OR IGNORE INTO public_blobs VALUES (?)", (d,))
            db.execute(
                "INSERT OR REPLACE INTO swarm_contributions VALUES (?,?,?,?,?,?,?)",
                (int(swarm["chainId"]), str(swarm["contract"]).lower(), int(swarm["id"]), r,
                 update, d, idx),
            )  # fmt: skip
    except sqlite3.Error as e:
        raise WorkspaceError(f"{ws.path / 'provenance.sqlite'}: {e}") from None
    finally:
        db.close()
    return Recorded(idx, env, d)


def find(ws: Workspace, swarm_id: int, r: int) -> tuple[int, str] | None:
    """(log index, envelope digest) of this workspace's contribution to a round of a swarm
    on its own deployment, or None."""
    dep = ws.deployment
    contract = dep.contracts.get("SwarmRounds")
    if contract is None:
        return None
    db = _db(ws)
    try:
        row = db.execute(
            "SELECT log_index, envelope FROM swarm_contributions WHERE chain_id=? AND"
            " contract=? AND swarm=? AND round=?",
            (dep.chain_id, contract.lower(), swarm_id, r),
        ).fetchone()
    except sqlite3.Error as e:
        raise WorkspaceError(f"{ws.path / 'provenance.sqlite'}: {e}") from None
    finally:
        db.close()
    return None if row is None else (int(row[0]), str(row[1]))


def served(ws: Workspace, swarm_id: int, r: int) -> bytes:
    """The envelope the node serves for round ``r`` of ``swarm_id``.

    @raise NotFoundError: this member recorded no contribution to that round.
    """
    found = find(ws, swarm_id, r)
    if found is None:
        raise NotFoundError(f"no contribution to swarm {swarm_id} round {r} on this node")
    return ws.blobs.get(found[1])


def http_fetch(node_url: str, swarm_id: int, r: int, *, timeout: float = 10.0) -> bytes | None:
    """GET a member's contribution from its node; None when the node has none (404).

    @raise ChainError: the node could not be reached or answered an error.
    """
    from .runner import http_get

    return http_get(f"{node_url.rstrip('/')}{route(swarm_id, r)}", node_url, timeout)


# -- checking a contribution ---------------------------------------------------------


def _fail(what: str) -> VerificationError:
    return VerificationError(what)


def check(
    envelope: bytes,
    key: bytes | None,
    *,
    swarm: Mapping[str, Any],
    r: object,
    member: str,
    update: str,
) -> list[dict[str, Any]]:
    """Check a member's contribution envelope; return its ``datasets``.

    ``key``: the member's Ed25519 key as the IdentityRegistry binds it (None: the
    signature is not checked — only for a verifier with no chain, which says so).
    The statement MUST be a canonical in-toto ``SWARM_CONTRIBUTION`` statement whose
    subject is ``update``, for exactly this swarm (id, chain id, contract), round and
    member, with well-formed datasets.

    @raise VerificationError: naming the first thing that is wrong.
    """
    from .._crypto.keys import keyid_of
    from .._provenance.lineage import parse_entry
    from .._verify import verify_envelope

    if len(envelope) > MAX_ENVELOPE:
        raise _fail(f"contribution is {len(envelope)} bytes, over the {MAX_ENVELOPE}-byte limit")
    if key is not None:
        try:
            st, _ = verify_envelope(envelope, {keyid_of(key): key})
        except Error as e:
            raise _fail(f"contribution signature: {e}") from None
    else:
        parsed = parse_entry(envelope)
        if parsed is None:
            raise _fail("contribution is not a DSSE in-toto statement")
        st = parsed[1]
    if st.get("predicateType") != t.SWARM_CONTRIBUTION:
        raise _fail(f"contribution has predicateType {st.get('predicateType')!r}")
    subj = [s.get("digest", {}).get("sha256") for s in st.get("subject", [])]
    if subj != [update]:
        raise _fail(
            f"contribution's subject {', '.join(map(str, subj)) or 'none'} is not the"
            f" committed update sha256:{update}"
        )
    p = st.get("predicate")
    if not isinstance(p, dict):
        raise _fail("contribution has no predicate")
    sw = p.get("swarm") if isinstance(p.get("swarm"), dict) else {}
    assert isinstance(sw, dict)
    got = (sw.get("id"), sw.get("chainId"), str(sw.get("contract", "")).lower(), p.get("round"),
           str(p.get("member", "")).lower())  # fmt: skip
    want = (swarm["id"], swarm["chainId"], str(swarm["contract"]).lower(), r, member.lower())
    if got != want:
        raise _fail(
            f"contribution is for swarm {got[0]} round {got[3]} member {got[4]} on chain"
            f" {got[1]} {got[2]}, not swarm {want[0]} round {r} member {want[4]} on chain"
            f" {want[1]} {want[2]}"
        )
    return _datasets(p.get("datasets"))


def _datasets(raw: object) -> list[dict[str, Any]]:
    if not isinstance(raw, list) or len(raw) > MAX_DATASETS:
        raise _fail("contribution's datasets must be a list of at most 64")
    out = []
    for k, d in enumerate(raw):
        try:
            st = d["statement"]
            ok = (
                isinstance(d["name"], str)
                and _is_hex(d["digest"]["sha256"])
                and _is_hex(d["fingerprint"]["root"])
                and isinstance(st["origin"], str)
                and type(st["index"]) is int
                and st["index"] >= 0
                and _is_hex(st["envelope"]["sha256"])
            )
        except (KeyError, TypeError):
            ok = False
        if not ok:
            raise _fail(f"contribution's datasets[{k}] is malformed")
        out.append(d)
    return out


def _is_hex(v: object) -> bool:
    return isinstance(v, str) and bool(_HEX64.fullmatch(v))


def member_key(ids: IdentityRegistryClient, member: str) -> bytes:
    """The Ed25519 key ``member`` registered on chain.

    @raise VerificationError: no identity, or a revoked one.
    """
    try:
        ident = ids.resolve(member)
    except Error as e:
        raise _fail(f"cannot resolve {member} in the IdentityRegistry: {e}") from None
    return identity_key(member, ident)


def identity_key(member: str, ident: Identity | None) -> bytes:
    """The Ed25519 key of ``member``'s resolved identity (checked as :func:`member_key`).

    @raise VerificationError: no identity, or a revoked one.
    """
    if ident is None:
        raise _fail(f"{member} has no identity in the IdentityRegistry")
    if ident.revoked:
        raise _fail(f"the identity of {member} is revoked")
    return ident.ed25519


# -- proving a contribution ----------------------------------------------------------


def round_statement_index(ws: Workspace, swarm: Mapping[str, Any], r: int) -> int | None:
    """Log index of this member's (latest) round statement for round ``r``, or None."""
    from .._provenance.lineage import effective, parse_entry

    def blob(d: str) -> bytes | None:
        try:
            return ws.blobs.get(d)
        except Error:
            return None

    for i in range(ws.log.size - 1, -1, -1):
        parsed = parse_entry(ws.log.get(i))
        if parsed is None:
            continue
        ptype, pred, _ = effective(parsed[1], blob)
        sw = pred.get("swarm") if ptype == t.FEDERATED_ROUND else None
        if (
            isinstance(sw, dict)
            and pred.get("round") == r
            and sw.get("id") == swarm["id"]
            and sw.get("chainId") == swarm["chainId"]
            and str(sw.get("contract", "")).lower() == str(swarm["contract"]).lower()
        ):
            return i
    return None


def prove(ws: Workspace, swarm_id: int, r: int) -> dict[str, Any]:
    """The self-contained proof of this member's contribution to round ``r`` (a dict;
    ``json.dumps`` it). Anchors the log first so every receipt's checkpoint is on chain.

    @raise NotFoundError: no such swarm, no commitment of this member in that round, no
        contribution or no round statement recorded here.
    """
    sw = ws.swarm_rounds()
    if sw.swarm_info(swarm_id) is None:
        raise NotFoundError(f"no swarm {swarm_id} on this deployment")
    if sw.round_info(swarm_id, r) is None:
        raise NotFoundError(f"swarm {swarm_id} has no round {r}")
    c = sw.commitment(swarm_id, r, ws.address)
    if c is None:
        raise NotFoundError(f"{ws.address} committed no update in swarm {swarm_id} round {r}")
    found = find(ws, swarm_id, r)
    if found is None:
        raise NotFoundError(
            f"this workspace recorded no contribution to swarm {swarm_id} round {r}"
        )
    dep = ws.deployment
    swarm = {"id": swarm_id, "chainId": dep.chain_id, "contract": dep.contracts["SwarmRounds"]}
    ri = round_statement_index(ws, swarm, r)
    if ri is None:
        raise NotFoundError(
            f"no round statement for swarm {swarm_id} round {r} in this log (has the round"
            " settled and `swarm run` recorded it?)"
        )
    return document(ws, swarm, r, c[0].hex(), found[0], ri)


_PROOF_CONTRACTS = ("SwarmRounds", "IdentityRegistry", "CheckpointRegistry")


def document(
    ws: Workspace, swarm: Mapping[str, Any], r: int, update: str, contribution: int, rnd: int
) -> dict[str, Any]:
    """The proof document for the contribution at log index ``contribution`` and the round
    statement at ``rnd``, receipts against a checkpoint anchored now. :func:`prove` checks
    the chain first; this does not (tests use it to build a proof the chain refutes)."""
    entry = ws.log.get(contribution)
    datasets = check(entry, ws.ed25519_public, swarm=swarm, r=r, member=ws.address,
                     update=update)  # fmt: skip
    size = ws.anchor().size

    def item(i: int) -> dict[str, Any]:
        return {
            "index": i,
            "entry": base64.b64encode(ws.log.get(i)).decode(),
            "receipt": ws.receipt(i, size),
        }

    dep = ws.deployment
    return {
        "type": PROOF_TYPE,
        "swarm": dict(swarm),
        "round": r,
        "member": ws.address,
        "update": t.digest(update),
        "log": {"origin": ws.origin, "verifierKey": ws.verifier_key},
        "contribution": item(contribution),
        "datasets": [
            {"name": d["name"], **item(int(d["statement"]["index"]))} for d in datasets
        ],
        "roundStatement": item(rnd),
        "chain": {
            "chainId": dep.chain_id,
            "contracts": {k: dep.contracts[k] for k in _PROOF_CONTRACTS},
        },
    }


@dataclass(frozen=True)
class ProofResult:
    """What a verified contribution proof shows."""

    swarm_id: int
    round: int
    member: str
    update: str
    global_digest: str
    datasets: list[dict[str, Any]]
    tree_size: int
    anchor_block: int
    # True: the member's on-chain submission is the agreed digest (the quorum aggregated
    # the same inputs it did, its update among them). False: it did not submit before the
    # quorum finalised, and only its own signed statement says its aggregate was that digest.
    backed_on_chain: bool = True


def _pfail(what: str) -> VerificationError:
    return VerificationError(f"contribution proof: {what}")


def _parse(doc: str | bytes | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(doc, (str, bytes)):
        try:
            d = json.loads(doc)
        except (ValueError, UnicodeDecodeError, RecursionError) as e:
            raise _pfail(f"not JSON (truncated or edited?): {e}") from None
    else:
        d = dict(doc)
    if not isinstance(d, dict) or d.get("type") != PROOF_TYPE:
        raise _pfail(f"not a contribution proof (type must be {PROOF_TYPE})")

    def item(v: object, where: str) -> None:
        if not (
            isinstance(v, dict)
            and type(v.get("index")) is int
            and v["index"] >= 0
            and isinstance(v.get("entry"), str)
            and isinstance(v.get("receipt"), str)
        ):
            raise _pfail(f"field {where!r} needs index, entry and receipt")

    sw = d.get("swarm")
    if not (isinstance(sw, dict) and type(sw.get("id")) is int and type(sw.get("chainId")) is int
            and isinstance(sw.get("contract"), str)):  # fmt: skip
        raise _pfail("field 'swarm' needs id, chainId and contract")
    if type(d.get("round")) is not int or not isinstance(d.get("member"), str):
        raise _pfail("fields 'round' and 'member' are missing or of the wrong type")
    if not _is_hex((d.get("update") or {}).get("sha256") if isinstance(d.get("update"), dict)
                   else None):  # fmt: skip
        raise _pfail("field 'update' needs a sha256 digest")
    log = d.get("log")
    if not (isinstance(log, dict) and isinstance(log.get("verifierKey"), str)
            and isinstance(log.get("origin"), str)):  # fmt: skip
        raise _pfail("field 'log' needs origin and verifierKey")
    ch = d.get("chain")
    cs = ch.get("contracts") if isinstance(ch, dict) else None
    if not (isinstance(ch, dict) and type(ch.get("chainId")) is int and isinstance(cs, dict)
            and sorted(cs) == sorted(_PROOF_CONTRACTS)
            and all(isinstance(a, str) for a in cs.values())):  # fmt: skip
        raise _pfail(f"field 'chain' needs chainId and the contracts {', '.join(_PROOF_CONTRACTS)}")
    item(d.get("contribution"), "contribution")
    item(d.get("roundStatement"), "roundStatement")
    if not isinstance(d.get("datasets"), list):
        raise _pfail("field 'datasets' must be a list")
    for k, x in enumerate(d["datasets"]):
        item(x, f"datasets[{k}]")
    return d


def check_proof(
    doc: str | bytes | Mapping[str, Any],
    *,
    swarm_rounds: SwarmRoundsClient,
    identities: IdentityRegistryClient,
    checkpoints: CheckpointRegistryClient,
) -> ProofResult:
    """Verify a contribution proof against the chain the clients talk to; fail closed.

    Checks, in order: the proof is for this chain and SwarmRounds contract; the log key
    is the member's key registered in the IdentityRegistry; each entry's receipt (the
    checkpoint signed by that key, RFC 9162 inclusion) and the checkpoint's anchor in the
    CheckpointRegistry; the contribution's signature, subject (the update), swarm, round
    and member; each named dataset statement is the one the contribution references
    (origin, index, envelope digest), signed, for that dataset and fingerprint root; the
    round statement is this member's for this round, used the update in its aggregate and
    records the round finalised; on chain, the member's commitment for the round is the
    update and the round is finalised to the global digest the round statement names.

    @raise VerificationError: ``contribution proof: <the first check that failed>``.
    """
    from .._anchor import check_anchor
    from .._crypto.keys import keyid_of
    from .._log.note import Verifier
    from .._verify import verify_receipt

    d = _parse(doc)
    swarm, r, member = d["swarm"], d["round"], d["member"]
    update = d["update"]["sha256"]
    chain_id = swarm_rounds.backend.chain_id
    for cid in (swarm["chainId"], d["chain"]["chainId"]):
        if cid != chain_id:
            raise _pfail(f"it is for chain {cid}, but the chain checked is {chain_id}")
    named = dict(d["chain"]["contracts"])
    if named["SwarmRounds"].lower() != swarm["contract"].lower():
        raise _pfail("its swarm and its chain section name different SwarmRounds contracts")
    for what, client in (("SwarmRounds", swarm_rounds), ("IdentityRegistry", identities),
                         ("CheckpointRegistry", checkpoints)):  # fmt: skip
        if named[what].lower() != client.address.lower():
            raise _pfail(
                f"it names {what} {named[what]}, but the deployment checked has {client.address}"
            )
    try:
        key = member_key(identities, member)
    except VerificationError as e:
        raise _pfail(str(e)) from None
    try:
        v = Verifier.parse(d["log"]["verifierKey"])
    except Error as e:
        raise _pfail(f"the log verifier key is not valid: {e}") from None
    if v.public != key:
        raise _pfail(f"the log key is not the key {member} registered in the IdentityRegistry")
    if d["log"]["origin"] != v.name:
        raise _pfail(f"the log origin {d['log']['origin']!r} is not the verifier key's {v.name!r}")
    keys = {keyid_of(key): key}
    anchors: dict[tuple[int, bytes], int] = {}

    def entry_of(x: Mapping[str, Any], what: str) -> tuple[bytes, dict[str, Any]]:
        try:
            entry = base64.b64decode(x["entry"], validate=True)
        except (binascii.Error, ValueError):
            raise _pfail(f"{what}: entry is not base64") from None
        try:
            res = verify_receipt(x["receipt"], entry, v, keys)
        except Error as e:
            raise _pfail(f"{what} (entry {x['index']}): {e}") from None
        if res.index != x["index"]:
            raise _pfail(f"{what}: the receipt is for entry {res.index}, not {x['index']}")
        if res.statement is None:
            raise _pfail(f"{what}: entry {x['index']} is not a signed statement")
        cp = res.checkpoint
        if (cp.size, cp.root) not in anchors:
            try:
                anchors[(cp.size, cp.root)] = check_anchor(cp, v, checkpoints).block_number
            except Error as e:
                raise _pfail(f"{what}: checkpoint of size {cp.size}: {e}") from None
        return entry, res.statement

    c_entry, _ = entry_of(d["contribution"], "contribution")
    try:
        datasets = check(c_entry, key, swarm=swarm, r=r, member=member, update=update)
    except VerificationError as e:
        raise _pfail(str(e)) from None
    carried = {x["name"]: x for x in d["datasets"] if isinstance(x.get("name"), str)}
    if sorted(carried) != sorted(ds["name"] for ds in datasets) or len(carried) != len(
        d["datasets"]
    ):
        raise _pfail("the datasets carried are not those the contribution names")
    for ds in datasets:
        x = carried[ds["name"]]
        entry, st = entry_of(x, f"dataset {ds['name']!r}")
        ref = ds["statement"]
        if (ref["origin"], ref["index"], ref["envelope"]["sha256"]) != (
            v.name, x["index"], hashlib.sha256(entry).hexdigest()
        ):
            raise _pfail(
                f"dataset {ds['name']!r}: the statement carried is not the one the"
                " contribution references (origin, index, envelope digest)"
            )
        pred = st.get("predicate") if isinstance(st.get("predicate"), dict) else {}
        assert isinstance(pred, dict)
        fp = pred.get("fingerprint") if isinstance(pred.get("fingerprint"), dict) else {}
        assert isinstance(fp, dict)
        want_subject = {"name": t.dataset_subject_name(ds["name"]), "digest": ds["digest"]}
        if (
            st.get("predicateType") != t.DATASET
            or not isinstance(st.get("subject"), list)
            or want_subject not in st["subject"]
            or fp.get("root") != ds["fingerprint"]["root"]
        ):
            raise _pfail(
                f"dataset {ds['name']!r}: entry {x['index']} is not the registration of that"
                " dataset with that fingerprint root"
            )
    _, rst = entry_of(d["roundStatement"], "round statement")
    g = _round_checks(rst, swarm, r, member, update)
    # On chain: what the member committed, and how the round ended.
    try:
        c = swarm_rounds.commitment(swarm["id"], r, member)
        ri = swarm_rounds.round_info(swarm["id"], r)
        sub = swarm_rounds.submission(swarm["id"], r, member)
    except Error as e:
        raise _pfail(f"cannot read SwarmRounds: {e}") from None
    if c is None:
        raise _pfail(f"on chain, {member} committed no update in swarm {swarm['id']} round {r}")
    if c[0].hex() != update:
        raise _pfail(
            f"on chain, {member} committed sha256:{c[0].hex()} in round {r}, not the proof's"
            f" update sha256:{update}"
        )
    from .._chain import RoundStatus

    if ri is None or ri.status != RoundStatus.FINALIZED or ri.global_digest is None:
        status = "not started" if ri is None else ri.status.name.lower()
        raise _pfail(f"on chain, swarm {swarm['id']} round {r} is {status}, not finalized")
    if ri.global_digest.hex() != g:
        raise _pfail(
            f"on chain, round {r} finalised to sha256:{ri.global_digest.hex()}, not the"
            f" round statement's sha256:{g}"
        )
    # The member's own aggregate included its update; only if the quorum agreed on that
    # very digest does the finalised model include it (peers may have skipped it). A
    # member that submitted another digest was in the minority: refused. One that did not
    # submit (the quorum finalised first) is accepted on its signed statement, and says so.
    if sub is not None and sub.hex() != g:
        raise _pfail(
            f"on chain, {member} submitted sha256:{sub.hex()} in round {r}, not the agreed"
            f" global digest sha256:{g}: its update is not shown to be in the finalised model"
        )
    size = max(s for s, _ in anchors)
    return ProofResult(swarm["id"], r, member, update, g, datasets, size, max(anchors.values()),
                       backed_on_chain=sub is not None)


def _round_checks(
    st: Mapping[str, Any], swarm: Mapping[str, Any], r: int, member: str, update: str
) -> str:
    """The round statement is the member's for this round, used ``update`` in its
    aggregate and says the round finalised; returns the global digest it names."""
    p = st.get("predicate")
    if st.get("predicateType") != t.FEDERATED_ROUND or not isinstance(p, dict):
        raise _pfail("the round statement is not a federated-round statement")
    sw = p.get("swarm") if isinstance(p.get("swarm"), dict) else {}
    assert isinstance(sw, dict)
    got = (sw.get("id"), sw.get("chainId"), str(sw.get("contract", "")).lower(),
           p.get("round"), str(p.get("member", "")).lower())  # fmt: skip
    if got != (swarm["id"], swarm["chainId"], swarm["contract"].lower(), r, member.lower()):
        raise _pfail("the round statement is for another swarm, round or member")
    local = p.get("localUpdate")
    if not isinstance(local, dict) or local.get("digest") != t.digest(update):
        raise _pfail("the round statement's own update is not the proof's update")
    agg = p.get("aggregate")
    ups = agg.get("updates") if isinstance(agg, dict) else None
    inputs = [u.get("digest") for u in ups if isinstance(u, dict)] if isinstance(ups, list) else []
    if update not in inputs:
        raise _pfail(f"the update sha256:{update} is not among the aggregate's inputs")
    out = p.get("outcome")
    g = out.get("globalDigest") if isinstance(out, dict) else None
    if not (isinstance(out, dict) and out.get("status") == "finalized" and isinstance(g, dict)
            and _is_hex(g.get("sha256"))):  # fmt: skip
        raise _pfail("the round statement does not record the round as finalised")
    if p.get("computed") != g:
        raise _pfail("the member's own aggregate is not the finalised global model")
    return str(g["sha256"])
