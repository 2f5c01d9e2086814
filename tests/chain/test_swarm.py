"""SwarmRounds: every function, every revert path, quorum finalisation, misses and
minority digests on record, failed rounds — on both backends (embedded py-evm and a
real anvil)."""

from __future__ import annotations

import hashlib

import pytest
import requests
from eth_account.signers.local import LocalAccount

from ailedger._chain import (
    AggregationRule,
    Deployment,
    RoundStatus,
    SwarmRoundsClient,
    TransactionReverted,
    deploy_missing,
    load_artifact,
)
from ailedger._chain._abi import decode_event, event_topic
from ailedger._chain._backend import checksum
from ailedger.errors import ChainError

from .conftest import ChainEnv

SPEC = hashlib.sha256(b"model spec").digest()
COMMIT = 40  # seconds; long enough for a round's setup on either backend
SUBMIT = 40
ZERO = b"\0" * 32


def head_time(chain: ChainEnv) -> int:
    """Timestamp of a freshly mined block: the next transaction's time is at or just after it."""
    chain.fund("0x" + "11" * 20, 1)
    return chain.backend.block_timestamp(chain.backend.block_number())


def advance(chain: ChainEnv, seconds: int) -> None:
    """Move chain time forward by at least ``seconds`` (as in test_agreements): anvil
    jumps its clock; an embedded block is at least 1 s after its parent, so mining
    blocks is enough (deterministic, no sleeping)."""
    seconds = max(seconds, 1)
    start = head_time(chain)
    if chain.kind == "rpc":
        url = chain.backend.url  # type: ignore[attr-defined]
        for method, params in (("evm_increaseTime", [seconds]), ("evm_mine", [])):
            r = requests.post(
                url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
            )
            assert "error" not in r.json(), r.json()
    while head_time(chain) < start + seconds:
        pass


def h(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def reverts(match: str):  # type: ignore[no-untyped-def]
    return pytest.raises(TransactionReverted, match=f"^SwarmRounds: {match}$")


def client(chain: ChainEnv, account: LocalAccount) -> SwarmRoundsClient:
    return SwarmRoundsClient(chain.backend, chain.deployment.contracts["SwarmRounds"], account)


def events(sw: SwarmRoundsClient, rc: object, name: str) -> list[dict[str, object]]:
    topic = event_topic(sw.artifact.abi, name)
    return [
        decode_event(sw.artifact.abi, name, lg.topics, lg.data)
        for lg in rc.logs  # type: ignore[attr-defined]
        if lg.topics and lg.topics[0] == topic
    ]


class Swarm:
    """``n`` funded members (clients ``m[i]``), an outsider, and helpers."""

    def __init__(self, chain: ChainEnv, n: int = 4) -> None:
        self.chain = chain
        self.accts = [chain.owner, chain.other] + [chain.new_account() for _ in range(n - 2)]
        self.m = [client(chain, a) for a in self.accts]
        self.addr = [a.address for a in self.accts]
        self.outsider = client(chain, chain.new_account())
        self.sid = 0

    def create(self, quorum: int = 3, *, rule: int = 0, param: int = 0, members=None) -> int:  # type: ignore[no-untyped-def]
        self.sid, _ = self.outsider.create_swarm(
            SPEC, rule, param, self.addr if members is None else members, quorum, COMMIT, SUBMIT
        )
        return self.sid

    def join_all(self) -> None:
        for i, c in enumerate(self.m):
            c.join(self.sid, f"http://127.0.0.1:{8000 + i}")

    def commit(self, i: int, r: int, label: str = "") -> None:
        self.m[i].commit(self.sid, r, h(f"update {i} {r} {label}"), 100 + i)


@pytest.fixture
def s(chain: ChainEnv) -> Swarm:
    return Swarm(chain)


# -- creation --------------------------------------------------------------------------


def test_create_swarm_and_views(s: Swarm) -> None:
    assert s.outsider.swarm_count() == 0 and s.outsider.swarm_info(1) is None
    sid, rc = s.outsider.create_swarm(SPEC, AggregationRule.TRIMMED_MEAN, 1, s.addr, 3, 60, 30)
    assert sid == 1 and s.outsider.swarm_count() == 1
    info = s.m[0].swarm_info(sid)
    assert info is not None
    assert (info.coordinator, info.model_spec, info.rule, info.rule_param, info.quorum) == (
        s.outsider.account.address,  # type: ignore[union-attr]
        SPEC,
        AggregationRule.TRIMMED_MEAN,
        1,
        3,
    )
    assert (info.commit_window, info.submit_window, info.member_count, info.joined_count) == (
        60,
        30,
        4,
        0,
    )
    assert (info.started, info.current_round, info.global_digest, info.finalized_rounds) == (
        False,
        0,
        None,
        0,
    )
    assert s.m[0].members(sid) == s.addr
    assert all(s.m[0].is_member(sid, a) for a in s.addr)
    assert not s.m[0].is_member(sid, s.outsider.address)
    assert s.m[0].node_url(sid, s.addr[0]) is None
    assert s.m[0].current_round(sid) == 0 and s.m[0].round_info(sid, 0) is None
    (ev,) = events(s.m[0], rc, "SwarmCreated")
    assert [checksum(str(x)) for x in ev["members"]] == s.addr  # type: ignore[attr-defined]
    # Every rule with a legal parameter; a one-member swarm; a unanimous quorum.
    s.outsider.create_swarm(SPEC, AggregationRule.FEDAVG, 0, s.addr, 4, 1, 1)
    s.outsider.create_swarm(SPEC, AggregationRule.MEDIAN, 0, s.addr[:1], 1, 1, 1)
    s.outsider.create_swarm(SPEC, AggregationRule.KRUM, 0, s.addr[:3], 2, 1, 1)
    s.outsider.create_swarm(SPEC, AggregationRule.KRUM, 1, s.addr, 3, 365 * 86400, 365 * 86400)
    assert s.outsider.swarm_count() == 5


def test_create_swarm_bad_parameters_revert(s: Swarm) -> None:
    c, a = s.outsider, s.addr
    with reverts("empty model spec"):
        c.create_swarm(ZERO, 0, 0, a, 3, 60, 60)
    with reverts("unknown rule"):
        c.create_swarm(SPEC, 4, 0, a, 3, 60, 60)
    with reverts("no members"):
        c.create_swarm(SPEC, 0, 0, [], 1, 60, 60)
    with reverts("bad rule parameter"):
        c.create_swarm(SPEC, AggregationRule.FEDAVG, 1, a, 3, 60, 60)
    with reverts("bad rule parameter"):
        c.create_swarm(SPEC, AggregationRule.MEDIAN, 1, a, 3, 60, 60)
    with reverts("bad rule parameter"):
        c.create_swarm(SPEC, AggregationRule.TRIMMED_MEAN, 2, a, 3, 60, 60)  # 2·2 ≥ 4
    with reverts("bad rule parameter"):
        c.create_swarm(SPEC, AggregationRule.KRUM, 1, a[:3], 2, 60, 60)  # 1+2 ≥ 3
    with reverts("bad rule parameter"):
        c.create_swarm(SPEC, AggregationRule.KRUM, 2**255, a, 3, 60, 60)  # no overflow
    with reverts("quorum must exceed half the members"):
        c.create_swarm(SPEC, 0, 0, a, 2, 60, 60)
    with reverts("quorum must exceed half the members"):
        c.create_swarm(SPEC, 0, 0, a, 0, 60, 60)
    with reverts("quorum exceeds the members"):
        c.create_swarm(SPEC, 0, 0, a, 5, 60, 60)
    with reverts("commit_window must be positive"):
        c.create_swarm(SPEC, 0, 0, a, 3, 0, 60)
    with reverts("commit_window too long"):
        c.create_swarm(SPEC, 0, 0, a, 3, 365 * 86400 + 1, 60)
    with reverts("submit_window must be positive"):
        c.create_swarm(SPEC, 0, 0, a, 3, 60, 0)
    with reverts("submit_window too long"):
        c.create_swarm(SPEC, 0, 0, a, 3, 60, 2**255)
    with reverts("zero member address"):
        c.create_swarm(SPEC, 0, 0, [a[0], "0x" + "00" * 20], 2, 60, 60)
    with reverts("duplicate member"):
        c.create_swarm(SPEC, 0, 0, [a[0], a[1], a[0]], 2, 60, 60)
    # Refused client-side: the contract could only fail without a reason.
    with pytest.raises(ChainError, match="at most 32 addresses"):
        c.create_swarm(SPEC, 0, 0, [a[0]] * 33, 17, 60, 60)
    with pytest.raises(ChainError, match="model spec digest must be 32 bytes"):
        c.create_swarm(b"short", 0, 0, a, 3, 60, 60)
    with pytest.raises(ChainError, match="member address"):
        c.create_swarm(SPEC, 0, 0, ["nope"], 1, 60, 60)
    with pytest.raises(ChainError, match="quorum must be a non-negative integer"):
        c.create_swarm(SPEC, 0, 0, a, -1, 60, 60)
    assert c.swarm_count() == 0


# -- joining and starting --------------------------------------------------------------


def test_join_updates_url_and_last_join_starts_round_zero(s: Swarm) -> None:
    sid = s.create()
    with reverts("unknown swarm"):
        s.m[0].join(99, "http://x")
    with reverts("not a member"):
        s.outsider.join(sid, "http://x")
    with reverts("empty node URL"):
        s.m[0].join(sid, "")
    with pytest.raises(ChainError, match="longer than 256 bytes"):
        s.m[0].join(sid, "h" * 257)
    rc = s.m[0].join(sid, "http://a:1")
    assert events(s.m[0], rc, "Joined")[0]["node_url"] == "http://a:1"
    rc = s.m[0].join(sid, "http://a:2")  # re-join: only the URL changes
    assert events(s.m[0], rc, "NodeUrlUpdated")[0]["node_url"] == "http://a:2"
    assert not events(s.m[0], rc, "Joined")
    s.m[1].join(sid, "u" * 256)
    s.m[2].join(sid, "http://c")
    info = s.m[0].swarm_info(sid)
    assert info is not None and info.joined_count == 3 and not info.started
    assert s.m[0].node_url(sid, s.addr[0]) == "http://a:2"
    assert s.m[0].node_url(sid, s.addr[1]) == "u" * 256
    rc = s.m[3].join(sid, "http://d")
    t = s.chain.backend.block_timestamp(rc.block_number)
    (ev,) = events(s.m[0], rc, "RoundStarted")
    assert (ev["round"], ev["start"], ev["commit_deadline"], ev["submit_deadline"]) == (
        0,
        t,
        t + COMMIT,
        t + COMMIT + SUBMIT,
    )
    info = s.m[0].swarm_info(sid)
    assert info is not None and info.started and info.joined_count == 4
    r0 = s.m[0].round_info(sid, 0)
    assert r0 is not None
    assert (r0.start, r0.commit_deadline, r0.submit_deadline, r0.status) == (
        t,
        t + COMMIT,
        t + COMMIT + SUBMIT,
        RoundStatus.PENDING,
    )
    assert (r0.global_digest, r0.commit_count, r0.submit_count) == (None, 0, 0)
    s.m[3].join(sid, "http://d2")  # URL updates after the start are fine
    assert s.m[0].node_url(sid, s.addr[3]) == "http://d2"
    with reverts("already started"):
        s.m[0].start(sid)


def test_start_with_a_quorum_and_late_join(s: Swarm) -> None:
    sid = s.create(quorum=3)
    with reverts("unknown swarm"):
        s.m[0].start(99)
    with reverts("not a member"):
        s.outsider.start(sid)
    with reverts("not joined"):
        s.m[0].start(sid)
    s.m[0].join(sid, "http://a")
    s.m[1].join(sid, "http://b")
    with reverts("fewer members joined than the quorum"):
        s.m[0].start(sid)
    s.m[2].join(sid, "http://c")
    with reverts("not joined"):
        s.m[3].start(sid)
    rc = s.m[2].start(sid)
    assert events(s.m[0], rc, "RoundStarted")[0]["round"] == 0
    info = s.m[0].swarm_info(sid)
    assert info is not None and info.started and info.joined_count == 3
    with reverts("already started"):
        s.m[0].start(sid)
    # Three joined members committing is "everyone": submissions open at once.
    for i in range(3):
        s.commit(i, 0)
    s.m[0].submit_global(sid, 0, h("g0"))
    # A late joiner takes part from then on: it can still commit in this round, and
    # submissions need it too now (everyone joined committed again).
    s.m[3].join(sid, "http://d")
    with reverts("not committed this round"):
        s.m[3].submit_global(sid, 0, h("g0"))
    s.commit(3, 0)
    s.m[1].submit_global(sid, 0, h("g0"))
    s.m[3].submit_global(sid, 0, h("g0"))
    r0 = s.m[0].round_info(sid, 0)
    assert r0 is not None and r0.status is RoundStatus.FINALIZED and r0.commit_count == 4


# -- commits ---------------------------------------------------------------------------


def test_commit_and_its_reverts(s: Swarm) -> None:
    sid = s.create()
    s.m[0].join(sid, "http://a")
    with reverts("unknown swarm"):
        s.m[0].commit(99, 0, h("u"), 1)
    with reverts("not a member"):
        s.outsider.commit(sid, 0, h("u"), 1)
    with reverts("not joined"):
        s.m[1].commit(sid, 0, h("u"), 1)
    with reverts("swarm not started"):
        s.m[0].commit(sid, 0, h("u"), 1)
    for c in s.m[1:]:
        c.join(sid, "http://x")
    with reverts("wrong round"):
        s.m[0].commit(sid, 1, h("u"), 1)
    with reverts("empty update digest"):
        s.m[0].commit(sid, 0, ZERO, 1)
    with reverts("num_examples must be positive"):
        s.m[0].commit(sid, 0, h("u"), 0)
    with pytest.raises(ChainError, match="update digest must be 32 bytes"):
        s.m[0].commit(sid, 0, b"x", 1)
    rc = s.m[0].commit(sid, 0, h("u0"), 1234)
    (ev,) = events(s.m[0], rc, "Committed")
    assert (ev["round"], ev["update_digest"], ev["num_examples"]) == (0, h("u0"), 1234)
    assert s.m[1].commitment(sid, 0, s.addr[0]) == (h("u0"), 1234)
    assert s.m[1].commitment(sid, 0, s.addr[1]) is None
    with reverts("already committed"):
        s.m[0].commit(sid, 0, h("other"), 1)
    r0 = s.m[0].round_info(sid, 0)
    assert r0 is not None and r0.commit_count == 1
    advance(s.chain, r0.commit_deadline - head_time(s.chain) + 1)
    with reverts("commit window closed"):
        s.m[1].commit(sid, 0, h("u1"), 1)
    assert s.m[1].commitment(sid, 0, s.addr[1]) is None


# -- submissions -----------------------------------------------------------------------


def test_submit_global_reverts(s: Swarm) -> None:
    sid = s.create()
    with reverts("unknown swarm"):
        s.m[0].submit_global(99, 0, h("g"))
    with reverts("not a member"):
        s.outsider.submit_global(sid, 0, h("g"))
    with reverts("not joined"):
        s.m[0].submit_global(sid, 0, h("g"))
    s.m[0].join(sid, "http://a")
    with reverts("swarm not started"):
        s.m[0].submit_global(sid, 0, h("g"))
    s.join_all()
    with reverts("wrong round"):
        s.m[0].submit_global(sid, 1, h("g"))
    with reverts("not committed this round"):
        s.m[0].submit_global(sid, 0, h("g"))
    s.commit(0, 0)
    s.commit(1, 0)
    with reverts("commit window still open"):  # two of four committed, deadline ahead
        s.m[0].submit_global(sid, 0, h("g"))
    s.commit(2, 0)
    s.commit(3, 0)
    with reverts("empty global digest"):
        s.m[0].submit_global(sid, 0, ZERO)
    rc = s.m[0].submit_global(sid, 0, h("g"))  # everyone committed: open before the deadline
    (ev,) = events(s.m[0], rc, "Submitted")
    assert (ev["round"], ev["digest"]) == (0, h("g"))
    assert s.m[1].submission(sid, 0, s.addr[0]) == h("g")
    assert s.m[1].submission(sid, 0, s.addr[1]) is None
    assert s.m[1].votes(sid, 0, h("g")) == 1
    with reverts("already submitted"):
        s.m[0].submit_global(sid, 0, h("g"))
    r0 = s.m[0].round_info(sid, 0)
    assert r0 is not None and r0.submit_count == 1
    advance(s.chain, r0.submit_deadline - head_time(s.chain) + 1)
    with reverts("submit window closed"):
        s.m[1].submit_global(sid, 0, h("g"))
    assert s.m[0].round_info(sid, 0).status is RoundStatus.PENDING  # type: ignore[union-attr]


def test_submit_opens_at_the_commit_deadline(s: Swarm) -> None:
    sid = s.create()
    s.join_all()
    s.commit(0, 0)
    with reverts("commit window still open"):
        s.m[0].submit_global(sid, 0, h("g"))
    r0 = s.m[0].round_info(sid, 0)
    assert r0 is not None
    advance(s.chain, r0.commit_deadline - head_time(s.chain) + 1)
    s.m[0].submit_global(sid, 0, h("g"))
    assert s.m[0].votes(sid, 0, h("g")) == 1


# -- finalisation ------------------------------------------------------------------------


def test_quorum_finalises_and_records_a_minority_digest(s: Swarm) -> None:
    sid = s.create(quorum=3)
    s.join_all()
    for i in range(4):
        s.commit(i, 0)
    good, bad = h("global 0"), h("poisoned")
    s.m[3].submit_global(sid, 0, bad)  # member 3 submits a wrong global digest
    s.m[0].submit_global(sid, 0, good)
    s.m[1].submit_global(sid, 0, good)
    assert s.m[0].round_info(sid, 0).status is RoundStatus.PENDING  # type: ignore[union-attr]
    rc = s.m[2].submit_global(sid, 0, good)
    t = s.chain.backend.block_timestamp(rc.block_number)
    (fin,) = events(s.m[0], rc, "RoundFinalized")
    assert (fin["round"], fin["digest"]) == (0, good)
    assert [str(a).lower() for a in fin["supporters"]] == [a.lower() for a in s.addr[:3]]  # type: ignore[attr-defined]
    (mino,) = events(s.m[0], rc, "MinoritySubmission")
    assert (str(mino["member"]).lower(), mino["digest"]) == (s.addr[3].lower(), bad)
    assert not events(s.m[0], rc, "MissedCommit")
    r0 = s.m[0].round_info(sid, 0)
    assert r0 is not None
    assert (r0.status, r0.global_digest, r0.commit_count, r0.submit_count) == (
        RoundStatus.FINALIZED,
        good,
        4,
        4,
    )
    assert s.m[0].votes(sid, 0, good) == 3 and s.m[0].votes(sid, 0, bad) == 1
    assert [s.m[0].minority(sid, a) for a in s.addr] == [0, 0, 0, 1]
    assert [s.m[0].misses(sid, a) for a in s.addr] == [0, 0, 0, 0]
    info = s.m[0].swarm_info(sid)
    assert info is not None
    assert (info.current_round, info.global_digest, info.finalized_rounds) == (1, good, 1)
    # The next round starts at finalisation, with fresh deadlines.
    r1 = s.m[0].round_info(sid, 1)
    assert r1 is not None
    assert (r1.start, r1.commit_deadline, r1.status) == (t, t + COMMIT, RoundStatus.PENDING)
    # The settled round takes nothing more.
    with reverts("wrong round"):
        s.m[3].submit_global(sid, 0, good)
    with reverts("wrong round"):
        s.m[0].commit(sid, 0, h("late"), 1)
    with reverts("round already settled"):
        s.m[0].close_round(sid, 0)
    hist = s.outsider.history(sid, from_block=s.chain.deployment.deployed_at_block)
    assert len(hist) == 1
    (o,) = hist
    assert (o.round, o.status, o.global_digest, o.supporters) == (
        0,
        RoundStatus.FINALIZED,
        good,
        tuple(s.addr[:3]),
    )
    assert o.minority == ((s.addr[3], bad),) and o.missed == ()
    assert o.commits == {a: (h(f"update {i} 0 "), 100 + i) for i, a in enumerate(s.addr)}
    assert o.tx_hash == rc.tx_hash and o.block_number == rc.block_number


def test_crashed_member_is_recorded_and_an_honest_quorum_finalises(chain: ChainEnv) -> None:
    s = Swarm(chain, n=5)
    sid = s.create(quorum=3)
    s.join_all()
    for i in range(4):  # member 4 crashed: never commits
        s.commit(i, 0)
    with reverts("commit window still open"):
        s.m[0].submit_global(sid, 0, h("g"))
    r0 = s.m[0].round_info(sid, 0)
    assert r0 is not None
    advance(chain, r0.commit_deadline - head_time(chain) + 1)
    with reverts("commit window closed"):
        s.commit(4, 0)
    with reverts("not committed this round"):
        s.m[4].submit_global(sid, 0, h("g"))
    for i in range(3):
        rc = s.m[i].submit_global(sid, 0, h("g"))
    (missed,) = events(s.m[0], rc, "MissedCommit")
    assert (missed["round"], str(missed["member"]).lower()) == (0, s.addr[4].lower())
    # Member 3 committed but had not submitted by finalisation: not penalised.
    assert [s.m[0].misses(sid, a) for a in s.addr] == [0, 0, 0, 0, 1]
    assert [s.m[0].minority(sid, a) for a in s.addr] == [0] * 5
    assert s.m[0].round_info(sid, 0).global_digest == h("g")  # type: ignore[union-attr]
    (o,) = s.outsider.history(sid)
    assert o.missed == (s.addr[4],) and o.supporters == tuple(s.addr[:3])


def test_settle_gas_covers_the_worst_finalisation_at_max_members(chain: ChainEnv) -> None:
    """The deciding submission pays for the whole settle path (every member's minority or
    miss counter, the next round's start). The client floors the limit of submit/join/close
    at ``settle_gas`` because a node's estimate, taken before a peer's submission is mined,
    can miss that path entirely; here the worst case at 32 members stays under the floor."""
    from ailedger._chain._swarm import MAX_MEMBERS

    s = Swarm(chain, n=MAX_MEMBERS)
    sid = s.create(quorum=MAX_MEMBERS // 2 + 1)
    s.join_all()
    for i in range(MAX_MEMBERS - 1):  # the last member misses the round
        s.commit(i, 0)
    r0 = s.m[0].round_info(sid, 0)
    assert r0 is not None
    advance(chain, r0.commit_deadline - head_time(chain) + 1)
    quorum = MAX_MEMBERS // 2 + 1
    for i in range(quorum, MAX_MEMBERS - 1):  # everyone else outside the quorum: minority
        s.m[i].submit_global(sid, 0, h(f"minority {i}"))
    for i in range(quorum - 1):
        s.m[i].submit_global(sid, 0, h("g"))
    rc = s.m[quorum - 1].submit_global(sid, 0, h("g"))
    assert len(events(s.m[0], rc, "MinoritySubmission")) == MAX_MEMBERS - 1 - quorum
    assert len(events(s.m[0], rc, "MissedCommit")) == 1
    assert s.m[0].round_info(sid, 0).status is RoundStatus.FINALIZED  # type: ignore[union-attr]
    assert rc.gas_used <= s.m[0].settle_gas(sid)


def test_round_without_quorum_fails_on_close(s: Swarm) -> None:
    sid = s.create(quorum=3)
    with reverts("unknown swarm"):
        s.outsider.close_round(99, 0)
    with reverts("swarm not started"):
        s.outsider.close_round(sid, 0)
    s.join_all()
    # Round 0 finalises; round 1 gets two disagreeing pairs and a member who never commits.
    for i in range(4):
        s.commit(i, 0)
    for i in range(3):
        s.m[i].submit_global(sid, 0, h("g0"))
    for i in range(3):
        s.commit(i, 1)
    r1 = s.m[0].round_info(sid, 1)
    assert r1 is not None
    advance(s.chain, r1.commit_deadline - head_time(s.chain) + 1)
    s.m[0].submit_global(sid, 1, h("a"))
    s.m[1].submit_global(sid, 1, h("b"))
    s.m[2].submit_global(sid, 1, h("a"))
    with reverts("wrong round"):
        s.outsider.close_round(sid, 2)
    with reverts("submit window still open"):
        s.outsider.close_round(sid, 1)
    advance(s.chain, r1.submit_deadline - head_time(s.chain) + 1)
    rc = s.outsider.close_round(sid, 1)  # anyone may close
    t = s.chain.backend.block_timestamp(rc.block_number)
    (failed,) = events(s.m[0], rc, "RoundFailed")
    assert (failed["round"], failed["commit_count"], failed["submit_count"]) == (1, 3, 3)
    (missed,) = events(s.m[0], rc, "MissedCommit")
    assert str(missed["member"]).lower() == s.addr[3].lower()
    assert not events(s.m[0], rc, "MinoritySubmission")  # nothing to disagree with
    r1 = s.m[0].round_info(sid, 1)
    assert r1 is not None and r1.status is RoundStatus.FAILED and r1.global_digest is None
    info = s.m[0].swarm_info(sid)
    assert info is not None
    # The global model stays the one of round 0; round 2 starts now.
    assert (info.current_round, info.global_digest, info.finalized_rounds) == (2, h("g0"), 1)
    r2 = s.m[0].round_info(sid, 2)
    assert r2 is not None and r2.start == t and r2.status is RoundStatus.PENDING
    assert [s.m[0].misses(sid, a) for a in s.addr] == [0, 0, 0, 1]
    assert [s.m[0].minority(sid, a) for a in s.addr] == [0, 0, 0, 0]
    with reverts("round already settled"):
        s.outsider.close_round(sid, 1)
    with reverts("round already settled"):
        s.outsider.close_round(sid, 0)
    hist = s.outsider.history(sid)
    assert [(o.round, o.status) for o in hist] == [
        (0, RoundStatus.FINALIZED),
        (1, RoundStatus.FAILED),
    ]
    assert hist[1].global_digest is None and hist[1].supporters == ()
    assert hist[1].missed == (s.addr[3],)
    assert set(hist[1].commits) == set(s.addr[:3])
    # A round nobody committed in fails too, and every joined member missed it.
    advance(s.chain, r2.submit_deadline - head_time(s.chain) + 1)
    s.outsider.close_round(sid, 2)
    assert [s.m[0].misses(sid, a) for a in s.addr] == [1, 1, 1, 2]


def test_misses_count_only_joined_members(s: Swarm) -> None:
    sid = s.create(quorum=3)
    for i in range(3):
        s.m[i].join(sid, "http://x")
    s.m[0].start(sid)
    for i in range(3):
        s.commit(i, 0)
    for i in range(3):
        s.m[i].submit_global(sid, 0, h("g"))
    # Member 3 never joined: it declined to take part, it did not miss a commit.
    assert s.m[0].misses(sid, s.addr[3]) == 0


# -- deployment --------------------------------------------------------------------------


def test_deploy_missing_adds_swarm_rounds(chain: ChainEnv) -> None:
    old = Deployment(
        chain.deployment.chain_id,
        {k: v for k, v in chain.deployment.contracts.items() if k != "SwarmRounds"},
        chain.deployment.deployed_at_block,
    )
    loaded = Deployment.from_dict(old.as_dict())
    loaded.validate(chain.backend)
    assert "SwarmRounds" not in loaded.contracts
    full = deploy_missing(chain.backend, chain.owner, loaded)
    assert full.contracts["SwarmRounds"] != chain.deployment.contracts["SwarmRounds"]
    full.validate(chain.backend)
    assert chain.backend.code_at(full.contracts["SwarmRounds"]) == (
        load_artifact("SwarmRounds").runtime_bytecode
    )
    assert deploy_missing(chain.backend, chain.owner, full) == full
    sw = SwarmRoundsClient(chain.backend, full.contracts["SwarmRounds"], chain.owner)
    assert sw.create_swarm(SPEC, 0, 0, [chain.owner.address], 1, 5, 5)[0] == 1


def test_client_without_account_reads_only(s: Swarm) -> None:
    sid = s.create()
    ro = SwarmRoundsClient(s.chain.backend, s.chain.deployment.contracts["SwarmRounds"])
    assert ro.members(sid) == s.addr
    with pytest.raises(ChainError, match="no account"):
        ro.join(sid, "http://x")
