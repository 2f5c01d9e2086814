"""Batched reads: ``call_many`` / ``read_all`` give exactly what one-by-one calls give, on
both backends; a JSON-RPC node gets one request per batch (and no hidden ``eth_chainId``
reads); refused batches fall back; a transaction is one batch, the send and the receipt;
a round's outcome comes from one log query."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from ailedger._chain import RpcBackend, TransactionReverted, read_all
from ailedger.errors import ChainError

from ..conftest import ANVIL_CHAIN_ID
from .conftest import ChainEnv, chain_env
from .test_swarm import Swarm, h


def views(s: Swarm, ids: Any) -> list[Any]:
    sid = s.sid
    return [
        s.outsider.swarm_info_view(sid),
        s.outsider.swarm_info_view(sid + 7),  # no such swarm: None
        s.outsider.round_info_view(sid, 0),
        s.outsider.round_info_view(sid, 5),  # not started: None
        *[s.outsider.commitment_view(sid, 0, a) for a in s.addr],
        *[s.outsider.node_url_view(sid, a) for a in s.addr],
        ids.resolve_view(s.chain.owner.address),  # another contract in the same batch
        ids.resolve_view("0x" + "ab" * 20),
    ]


def singles(s: Swarm, ids: Any) -> list[Any]:
    sid = s.sid
    return [
        s.outsider.swarm_info(sid),
        s.outsider.swarm_info(sid + 7),
        s.outsider.round_info(sid, 0),
        s.outsider.round_info(sid, 5),
        *[s.outsider.commitment(sid, 0, a) for a in s.addr],
        *[s.outsider.node_url(sid, a) for a in s.addr],
        ids.resolve(s.chain.owner.address),
        ids.resolve("0x" + "ab" * 20),
    ]


@pytest.fixture
def s(chain: ChainEnv) -> Swarm:
    s = Swarm(chain)
    s.create(quorum=3)
    for i, c in enumerate(s.m[:3]):
        c.join(s.sid, f"http://127.0.0.1:{8000 + i}")
    s.m[0].start(s.sid)  # member 3 never joins: its URL reads as None
    s.commit(0, 0)
    s.commit(2, 0)
    chain.identities().register("owner", h("ed"), h("x"))
    return s


def test_read_all_equals_one_by_one(s: Swarm) -> None:
    ids = s.chain.identities()
    got = read_all(s.chain.backend, views(s, ids))
    assert got == singles(s, ids)
    # Spot-check the values themselves, not only the agreement of two paths.
    assert got[1] is None and got[3] is None
    assert got[4] == (h("update 0 0 "), 100) and got[5] is None
    assert got[8:12] == [f"http://127.0.0.1:{8000 + i}" for i in range(3)] + [None]
    assert got[12] is not None and got[12].ed25519 == h("ed") and got[13] is None
    assert read_all(s.chain.backend, []) == []
    assert read_all(s.chain.backend, views(s, ids)[:1]) == singles(s, ids)[:1]


def test_a_reverting_call_in_a_batch_raises_the_contract_reason(s: Swarm) -> None:
    sw = s.outsider
    bad = (sw.address, sw.artifact.abi, "commit", [s.sid, 0, h("x"), 1])  # outsider: refused
    with pytest.raises(TransactionReverted) as single:
        s.chain.backend.call(*bad)
    with pytest.raises(TransactionReverted) as batched:
        s.chain.backend.call_many([sw.swarm_info_view(s.sid).call, bad])
    assert str(batched.value) == str(single.value)
    assert str(batched.value).startswith("SwarmRounds: ")


def test_round_outcome_is_the_history_entry_of_that_round(s: Swarm) -> None:
    sid, sw = s.sid, s.outsider
    start = s.chain.deployment.deployed_at_block
    assert sw.round_outcome(sid, 0, from_block=start) is None  # pending
    s.commit(1, 0)
    good = h("global 0")
    for i in range(3):
        rc = s.m[i].submit_global(sid, 0, good)
    (o,) = sw.history(sid, from_block=start)
    assert sw.round_outcome(sid, 0, from_block=start) == o
    assert o.commits == {a: (h(f"update {i} 0 "), 100 + i) for i, a in enumerate(s.addr[:3])}
    assert (o.global_digest, o.block_number) == (good, rc.block_number)
    # Round 1 starts in the block that settled round 0: a scan from there sees all of it.
    for i in range(3):
        s.commit(i, 1)
    for i in range(3):
        s.m[i].submit_global(sid, 1, h("global 1"))
    o1 = sw.round_outcome(sid, 1, from_block=o.block_number)
    assert o1 is not None and o1 == sw.history(sid, from_block=start)[1]
    assert len(o1.commits) == 3 and o1.global_digest == h("global 1")
    assert sw.round_outcome(sid, 2, from_block=start) is None


# -- the JSON-RPC transport ----------------------------------------------------------


def joined_swarm(chain: ChainEnv, b: RpcBackend) -> tuple[Swarm, Any, list[Any]]:
    """A swarm every member joined; an IdentityRegistry client on ``b``; the views' values."""
    from ailedger._chain import IdentityRegistryClient

    s = Swarm(chain)
    s.create(quorum=3)
    s.join_all()
    ids = IdentityRegistryClient(b, chain.deployment.contracts["IdentityRegistry"])
    return s, ids, read_all(b, views(s, ids))


@pytest.fixture
def rchain(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[ChainEnv]:
    """The chain suite's environment on anvil only (these tests are about JSON-RPC)."""
    yield from chain_env("rpc", tmp_path, request)


@pytest.fixture
def rpc(anvil: Any) -> Iterator[tuple[RpcBackend, list[list[str]]]]:
    """A backend whose HTTP posts are recorded as the JSON-RPC methods each one carried."""
    b = RpcBackend(anvil.url, expected_chain_id=ANVIL_CHAIN_ID)
    posts: list[list[str]] = []
    mgr = b._provider._request_session_manager
    real = mgr.make_post_request

    def spy(uri: str, data: Any, **kw: Any) -> Any:
        body = json.loads(data)
        posts.append([r["method"] for r in body] if isinstance(body, list) else [body["method"]])
        return real(uri, data, **kw)

    mgr.make_post_request = spy  # type: ignore[method-assign]
    yield b, posts
    b.close()


def test_one_request_per_read_and_per_batch(rchain: ChainEnv, rpc: Any) -> None:
    chain = rchain
    s = Swarm(chain)
    s.create(quorum=3)
    b, posts = rpc
    from ailedger._chain import SwarmRoundsClient

    sw = SwarmRoundsClient(b, chain.deployment.contracts["SwarmRounds"])
    posts.clear()
    sw.swarm_info(s.sid)
    assert posts == [["eth_call"]]  # web3's validation middleware re-read eth_chainId here
    posts.clear()
    read_all(b, [sw.swarm_info_view(s.sid)] + [sw.node_url_view(s.sid, a) for a in s.addr])
    assert posts == [["eth_call"] * 5]
    # Large reads are split (public nodes cap batches; 50 calls per request here), and
    # the answers come back in the order asked, across the chunks.
    s.join_all()
    posts.clear()
    many = [sw.node_url_view(s.sid, s.addr[i % 4]) if i % 3 else sw.round_info_view(s.sid, i)
            for i in range(120)]  # fmt: skip
    got = read_all(b, many)
    assert got == [v.decode(b.call(*v.call)) for v in many]
    assert got[1] == "http://127.0.0.1:8001" and got[2] == "http://127.0.0.1:8002"
    assert got[0] is not None and got[3] is None  # round 0 started; round 3 has not
    assert [len(p) for p in posts[:3]] == [50, 50, 20]


def test_a_transaction_is_one_batch_a_send_and_the_receipt(rchain: ChainEnv, rpc: Any) -> None:
    chain = rchain
    b, posts = rpc
    from ailedger._chain import SwarmRoundsClient

    sw = SwarmRoundsClient(b, chain.deployment.contracts["SwarmRounds"], chain.owner)
    posts.clear()
    sid, _ = sw.create_swarm(h("spec"), 0, 0, [chain.owner.address], 1, 60, 60)
    assert posts[0] == [
        "eth_getBalance", "eth_getBlockByNumber", "eth_gasPrice", "eth_maxPriorityFeePerGas",
        "eth_getTransactionCount", "eth_estimateGas",
    ]  # fmt: skip
    assert posts[1] == ["eth_sendRawTransaction"]
    assert posts[2:] and all(p == ["eth_getTransactionReceipt"] for p in posts[2:])
    assert not any("eth_chainId" in p for p in posts)
    # Back to back from one process: the nonce tracker and the batched pending count agree.
    sid2, _ = sw.create_swarm(h("spec 2"), 0, 0, [chain.owner.address], 1, 60, 60)
    assert sid2 == sid + 1


def test_refused_batches_fall_back_to_single_requests(
    rchain: ChainEnv, rpc: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    chain = rchain
    b, posts = rpc
    s, ids, _ = joined_swarm(chain, b)
    s.commit(0, 0)  # one commitment among the views' values
    want = read_all(b, views(s, ids))
    from ailedger._chain import SwarmRoundsClient

    sw = SwarmRoundsClient(b, chain.deployment.contracts["SwarmRounds"], chain.owner)

    def down(batch: Any) -> Any:
        raise requests.exceptions.ConnectionError("connection reset")

    # A transport error: this read goes one by one, the next one tries a batch again.
    monkeypatch.setattr(b._provider, "make_batch_request", down)
    assert read_all(b, views(s, ids)) == want
    assert b._batches

    asked: list[int] = []

    def refuse(batch: Any) -> Any:  # what a node without batch support answers
        asked.append(len(batch))
        return {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "no batch"}}

    monkeypatch.setattr(b._provider, "make_batch_request", refuse)
    posts.clear()
    assert read_all(b, views(s, ids)) == want
    assert len(posts) == len(want) and all(p == ["eth_call"] for p in posts)
    # Refused once: not asked again (a poll would otherwise pay for the refusal each time).
    assert read_all(b, views(s, ids)) == want
    assert asked == [len(want)]
    # A transaction without the batched pre-flight reads still goes through …
    rc = sw.join(s.sid, "http://127.0.0.1:9999")
    assert rc.status == 1 and sw.node_url(s.sid, chain.owner.address) == "http://127.0.0.1:9999"
    # … and a refused one still carries the contract's reason.
    with pytest.raises(TransactionReverted, match=r"^SwarmRounds: "):
        sw.commit(s.sid, 0, h("again"), 1)


def test_a_reverting_estimate_in_the_batch_gives_the_contract_reason(
    rchain: ChainEnv, rpc: Any
) -> None:
    chain = rchain
    b, posts = rpc
    from ailedger._chain import SwarmRoundsClient

    sw = SwarmRoundsClient(b, chain.deployment.contracts["SwarmRounds"], chain.owner)
    posts.clear()
    with pytest.raises(TransactionReverted, match=r"^SwarmRounds: unknown swarm$"):
        sw.commit(99, 0, h("x"), 1)
    assert not any("eth_sendRawTransaction" in p for p in posts)  # refused before anything was sent


def test_what_disables_batches_and_what_does_not(
    rchain: ChainEnv, rpc: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    b, _ = rpc
    s, ids, want = joined_swarm(rchain, b)

    def answer(value: Any) -> None:
        def fake(batch: Any) -> Any:
            if isinstance(value, BaseException):
                raise value
            return value(batch) if callable(value) else value

        monkeypatch.setattr(b._provider, "make_batch_request", fake)

    def http(status: int) -> requests.exceptions.HTTPError:
        resp = requests.Response()
        resp.status_code = status
        return requests.exceptions.HTTPError(f"{status}", response=resp)

    # Transient: a rate limit, a timeout, HTTP 429/503: this read goes one by one only.
    for transient in (
        {"jsonrpc": "2.0", "id": None, "error": {"code": -32005, "message": "rate limited"}},
        requests.exceptions.Timeout("slow"), http(429), http(503),
    ):
        answer(transient)
        assert read_all(b, views(s, ids)) == want
        assert b._batches, transient
    # A malformed result inside a well-formed answer is one ChainError, not a traceback.
    answer(lambda batch: [{"jsonrpc": "2.0", "id": i, "result": "0xZZ"}
                          for i in range(len(batch))])  # fmt: skip
    with pytest.raises(ChainError, match="malformed result"):
        read_all(b, views(s, ids))
    # Refusals: not asked again.
    for refusal in (
        {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "invalid"}},
        {"jsonrpc": "2.0", "id": None, "error": {"code": -1, "message": "Batch too large"}},
        http(413),
        [None, None],
        AttributeError("'NoneType' object has no attribute 'get'"),  # web3 on `[null]`
    ):
        b._batches = True
        answer(refusal)
        assert read_all(b, views(s, ids)) == want
        assert not b._batches, refusal
