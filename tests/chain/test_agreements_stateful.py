"""A stateful model of DataAgreements: random actors make offers, requests with
exact and wrong payments, grants (too short, too long, in range), rejects,
reclaims, cancels, settlements, revokes, closes and withdrawals against the
contract on the embedded chain; after every step the contract must agree with a
Python model and conserve funds: contract balance == escrows + credited balances,
and for every request paid == escrow + released (to the owner) + refunded (to the
requester), with released == price × used time / grant length (rounded down)."""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from ailedger._chain import (
    DataAgreementsClient,
    EmbeddedBackend,
    Receipt,
    RequestStatus,
    TransactionReverted,
    deploy_all,
)

N_ACTORS = 4
SHORT_WINDOW = 2  # seconds: reclaimable after advancing the chain a few blocks
LONG = 10**6  # a window / duration no test run outlives
MIN_D = 3  # every offer's min_duration
SHORT_GRANT = 30  # max_duration of the short-grant offers: their grants expire in a run
PURPOSES = ("training", "evaluation", "inference")
_DUMMY = "0x" + "22" * 20


@dataclass
class MOffer:
    owner: int
    price: int
    auto: bool
    window: int
    max_d: int = LONG
    open: bool = True


@dataclass
class MRequest:
    requester: int
    offer_id: int
    purpose: str
    status: RequestStatus
    escrow: int
    deadline: int
    expiry: int = 0
    paid: int = 0
    granted_at: int = 0
    released: int = 0  # credited to the offer's owner
    refunded: int = 0  # credited to the requester

    def accrued(self, t: int) -> int:
        """The owner's share of the price at time ``t`` (the contract's formula)."""
        end = min(t, self.expiry)
        return self.paid * (end - self.granted_at) // (self.expiry - self.granted_at)


def actor_st() -> st.SearchStrategy[int]:
    return st.integers(0, N_ACTORS - 1)


class AgreementsMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.TemporaryDirectory()
        self.backend = EmbeddedBackend(Path(self.tmp.name) / "chain.db")
        self.actors: list[LocalAccount] = [Account.create() for _ in range(N_ACTORS)]
        for a in self.actors:
            self.backend.fund(a.address)
        dep = deploy_all(self.backend, self.actors[0])
        addr = dep.contracts["DataAgreements"]
        self.c = [DataAgreementsClient(self.backend, addr, a) for a in self.actors]
        self.offers: dict[int, MOffer] = {}
        self.requests: dict[int, MRequest] = {}
        self.credits = [0] * N_ACTORS

    def teardown(self) -> None:
        self.backend.close()
        self.tmp.cleanup()

    # -- helpers -------------------------------------------------------------
    def head(self) -> int:
        return self.backend.block_timestamp(self.backend.block_number())

    def past(self, t: int) -> None:
        """Mine blocks until the head is after ``t`` (each block is ≥ 1 s later), so any
        following call or transaction runs strictly after ``t``."""
        while self.head() <= t:
            self.backend.fund(_DUMMY, 1)

    def expect(self, reason: str | None, fn, *args):  # type: ignore[no-untyped-def]
        event(f"{fn.__name__}: {reason or 'ok'}")
        if reason is None:
            return fn(*args)
        with pytest.raises(TransactionReverted, match=f"^DataAgreements: {reason}$"):
            fn(*args)
        return None

    def pick(self, data: st.DataObject, ids: dict[int, object]) -> int:
        # Mostly known ids, sometimes an unknown one (0 or past the end).
        known = sorted(ids)
        return data.draw(
            st.sampled_from(known)
            if known and data.draw(st.integers(0, 5))
            else st.sampled_from([0, len(ids) + 1])
        )

    def who(self, data: st.DataObject, rightful: int | None) -> int:
        # Mostly the account entitled to act, sometimes anyone (an attacker).
        if rightful is not None and data.draw(st.integers(0, 3)):
            return rightful
        return data.draw(actor_st())

    def owner_of(self, rid: int) -> int | None:
        req = self.requests.get(rid)
        return None if req is None else self.offers[req.offer_id].owner

    # -- rules ---------------------------------------------------------------
    @initialize()
    def some_offers(self) -> None:
        # A paid manual offer, a short-window one, and a paid auto-grant one, so
        # requests have something to hit from the first step.
        self.offer(0, 10**15, False, False, True)
        self.offer(1, 1, False, True, False)
        self.offer(2, 10**15, True, False, True)
        # …and a pending request and a (short, streaming) auto-grant to act on.
        self._request(3, 1, "training", 10**15)
        self._request(3, 3, "inference", 10**15)

    @rule(
        who=actor_st(),
        price=st.sampled_from([0, 1, 10**15]),
        auto=st.booleans(),
        short=st.booleans(),
        short_grant=st.booleans(),
    )
    def offer(self, who: int, price: int, auto: bool, short: bool, short_grant: bool) -> None:
        window = SHORT_WINDOW if short else LONG
        max_d = SHORT_GRANT if short_grant else LONG
        oid, _ = self.c[who].offer(
            hashlib.sha256(b"%d" % len(self.offers)).digest(),
            None,
            price=price,
            min_duration=MIN_D,
            max_duration=max_d,
            response_window=window,
            auto_grant=auto,
        )
        assert oid == len(self.offers) + 1
        self.offers[oid] = MOffer(who, price, auto, window, max_d)

    @rule(data=st.data())
    def close_offer(self, data: st.DataObject) -> None:
        oid = self.pick(data, self.offers)  # type: ignore[arg-type]
        off = self.offers.get(oid)
        if data.draw(st.integers(0, 4)):
            return  # closing is rare, or every offer would soon be closed
        who = self.who(data, off.owner if off else None)
        reason = (
            "unknown offer"
            if off is None
            else "not offer owner"
            if off.owner != who
            else "offer closed"
            if not off.open
            else None
        )
        self.expect(reason, self.c[who].close_offer, oid)
        if reason is None:
            assert off is not None
            off.open = False

    @rule(
        data=st.data(),
        purpose=st.sampled_from(PURPOSES),
        delta=st.sampled_from([0, 0, 0, -1, 1]),
    )
    def request(self, data: st.DataObject, purpose: str, delta: int) -> None:
        oid = self.pick(data, self.offers)  # type: ignore[arg-type]
        off = self.offers.get(oid)
        who = data.draw(actor_st())
        value = max(0, (off.price if off else 0) + delta)
        reason = (
            "unknown offer"
            if off is None
            else "offer closed"
            if not off.open
            else "owner cannot request own offer"
            if off.owner == who
            else "payment must equal the price"
            if value != off.price
            else None
        )
        out = self.expect(reason, self.c[who].request, oid, purpose, value)
        if reason is None:
            assert off is not None
            self._record_request(who, oid, purpose, value, *out)

    def _request(self, who: int, oid: int, purpose: str, value: int) -> None:
        self._record_request(who, oid, purpose, value, *self.c[who].request(oid, purpose, value))

    def _record_request(
        self, who: int, oid: int, purpose: str, value: int, rid: int, rc: Receipt
    ) -> None:
        off = self.offers[oid]
        assert rid == len(self.requests) + 1
        t = self.backend.block_timestamp(rc.block_number)
        if off.auto:
            self.requests[rid] = MRequest(
                who, oid, purpose, RequestStatus.GRANTED, value, t + off.window,
                expiry=t + off.max_d, paid=value, granted_at=t,
            )  # fmt: skip
        else:
            self.requests[rid] = MRequest(
                who, oid, purpose, RequestStatus.PENDING, value, t + off.window, paid=value
            )

    def _owner_reason(self, who: int, rid: int, status: RequestStatus) -> str | None:
        req = self.requests.get(rid)
        if req is None:
            return "unknown request"
        if self.offers[req.offer_id].owner != who:
            return "not offer owner"
        if req.status is not status:
            return (
                "request not pending" if status is RequestStatus.PENDING else "request not granted"
            )
        return None

    @rule(data=st.data(), length=st.sampled_from(["ok", "ok", "ok", "too short", "too long"]))
    def grant(self, data: st.DataObject, length: str) -> None:
        rid = self.pick(data, self.requests)  # type: ignore[arg-type]
        who = self.who(data, self.owner_of(rid))
        reason = self._owner_reason(who, rid, RequestStatus.PENDING)
        req = self.requests.get(rid)
        if reason is None and req is not None and self.offers[req.offer_id].window == SHORT_WINDOW:
            # A short window is always let run out first: the owner is then too late.
            self.past(req.deadline)
            reason = "response window closed"
        max_d = self.offers[req.offer_id].max_d if req is not None else LONG
        head = self.head()  # the transaction runs a second or so later
        if length == "too short":
            expiry = head + 1
            reason = reason or "expiry before min_duration"
        elif length == "too long":
            expiry = head + max_d + 100
            reason = reason or "expiry beyond max_duration"
        else:
            expiry = head + (MIN_D + 10 if max_d == SHORT_GRANT else LONG // 10)
        out = self.expect(reason, self.c[who].grant, rid, expiry, b"\x01" * 32)
        if reason is None:
            assert req is not None
            t = self.backend.block_timestamp(out.block_number)
            req.status, req.expiry, req.granted_at = RequestStatus.GRANTED, expiry, t

    @rule(data=st.data())
    def reject(self, data: st.DataObject) -> None:
        rid = self.pick(data, self.requests)  # type: ignore[arg-type]
        who = self.who(data, self.owner_of(rid))
        reason = self._owner_reason(who, rid, RequestStatus.PENDING)
        self.expect(reason, self.c[who].reject, rid)
        if reason is None:
            req = self.requests[rid]
            self.credits[req.requester] += req.escrow
            req.refunded += req.escrow
            req.status, req.escrow = RequestStatus.REJECTED, 0

    @rule(data=st.data())
    def reclaim(self, data: st.DataObject) -> None:
        rid = self.pick(data, self.requests)  # type: ignore[arg-type]
        req = self.requests.get(rid)
        who = self.who(data, req.requester if req else None)
        if req is None:
            reason: str | None = "unknown request"
        elif req.requester != who:
            reason = "not requester"
        elif req.status is not RequestStatus.PENDING:
            reason = "request not pending"
        elif self.offers[req.offer_id].window == SHORT_WINDOW:
            self.past(req.deadline)
            reason = None
        else:
            reason = "response window still open"
        self.expect(reason, self.c[who].reclaim, rid)
        if reason is None:
            assert req is not None
            self.credits[who] += req.escrow
            req.refunded += req.escrow
            req.status, req.escrow = RequestStatus.RECLAIMED, 0

    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        rid = self.pick(data, self.requests)  # type: ignore[arg-type]
        req = self.requests.get(rid)
        who = self.who(data, req.requester if req else None)
        if req is None:
            reason: str | None = "unknown request"
        elif req.requester != who:
            reason = "not requester"
        elif req.status is not RequestStatus.PENDING:
            reason = "request not pending"
        else:
            reason = None  # any time, inside the response window or after it
        self.expect(reason, self.c[who].cancel, rid)
        if reason is None:
            assert req is not None
            self.credits[who] += req.escrow
            req.refunded += req.escrow
            req.status, req.escrow = RequestStatus.RECLAIMED, 0

    @rule(data=st.data(), wait=st.booleans())
    def settle(self, data: st.DataObject, wait: bool) -> None:
        rid = self.pick(data, self.requests)  # type: ignore[arg-type]
        req = self.requests.get(rid)
        who = data.draw(actor_st())  # anyone may settle; only the owner is paid
        if req is None:
            reason: str | None = "unknown request"
        elif req.status is not RequestStatus.GRANTED:
            reason = "request not granted"
        elif req.released == req.paid:
            reason = "nothing to settle"  # free, or fully released
        else:
            if wait and req.expiry - req.granted_at <= SHORT_GRANT:
                self.past(req.expiry)  # let a short grant run out: the rest is due
            # Whether anything accrued since the last settlement depends on the
            # second the transaction lands in: accept both, check whichever happens.
            try:
                released, rc = self.c[who].settle(rid)
            except TransactionReverted as e:
                assert str(e) == "DataAgreements: nothing to settle"
                event("settle: nothing accrued yet")
                assert req.accrued(self.head()) == req.released
                return
            event("settle: ok")
            t = self.backend.block_timestamp(rc.block_number)
            assert released == req.accrued(t) - req.released > 0
            self._release(req, released)
            return
        self.expect(reason, self.c[who].settle, rid)

    def _release(self, req: MRequest, amount: int) -> None:
        self.credits[self.offers[req.offer_id].owner] += amount
        req.released += amount
        req.escrow -= amount

    @rule(data=st.data())
    def revoke(self, data: st.DataObject) -> None:
        rid = self.pick(data, self.requests)  # type: ignore[arg-type]
        who = self.who(data, self.owner_of(rid))
        reason = self._owner_reason(who, rid, RequestStatus.GRANTED)
        rc = self.expect(reason, self.c[who].revoke, rid)
        if reason is None:
            req = self.requests[rid]
            t = self.backend.block_timestamp(rc.block_number)
            owner_due = req.accrued(t) - req.released
            refund = req.paid - req.accrued(t)
            ev = self.c[0]._event(rc, "Revoked")
            assert (ev["released"], ev["refunded"]) == (owner_due, refund)
            self._release(req, owner_due)
            self.credits[req.requester] += refund
            req.refunded += refund
            req.status, req.escrow = RequestStatus.REVOKED, 0

    @rule(who=st.integers(0, N_ACTORS - 1))
    def withdraw(self, who: int) -> None:
        amount = self.credits[who]
        before = self.backend.balance(self.c[0].address)
        out = self.expect(None if amount else "nothing to withdraw", self.c[who].withdraw)
        if amount:
            assert out[0] == amount
            assert self.backend.balance(self.c[0].address) == before - amount
            self.credits[who] = 0

    @precondition(lambda self: bool(self.requests))
    @rule(data=st.data())
    def liveness(self, data: st.DataObject) -> None:
        rid = data.draw(st.sampled_from(sorted(self.requests)))
        req = self.requests[rid]
        head = self.head()
        if req.status is RequestStatus.GRANTED and head - 2 < req.expiry <= head + 2:
            return  # a view may run at the head's time or just after: too close to call
        granted = req.status is RequestStatus.GRANTED and head < req.expiry
        for purpose in PURPOSES:
            assert self.c[0].is_live(rid, purpose) == (granted and purpose == req.purpose)

    # -- invariants ------------------------------------------------------------
    @invariant()
    def funds_conserved(self) -> None:
        c = self.c[0]
        escrowed = sum(r.escrow for r in self.requests.values())
        credited = sum(self.credits)
        assert c.total_escrowed() == escrowed
        assert c.total_credited() == credited
        assert self.backend.balance(c.address) == escrowed + credited
        for i, a in enumerate(self.actors):
            assert c.balance_of(a.address) == self.credits[i]
        for req in self.requests.values():
            # Every wei paid is in exactly one place; the owner never gets more
            # than has accrued, and a finished request holds nothing.
            assert req.paid == req.escrow + req.released + req.refunded
            if req.status is RequestStatus.GRANTED:
                assert req.refunded == 0 and req.released <= req.accrued(self.head() + 1)
            elif req.status is not RequestStatus.PENDING:
                assert req.escrow == 0

    @invariant()
    def contract_matches_model(self) -> None:
        c = self.c[0]
        assert c.offer_count() == len(self.offers)
        assert c.request_count() == len(self.requests)
        for oid, off in self.offers.items():
            info = c.offer_info(oid)
            assert info is not None
            assert (info.owner, info.price, info.auto_grant, info.open) == (
                self.actors[off.owner].address,
                off.price,
                off.auto,
                off.open,
            )
            assert (info.min_duration, info.max_duration) == (MIN_D, off.max_d)
        for rid, req in self.requests.items():
            got = c.request_info(rid)
            assert got is not None
            assert (got.requester, got.offer_id, got.purpose, got.status, got.escrow) == (
                self.actors[req.requester].address,
                req.offer_id,
                req.purpose,
                req.status,
                req.escrow,
            )
            assert got.deadline == req.deadline
            assert (got.paid, got.granted_at) == (req.paid, req.granted_at)
            if req.expiry:
                assert got.expiry == req.expiry


AgreementsMachine.TestCase.settings = settings(
    max_examples=30, stateful_step_count=30, deadline=None
)
TestAgreementsMachine = AgreementsMachine.TestCase
