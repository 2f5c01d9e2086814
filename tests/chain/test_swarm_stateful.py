"""A stateful model of SwarmRounds: random members (and an outsider) join, start,
commit, submit honest, wrong or empty global digests, close rounds and let time
pass, against the contract on the embedded chain; every outcome (success or the
exact revert reason) is predicted by a Python model, and after every step the
contract's swarm, rounds, commitments, submissions and miss/minority counters
must equal the model's.

Time is made deterministic: py-evm stamps a block max(parent + 1, now), so the
wall clock is pinned to the epoch for the duration of a run and every block is
exactly one second after its parent. The model then knows the timestamp of the
next transaction (head + 1) and can predict deadline checks exactly."""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import eth._utils.headers as evm_headers
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from ailedger._chain import (
    EmbeddedBackend,
    RoundStatus,
    SwarmRoundsClient,
    TransactionReverted,
    deploy_all,
)

N_MEMBERS = 5
OUTSIDER = N_MEMBERS  # actor index of a non-member
QUORUM = 3
COMMIT_WINDOW = 7  # seconds = blocks, with the pinned clock
SUBMIT_WINDOW = 6
_DUMMY = "0x" + "33" * 20
ZERO = b"\0" * 32


def h(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


@dataclass
class MRound:
    start: int
    commit_deadline: int
    submit_deadline: int
    status: RoundStatus = RoundStatus.PENDING
    digest: bytes | None = None
    commits: dict[int, tuple[bytes, int]] = field(default_factory=dict)
    subs: dict[int, bytes] = field(default_factory=dict)


class SwarmMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self._eth_now = evm_headers.eth_now
        evm_headers.eth_now = lambda: 0  # every block: parent + 1 s
        self.tmp = tempfile.TemporaryDirectory()
        self.backend = EmbeddedBackend(Path(self.tmp.name) / "chain.db")
        self.actors: list[LocalAccount] = [Account.create() for _ in range(N_MEMBERS + 1)]
        for a in self.actors:
            self.backend.fund(a.address)
        dep = deploy_all(self.backend, self.actors[0])
        addr = dep.contracts["SwarmRounds"]
        self.c = [SwarmRoundsClient(self.backend, addr, a) for a in self.actors]
        self.sid = 0
        self.joined: list[int] = []  # in join order
        self.started = False
        self.rounds: list[MRound] = []
        self.misses = [0] * N_MEMBERS
        self.minority = [0] * N_MEMBERS
        self.global_digest: bytes | None = None
        self.finalized = 0

    def teardown(self) -> None:
        evm_headers.eth_now = self._eth_now
        self.backend.close()
        self.tmp.cleanup()

    # -- helpers -------------------------------------------------------------
    def now(self) -> int:
        """Timestamp the next transaction executes at."""
        return self.backend.block_timestamp(self.backend.block_number()) + 1

    def expect(self, reason: str | None, fn, *args):  # type: ignore[no-untyped-def]
        event(f"{fn.__name__}: {reason or 'ok'}")
        if reason is None:
            return fn(*args)
        with pytest.raises(TransactionReverted, match=f"^SwarmRounds: {reason}$"):
            fn(*args)
        return None

    def cur(self) -> int:
        return len(self.rounds) - 1

    def start_round(self, t: int) -> None:
        cd = t + COMMIT_WINDOW
        self.rounds.append(MRound(t, cd, cd + SUBMIT_WINDOW))

    def record_misses(self, r: MRound) -> None:
        for m in range(N_MEMBERS):
            if m in self.joined and m not in r.commits:
                self.misses[m] += 1

    def member_reason(self, who: int) -> str | None:
        if who == OUTSIDER:
            return "not a member"
        if who not in self.joined:
            return "not joined"
        return None

    def round_reason(self, rnd: int) -> str | None:
        if not self.started:
            return "swarm not started"
        if rnd != self.cur():
            return "wrong round"
        return None

    def pick_round(self, data: st.DataObject) -> int:
        cur = max(self.cur(), 0)
        return data.draw(st.sampled_from([cur, cur, cur, cur, cur + 1, max(cur - 1, 0)]))

    # -- rules ---------------------------------------------------------------
    @initialize(n_joined=st.sampled_from([3, 4, 5]))
    def create(self, n_joined: int) -> None:
        # Most of the time members have joined and round 0 runs: a swarm that never
        # starts exercises little. Late joins (and URL updates) remain a rule.
        members = [a.address for a in self.actors[:N_MEMBERS]]
        self.sid, _ = self.c[OUTSIDER].create_swarm(
            h("spec"), 1, 0, members, QUORUM, COMMIT_WINDOW, SUBMIT_WINDOW
        )
        assert self.sid == 1
        for who in range(n_joined):
            self.join(who, 1)
        if not self.started:
            self.start(0)

    def who(self, data: st.DataObject) -> int:
        # Mostly a joined member (the rightful actor), sometimes anyone.
        if self.joined and data.draw(st.integers(0, 5)):
            return data.draw(st.sampled_from(self.joined))
        return data.draw(st.integers(0, N_MEMBERS))

    @rule(who=st.integers(0, N_MEMBERS), port=st.integers(1, 3))
    def join_rule(self, who: int, port: int) -> None:
        self.join(who, port)

    def join(self, who: int, port: int) -> None:
        reason = "not a member" if who == OUTSIDER else None
        t = self.now()
        self.expect(reason, self.c[who].join, self.sid, f"http://node{who}:{port}")
        if reason is None and who not in self.joined:
            self.joined.append(who)
            if not self.started and len(self.joined) == N_MEMBERS:
                self.started = True
                self.start_round(t)
        if reason is None:
            assert self.c[0].node_url(self.sid, self.actors[who].address) == (
                f"http://node{who}:{port}"
            )

    @rule(data=st.data())
    def start_rule(self, data: st.DataObject) -> None:
        self.start(self.who(data))

    def start(self, who: int) -> None:
        reason = self.member_reason(who)
        if reason is None and self.started:
            reason = "already started"
        if reason is None and len(self.joined) < QUORUM:
            reason = "fewer members joined than the quorum"
        t = self.now()
        self.expect(reason, self.c[who].start, self.sid)
        if reason is None:
            self.started = True
            self.start_round(t)

    @rule(
        data=st.data(),
        examples=st.sampled_from([1, 50, 1000, 1000, 0]),
        empty=st.integers(0, 9),
    )
    def commit_rule(self, data: st.DataObject, examples: int, empty: int) -> None:
        who = self.who(data)
        rnd = self.pick_round(data)
        self.commit(who, rnd, ZERO if empty == 0 else h(f"update {who} {rnd}"), examples)

    def commit(self, who: int, rnd: int, digest: bytes, examples: int) -> None:
        t = self.now()
        reason = self.member_reason(who) or self.round_reason(rnd)
        if reason is None:
            r = self.rounds[rnd]
            if t > r.commit_deadline:
                reason = "commit window closed"
            elif who in r.commits:
                reason = "already committed"
            elif digest == ZERO:
                reason = "empty update digest"
            elif examples == 0:
                reason = "num_examples must be positive"
        self.expect(reason, self.c[who].commit, self.sid, rnd, digest, examples)
        if reason is None:
            self.rounds[rnd].commits[who] = (digest, examples)
            got = self.c[0].commitment(self.sid, rnd, self.actors[who].address)
            assert got == (digest, examples)

    @rule(
        data=st.data(),
        choice=st.sampled_from(["honest"] * 6 + ["wrong", "other", "empty"]),
    )
    def submit_rule(self, data: st.DataObject, choice: str) -> None:
        self.submit(self.who(data), self.pick_round(data), choice)

    def submit(self, who: int, rnd: int, choice: str) -> None:
        digest = {
            "honest": h(f"global {rnd}"),
            "wrong": h("poisoned"),
            "other": h(f"other {who}"),
            "empty": ZERO,
        }[choice]
        t = self.now()
        reason = self.member_reason(who) or self.round_reason(rnd)
        if reason is None:
            r = self.rounds[rnd]
            if who not in r.commits:
                reason = "not committed this round"
            elif who in r.subs:
                reason = "already submitted"
            elif len(r.commits) != len(self.joined) and t <= r.commit_deadline:
                reason = "commit window still open"
            elif t > r.submit_deadline:
                reason = "submit window closed"
            elif digest == ZERO:
                reason = "empty global digest"
        self.expect(reason, self.c[who].submit_global, self.sid, rnd, digest)
        if reason is not None:
            return
        r = self.rounds[rnd]
        r.subs[who] = digest
        assert self.c[0].submission(self.sid, rnd, self.actors[who].address) == digest
        assert self.c[0].votes(self.sid, rnd, digest) == sum(d == digest for d in r.subs.values())
        if sum(1 for d in r.subs.values() if d == digest) < QUORUM:
            return
        event("round finalized")
        for m, d in r.subs.items():
            if d != digest:
                event("minority digest recorded")
                self.minority[m] += 1
        self.record_misses(r)
        r.status, r.digest = RoundStatus.FINALIZED, digest
        self.global_digest = digest
        self.finalized += 1
        self.start_round(t)
        self.check_settled(rnd)

    @rule(data=st.data())
    def play_round(self, data: st.DataObject) -> None:
        """A whole round by the joined members: some commit (the rest crash), then the
        committers submit, a few of them a wrong digest, in a random order."""
        if not self.started:
            return
        if self.now() + len(self.joined) > self.rounds[-1].commit_deadline:
            # Too late to commit in this round: run the clock out and fail it first.
            while self.now() <= self.rounds[-1].submit_deadline:
                self.backend.fund(_DUMMY, 1)
            self.close_as(self.who(data), self.cur())
        rnd = self.cur()
        order = data.draw(st.permutations(self.joined))
        crashed = data.draw(st.integers(0, max(0, len(order) - QUORUM)))
        for who in order[crashed:]:
            self.commit(who, rnd, h(f"update {who} {rnd}"), 10 + who)
        if len(self.rounds[rnd].commits) < len(self.joined):
            # Wait for the commit deadline (someone crashed) instead of failing.
            while self.now() <= self.rounds[rnd].commit_deadline:
                self.backend.fund(_DUMMY, 1)
        for who in data.draw(st.permutations(order[crashed:])):
            if self.cur() != rnd:
                break
            self.submit(who, rnd, data.draw(st.sampled_from(["honest"] * 3 + ["wrong"])))

    @rule(data=st.data(), who=st.integers(0, N_MEMBERS), wait_first=st.booleans())
    def close(self, data: st.DataObject, who: int, wait_first: bool) -> None:
        rnd = self.pick_round(data)
        if wait_first and self.started:
            # Often run out the clock first, or rounds would rarely fail.
            while self.now() <= self.rounds[-1].submit_deadline:
                self.backend.fund(_DUMMY, 1)
        self.close_as(who, rnd)

    def close_as(self, who: int, rnd: int) -> None:
        t = self.now()
        if not self.started:
            reason: str | None = "swarm not started"
        elif rnd > self.cur():
            reason = "wrong round"
        elif rnd < self.cur():
            reason = "round already settled"
        elif t <= self.rounds[rnd].submit_deadline:
            reason = "submit window still open"
        else:
            reason = None
        self.expect(reason, self.c[who].close_round, self.sid, rnd)
        if reason is None:
            event("round failed")
            r = self.rounds[rnd]
            self.record_misses(r)
            r.status = RoundStatus.FAILED
            self.start_round(t)
            self.check_settled(rnd)

    @rule(blocks=st.integers(1, 4))
    def wait(self, blocks: int) -> None:
        for _ in range(blocks):
            self.backend.fund(_DUMMY, 1)

    # -- checks ----------------------------------------------------------------
    def check_round(self, rnd: int) -> None:
        r = self.rounds[rnd]
        got = self.c[0].round_info(self.sid, rnd)
        assert got is not None
        assert (got.start, got.commit_deadline, got.submit_deadline) == (
            r.start,
            r.commit_deadline,
            r.submit_deadline,
        )
        assert (got.status, got.global_digest) == (r.status, r.digest)
        assert (got.commit_count, got.submit_count) == (len(r.commits), len(r.subs))

    def check_settled(self, rnd: int) -> None:
        """After a round settles: the round, every member's commitment, submission and
        counters, and the event history."""
        c = self.c[0]
        self.check_round(rnd)
        r = self.rounds[rnd]
        addrs = [a.address for a in self.actors[:N_MEMBERS]]
        for m, a in enumerate(addrs):
            assert c.commitment(self.sid, rnd, a) == r.commits.get(m)
            assert c.submission(self.sid, rnd, a) == r.subs.get(m)
        assert [c.misses(self.sid, a) for a in addrs] == self.misses
        assert [c.minority(self.sid, a) for a in addrs] == self.minority
        hist = c.history(self.sid)
        settled = [(i, r) for i, r in enumerate(self.rounds) if r.status is not RoundStatus.PENDING]
        assert [(o.round, o.status, o.global_digest) for o in hist] == [
            (i, r.status, r.digest) for i, r in settled
        ]
        last = hist[-1]
        assert last.commits == {addrs[m]: v for m, v in r.commits.items()}
        if r.status is RoundStatus.FINALIZED:
            assert last.supporters == tuple(
                a for m, a in enumerate(addrs) if r.subs.get(m) == r.digest
            )
            assert last.minority == tuple(
                (a, r.subs[m]) for m, a in enumerate(addrs) if r.subs.get(m, r.digest) != r.digest
            )

    @invariant()
    def contract_matches_model(self) -> None:
        # Cheap checks every step (calls cost milliseconds); the rest on settlement.
        c = self.c[0]
        info = c.swarm_info(self.sid)
        assert info is not None
        assert (info.joined_count, info.started, info.current_round) == (
            len(self.joined),
            self.started,
            max(self.cur(), 0),
        )
        assert (info.global_digest, info.finalized_rounds) == (self.global_digest, self.finalized)
        if self.rounds:
            self.check_round(self.cur())
        assert c.round_info(self.sid, len(self.rounds)) is None


SwarmMachine.TestCase.settings = settings(max_examples=12, stateful_step_count=25, deadline=None)
TestSwarmMachine = SwarmMachine.TestCase
