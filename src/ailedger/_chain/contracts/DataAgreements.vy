# pragma version 0.4.3
"""
@title DataAgreements
@license Apache-2.0
@notice Agreements to use a dataset, enforced on chain. An owner offers a
        dataset (manifest digest) under terms (digest of a terms document)
        for a price; a requester asks for it for a stated purpose and pays
        the price into escrow; the owner grants (with an expiry between the
        offer's min_duration and max_duration from now, and the digest of the
        data key wrapped to the requester), rejects (the requester is
        refunded), or lets the response window (at most 30 days) pass (the
        requester may reclaim the escrow). The requester may cancel a pending
        request at any time (refunded). A granted price stays in escrow and
        is streamed to the owner linearly over [granted_at, expiry]; settle()
        credits the owner what has accrued; revoke() ends the grant, credits
        the owner the accrued part and refunds the rest to the requester.
@dev    Payments are pull-based: every release or refund is credited to an
        account and sent only by withdraw(), which clears the credit before
        the transfer and is nonreentrant. Invariants (funds conservation):
        (1) self.balance == total_escrowed + total_credited (more only if
            ether is forced in);
        (2) total_escrowed == sum of escrow over all requests;
        (3) per request, paid == escrow + released + refunded, where released
            (credited to the owner) is never more than
            paid * (min(now, expiry) - granted_at) / (expiry - granted_at)
            and refunded (credited to the requester) is non-zero only once
            the request is rejected, reclaimed/cancelled or revoked, after
            which escrow is 0 and nothing moves again.
        Ids start at 1; 0 is never an offer or a request.
        Request status: 1 pending, 2 granted, 3 rejected, 4 reclaimed (after
        the deadline, or cancelled before it), 5 revoked (0: no such request).
"""

MAX_PURPOSE: constant(uint256) = 128
# 100 years: bounds every period so now + period can never overflow.
MAX_PERIOD: constant(uint256) = 3155760000
# 30 days: the longest a requester's escrow can wait for an answer.
MAX_WINDOW: constant(uint256) = 2592000

PENDING: constant(uint8) = 1
GRANTED: constant(uint8) = 2
REJECTED: constant(uint8) = 3
RECLAIMED: constant(uint8) = 4
REVOKED: constant(uint8) = 5


struct Offer:
    owner: address
    dataset: bytes32
    terms: bytes32
    price: uint256
    min_duration: uint256
    max_duration: uint256
    response_window: uint256
    auto_grant: bool
    open: bool


struct Request:
    requester: address
    offer_id: uint256
    purpose: String[MAX_PURPOSE]
    status: uint8
    escrow: uint256
    expiry: uint256
    wrapped_key: bytes32
    deadline: uint256
    paid: uint256
    granted_at: uint256


event OfferCreated:
    offer_id: indexed(uint256)
    owner: indexed(address)
    dataset: indexed(bytes32)
    terms: bytes32
    price: uint256
    min_duration: uint256
    max_duration: uint256
    response_window: uint256
    auto_grant: bool


event OfferClosed:
    offer_id: indexed(uint256)
    owner: indexed(address)


event Requested:
    request_id: indexed(uint256)
    offer_id: indexed(uint256)
    requester: indexed(address)
    purpose: String[MAX_PURPOSE]
    paid: uint256
    deadline: uint256


event Granted:
    request_id: indexed(uint256)
    offer_id: indexed(uint256)
    requester: indexed(address)
    expiry: uint256
    wrapped_key: bytes32
    streamed: uint256


event Rejected:
    request_id: indexed(uint256)
    offer_id: indexed(uint256)
    requester: indexed(address)
    refunded: uint256


event Reclaimed:
    request_id: indexed(uint256)
    offer_id: indexed(uint256)
    requester: indexed(address)
    refunded: uint256


event Cancelled:
    request_id: indexed(uint256)
    offer_id: indexed(uint256)
    requester: indexed(address)
    refunded: uint256


event Settled:
    request_id: indexed(uint256)
    offer_id: indexed(uint256)
    owner: indexed(address)
    released: uint256


event Revoked:
    request_id: indexed(uint256)
    offer_id: indexed(uint256)
    requester: indexed(address)
    released: uint256
    refunded: uint256


event WrappedKeySet:
    request_id: indexed(uint256)
    offer_id: indexed(uint256)
    requester: indexed(address)
    wrapped_key: bytes32


event Credited:
    account: indexed(address)
    amount: uint256


event Withdrawn:
    account: indexed(address)
    amount: uint256


offer_count: public(uint256)
request_count: public(uint256)
total_escrowed: public(uint256)
total_credited: public(uint256)

_offers: HashMap[uint256, Offer]
_requests: HashMap[uint256, Request]
_credits: HashMap[address, uint256]


@internal
def _credit(account: address, amount: uint256):
    if amount == 0:
        return
    self._credits[account] += amount
    self.total_credited += amount
    log Credited(account=account, amount=amount)


@internal
@view
def _owned_request(request_id: uint256) -> (Request, Offer):
    # The request and its offer, checked to exist and to be the caller's offer.
    req: Request = self._requests[request_id]
    assert req.status != 0, "DataAgreements: unknown request"
    off: Offer = self._offers[req.offer_id]
    assert msg.sender == off.owner, "DataAgreements: not offer owner"
    return req, off


@internal
@view
def _settleable(req: Request) -> uint256:
    # Wei of a grant's escrow the owner has earned and not yet been credited:
    # paid * elapsed / length, elapsed capped at the grant's length, minus what
    # was released before (paid - escrow: a granted request has refunded
    # nothing). Rounds down, so the owner is never credited ahead of time; at
    # expiry the accrual is exactly paid, so the whole escrow is released.
    if req.status != GRANTED:
        return 0
    end: uint256 = min(block.timestamp, req.expiry)
    accrued: uint256 = req.paid * (end - req.granted_at) // (req.expiry - req.granted_at)
    return accrued - (req.paid - req.escrow)


@internal
def _settle(request_id: uint256, req: Request, owner: address) -> uint256:
    # Credit the owner what has accrued; returns the wei released.
    amount: uint256 = self._settleable(req)
    if amount == 0:
        return 0
    self._requests[request_id].escrow = req.escrow - amount
    self.total_escrowed -= amount
    log Settled(request_id=request_id, offer_id=req.offer_id, owner=owner, released=amount)
    self._credit(owner, amount)
    return amount


@external
@nonreentrant
def offer(
    dataset: bytes32,
    terms: bytes32,
    price: uint256,
    min_duration: uint256,
    max_duration: uint256,
    response_window: uint256,
    auto_grant: bool,
) -> uint256:
    """
    @notice Offer a dataset; the caller becomes the offer's owner.
    @param dataset SHA-256 of the dataset manifest (non-zero).
    @param terms SHA-256 of the terms document (zero: no terms document).
    @param price Wei a requester pays per request (may be zero).
    @param min_duration Shortest grant, in seconds (1 .. max_duration): the
           requester pays for at least this long.
    @param max_duration Longest grant, in seconds (1 .. 100 years).
    @param response_window Seconds the owner has to answer a request before
           the requester may reclaim the escrow (1 .. 30 days).
    @param auto_grant Grant every request at once, for max_duration (the
           price is streamed to the owner over the grant).
    @return The offer id (from 1).
    """
    assert dataset != empty(bytes32), "DataAgreements: empty dataset digest"
    assert max_duration > 0, "DataAgreements: max_duration must be positive"
    assert min_duration > 0, "DataAgreements: min_duration must be positive"
    assert max_duration <= MAX_PERIOD, "DataAgreements: max_duration too long"
    assert min_duration <= max_duration, "DataAgreements: min_duration exceeds max_duration"
    assert response_window > 0, "DataAgreements: response_window must be positive"
    assert response_window <= MAX_WINDOW, "DataAgreements: response_window too long"
    offer_id: uint256 = self.offer_count + 1
    self.offer_count = offer_id
    self._offers[offer_id] = Offer(
        owner=msg.sender,
        dataset=dataset,
        terms=terms,
        price=price,
        min_duration=min_duration,
        max_duration=max_duration,
        response_window=response_window,
        auto_grant=auto_grant,
        open=True,
    )
    log OfferCreated(
        offer_id=offer_id,
        owner=msg.sender,
        dataset=dataset,
        terms=terms,
        price=price,
        min_duration=min_duration,
        max_duration=max_duration,
        response_window=response_window,
        auto_grant=auto_grant,
    )
    return offer_id


@external
@nonreentrant
def close_offer(offer_id: uint256):
    """
    @notice Stop accepting requests for an offer. Owner only. Requests made
            before stay as they are (pending ones can still be granted,
            rejected or reclaimed; grants stay live until they expire or
            are revoked).
    @param offer_id The offer.
    """
    off: Offer = self._offers[offer_id]
    assert off.owner != empty(address), "DataAgreements: unknown offer"
    assert msg.sender == off.owner, "DataAgreements: not offer owner"
    assert off.open, "DataAgreements: offer closed"
    self._offers[offer_id].open = False
    log OfferClosed(offer_id=offer_id, owner=msg.sender)


@external
@payable
@nonreentrant
def request(offer_id: uint256, purpose: String[MAX_PURPOSE]) -> uint256:
    """
    @notice Request an open offer for a purpose, paying exactly its price.
            The payment is held in escrow: while pending, the owner may grant
            or reject (refunded), the requester may cancel (refunded), and
            after the response window the requester may reclaim it. If the
            offer auto-grants, the request is granted at once for the offer's
            max_duration and the price is streamed to the owner over it.
    @param offer_id The offer.
    @param purpose What the data will be used for (1 .. 128 bytes); a grant
           is live only for exactly this purpose.
    @return The request id (from 1).
    """
    off: Offer = self._offers[offer_id]
    assert off.owner != empty(address), "DataAgreements: unknown offer"
    assert off.open, "DataAgreements: offer closed"
    assert msg.sender != off.owner, "DataAgreements: owner cannot request own offer"
    assert len(purpose) > 0, "DataAgreements: empty purpose"
    assert msg.value == off.price, "DataAgreements: payment must equal the price"
    request_id: uint256 = self.request_count + 1
    self.request_count = request_id
    deadline: uint256 = block.timestamp + off.response_window
    status: uint8 = PENDING
    expiry: uint256 = 0
    granted_at: uint256 = 0
    if off.auto_grant:
        status = GRANTED
        expiry = block.timestamp + off.max_duration
        granted_at = block.timestamp
    self._requests[request_id] = Request(
        requester=msg.sender,
        offer_id=offer_id,
        purpose=purpose,
        status=status,
        escrow=msg.value,
        expiry=expiry,
        wrapped_key=empty(bytes32),
        deadline=deadline,
        paid=msg.value,
        granted_at=granted_at,
    )
    self.total_escrowed += msg.value
    log Requested(
        request_id=request_id,
        offer_id=offer_id,
        requester=msg.sender,
        purpose=purpose,
        paid=msg.value,
        deadline=deadline,
    )
    if off.auto_grant:
        log Granted(
            request_id=request_id,
            offer_id=offer_id,
            requester=msg.sender,
            expiry=expiry,
            wrapped_key=empty(bytes32),
            streamed=msg.value,
        )
    return request_id


@external
@nonreentrant
def grant(request_id: uint256, expiry: uint256, wrapped_key: bytes32):
    """
    @notice Grant a pending request. Offer owner only, within the response
            window. The escrow stays in the contract and is streamed to the
            owner linearly from now to expiry (see settle, revoke).
    @param request_id The request.
    @param expiry Unix time the grant stops being live: at least now + the
           offer's min_duration and at most now + its max_duration.
    @param wrapped_key Digest of the data key wrapped to the requester
           (zero: set later with set_wrapped_key).
    """
    req: Request = empty(Request)
    off: Offer = empty(Offer)
    req, off = self._owned_request(request_id)
    assert req.status == PENDING, "DataAgreements: request not pending"
    assert block.timestamp <= req.deadline, "DataAgreements: response window closed"
    assert expiry >= block.timestamp + off.min_duration, "DataAgreements: expiry before min_duration"
    assert expiry <= block.timestamp + off.max_duration, "DataAgreements: expiry beyond max_duration"
    self._requests[request_id].status = GRANTED
    self._requests[request_id].expiry = expiry
    self._requests[request_id].wrapped_key = wrapped_key
    self._requests[request_id].granted_at = block.timestamp
    log Granted(
        request_id=request_id,
        offer_id=req.offer_id,
        requester=req.requester,
        expiry=expiry,
        wrapped_key=wrapped_key,
        streamed=req.escrow,
    )


@external
@nonreentrant
def reject(request_id: uint256):
    """
    @notice Reject a pending request. Offer owner only (also after the
            response window). Refunds the escrow to the requester (credited;
            see withdraw).
    @param request_id The request.
    """
    req: Request = empty(Request)
    off: Offer = empty(Offer)
    req, off = self._owned_request(request_id)
    assert req.status == PENDING, "DataAgreements: request not pending"
    self._requests[request_id].status = REJECTED
    self._requests[request_id].escrow = 0
    self.total_escrowed -= req.escrow
    log Rejected(
        request_id=request_id, offer_id=req.offer_id, requester=req.requester, refunded=req.escrow
    )
    self._credit(req.requester, req.escrow)


@internal
@view
def _requester_pending(request_id: uint256) -> Request:
    # The request, checked to exist, to be the caller's and to be pending.
    req: Request = self._requests[request_id]
    assert req.status != 0, "DataAgreements: unknown request"
    assert msg.sender == req.requester, "DataAgreements: not requester"
    assert req.status == PENDING, "DataAgreements: request not pending"
    return req


@internal
def _refund_pending(request_id: uint256, req: Request):
    # End a pending request as reclaimed and credit its escrow back.
    self._requests[request_id].status = RECLAIMED
    self._requests[request_id].escrow = 0
    self.total_escrowed -= req.escrow
    self._credit(req.requester, req.escrow)


@external
@nonreentrant
def reclaim(request_id: uint256):
    """
    @notice Take back the escrow of a request the owner did not answer in
            time. Requester only, pending only, after the deadline (request
            time + the offer's response_window). Credited; see withdraw.
    @param request_id The request.
    """
    req: Request = self._requester_pending(request_id)
    assert block.timestamp > req.deadline, "DataAgreements: response window still open"
    log Reclaimed(
        request_id=request_id, offer_id=req.offer_id, requester=req.requester, refunded=req.escrow
    )
    self._refund_pending(request_id, req)


@external
@nonreentrant
def cancel(request_id: uint256):
    """
    @notice Withdraw a pending request at any time, before or after the
            deadline: the whole escrow is refunded (credited; see withdraw)
            and the request ends as reclaimed (status 4). Requester only,
            pending only.
    @param request_id The request.
    """
    req: Request = self._requester_pending(request_id)
    log Cancelled(
        request_id=request_id, offer_id=req.offer_id, requester=req.requester, refunded=req.escrow
    )
    self._refund_pending(request_id, req)


@external
@nonreentrant
def settle(request_id: uint256):
    """
    @notice Credit a grant's owner the part of the price that has accrued:
            price * (min(now, expiry) - granted_at) / (expiry - granted_at),
            less what was credited before. Anyone may call it (it only pays
            the owner what is due); after expiry it releases the whole rest.
    @param request_id The granted request.
    """
    req: Request = self._requests[request_id]
    assert req.status != 0, "DataAgreements: unknown request"
    assert req.status == GRANTED, "DataAgreements: request not granted"
    owner: address = self._offers[req.offer_id].owner
    assert self._settle(request_id, req, owner) > 0, "DataAgreements: nothing to settle"


@external
@nonreentrant
def revoke(request_id: uint256):
    """
    @notice Revoke a grant: from this block on it is no longer live. Offer
            owner only, granted requests only. The owner is credited the part
            of the price accrued up to now, and the requester is refunded the
            rest (the unused time); after expiry that rest is zero. What the
            grantee already fetched cannot be taken back.
    @param request_id The granted request.
    """
    req: Request = empty(Request)
    off: Offer = empty(Offer)
    req, off = self._owned_request(request_id)
    assert req.status == GRANTED, "DataAgreements: request not granted"
    released: uint256 = self._settle(request_id, req, off.owner)
    refund: uint256 = req.escrow - released
    self._requests[request_id].status = REVOKED
    self._requests[request_id].escrow = 0
    self.total_escrowed -= refund
    log Revoked(
        request_id=request_id,
        offer_id=req.offer_id,
        requester=req.requester,
        released=released,
        refunded=refund,
    )
    self._credit(req.requester, refund)


@external
@nonreentrant
def set_wrapped_key(request_id: uint256, wrapped_key: bytes32):
    """
    @notice Record (or replace) the digest of the data key wrapped to the
            grantee, e.g. after an auto-grant or a key rotation. Offer owner
            only, granted requests only.
    @param request_id The granted request.
    @param wrapped_key Digest of the wrapped data key (non-zero).
    """
    req: Request = empty(Request)
    off: Offer = empty(Offer)
    req, off = self._owned_request(request_id)
    assert req.status == GRANTED, "DataAgreements: request not granted"
    assert wrapped_key != empty(bytes32), "DataAgreements: empty wrapped key"
    self._requests[request_id].wrapped_key = wrapped_key
    log WrappedKeySet(
        request_id=request_id, offer_id=req.offer_id, requester=req.requester, wrapped_key=wrapped_key
    )


@external
@nonreentrant
def withdraw():
    """
    @notice Send the caller its whole credited balance (releases to owners,
            refunds to requesters). The credit is cleared before the
            transfer; all gas is forwarded and a failed transfer reverts
            (the credit stays).
    """
    amount: uint256 = self._credits[msg.sender]
    assert amount > 0, "DataAgreements: nothing to withdraw"
    self._credits[msg.sender] = 0
    self.total_credited -= amount
    log Withdrawn(account=msg.sender, amount=amount)
    raw_call(msg.sender, b"", value=amount)


@external
@view
def is_live(request_id: uint256, purpose: String[MAX_PURPOSE]) -> bool:
    """
    @notice Whether a request is a live grant for this purpose: granted, not
            revoked, not expired (block.timestamp < expiry) and requested for
            exactly this purpose (byte-for-byte).
    @param request_id The request.
    @param purpose The purpose the data is about to be used for.
    @return True if the grant is live for the purpose.
    """
    req: Request = self._requests[request_id]
    return (
        req.status == GRANTED
        and block.timestamp < req.expiry
        and keccak256(req.purpose) == keccak256(purpose)
    )


@external
@view
def offer_info(offer_id: uint256) -> Offer:
    """
    @notice An offer.
    @param offer_id The offer.
    @return (owner, dataset, terms, price, min_duration, max_duration,
            response_window, auto_grant, open); owner is zero if there is no
            such offer.
    """
    return self._offers[offer_id]


@external
@view
def request_info(request_id: uint256) -> Request:
    """
    @notice A request.
    @param request_id The request.
    @return (requester, offer_id, purpose, status, escrow, expiry,
            wrapped_key, deadline, paid, granted_at); status 0 if there is
            no such request, 1 pending, 2 granted, 3 rejected, 4 reclaimed
            (or cancelled), 5 revoked. escrow is the wei still held: all of
            paid while pending, the part not yet released to the owner while
            granted, 0 once the request is over. granted_at is 0 until
            granted.
    """
    return self._requests[request_id]


@external
@view
def settleable(request_id: uint256) -> uint256:
    """
    @notice Wei of a grant's escrow that settle() would credit the owner now.
    @param request_id The request.
    @return The accrued, not yet credited wei (0 unless granted).
    """
    return self._settleable(self._requests[request_id])


@external
@view
def balance_of(account: address) -> uint256:
    """
    @notice Wei credited to an account and not yet withdrawn.
    @param account The account.
    @return The credited balance.
    """
    return self._credits[account]
