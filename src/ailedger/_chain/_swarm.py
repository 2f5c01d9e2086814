"""Client of the SwarmRounds contract: swarms, joins, and commit/submit rounds.

Every state-changing method signs and sends one transaction with the client's
account and returns the mined :class:`Receipt` (``create_swarm`` also returns the
new id, read from the transaction's event). A contract refusal raises
:class:`TransactionReverted` whose message is the contract's reason, e.g.
``SwarmRounds: commit window closed`` (see docs/swarm-contract.md for the list).
Arguments the contract could only refuse without a reason (a digest that is not
32 bytes, a URL over 256 bytes, more than 32 members) are refused here with a
ChainError.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import ChainError
from ._abi import decode_event, event_topic
from ._backend import ChainBackend, Receipt, checksum
from ._clients import View, _Client, _hash32

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

MAX_MEMBERS = 32
MAX_NODE_URL_BYTES = 256
# Upper bound on settling a round (tests/chain/test_swarm*.py measure the worst case at
# MAX_MEMBERS): the submission's own writes and the next round's start, plus per member a
# few cold reads and one new counter slot with its event (missed or minority).
SETTLE_GAS_BASE = 300_000
SETTLE_GAS_PER_MEMBER = 40_000
MAX_WINDOW = 365 * 86400  # seconds; the contract's bound on each window
_ZERO32 = b"\x00" * 32


class AggregationRule(enum.IntEnum):
    """The contract's rule codes; ``rule_param`` is 0, 0, trimmed per end, Krum's f."""

    FEDAVG = 0
    MEDIAN = 1
    TRIMMED_MEAN = 2
    KRUM = 3


class RoundStatus(enum.IntEnum):
    """Where a round is (the contract's ``status`` codes; 0 = not started)."""

    PENDING = 1  # accepting commits, then submissions
    FINALIZED = 2  # a quorum agreed on the global digest
    FAILED = 3  # closed after the submit deadline without a quorum


@dataclass(frozen=True)
class SwarmInfo:
    """A swarm as the contract stores it."""

    swarm_id: int
    coordinator: str  # creator of record; no special power
    model_spec: bytes
    rule: AggregationRule
    rule_param: int
    quorum: int
    commit_window: int  # seconds from a round's start to its commit deadline
    submit_window: int  # seconds from the commit deadline to the submit deadline
    member_count: int
    joined_count: int
    started: bool
    current_round: int
    global_digest: bytes | None  # latest finalised global model (None before the first)
    finalized_rounds: int


@dataclass(frozen=True)
class RoundInfo:
    """One round as the contract stores it."""

    swarm_id: int
    round: int
    start: int
    commit_deadline: int  # commits accepted while now <= commit_deadline
    submit_deadline: int  # submissions accepted while now <= submit_deadline
    status: RoundStatus
    global_digest: bytes | None  # set when finalized
    commit_count: int
    submit_count: int


@dataclass(frozen=True)
class RoundOutcome:
    """A settled round read from its ``RoundFinalized`` / ``RoundFailed`` event."""

    swarm_id: int
    round: int
    status: RoundStatus  # FINALIZED or FAILED
    global_digest: bytes | None  # None for a failed round
    supporters: tuple[str, ...]  # members that submitted the final digest (before finalising)
    missed: tuple[str, ...]  # joined members that did not commit
    minority: tuple[tuple[str, bytes], ...]  # (member, digest) that disagreed
    commits: dict[str, tuple[bytes, int]]  # member -> (update digest, num_examples)
    block_number: int
    tx_hash: str


def _uint(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**256:
        raise ChainError(f"{what} must be a non-negative integer")
    return value


def _opt(digest: Any) -> bytes | None:
    b = bytes(digest)
    return None if b == _ZERO32 else b


def _topic_uint(value: int) -> bytes:
    return value.to_bytes(32, "big")


class SwarmRoundsClient(_Client):
    """Create swarms, join them, commit updates and submit global digests.

    ``SwarmRoundsClient(backend, address, account)``; ``account`` (an eth-account
    ``LocalAccount``) is needed only for transactions, not for the views.
    """

    artifact_name = "SwarmRounds"

    def __init__(
        self, backend: ChainBackend, address: str, account: LocalAccount | None = None
    ) -> None:
        super().__init__(backend, address, account)
        self._member_counts: dict[int, int] = {}

    # -- transactions ---------------------------------------------------------
    def create_swarm(
        self,
        model_spec: bytes,
        rule: AggregationRule | int,
        rule_param: int,
        members: Sequence[str],
        quorum: int,
        commit_window: int,
        submit_window: int,
    ) -> tuple[int, Receipt]:
        """Create a swarm of ``members`` (1 .. 32 distinct accounts) training the model
        whose spec digest is ``model_spec``, aggregated with ``rule``; a round finalises
        when ``quorum`` (> half the members) submissions agree. Returns
        ``(swarm_id, receipt)``.
        """
        if isinstance(members, (str, bytes)) or len(members) > MAX_MEMBERS:
            raise ChainError(f"members must be a list of at most {MAX_MEMBERS} addresses")
        rule_code = _uint(int(rule), "rule")
        if rule_code > 255:
            raise ChainError("rule must be 0 (fedavg), 1 (median), 2 (trimmed mean) or 3 (krum)")
        receipt = self._transact(
            "create_swarm",
            [
                _hash32(model_spec, "model spec digest"),
                rule_code,
                _uint(rule_param, "rule_param"),
                [checksum(m, "member address") for m in members],
                _uint(quorum, "quorum"),
                _uint(commit_window, "commit_window"),
                _uint(submit_window, "submit_window"),
            ],
        )
        return int(self._event(receipt, "SwarmCreated")["swarm_id"]), receipt

    def settle_gas(self, swarm_id: int) -> int:
        """A gas limit that covers settling a round of ``swarm_id`` (finalise or fail, and
        start the next): the path a submission, join or close takes when another member's
        transaction mined just before it made it the deciding one. The node's estimate was
        taken against the state before, so it can be short by the whole settle path.
        """
        # The allowlist is fixed at creation: its size is read once per client.
        n = self._member_counts.get(swarm_id)
        if n is None:
            info = self.swarm_info(swarm_id)
            if info is None:
                return SETTLE_GAS_BASE + SETTLE_GAS_PER_MEMBER * MAX_MEMBERS
            n = self._member_counts[swarm_id] = info.member_count
        return SETTLE_GAS_BASE + SETTLE_GAS_PER_MEMBER * n

    def join(self, swarm_id: int, node_url: str) -> Receipt:
        """Join (or update the node URL of) this member; may start round 0."""
        if not isinstance(node_url, str):
            raise ChainError("node URL must be a string")
        if len(node_url.encode("utf-8")) > MAX_NODE_URL_BYTES:
            raise ChainError(f"node URL is longer than {MAX_NODE_URL_BYTES} bytes")
        # The last join starts round 0: it may become the deciding one once mined.
        return self._transact(
            "join", [_uint(swarm_id, "swarm id"), node_url], min_gas=self.settle_gas(swarm_id)
        )

    def start(self, swarm_id: int) -> Receipt:
        """Start round 0 once a quorum joined (joined members only)."""
        return self._transact("start", [_uint(swarm_id, "swarm id")])

    def commit(self, swarm_id: int, round: int, update_digest: bytes, num_examples: int) -> Receipt:
        """Commit this member's update digest for the current round."""
        return self._transact(
            "commit",
            [
                _uint(swarm_id, "swarm id"),
                _uint(round, "round"),
                _hash32(update_digest, "update digest"),
                _uint(num_examples, "num_examples"),
            ],
        )

    def submit_global(self, swarm_id: int, round: int, digest: bytes) -> Receipt:
        """Submit the global digest this member aggregated; may finalise the round."""
        return self._transact(
            "submit_global",
            [_uint(swarm_id, "swarm id"), _uint(round, "round"), _hash32(digest, "global digest")],
            min_gas=self.settle_gas(swarm_id),
        )

    def close_round(self, swarm_id: int, round: int) -> Receipt:
        """Fail the current round after its submit deadline without a quorum (anyone)."""
        return self._transact(
            "close_round",
            [_uint(swarm_id, "swarm id"), _uint(round, "round")],
            min_gas=self.settle_gas(swarm_id),
        )

    # -- views ----------------------------------------------------------------
    def swarm_count(self) -> int:
        return int(self._call("swarm_count", []))

    def swarm_info(self, swarm_id: int) -> SwarmInfo | None:
        """A swarm, or None if there is no such swarm."""
        return self._read(self.swarm_info_view(swarm_id))

    def swarm_info_view(self, swarm_id: int) -> View[SwarmInfo | None]:
        sid = _uint(swarm_id, "swarm id")

        def decode(out: Any) -> SwarmInfo | None:
            (coord, spec, rule, param, quorum, cw, sw, n, joined, started, cur, gd, fin) = out
            if int(n) == 0:
                return None
            return SwarmInfo(
                sid, coord, bytes(spec), AggregationRule(int(rule)), int(param), int(quorum),
                int(cw), int(sw), int(n), int(joined), bool(started), int(cur), _opt(gd),
                int(fin),
            )  # fmt: skip

        return self._view("swarm_info", [sid], decode)

    def members(self, swarm_id: int) -> list[str]:
        return [checksum(m) for m in self._call("members", [_uint(swarm_id, "swarm id")])]

    def is_member(self, swarm_id: int, account: str) -> bool:
        return bool(
            self._call("is_member", [_uint(swarm_id, "swarm id"), checksum(account, "account")])
        )

    def node_url(self, swarm_id: int, member: str) -> str | None:
        """The member's registered node URL, or None if it has not joined."""
        return self._read(self.node_url_view(swarm_id, member))

    def node_url_view(self, swarm_id: int, member: str) -> View[str | None]:
        return self._view(
            "node_url", [_uint(swarm_id, "swarm id"), checksum(member, "member")],
            lambda out: str(out) or None,
        )  # fmt: skip

    def current_round(self, swarm_id: int) -> int:
        """The round accepting commits (0 also before the start: see ``started``)."""
        return int(self._call("current_round", [_uint(swarm_id, "swarm id")]))

    def round_info(self, swarm_id: int, round: int) -> RoundInfo | None:
        """A round, or None if it has not started."""
        return self._read(self.round_info_view(swarm_id, round))

    def round_info_view(self, swarm_id: int, round: int) -> View[RoundInfo | None]:
        sid, rid = _uint(swarm_id, "swarm id"), _uint(round, "round")

        def decode(out: Any) -> RoundInfo | None:
            start, cd, sd, status, gd, cc, sc = out
            if int(status) == 0:
                return None
            return RoundInfo(
                sid, rid, int(start), int(cd), int(sd), RoundStatus(int(status)), _opt(gd),
                int(cc), int(sc),
            )  # fmt: skip

        return self._view("round_info", [sid, rid], decode)

    def commitment(self, swarm_id: int, round: int, member: str) -> tuple[bytes, int] | None:
        """``(update_digest, num_examples)`` the member committed, or None."""
        return self._read(self.commitment_view(swarm_id, round, member))

    def commitment_view(
        self, swarm_id: int, round: int, member: str
    ) -> View[tuple[bytes, int] | None]:
        def decode(out: Any) -> tuple[bytes, int] | None:
            digest, n = out
            return None if bytes(digest) == _ZERO32 else (bytes(digest), int(n))

        return self._view(
            "commitment",
            [_uint(swarm_id, "swarm id"), _uint(round, "round"), checksum(member, "member")],
            decode,
        )

    def submission(self, swarm_id: int, round: int, member: str) -> bytes | None:
        """The global digest the member submitted in the round, or None."""
        return _opt(
            self._call(
                "submission",
                [_uint(swarm_id, "swarm id"), _uint(round, "round"), checksum(member, "member")],
            )
        )

    def votes(self, swarm_id: int, round: int, digest: bytes) -> int:
        return int(
            self._call(
                "votes",
                [_uint(swarm_id, "swarm id"), _uint(round, "round"), _hash32(digest, "digest")],
            )
        )

    def misses(self, swarm_id: int, member: str) -> int:
        """Settled rounds the member (joined) did not commit in."""
        return int(self._call("misses", [_uint(swarm_id, "swarm id"), checksum(member, "member")]))

    def minority(self, swarm_id: int, member: str) -> int:
        """Finalised rounds in which the member submitted another digest."""
        return int(
            self._call("minority", [_uint(swarm_id, "swarm id"), checksum(member, "member")])
        )

    # -- history --------------------------------------------------------------
    _SETTLED = ("Committed", "MissedCommit", "MinoritySubmission", "RoundFinalized", "RoundFailed")

    def _settled_events(
        self, topics: list[bytes | None], from_block: int
    ) -> list[tuple[Any, str, dict[str, Any]]]:
        # Every SwarmRounds event indexes the swarm id first and (round events) the round
        # second, so ONE log query filtered on those topics returns all a history needs.
        names = {event_topic(self.artifact.abi, n): n for n in self._SETTLED}
        out = []
        for lg in self.backend.get_logs(self.address, topics, from_block=from_block):
            name = names.get(bytes(lg.topics[0])) if lg.topics else None
            if name is not None:
                out.append((lg, name, decode_event(self.artifact.abi, name, lg.topics, lg.data)))
        return out

    def history(self, swarm_id: int, *, from_block: int = 0) -> list[RoundOutcome]:
        """Settled rounds of a swarm, in order, from the contract's events: the global
        digest and supporters of each finalised round, the members that missed it or
        disagreed, and every commitment. ``from_block``: the deployment's
        ``deployed_at_block`` makes the scan cheaper.
        """
        sid = _uint(swarm_id, "swarm id")
        return _outcomes(sid, self._settled_events([None, _topic_uint(sid)], from_block))

    def round_outcome(
        self, swarm_id: int, round: int, *, from_block: int = 0
    ) -> RoundOutcome | None:
        """How round ``round`` settled (one log query), or None while it is pending.

        ``from_block`` MUST be at or before the block that started the round, or the
        outcome's ``commits`` miss the commitments made before it.
        """
        sid, r = _uint(swarm_id, "swarm id"), _uint(round, "round")
        found = _outcomes(
            sid, self._settled_events([None, _topic_uint(sid), _topic_uint(r)], from_block)
        )
        return found[0] if found else None


def _outcomes(sid: int, events: list[tuple[Any, str, dict[str, Any]]]) -> list[RoundOutcome]:
    commits: dict[int, dict[str, tuple[bytes, int]]] = {}
    missed: dict[int, list[str]] = {}
    minority: dict[int, list[tuple[str, bytes]]] = {}
    settled: list[tuple[Any, RoundStatus, dict[str, Any]]] = []
    for lg, name, ev in events:
        r = int(ev["round"])
        if name == "Committed":
            commits.setdefault(r, {})[checksum(ev["member"])] = (
                bytes(ev["update_digest"]),
                int(ev["num_examples"]),
            )
        elif name == "MissedCommit":
            missed.setdefault(r, []).append(checksum(ev["member"]))
        elif name == "MinoritySubmission":
            minority.setdefault(r, []).append((checksum(ev["member"]), bytes(ev["digest"])))
        else:
            ok = name == "RoundFinalized"
            settled.append((lg, RoundStatus.FINALIZED if ok else RoundStatus.FAILED, ev))
    out: list[RoundOutcome] = []
    for lg, status, ev in settled:
        r = int(ev["round"])
        out.append(
            RoundOutcome(
                swarm_id=sid,
                round=r,
                status=status,
                global_digest=bytes(ev["digest"]) if "digest" in ev else None,
                supporters=tuple(checksum(a) for a in ev.get("supporters", ())),
                missed=tuple(missed.get(r, ())),
                minority=tuple(minority.get(r, ())),
                commits=dict(commits.get(r, {})),
                block_number=lg.block_number,
                tx_hash=lg.tx_hash,
            )
        )
    out.sort(key=lambda o: o.round)
    return out
