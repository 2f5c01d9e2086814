# pragma version 0.4.3
"""
@title DataAgreements
@license Apache-2.0
@notice Agreements to use a dataset, enforced on chain. An owner offers a
        dataset (manifest digest) under terms (digest of a terms document)
        for a price; a requester asks for it for a stated purpose and pays
        the price into escrow; the owner grants (the escrow is released to
        the owner, with an expiry and the digest of the data key wrapped to
        the requester), rejects (the requester is refunded), or lets the
        response window pass (the requester may reclaim the escrow). A grant
        can be revoked by the owner: it stops being live from then on.
@dev    Payments are pull-based: every release or refund is credited to an
        account and sent only by withdraw(), which clears the credit before
        the transfer and is nonreentrant. Funds are conserved:
        self.balance == total_escrowed + total_credited (more only if ether
        is forced in). Ids start at 1; 0 is never an offer or a request.
        Request status: 1 pending, 2 granted, 3 rejected, 4 reclaimed,
        5 revoked (0: no such request).
"""

MAX_PURPOSE: constant(uint256) = 128
# 100 years: bounds every period so now + period can never overflow.
MAX_PERIOD: constant(uint256) = 3155760000

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


event OfferCreated:
    offer_id: indexed(uint256)
    owner: indexed(address)
    dataset: indexed(bytes32)
    terms: bytes32
    price: uint256
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
    released: uint256


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


event Revoked:
    request_id: indexed(uint256)
    offer_id: indexed(uint256)
    requester: indexed(address)


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


@external
@nonreentrant
def offer(
    dataset: bytes32,
    terms: bytes32,
    price: uint256,
    max_duration: uint256,
    response_window: uint256,
    auto_grant: bool,
) -> uint256:
    """
    @notice Offer a dataset; the caller becomes the offer's owner.
    @param dataset SHA-256 of the dataset manifest (non-zero).
    @param terms SHA-256 of the terms document (zero: no terms document).
    @param price Wei a requester pays per request (may be zero).
    @param max_duration Longest grant, in seconds (1 .. 100 years).
    @param response_window Seconds the owner has to answer a request before
           the requester may reclaim the escrow (1 .. 100 years).
    @param auto_grant Grant every request at once, for max_duration, and
           credit the price to the owner.
    @return The offer id (from 1).
    """
    assert dataset != empty(bytes32), "DataAgreements: empty dataset digest"
    assert max_duration > 0, "DataAgreements: max_duration must be positive"
    assert max_duration <= MAX_PERIOD, "DataAgreements: max_duration too long"
    assert response_window > 0, "DataAgreements: response_window must be positive"
    assert response_window <= MAX_PERIOD, "DataAgreements: response_window too long"
    offer_id: uint256 = self.offer_count + 1
    self.offer_count = offer_id
    self._offers[offer_id] = Offer(
        owner=msg.sender,
        dataset=dataset,
        terms=terms,
        price=price,
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
            The payment is held in escrow until the owner grants (released
            to the owner), rejects (refunded) or the response window passes
            (the requester may reclaim it). If the offer auto-grants, the
            request is granted at once for the offer's max_duration and the
            price is credited to the owner.
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
    if off.auto_grant:
        expiry: uint256 = block.timestamp + off.max_duration
        self._requests[request_id] = Request(
            requester=msg.sender,
            offer_id=offer_id,
            purpose=purpose,
            status=GRANTED,
            escrow=0,
            expiry=expiry,
            wrapped_key=empty(bytes32),
            deadline=deadline,
        )
        log Requested(
            request_id=request_id,
            offer_id=offer_id,
            requester=msg.sender,
            purpose=purpose,
            paid=msg.value,
            deadline=deadline,
        )
        log Granted(
            request_id=request_id,
            offer_id=offer_id,
            requester=msg.sender,
            expiry=expiry,
            wrapped_key=empty(bytes32),
            released=msg.value,
        )
        self._credit(off.owner, msg.value)
    else:
        self._requests[request_id] = Request(
            requester=msg.sender,
            offer_id=offer_id,
            purpose=purpose,
            status=PENDING,
            escrow=msg.value,
            expiry=0,
            wrapped_key=empty(bytes32),
            deadline=deadline,
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
    return request_id


@external
@nonreentrant
def grant(request_id: uint256, expiry: uint256, wrapped_key: bytes32):
    """
    @notice Grant a pending request. Offer owner only, within the response
            window. Releases the escrow to the owner (credited; see withdraw).
    @param request_id The request.
    @param expiry Unix time the grant stops being live: after now and at
           most now + the offer's max_duration.
    @param wrapped_key Digest of the data key wrapped to the requester
           (zero: set later with set_wrapped_key).
    """
    req: Request = empty(Request)
    off: Offer = empty(Offer)
    req, off = self._owned_request(request_id)
    assert req.status == PENDING, "DataAgreements: request not pending"
    assert block.timestamp <= req.deadline, "DataAgreements: response window closed"
    assert expiry > block.timestamp, "DataAgreements: expiry not in the future"
    assert expiry <= block.timestamp + off.max_duration, "DataAgreements: expiry beyond max_duration"
    self._requests[request_id].status = GRANTED
    self._requests[request_id].escrow = 0
    self._requests[request_id].expiry = expiry
    self._requests[request_id].wrapped_key = wrapped_key
    self.total_escrowed -= req.escrow
    log Granted(
        request_id=request_id,
        offer_id=req.offer_id,
        requester=req.requester,
        expiry=expiry,
        wrapped_key=wrapped_key,
        released=req.escrow,
    )
    self._credit(off.owner, req.escrow)


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


@external
@nonreentrant
def reclaim(request_id: uint256):
    """
    @notice Take back the escrow of a request the owner did not answer in
            time. Requester only, pending only, after the deadline (request
            time + the offer's response_window). Credited; see withdraw.
    @param request_id The request.
    """
    req: Request = self._requests[request_id]
    assert req.status != 0, "DataAgreements: unknown request"
    assert msg.sender == req.requester, "DataAgreements: not requester"
    assert req.status == PENDING, "DataAgreements: request not pending"
    assert block.timestamp > req.deadline, "DataAgreements: response window still open"
    self._requests[request_id].status = RECLAIMED
    self._requests[request_id].escrow = 0
    self.total_escrowed -= req.escrow
    log Reclaimed(
        request_id=request_id, offer_id=req.offer_id, requester=req.requester, refunded=req.escrow
    )
    self._credit(req.requester, req.escrow)


@external
@nonreentrant
def revoke(request_id: uint256):
    """
    @notice Revoke a grant: from this block on it is no longer live. Offer
            owner only, granted requests only. Nothing is refunded: the
            price paid for the grant stays with the owner, and what the
            grantee already fetched cannot be taken back.
    @param request_id The granted request.
    """
    req: Request = empty(Request)
    off: Offer = empty(Offer)
    req, off = self._owned_request(request_id)
    assert req.status == GRANTED, "DataAgreements: request not granted"
    self._requests[request_id].status = REVOKED
    log Revoked(request_id=request_id, offer_id=req.offer_id, requester=req.requester)


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
    @return (owner, dataset, terms, price, max_duration, response_window,
            auto_grant, open); owner is zero if there is no such offer.
    """
    return self._offers[offer_id]


@external
@view
def request_info(request_id: uint256) -> Request:
    """
    @notice A request.
    @param request_id The request.
    @return (requester, offer_id, purpose, status, escrow, expiry,
            wrapped_key, deadline); status 0 if there is no such request,
            1 pending, 2 granted, 3 rejected, 4 reclaimed, 5 revoked.
            escrow is the wei held while pending (0 otherwise).
    """
    return self._requests[request_id]


@external
@view
def balance_of(account: address) -> uint256:
    """
    @notice Wei credited to an account and not yet withdrawn.
    @param account The account.
    @return The credited balance.
    """
    return self._credits[account]
