"""A swarm member's round loop: train, publish, commit, fetch, aggregate, submit, record.

One :class:`SwarmMember` drives one workspace's part in one ``SwarmRounds`` swarm. Each
:meth:`SwarmMember.step` runs one round of the protocol in docs/swarm.md and records ONE
``FEDERATED_ROUND`` statement in the member's own log. Nothing here trusts a peer: every
update is checked against the digest its author committed on chain, and the global model
is whatever digest a quorum agreed on (fetched from a supporter if ours differs).
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ChainError, Error, InputError, NotFoundError, VerificationError
from . import contribution as contrib
from . import params as pm
from .aggregate import aggregate_with_report, rule_spec
from .dp import Accountant, DPConfig, privatize

if TYPE_CHECKING:
    import httpx

    from .._chain import (
        Identity,
        IdentityRegistryClient,
        RoundInfo,
        RoundOutcome,
        SwarmInfo,
        SwarmRoundsClient,
        View,
    )
    from .._workspace import Workspace

Params = pm.Params
TrainFn = Callable[[Params, int], tuple[Params, int]]
FetchFn = Callable[[str, str], bytes | None]

RULE_NAMES = ("fedavg", "median", "trimmed_mean", "krum")  # index = contract rule code


_client_lock = threading.Lock()
_client: Any = None


def _http() -> httpx.Client:
    # One pooled client per process: a fresh ``httpx.get`` builds a client (and its TLS
    # context) and a connection per call, ~30 ms under load; a round makes 2(n-1) GETs.
    global _client
    with _client_lock:
        if _client is None:
            import httpx

            _client = httpx.Client()
        client: httpx.Client = _client
        return client


def http_get(url: str, node_url: str, timeout: float) -> bytes | None:
    """GET ``url`` on a peer's node; None on 404.

    @raise ChainError: the node could not be reached or answered another error.
    """
    import httpx

    try:
        r = _http().get(url, timeout=timeout)
    except httpx.HTTPError as e:
        raise ChainError(f"node {node_url} unreachable: {type(e).__name__}") from None
    if r.status_code == 404:
        return None
    if r.status_code != 200:
        raise ChainError(f"node {node_url} answered HTTP {r.status_code}")
    return r.content


def http_fetch(node_url: str, digest: str, *, timeout: float = 10.0) -> bytes | None:
    """GET ``<node_url>/blob/sha256/<digest>``; None when the node does not serve it.

    @raise Error: the node could not be reached (the caller records why it skipped).
    """
    return http_get(f"{node_url.rstrip('/')}/blob/sha256/{digest}", node_url, timeout)


def rule_of(info: SwarmInfo) -> tuple[str, object]:
    """The library rule name and parameter for a swarm's on-chain rule code and param."""
    name = RULE_NAMES[int(info.rule)]
    return name, (None if name in ("fedavg", "median") else int(info.rule_param))


def publish(ws: Workspace, data: bytes) -> str:
    """Store ``data`` in the blob store and declare it servable on the node's ``/blob``."""
    from .._node.public import mark_public

    d = ws.blobs.put(data)
    mark_public(ws.path, d)
    return d


@dataclass
class RoundResult:
    """What one :meth:`SwarmMember.step` did.

    @param status: ``finalized`` or ``failed``.
    @param global_digest: the global model after the round (the agreed one, or the previous
        one if the round failed).
    @param submitted: the digest this member submitted (None if it could not submit).
    @param used / skipped: peers' update digests used; ``{member: reason}`` left out.
    @param statement_index: log index of the FEDERATED_ROUND statement.
    """

    round: int
    status: str
    global_digest: str
    submitted: str | None
    used: list[str]
    skipped: dict[str, str]
    statement_index: int
    predicate: dict[str, Any] = field(repr=False, default_factory=dict)


class SwarmMember:
    """One member of one swarm, driving rounds from its workspace.

    @param ws: the member's workspace (its account is the member address).
    @param swarm_id: the swarm on the workspace's ``SwarmRounds`` contract.
    @param train: ``train(global_params, round) -> (params, num_examples)``, local training.
    @param node_url: this member's node URL (registered by :meth:`join`).
    @param fetch: ``fetch(node_url, digest) -> bytes | None`` (default HTTP ``/blob``).
    @param dp: optional differential privacy on the update (delta = trained − global).
    @param poll: seconds between chain polls while waiting.
    @param timeout: bound on any one wait, seconds (default: the window plus 60 s).
    @param datasets: names of this workspace's registered datasets the member trains on;
        each round's signed contribution names them (docs/swarm.md).
    @param fetch_contribution: ``(node_url, swarm, round) -> bytes | None`` (default HTTP
        ``/swarm/<swarm>/round/<r>/contribution``).
    """

    def __init__(
        self,
        ws: Workspace,
        swarm_id: int,
        *,
        train: TrainFn,
        node_url: str | None = None,
        fetch: FetchFn | None = None,
        dp: DPConfig | None = None,
        poll: float = 0.05,
        timeout: float | None = None,
        datasets: list[str] | None = None,
        fetch_contribution: contrib.FetchContribution | None = None,
    ) -> None:
        self.ws = ws
        self.swarm_id = swarm_id
        self.train = train
        self.node_url = node_url
        self.fetch: FetchFn = fetch or http_fetch
        self.dp = dp
        self.accountant = Accountant(dp.delta) if dp else None
        self.poll = poll
        self.timeout = timeout
        self.sw: SwarmRoundsClient = ws.swarm_rounds()
        self.me = ws.address
        self._cache: dict[str, Params] = {}
        self._members: list[str] | None = None
        self._urls: dict[str, str | None] = {}
        self._ids: IdentityRegistryClient | None = None
        self._round_blocks: dict[int, int] = {}
        info = self.info()
        self.model_spec = info.model_spec.hex()
        self.rule, self.rule_param = rule_of(info)
        self.rule_spec = rule_spec(self.rule, self.rule_param)
        # Resolved now, so a name that is not registered fails before anything is committed.
        self.datasets = contrib.dataset_refs(ws, list(datasets or []))
        self.fetch_contribution: contrib.FetchContribution = (
            fetch_contribution or contrib.http_fetch
        )
        dep = ws.deployment
        self.swarm_ref = {"id": swarm_id, "chainId": dep.chain_id,
                          "contract": dep.contracts["SwarmRounds"]}

    # -- chain views ----------------------------------------------------------------

    def info(self) -> SwarmInfo:
        """The swarm as the contract stores it. @raise NotFoundError: no such swarm."""
        info = self.sw.swarm_info(self.swarm_id)
        if info is None:
            raise NotFoundError(f"no swarm {self.swarm_id} on this deployment")
        return info

    def _round(self, r: int) -> RoundInfo:
        ri = self.sw.round_info(self.swarm_id, r)
        if ri is None:
            raise NotFoundError(f"swarm {self.swarm_id} has no round {r}")
        return ri

    def _passed(self, deadline: int) -> bool:
        # The next block is stamped with the wall clock (or later): a deadline the wall
        # clock has passed is passed for every transaction from now on. The chain's own
        # clock (read only when the wall clock has not passed it) may run ahead.
        if int(time.time()) > deadline:
            return True
        b = self.sw.backend
        return b.block_timestamp(b.block_number()) > deadline

    def _wait(self, until: Callable[[], bool], limit: float, what: str) -> None:
        end = time.monotonic() + limit
        while not until():
            if time.monotonic() > end:
                raise ChainError(f"swarm {self.swarm_id}: timed out waiting for {what}")
            time.sleep(self.poll)

    # -- parameters -------------------------------------------------------------------

    def params(self, digest: str, sources: list[str] | None = None) -> Params:
        """Parameters by digest: memory, own blob store, else peers' nodes (checked)."""
        if digest in self._cache:
            return self._cache[digest]
        data = self._local(digest)
        if data is None:
            members = sources if sources is not None else self._member_list()
            for m in members:
                url = self._url(m)
                if not url or m == self.me:
                    continue
                try:
                    got = self.fetch(url, digest)
                    if got is not None:
                        pm.decode(got, expected_digest=digest)
                        data = got
                        break
                except Error:
                    continue
            if data is None:
                raise NotFoundError(f"parameters sha256:{digest} are on no reachable node")
            publish(self.ws, data)  # serve them on: later joiners fetch from us too
        p = pm.decode(data, expected_digest=digest)
        self._cache[digest] = p
        return p

    def current_global(self) -> str:
        """Latest finalised global digest, or the model spec (initial params) before any."""
        g = self.info().global_digest
        return g.hex() if g else self.model_spec

    # -- protocol ---------------------------------------------------------------------

    def join(self, node_url: str | None = None) -> None:
        """Register this member's node URL and serve the initial parameters if we hold them."""
        url = node_url or self.node_url
        if not url:
            raise InputError("a node URL is needed to join (--node)")
        self.node_url = url
        init = self._local(self.model_spec)
        if init is not None:
            publish(self.ws, init)
        self.sw.join(self.swarm_id, url)

    def submit_digest(self, aggregated: str) -> str:
        """The digest this member submits (hook: an honest member submits what it computed)."""
        return aggregated

    def on_submitted(self, r: int, digest: str) -> None:
        """Called once this member's submission for round ``r`` is mined (hook; no-op)."""

    def step(self, r: int | None = None) -> RoundResult:
        """Run one round (the current one by default) and record its statement.

        @raise ChainError: the swarm is not started, or a bounded wait timed out.
        """
        from .._chain import RoundStatus, TransactionReverted, read_all

        # The swarm and (the round we expect to be) its current round, in one round trip.
        guess = r if r is not None else next(iter(self._round_blocks), 0)
        got, ri_guess = read_all(self.sw.backend, [self.sw.swarm_info_view(self.swarm_id),
                                                   self.sw.round_info_view(self.swarm_id, guess)])
        if got is None:
            raise NotFoundError(f"no swarm {self.swarm_id} on this deployment")
        info: SwarmInfo = got
        if not info.started:
            raise ChainError(f"swarm {self.swarm_id} has not started (members still joining)")
        r = info.current_round if r is None else r
        ri = self._round(r) if r != guess or ri_guess is None else ri_guess
        limit = self.timeout or float(info.commit_window + info.submit_window + 60)

        # Node URLs are read afresh each round, with each member's commitment: a member may
        # join or move its node at any time, and the URL it had when it committed is used.
        self._urls = {}

        # 1. train from the current global model.
        g_in = info.global_digest.hex() if info.global_digest else self.model_spec
        base = self.params(g_in)
        trained, n = self.train({k: v.copy() for k, v in base.items()}, r)
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise InputError(f"the training function must return num_examples >= 1, got {n!r}")
        dp_spent: dict[str, Any] | None = None
        if self.dp is not None and self.accountant is not None:
            delta = {k: np.asarray(trained[k], np.float64) - base[k] for k in base}
            noisy, spent = privatize(delta, self.dp, secrets.randbits(64))
            self.accountant.record(spent)
            trained = {k: (base[k] + noisy[k]).astype(base[k].dtype) for k in base}
            rnd = spent.to_dict()
            # The seed removes the noise if known: only a salted commitment is published;
            # the opening stays in the member's workspace for an audit (docs/swarm.md).
            rnd["seed"] = {"sha256": self._commit_seed(r, spent.seed)}
            dp_spent = {"round": rnd, "cumulative": self.accountant.to_dict(),
                        "config": self.dp.to_dict()}
        data = pm.encode(trained)
        mine = publish(self.ws, data)  # its digest: the bytes were hashed as they were stored
        self._cache[mine] = pm.decode(data)
        own = contrib.record(self.ws, self.swarm_ref, r, mine, n, self.datasets)

        # 2. commit, then wait for every joined member's commit or the deadline; each
        # peer's update (and signed contribution) is fetched as soon as its commitment is
        # on chain, so the downloads overlap the wait for slower peers.
        self.sw.commit(self.swarm_id, r, bytes.fromhex(mine), n)
        members = self._member_list()
        if self._ids is None:
            self._ids = self.ws.identity_registry()
        ids = self._ids
        commits: dict[str, tuple[str, int]] = {}
        futures: dict[str, Future[Params]] = {}
        envelopes: dict[str, Future[bytes | None]] = {}
        # Chain reads stay on this thread; pool threads only download and check digests.
        pool = ThreadPoolExecutor(max_workers=max(1, min(16, 2 * (len(members) - 1))))

        def see(batch: list[Any], who: list[str]) -> None:
            # ``batch``: a (commitment, node URL) pair per member in ``who``. A member can
            # commit only once joined (with a URL, which cannot be cleared), so a committed
            # member's URL exists; a None read with its commitment resolved an earlier block
            # (``unresolved`` reads it again).
            for m, c, url in zip(who, batch[::2], batch[1::2], strict=True):
                if c is not None:
                    commits[m] = (c[0].hex(), c[1])
                if url is not None or m not in self._urls:
                    self._urls[m] = url

        def download(final: bool) -> None:
            for m, (d, _) in commits.items():
                if m != self.me and m not in futures and (final or self._urls.get(m)):
                    url = self._urls.get(m) or ""  # "" = none registered: the pool never reads
                    futures[m] = pool.submit(self._fetch_update, m, d, base, url)
                    envelopes[m] = pool.submit(self._fetch_envelope, r, url)

        def unresolved() -> list[str]:
            # Not yet seen to commit, or committed with its URL not read yet.
            return [m for m in members
                    if m not in commits or (m != self.me and not self._urls.get(m))]  # fmt: skip

        def pairs(who: list[str]) -> list[View[Any]]:
            return [v for m in who for v in (self.sw.commitment_view(self.swarm_id, r, m),
                                             self.sw.node_url_view(self.swarm_id, m))]

        def commits_done() -> bool:
            # One round trip: the round, the joined count, and the commitment and node URL
            # of every unresolved member; downloads start for the newly committed ones.
            waiting = unresolved()
            views: list[View[Any]] = [
                self.sw.round_info_view(self.swarm_id, r), self.sw.swarm_info_view(self.swarm_id)
            ]  # fmt: skip
            got = read_all(self.sw.backend, views + pairs(waiting))
            x, now = got[0], got[1]
            if x is None or now is None:
                raise NotFoundError(f"swarm {self.swarm_id} has no round {r}")
            see(got[2:], waiting)
            download(final=False)
            return x.status != RoundStatus.PENDING or x.commit_count >= now.joined_count or (
                self._passed(x.commit_deadline)
            )

        used: list[tuple[Params, int, str]] = []
        skipped: dict[str, str] = {}
        try:
            self._wait(commits_done, limit, f"round {r} commits")
            # Once more, after the wait ended: a node may answer a batch's calls at different
            # blocks (anvil runs them concurrently), and a commitment mined at the deadline
            # may land after the poll that saw the deadline pass. The peers' identities are
            # read in the same batch, now, so a key registered or revoked meanwhile counts.
            waiting = unresolved()
            peers = [m for m in members if m != self.me]
            got = read_all(self.sw.backend, pairs(waiting) + [ids.resolve_view(m) for m in peers])
            see(got[: 2 * len(waiting)], waiting)
            idents: dict[str, Identity | None] = dict(
                zip(peers, got[2 * len(waiting) :], strict=True)
            )
            download(final=True)

            # 3. take every peer's checked update; record its contribution's check.
            for m, (d, k) in sorted(commits.items()):
                try:
                    p = self._cache.get(d) if m == self.me else futures[m].result()
                    assert p is not None
                    used.append((p, k, d))
                except Error as e:
                    skipped[m] = str(e)
            contributions = {
                m: self._own_contribution(own) if m == self.me
                else self._peer_contribution(m, r, d, self._url(m), envelopes[m],
                                             self._member_key(m, idents.get(m)))
                for m, (d, _) in commits.items()
            }  # fmt: skip
        except BaseException:
            # A timeout or an interrupt surfaces now, not after every queued download.
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()

        # 4. aggregate deterministically and submit.
        agg_digest: str | None = None
        report: dict[str, Any] | None = None
        submitted: str | None = None
        try:
            agg, rep = aggregate_with_report(
                self.rule, [(p, k) for p, k, _ in used], param=self.rule_param,
                digests=[d for _, _, d in used],
            )
            agg_digest = rep.result
            report = rep.to_dict()
            publish(self.ws, pm.encode(agg))
            self._cache[agg_digest] = agg
        except InputError as e:
            skipped["aggregation"] = str(e)
        if agg_digest is not None:
            sub = self.submit_digest(agg_digest)
            try:
                self.sw.submit_global(self.swarm_id, r, bytes.fromhex(sub))
                submitted = sub
                self.on_submitted(r, sub)
            except TransactionReverted as e:
                # A quorum may have finalised (the round moved on) before our turn.
                if self._round(r).status == RoundStatus.PENDING:
                    skipped["submission"] = str(e)

        # 5. wait for the outcome; close the round ourselves after the submit deadline.
        def settled() -> bool:
            x = self._round(r)
            if x.status != RoundStatus.PENDING:
                return True
            if self._passed(x.submit_deadline):
                with contextlib.suppress(TransactionReverted):  # someone else closed it
                    self.sw.close_round(self.swarm_id, r)
            return False

        self._wait(settled, limit, f"round {r} to settle")
        outcome = self._outcome(r)
        finalized = outcome is not None and outcome.status == RoundStatus.FINALIZED
        if finalized and outcome is not None and outcome.global_digest is not None:
            g_out = outcome.global_digest.hex()
            self.params(g_out, sources=list(outcome.supporters))
        else:
            g_out = g_in  # a failed round leaves the global model unchanged

        pred = self._predicate(
            r, ri, info, g_in, mine, n, commits, [d for _, _, d in used], skipped,
            agg_digest, submitted, report, outcome, dp_spent, contributions,
        )
        from .._provenance import types as t
        from .._statements.intoto import statement

        subject_digest = g_out if finalized else (agg_digest or mine)
        st = statement(
            [{"name": f"swarm:{self.swarm_id}/round:{r}", "digest": t.digest(subject_digest)}],
            t.FEDERATED_ROUND,
            pred,
        )
        idx = self.ws.record(st)
        return RoundResult(
            r, "finalized" if finalized else "failed", g_out, submitted,
            [d for _, _, d in used], skipped, idx, pred,
        )

    def run(self, rounds: int) -> list[RoundResult]:
        """Run ``rounds`` rounds back to back, each from the swarm's current round."""
        return [self.step() for _ in range(rounds)]

    def global_params(self) -> Params:
        """The swarm's current global parameters (fetched and checked if needed)."""
        return self.params(self.current_global())

    # -- helpers ----------------------------------------------------------------------

    def _commit_seed(self, r: int, seed: int) -> str:
        import hashlib
        import sqlite3

        salt = secrets.token_hex(16)
        opening = f"ailedger-dp-seed/v1:{salt}:{seed}"
        try:
            db = sqlite3.connect(self.ws.path / "provenance.sqlite", timeout=30)
            with db:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute(
                    "CREATE TABLE IF NOT EXISTS swarm_dp_seeds (swarm INTEGER, round INTEGER,"
                    " opening TEXT, PRIMARY KEY (swarm, round))"
                )
                db.execute("INSERT OR REPLACE INTO swarm_dp_seeds VALUES (?, ?, ?)",
                           (self.swarm_id, r, opening))
            db.close()
        except sqlite3.Error as e:
            raise InputError(f"cannot keep the DP seed in {self.ws.path}: {e}") from None
        return hashlib.sha256(opening.encode()).hexdigest()

    def _member_list(self) -> list[str]:
        # The allowlist is fixed when the swarm is created: read it once.
        if self._members is None:
            self._members = self.sw.members(self.swarm_id)
        return self._members

    def _url(self, member: str) -> str | None:
        # Node URLs read once per round (chain reads dominate a round's overhead).
        if member not in self._urls:
            self._urls[member] = self.sw.node_url(self.swarm_id, member)
        return self._urls[member]

    def _local(self, digest: str) -> bytes | None:
        try:
            return self.ws.blobs.get(digest)
        except Error:
            return None

    def _fetch_update(
        self, member: str, d: str, like: Params, url: str | None = None
    ) -> Params:
        if url is None:  # "" = known to have none (the pool threads never read the chain)
            url = self._url(member)
        if not url:
            raise NotFoundError("no node URL registered")
        data: bytes | None = None
        for attempt in range(3):  # a busy node may drop a request; a missing blob won't appear
            try:
                data = self.fetch(url, d)
                break
            except Error:
                if attempt == 2:
                    raise
                time.sleep(0.2)
        if data is None:
            raise NotFoundError(f"update sha256:{d} not served by {url}")
        try:
            p = pm.decode(data, expected_digest=d)
        except VerificationError:
            raise VerificationError(
                f"bytes served by {url} do not match the committed digest sha256:{d}"
            ) from None
        if [(k, v.shape, v.dtype) for k, v in p.items()] != [
            (k, v.shape, v.dtype) for k, v in like.items()
        ]:
            raise InputError("update tensors differ from the global model's")
        return p

    def _own_contribution(self, own: contrib.Recorded) -> dict[str, Any]:
        return {"verified": True, "envelope": {"sha256": own.digest}, "index": own.index,
                "datasets": self.datasets}

    def _fetch_envelope(self, r: int, url: str) -> bytes | None:
        # Runs on a pool thread: no chain reads here.
        return self.fetch_contribution(url, self.swarm_id, r) if url else None

    @staticmethod
    def _member_key(member: str, ident: Identity | None) -> bytes | Error:
        try:
            return contrib.identity_key(member, ident)
        except Error as e:
            return e

    def _peer_contribution(
        self,
        member: str,
        r: int,
        update: str,
        url: str | None,
        envelope: Future[bytes | None],
        key: bytes | Error,
    ) -> dict[str, Any]:
        """Check a peer's contribution. Never raises: a missing or bad one is recorded
        (``verified: false`` with the reason) and the update is still used."""
        out: dict[str, Any] = {"verified": False}
        if not url:
            return {**out, "reason": "no node URL registered"}
        try:
            env = envelope.result()
        except Error as e:
            return {**out, "reason": str(e)}
        if env is None:
            return {**out, "reason": f"no contribution served by {url}"}
        if len(env) <= contrib.MAX_ENVELOPE:
            # Kept (even when it does not verify: it is the evidence) so a bundle can
            # carry it and `verify` can check it again offline.
            out["envelope"] = {"sha256": self.ws.blobs.put(env)}
        if isinstance(key, Error):
            return {**out, "reason": str(key)}
        try:
            datasets = contrib.check(env, key, swarm=self.swarm_ref, r=r, member=member,
                                     update=update)
        except Error as e:
            return {**out, "reason": str(e)}
        return {**out, "verified": True, "datasets": datasets}

    def _outcome(self, r: int) -> RoundOutcome | None:
        # Round r + 1 starts in the block that settled round r: the next scan starts there.
        start = self._round_blocks.get(r, self.ws.deployment.deployed_at_block)
        o = self.sw.round_outcome(self.swarm_id, r, from_block=start)
        if o is not None:
            self._round_blocks = {r + 1: o.block_number}
        return o

    def _predicate(
        self,
        r: int,
        ri: RoundInfo,
        info: SwarmInfo,
        g_in: str,
        mine: str,
        n: int,
        commits: Mapping[str, tuple[str, int]],
        used: list[str],
        skipped: Mapping[str, str],
        agg: str | None,
        submitted: str | None,
        report: dict[str, Any] | None,
        outcome: RoundOutcome | None,
        dp_spent: dict[str, Any] | None,
        contributions: Mapping[str, dict[str, Any]],
    ) -> dict[str, Any]:
        dep = self.ws.deployment
        members = []
        for m in self._member_list():
            c = commits.get(m)
            entry: dict[str, Any] = {"address": m, "nodeUrl": self._url(m)}
            if c is not None:
                entry["update"] = {"digest": {"sha256": c[0]}, "numExamples": c[1]}
                entry["used"] = c[0] in used and m not in skipped
                if m in skipped:
                    entry["skipped"] = skipped[m]
                ct = dict(contributions.get(m) or {"verified": False, "reason": "not fetched"})
                entry["datasets"] = ct.pop("datasets", [])
                entry["contribution"] = ct
            members.append(entry)
        out: dict[str, Any] = {"status": "pending"}
        if outcome is not None:
            out = {
                "status": "finalized" if outcome.global_digest else "failed",
                "globalDigest": (
                    {"sha256": outcome.global_digest.hex()} if outcome.global_digest else None
                ),
                "supporters": list(outcome.supporters),
                "minority": [{"address": a, "digest": {"sha256": d.hex()}}
                             for a, d in outcome.minority],
                "missed": list(outcome.missed),
                "blockNumber": outcome.block_number,
                "txHash": outcome.tx_hash,
            }
        return {
            "swarm": {
                "id": self.swarm_id,
                "chainId": dep.chain_id,
                "contract": dep.contracts["SwarmRounds"],
                "modelSpec": {"sha256": self.model_spec},
                "quorum": info.quorum,
            },
            "round": r,
            "window": {"start": ri.start, "commitDeadline": ri.commit_deadline,
                       "submitDeadline": ri.submit_deadline},
            "rule": self.rule_spec,
            "member": self.me,
            "inputGlobal": {"sha256": g_in},
            "localUpdate": {"digest": {"sha256": mine}, "numExamples": n},
            "members": members,
            "skipped": [{"member": m, "reason": why} for m, why in sorted(skipped.items())],
            "aggregate": report,
            "computed": {"sha256": agg} if agg else None,
            "submitted": {"sha256": submitted} if submitted else None,
            "outcome": out,
            "dp": dp_spent,
        }
