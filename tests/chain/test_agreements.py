"""DataAgreements: every function, every revert path, payments and reentrancy,
on both backends (embedded py-evm and a real anvil)."""

from __future__ import annotations

import hashlib

import pytest
import requests
from eth_account.signers.local import LocalAccount

from ailedger._chain import (
    Artifact,
    DataAgreementsClient,
    Deployment,
    EmbeddedBackend,
    RequestStatus,
    TransactionReverted,
    deploy_missing,
    load_artifact,
)
from ailedger.errors import ChainError

from .conftest import ChainEnv

DATASET = hashlib.sha256(b"manifest").digest()
TERMS = hashlib.sha256(b"terms").digest()
KEY = hashlib.sha256(b"wrapped key").digest()
PRICE = 10**15
HOUR = 3600
DAY = 86400
MIN = 10  # the test offers' min_duration: short, so grants can expire in a test


def reverts(match: str):  # type: ignore[no-untyped-def]
    return pytest.raises(TransactionReverted, match=f"^DataAgreements: {match}$")


def client(chain: ChainEnv, account: LocalAccount | None = None) -> DataAgreementsClient:
    return DataAgreementsClient(
        chain.backend, chain.deployment.contracts["DataAgreements"], account or chain.owner
    )


def head_time(chain: ChainEnv) -> int:
    """Timestamp of a freshly mined block: the next transaction's time is at or just after it."""
    chain.fund("0x" + "11" * 20, 1)
    return chain.backend.block_timestamp(chain.backend.block_number())


def advance(chain: ChainEnv, seconds: int) -> int:
    """Move chain time forward by at least ``seconds``; returns the new head time.
    anvil: evm_increaseTime; embedded: every block is at least 1 s after its parent,
    so mining ``seconds`` blocks is enough (deterministic, no sleeping)."""
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
    return chain.backend.block_timestamp(chain.backend.block_number())


def fee(chain: ChainEnv, tx_hash: str, gas_used: int) -> int:
    """Wei the sender paid for gas: gas used × the effective gas price."""
    backend = chain.backend
    if isinstance(backend, EmbeddedBackend):
        # The embedded backend bids maxFee = 2·base + 1 gwei tip: it pays base + tip.
        rc = backend.receipt(tx_hash)
        assert rc is not None
        header = backend._chain().get_canonical_block_header_by_number(rc.block_number)
        return gas_used * (int(header.base_fee_per_gas) + 10**9)
    raw = backend._w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[attr-defined]
    return gas_used * int(raw["effectiveGasPrice"])


class Parties:
    def __init__(self, chain: ChainEnv) -> None:
        self.chain = chain
        self.alice = chain.owner  # data owner
        self.bob = chain.other  # requester
        self.owner = client(chain, self.alice)
        self.req = client(chain, self.bob)
        self.mallory_acct = chain.new_account()
        self.mallory = client(chain, self.mallory_acct)

    def offer(self, **kw: object) -> int:
        args: dict[str, object] = {
            "price": PRICE,
            "min_duration": MIN,
            "max_duration": DAY,
            "response_window": HOUR,
            "auto_grant": False,
        }
        args.update(kw)
        oid, _ = self.owner.offer(DATASET, TERMS, **args)  # type: ignore[arg-type]
        return oid

    def pending(self, **kw: object) -> tuple[int, int]:
        oid = self.offer(**kw)
        rid, _ = self.req.request(oid, "training")
        return oid, rid


@pytest.fixture
def p(chain: ChainEnv) -> Parties:
    return Parties(chain)


# -- offers --------------------------------------------------------------------


def test_offer_and_offer_info(p: Parties) -> None:
    oid = p.offer(auto_grant=True, price=7)
    assert oid == 1 and p.owner.offer_count() == 1
    info = p.owner.offer_info(oid)
    assert info is not None
    assert (info.owner, info.dataset, info.terms, info.price) == (
        p.alice.address,
        DATASET,
        TERMS,
        7,
    )
    assert (
        info.min_duration,
        info.max_duration,
        info.response_window,
        info.auto_grant,
        info.open,
    ) == (MIN, DAY, HOUR, True, True)
    assert p.owner.offer_info(2) is None and p.owner.offer_info(0) is None
    oid2, _ = p.owner.offer(DATASET, None, max_duration=1, response_window=1)
    info2 = p.owner.offer_info(oid2)
    assert info2 is not None and info2.terms == b"\0" * 32 and info2.price == 0
    assert info2.min_duration == 1  # the default, one day, capped at max_duration
    oid3, _ = p.owner.offer(DATASET, None, max_duration=7 * DAY, response_window=1)
    assert p.owner.offer_info(oid3).min_duration == DAY  # type: ignore[union-attr]
    assert [o.offer_id for o in p.req.list_offers()] == [1, 2, 3]
    assert [o.offer_id for o in p.req.list_offers(owner=p.bob.address)] == []
    assert [o.offer_id for o in p.req.list_offers(owner=p.alice.address, dataset=DATASET)] == [
        1,
        2,
        3,
    ]


def test_offer_bad_parameters_revert(p: Parties) -> None:
    ok = {"max_duration": DAY, "response_window": HOUR}
    with reverts("empty dataset digest"):
        p.owner.offer(b"\0" * 32, TERMS, **ok)
    with reverts("max_duration must be positive"):
        p.owner.offer(DATASET, TERMS, max_duration=0, response_window=HOUR)
    with reverts("max_duration too long"):
        p.owner.offer(DATASET, TERMS, max_duration=3155760001, response_window=HOUR)
    with reverts("min_duration must be positive"):
        p.owner.offer(DATASET, TERMS, min_duration=0, **ok)
    with reverts("min_duration exceeds max_duration"):
        p.owner.offer(DATASET, TERMS, min_duration=DAY + 1, **ok)
    with reverts("response_window must be positive"):
        p.owner.offer(DATASET, TERMS, max_duration=DAY, response_window=0)
    # At most 30 days: an owner cannot park a requester's escrow for a century.
    with reverts("response_window too long"):
        p.owner.offer(DATASET, TERMS, max_duration=DAY, response_window=30 * DAY + 1)
    with reverts("response_window too long"):
        p.owner.offer(DATASET, TERMS, max_duration=DAY, response_window=3155760000)
    with reverts("response_window too long"):
        p.owner.offer(DATASET, TERMS, max_duration=DAY, response_window=2**255)
    # Refused client-side: the contract could only fail without a reason.
    with pytest.raises(ChainError, match="dataset digest must be 32 bytes"):
        p.owner.offer(b"short", TERMS, **ok)
    with pytest.raises(ChainError, match="price must be a non-negative integer"):
        p.owner.offer(DATASET, TERMS, price=-1, **ok)
    assert p.owner.offer_count() == 0
    oid, _ = p.owner.offer(DATASET, TERMS, max_duration=DAY, response_window=30 * DAY)
    assert p.owner.offer_info(oid).response_window == 30 * DAY  # type: ignore[union-attr]
    oid, _ = p.owner.offer(DATASET, TERMS, min_duration=DAY, max_duration=DAY, response_window=1)
    assert p.owner.offer_info(oid).min_duration == DAY  # type: ignore[union-attr]


def test_close_offer(p: Parties) -> None:
    oid, rid = p.pending()
    with reverts("not offer owner"):
        p.mallory.close_offer(oid)
    with reverts("unknown offer"):
        p.owner.close_offer(99)
    p.owner.close_offer(oid)
    info = p.owner.offer_info(oid)
    assert info is not None and not info.open
    with reverts("offer closed"):
        p.owner.close_offer(oid)
    with reverts("offer closed"):
        p.req.request(oid, "training")
    # A request made before the close is unaffected.
    p.owner.grant(rid, head_time(p.chain) + HOUR, KEY)
    assert p.req.is_live(rid, "training")


# -- requests ------------------------------------------------------------------


def test_request_escrows_the_price(p: Parties) -> None:
    oid = p.offer()
    contract_before = p.chain.backend.balance(p.owner.address)
    rid, rc = p.req.request(oid, "training")
    assert rid == 1 and p.owner.request_count() == 1
    info = p.owner.request_info(rid)
    assert info is not None
    t = p.chain.backend.block_timestamp(rc.block_number)
    assert (info.requester, info.offer_id, info.purpose, info.status) == (
        p.bob.address,
        oid,
        "training",
        RequestStatus.PENDING,
    )
    assert (info.escrow, info.expiry, info.wrapped_key, info.deadline) == (
        PRICE,
        0,
        b"\0" * 32,
        t + HOUR,
    )
    assert (info.paid, info.granted_at) == (PRICE, 0)
    assert p.owner.settleable(rid) == 0
    assert p.chain.backend.balance(p.owner.address) == contract_before + PRICE
    assert p.owner.total_escrowed() == PRICE and p.owner.total_credited() == 0
    assert p.owner.balance_of(p.alice.address) == 0
    assert not p.owner.is_live(rid, "training")
    assert p.owner.request_info(2) is None and p.owner.request_info(0) is None
    assert [r.request_id for r in p.owner.list_requests(offer_id=oid)] == [rid]
    assert [r.request_id for r in p.owner.list_requests(requester=p.bob.address)] == [rid]
    assert p.owner.list_requests(requester=p.alice.address) == []
    assert p.owner.list_requests(offer_id=oid + 1) == []


def test_request_revert_paths(p: Parties) -> None:
    oid = p.offer()
    with reverts("unknown offer"):
        p.req.request(42, "training", PRICE)
    with reverts("unknown offer"):
        p.req.request(oid + 1, "training", 0)
    with reverts("payment must equal the price"):
        p.req.request(oid, "training", PRICE - 1)
    with reverts("payment must equal the price"):
        p.req.request(oid, "training", PRICE + 1)
    with reverts("payment must equal the price"):
        p.req.request(oid, "training", 0)
    with reverts("owner cannot request own offer"):
        p.owner.request(oid, "training")
    # An empty purpose reaches the contract only through a raw call.
    with reverts("empty purpose"):
        p.chain.backend.transact(
            p.bob, p.req.address, p.req.artifact.abi, "request", [oid, ""], value=PRICE
        )
    with pytest.raises(ChainError, match="purpose must not be empty"):
        p.req.request(oid, "")
    with pytest.raises(ChainError, match="at most 128"):
        p.req.request(oid, "x" * 129)
    with pytest.raises(TransactionReverted):  # ABI bound: no reason possible
        p.chain.backend.transact(
            p.bob, p.req.address, p.req.artifact.abi, "request", [oid, "x" * 129], value=PRICE
        )
    rid, _ = p.req.request(oid, "é" * 64)  # 128 bytes of UTF-8 is the limit
    info = p.req.request_info(rid)
    assert info is not None and info.purpose == "é" * 64
    assert p.owner.request_count() == 1
    assert p.chain.backend.balance(p.owner.address) == PRICE


def test_auto_grant(p: Parties) -> None:
    oid = p.offer(auto_grant=True, max_duration=DAY)
    rid, rc = p.req.request(oid, "inference")
    t = p.chain.backend.block_timestamp(rc.block_number)
    info = p.req.request_info(rid)
    assert info is not None
    assert (info.status, info.escrow, info.expiry) == (RequestStatus.GRANTED, PRICE, t + DAY)
    assert (info.paid, info.granted_at) == (PRICE, t)
    # The price streams to the owner over the grant (max_duration), like any grant.
    assert p.owner.balance_of(p.alice.address) == 0
    assert p.owner.total_escrowed() == PRICE and p.owner.total_credited() == 0
    assert p.req.is_live(rid, "inference") and not p.req.is_live(rid, "training")
    # The wrapped key of an auto-grant is recorded afterwards, by the owner only.
    with reverts("not offer owner"):
        p.req.set_wrapped_key(rid, KEY)
    with reverts("empty wrapped key"):
        p.owner.set_wrapped_key(rid, b"\0" * 32)
    p.owner.set_wrapped_key(rid, KEY)
    info = p.req.request_info(rid)
    assert info is not None and info.wrapped_key == KEY
    # Granted already: nothing to grant, reject or reclaim; the price was paid once.
    for fn in (p.owner.reject, lambda r: p.owner.grant(r, t + HOUR, KEY)):
        with reverts("request not pending"):
            fn(rid)
    with reverts("request not pending"):
        p.req.reclaim(rid)
    with reverts("request not pending"):
        p.req.cancel(rid)
    # Revoked at once: the owner keeps only the seconds used, the rest is refunded.
    rc = p.owner.revoke(rid)
    used = p.chain.backend.block_timestamp(rc.block_number) - t
    assert used >= 0
    assert p.owner.balance_of(p.alice.address) == PRICE * used // DAY
    assert p.owner.balance_of(p.bob.address) == PRICE - PRICE * used // DAY
    assert p.owner.total_escrowed() == 0 and p.owner.total_credited() == PRICE
    assert p.chain.backend.balance(p.owner.address) == PRICE


def test_free_offer(p: Parties) -> None:
    oid = p.offer(price=0)
    rid, _ = p.req.request(oid, "research")
    assert p.owner.request_info(rid).escrow == 0  # type: ignore[union-attr]
    p.owner.reject(rid)
    assert p.owner.balance_of(p.bob.address) == 0  # nothing credited for nothing paid
    with reverts("nothing to withdraw"):
        p.req.withdraw()


# -- grant / reject / reclaim / revoke -----------------------------------------


def test_grant_keeps_escrow_streaming(p: Parties) -> None:
    _oid, rid = p.pending()
    now = head_time(p.chain)
    rc = p.owner.grant(rid, now + HOUR, KEY)
    assert rc.status == 1
    g = p.chain.backend.block_timestamp(rc.block_number)
    info = p.owner.request_info(rid)
    assert info is not None
    assert (info.status, info.escrow, info.expiry, info.wrapped_key) == (
        RequestStatus.GRANTED,
        PRICE,
        now + HOUR,
        KEY,
    )
    assert (info.paid, info.granted_at) == (PRICE, g)
    # Nothing is credited at grant time: the owner earns the price over the grant.
    assert p.owner.balance_of(p.alice.address) == 0
    assert p.owner.total_escrowed() == PRICE and p.owner.total_credited() == 0
    assert p.req.is_live(rid, "training")
    with reverts("request not pending"):
        p.owner.grant(rid, now + HOUR, KEY)  # double grant
    with reverts("request not pending"):
        p.owner.reject(rid)  # no refund of a granted request
    with reverts("request not pending"):
        p.req.cancel(rid)  # nor a cancel
    assert p.owner.balance_of(p.alice.address) == 0
    assert p.owner.balance_of(p.bob.address) == 0
    # A new key digest (e.g. after the grantee rotated its X25519 key).
    key2 = hashlib.sha256(b"k2").digest()
    p.owner.set_wrapped_key(rid, key2)
    assert p.owner.request_info(rid).wrapped_key == key2  # type: ignore[union-attr]


def test_grant_revert_paths(p: Parties) -> None:
    _oid, rid = p.pending(max_duration=DAY)
    now = head_time(p.chain)
    with reverts("unknown request"):
        p.owner.grant(rid + 1, now + HOUR, KEY)
    with reverts("not offer owner"):
        p.req.grant(rid, now + HOUR, KEY)  # the requester cannot grant itself
    with reverts("not offer owner"):
        p.mallory.grant(rid, now + HOUR, KEY)
    with reverts("expiry before min_duration"):
        p.owner.grant(rid, now - 1, KEY)
    with reverts("expiry before min_duration"):
        p.owner.grant(rid, 0, KEY)
    # The lock.py attack: a 2-second grant for the full price is refused.
    with reverts("expiry before min_duration"):
        p.owner.grant(rid, now + 2, KEY)
    with reverts("expiry before min_duration"):
        p.owner.grant(rid, now + MIN - 1, KEY)  # the next block is at least now + 1
    with reverts("expiry beyond max_duration"):
        p.owner.grant(rid, now + DAY + HOUR, KEY)
    assert p.owner.request_info(rid).status is RequestStatus.PENDING  # type: ignore[union-attr]
    assert p.owner.balance_of(p.alice.address) == 0


def test_reject_refunds_once(p: Parties) -> None:
    _oid, rid = p.pending()
    with reverts("not offer owner"):
        p.req.reject(rid)
    with reverts("not offer owner"):
        p.mallory.reject(rid)
    with reverts("unknown request"):
        p.owner.reject(rid + 1)
    p.owner.reject(rid)
    info = p.owner.request_info(rid)
    assert info is not None and (info.status, info.escrow) == (RequestStatus.REJECTED, 0)
    assert p.owner.balance_of(p.bob.address) == PRICE
    assert p.owner.balance_of(p.alice.address) == 0
    with reverts("request not pending"):
        p.owner.reject(rid)  # no double refund
    with reverts("request not pending"):
        p.owner.grant(rid, head_time(p.chain) + HOUR, KEY)  # no payment from a rejected one
    with reverts("request not pending"):
        p.req.reclaim(rid)
    assert p.owner.balance_of(p.bob.address) == PRICE
    assert not p.req.is_live(rid, "training")


def test_reclaim_after_the_deadline(p: Parties) -> None:
    _oid, rid = p.pending(response_window=3)
    _long_oid, long_rid = p.pending(response_window=HOUR)
    with reverts("response window still open"):
        p.req.reclaim(long_rid)
    with reverts("not requester"):
        p.mallory.reclaim(rid)
    with reverts("not requester"):
        p.owner.reclaim(rid)  # the owner can reject, not reclaim
    with reverts("unknown request"):
        p.mallory.reclaim(99)
    with reverts("unknown request"):
        p.req.reclaim(99)
    deadline = p.req.request_info(rid).deadline  # type: ignore[union-attr]
    advance(p.chain, deadline + 1 - head_time(p.chain))
    # Past the deadline the owner can no longer take the escrow…
    with reverts("response window closed"):
        p.owner.grant(rid, head_time(p.chain) + HOUR, KEY)
    # …and the requester takes it back, once.
    p.req.reclaim(rid)
    info = p.req.request_info(rid)
    assert info is not None and (info.status, info.escrow) == (RequestStatus.RECLAIMED, 0)
    assert p.req.balance_of(p.bob.address) == PRICE
    with reverts("request not pending"):
        p.req.reclaim(rid)
    with reverts("request not pending"):
        p.owner.reject(rid)
    assert p.req.balance_of(p.bob.address) == PRICE
    assert p.req.total_escrowed() == PRICE  # the long request is still pending
    assert p.chain.backend.balance(p.req.address) == 2 * PRICE


def test_reject_after_the_deadline_still_refunds(p: Parties) -> None:
    _oid, rid = p.pending(response_window=2)
    advance(p.chain, 3)
    p.owner.reject(rid)
    assert p.owner.balance_of(p.bob.address) == PRICE


def test_revoke(p: Parties) -> None:
    _oid, rid = p.pending()
    with reverts("request not granted"):
        p.owner.revoke(rid)  # pending
    with reverts("request not granted"):
        p.owner.set_wrapped_key(rid, KEY)
    grc = p.owner.grant(rid, head_time(p.chain) + HOUR, KEY)
    g = p.chain.backend.block_timestamp(grc.block_number)
    length = p.owner.request_info(rid).expiry - g  # type: ignore[union-attr]
    with reverts("not offer owner"):
        p.req.revoke(rid)
    with reverts("not offer owner"):
        p.mallory.revoke(rid)
    with reverts("unknown request"):
        p.owner.revoke(rid + 1)
    assert p.req.is_live(rid, "training")
    rc = p.owner.revoke(rid)
    r = p.chain.backend.block_timestamp(rc.block_number)
    info = p.owner.request_info(rid)
    assert info is not None and (info.status, info.escrow) == (RequestStatus.REVOKED, 0)
    assert not p.req.is_live(rid, "training")
    with reverts("request not granted"):
        p.owner.revoke(rid)
    with reverts("request not granted"):
        p.owner.set_wrapped_key(rid, KEY)
    # Revocation splits the price pro rata: the owner keeps the time used, the
    # requester gets the unused time back.
    owner_part = PRICE * (r - g) // length
    assert owner_part < PRICE  # anvil may mine both in the same second: 0
    assert p.owner.balance_of(p.alice.address) == owner_part
    assert p.owner.balance_of(p.bob.address) == PRICE - owner_part
    assert p.owner.total_escrowed() == 0 and p.owner.total_credited() == PRICE
    with reverts("request not granted"):
        p.owner.settle(rid)  # nothing left to stream
    _, rejected = p.pending()
    p.owner.reject(rejected)
    with reverts("request not granted"):
        p.owner.revoke(rejected)


def test_is_live_expiry_and_purpose(p: Parties) -> None:
    _oid, rid = p.pending()
    now = head_time(p.chain)
    p.owner.grant(rid, now + 30, KEY)
    assert p.req.is_live(rid, "training")
    assert not p.req.is_live(rid, "Training")  # byte-for-byte
    assert not p.req.is_live(rid, "training ")
    assert not p.req.is_live(rid, "x" * 200)  # longer than any purpose
    assert not p.req.is_live(rid + 1, "training")
    assert not p.req.is_live(0, "training")
    advance(p.chain, now + 31 - head_time(p.chain))
    assert not p.req.is_live(rid, "training")
    info = p.req.request_info(rid)
    assert info is not None and info.status is RequestStatus.GRANTED  # expired, not revoked
    assert not info.live_at(info.expiry, "training") and info.live_at(info.expiry - 1, "training")
    # Expired: the whole price has accrued to the owner; revoking refunds nothing.
    assert p.owner.settleable(rid) == PRICE
    rc = p.owner.revoke(rid)  # revoking an expired grant is allowed and harmless
    assert p.owner.balance_of(p.alice.address) == PRICE
    assert p.owner.balance_of(p.bob.address) == 0
    ev = p.owner._event(rc, "Revoked")
    assert (ev["released"], ev["refunded"]) == (PRICE, 0)


def test_cancel_any_time(p: Parties) -> None:
    # An owner's long response window no longer locks the requester's escrow.
    oid, rid = p.pending(response_window=30 * DAY)
    with reverts("unknown request"):
        p.req.cancel(rid + 1)
    with reverts("not requester"):
        p.owner.cancel(rid)
    with reverts("not requester"):
        p.mallory.cancel(rid)
    rc = p.req.cancel(rid)
    info = p.req.request_info(rid)
    assert info is not None and (info.status, info.escrow) == (RequestStatus.RECLAIMED, 0)
    ev = p.req._event(rc, "Cancelled")
    assert (ev["request_id"], ev["offer_id"], ev["refunded"]) == (rid, oid, PRICE)
    assert p.req.balance_of(p.bob.address) == PRICE
    assert p.req.total_escrowed() == 0 and p.req.total_credited() == PRICE
    for fn in (p.req.cancel, p.req.reclaim, p.owner.reject):
        with reverts("request not pending"):
            fn(rid)  # refunded once
    with reverts("request not pending"):
        p.owner.grant(rid, head_time(p.chain) + HOUR, KEY)  # the owner cannot take it now
    assert p.req.balance_of(p.bob.address) == PRICE
    # Also after the deadline (where reclaim would do the same).
    _oid2, late = p.pending(response_window=1)
    advance(p.chain, 2)
    p.req.cancel(late)
    assert p.req.balance_of(p.bob.address) == 2 * PRICE
    # Not after a rejection (already refunded).
    _oid3, rej = p.pending()
    p.owner.reject(rej)
    with reverts("request not pending"):
        p.req.cancel(rej)
    assert p.req.balance_of(p.bob.address) == 3 * PRICE
    assert p.chain.backend.balance(p.req.address) == 3 * PRICE


def test_settle_streams_linearly(p: Parties) -> None:
    b = p.chain.backend
    _oid, rid = p.pending(max_duration=HOUR)
    with reverts("unknown request"):
        p.owner.settle(rid + 1)
    with reverts("request not granted"):
        p.owner.settle(rid)  # pending
    grc = p.owner.grant(rid, head_time(p.chain) + 40, KEY)
    g = b.block_timestamp(grc.block_number)
    expiry = p.owner.request_info(rid).expiry  # type: ignore[union-attr]
    length = expiry - g
    advance(p.chain, 5)
    released, rc = p.mallory.settle(rid)
    s1 = b.block_timestamp(rc.block_number)
    assert released == PRICE * (s1 - g) // length and 0 < released < PRICE
    assert p.owner.balance_of(p.alice.address) == released
    assert p.owner.balance_of(p.mallory_acct.address) == 0
    info = p.owner.request_info(rid)
    assert info is not None and info.escrow == PRICE - released
    assert (
        p.owner.total_escrowed() + p.owner.total_credited() == PRICE == b.balance(p.owner.address)
    )
    # The view agrees with what settle releases; accrual never decreases.
    advance(p.chain, 3)
    view_t = head_time(p.chain)
    # (a view runs at the head's time or in a block just after it)
    assert p.owner.settleable(rid) in {
        PRICE * (t - g) // length - released for t in (view_t, view_t + 1)
    }
    # After expiry, the rest (exactly) goes to the owner; then nothing more.
    advance(p.chain, expiry + 1 - head_time(p.chain))
    assert p.owner.settleable(rid) == PRICE - released
    rest, _ = p.req.settle(rid)
    assert rest == PRICE - released
    assert p.owner.balance_of(p.alice.address) == PRICE
    assert p.owner.balance_of(p.bob.address) == 0
    assert p.owner.request_info(rid).escrow == 0  # type: ignore[union-attr]
    assert p.owner.settleable(rid) == 0
    with reverts("nothing to settle"):
        p.owner.settle(rid)
    p.owner.revoke(rid)  # after expiry and settlement: nothing moves
    assert p.owner.balance_of(p.alice.address) == PRICE
    assert p.owner.balance_of(p.bob.address) == 0
    assert p.owner.total_escrowed() == 0 and p.owner.total_credited() == PRICE
    # A free grant has nothing to settle.
    _oid2, free = p.pending(price=0)
    p.owner.grant(free, head_time(p.chain) + MIN + 5, KEY)
    with reverts("nothing to settle"):
        p.owner.settle(free)


def test_settle_then_revoke_never_pays_twice(p: Parties) -> None:
    b = p.chain.backend
    _oid, rid = p.pending()
    grc = p.owner.grant(rid, head_time(p.chain) + 30, KEY)
    g = b.block_timestamp(grc.block_number)
    length = p.owner.request_info(rid).expiry - g  # type: ignore[union-attr]
    advance(p.chain, 2)
    first, _ = p.owner.settle(rid)
    rc = p.owner.revoke(rid)
    r = b.block_timestamp(rc.block_number)
    ev = p.owner._event(rc, "Revoked")
    owner_total = PRICE * (r - g) // length
    assert first + ev["released"] == owner_total
    assert ev["refunded"] == PRICE - owner_total
    assert p.owner.balance_of(p.alice.address) == owner_total
    assert p.owner.balance_of(p.bob.address) == PRICE - owner_total
    assert p.owner.total_escrowed() == 0 and b.balance(p.owner.address) == PRICE


# -- withdraw ------------------------------------------------------------------


def test_withdraw_pays_exactly_once(p: Parties) -> None:
    b = p.chain.backend
    _, r1 = p.pending()
    _, r2 = p.pending()
    _, r3 = p.pending()
    p.owner.grant(r1, head_time(p.chain) + MIN + 1, KEY)
    p.owner.grant(r2, head_time(p.chain) + MIN + 1, KEY)
    p.owner.reject(r3)
    advance(p.chain, MIN + 2)
    p.mallory.settle(r1)  # anyone may settle: it pays only the owner what is due
    p.req.settle(r2)
    assert b.balance(p.owner.address) == 3 * PRICE
    assert p.owner.balance_of(p.alice.address) == 2 * PRICE
    assert p.owner.balance_of(p.bob.address) == PRICE
    before = b.balance(p.alice.address)
    amount, rc = p.owner.withdraw()
    assert amount == 2 * PRICE
    assert b.balance(p.alice.address) == before + 2 * PRICE - fee(p.chain, rc.tx_hash, rc.gas_used)
    assert p.owner.balance_of(p.alice.address) == 0
    with reverts("nothing to withdraw"):
        p.owner.withdraw()
    before = b.balance(p.bob.address)
    amount, rc = p.req.withdraw()
    assert amount == PRICE
    assert b.balance(p.bob.address) == before + PRICE - fee(p.chain, rc.tx_hash, rc.gas_used)
    with reverts("nothing to withdraw"):
        p.req.withdraw()
    with reverts("nothing to withdraw"):
        p.mallory.withdraw()
    assert b.balance(p.owner.address) == 0
    assert p.owner.total_credited() == 0 and p.owner.total_escrowed() == 0


def test_plain_transfers_are_refused(p: Parties) -> None:
    with pytest.raises(TransactionReverted):
        p.chain.backend.send_value(p.bob, p.owner.address, 1)
    assert p.chain.backend.balance(p.owner.address) == 0


def test_client_without_account_reads_only(p: Parties) -> None:
    ro = DataAgreementsClient(p.chain.backend, p.owner.address)
    assert ro.offer_count() == 0
    with pytest.raises(ChainError, match="no account"):
        ro.withdraw()


# -- reentrancy ------------------------------------------------------------------

ATTACKER = """
# pragma version 0.4.3
interface DA:
    def offer(dataset: bytes32, terms: bytes32, price: uint256, min_duration: uint256,
              max_duration: uint256, response_window: uint256, auto_grant: bool) -> uint256: nonpayable
    def withdraw(): nonpayable

target: DA
hard: bool
attempts: public(uint256)
reentered: public(uint256)

@deploy
def __init__(target: address, hard: bool):
    self.target = DA(target)
    self.hard = hard

@external
def make_offer(dataset: bytes32, price: uint256) -> uint256:
    return extcall self.target.offer(dataset, empty(bytes32), price, 2, 2, 3600, True)

@external
def attack():
    extcall self.target.withdraw()

@external
@payable
def __default__():
    if self.attempts < 3:
        self.attempts += 1
        if self.hard:
            extcall self.target.withdraw()
        else:
            ok: bool = raw_call(
                self.target.address, method_id("withdraw()"), revert_on_failure=False
            )
            if ok:
                self.reentered += 1
"""


def _attacker(chain: ChainEnv, hard: bool) -> tuple[str, Artifact]:
    import vyper

    out = vyper.compile_code(ATTACKER, output_formats=["abi", "bytecode", "bytecode_runtime"])
    art = Artifact(
        name="Attacker",
        abi=tuple(out["abi"]),
        bytecode=bytes.fromhex(out["bytecode"][2:]),
        runtime_bytecode=bytes.fromhex(out["bytecode_runtime"][2:]),
        source_sha256="",
        vyper_version=vyper.__version__,
    )
    da = chain.deployment.contracts["DataAgreements"]
    return chain.backend.deploy(chain.other, art, da, hard), art


@pytest.mark.parametrize("hard", [False, True], ids=["swallowing", "reverting"])
def test_reentrant_withdraw_pays_once(p: Parties, hard: bool) -> None:
    b = p.chain.backend
    addr, art = _attacker(p.chain, hard)
    b.transact(p.bob, addr, art.abi, "make_offer", [DATASET, PRICE])
    oid = p.owner.offer_count()
    assert p.owner.offer_info(oid).owner == addr  # type: ignore[union-attr]
    # Two auto-granted requests credit the attacking contract twice the price.
    victim = client(p.chain, p.alice)
    ra, _ = victim.request(oid, "a")
    rb, _ = victim.request(oid, "b")
    advance(p.chain, 3)  # both 2-second grants are over: settle the whole price
    victim.settle(ra)
    victim.settle(rb)
    assert p.owner.balance_of(addr) == 2 * PRICE
    if hard:
        # The re-entry fails on the lock, so the whole withdraw fails: nothing moves.
        with pytest.raises(TransactionReverted):
            b.transact(p.bob, addr, art.abi, "attack", [])
        assert b.balance(addr) == 0
        assert p.owner.balance_of(addr) == 2 * PRICE
        assert b.balance(p.owner.address) == 2 * PRICE
    else:
        b.transact(p.bob, addr, art.abi, "attack", [])
        assert b.call(addr, art.abi, "attempts", []) == 1
        assert b.call(addr, art.abi, "reentered", []) == 0
        assert b.balance(addr) == 2 * PRICE  # its credit, exactly once
        assert p.owner.balance_of(addr) == 0
        assert b.balance(p.owner.address) == 0
        assert p.owner.total_credited() == 0


# -- deployment ------------------------------------------------------------------


def test_old_deployment_without_agreements_still_loads(chain: ChainEnv) -> None:
    old = {
        "chain_id": chain.backend.chain_id,
        "contracts": {
            "CheckpointRegistry": chain.deployment.contracts["CheckpointRegistry"],
            "IdentityRegistry": chain.deployment.contracts["IdentityRegistry"],
        },
        "deployed_at_block": chain.deployment.deployed_at_block,
    }
    dep = Deployment.from_dict(old)
    dep.validate(chain.backend)
    assert "DataAgreements" not in dep.contracts
    full = deploy_missing(chain.backend, chain.owner, dep)
    # (later contracts, e.g. SwarmRounds, are deployed too)
    assert {"CheckpointRegistry", "IdentityRegistry", "DataAgreements"} <= set(full.contracts)
    assert full.deployed_at_block == dep.deployed_at_block
    full.validate(chain.backend)
    assert deploy_missing(chain.backend, chain.owner, full) is full
    assert chain.backend.code_at(full.contracts["DataAgreements"]) == (
        load_artifact("DataAgreements").runtime_bytecode
    )
    with pytest.raises(ChainError, match="no address for IdentityRegistry"):
        Deployment.from_dict(
            {**old, "contracts": {"CheckpointRegistry": dep.contracts["CheckpointRegistry"]}}
        )
