"""Client of the DataAgreements contract: offers, requests, grants and payments.

Every state-changing method signs and sends one transaction with the client's
account and returns the mined :class:`Receipt` (offer and request also return the
new id, read from the transaction's event). A contract refusal raises
:class:`TransactionReverted` whose message is the contract's reason, e.g.
``DataAgreements: not offer owner`` (see docs/agreements.md for the list).
Arguments that the contract could only refuse without a reason (a purpose longer
than 128 bytes, a digest that is not 32 bytes) are refused here with a ChainError.

Payments are pull-based: settlements, refunds and reclaims only *credit* an account
(:meth:`DataAgreementsClient.balance_of`); :meth:`DataAgreementsClient.withdraw`
sends the credit. A granted price stays in escrow and streams to the owner linearly
over the grant (:meth:`DataAgreementsClient.settle`); revoking refunds the requester
the unused part.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ..errors import ChainError
from ._abi import decode_event, event_topic
from ._backend import Receipt, checksum
from ._clients import _Client, _hash32

MAX_PURPOSE_BYTES = 128
_ZERO32 = b"\x00" * 32
MAX_RESPONSE_WINDOW = 30 * 86400  # the contract's cap on response_window
DEFAULT_MIN_DURATION = 86400  # offer(min_duration=None): one day, capped at max_duration


class RequestStatus(enum.IntEnum):
    """Where a request is in its life (the contract's ``status`` codes)."""

    PENDING = 1  # escrow held; owner may grant/reject until the deadline, requester may cancel
    GRANTED = 2  # escrow streams to the owner until expiry; live until expiry unless revoked
    REJECTED = 3  # refunded to the requester
    RECLAIMED = 4  # the requester took the escrow back (cancelled, or reclaimed after deadline)
    REVOKED = 5  # was granted; no longer live (unused part refunded to the requester)


@dataclass(frozen=True)
class OfferInfo:
    """An offer as the contract stores it."""

    offer_id: int
    owner: str
    dataset: bytes  # SHA-256 of the dataset manifest
    terms: bytes  # SHA-256 of the terms document (zeros: none)
    price: int  # wei per request
    max_duration: int  # longest grant, seconds
    response_window: int  # seconds the owner has to answer a request
    auto_grant: bool
    open: bool
    min_duration: int = 0  # shortest grant, seconds (last: keeps positional construction)


@dataclass(frozen=True)
class RequestInfo:
    """A request (and, once granted, the grant) as the contract stores it."""

    request_id: int
    requester: str
    offer_id: int
    purpose: str
    status: RequestStatus
    escrow: int  # wei still held: all while pending, not-yet-released while granted, else 0
    expiry: int  # unix time the grant stops being live (0 until granted)
    wrapped_key: bytes  # digest of the data key wrapped to the requester (zeros: unset)
    deadline: int  # unix time after which a pending request may be reclaimed
    paid: int = 0  # wei the requester paid (the offer's price)
    granted_at: int = 0  # unix time of the grant (0 until granted); the stream starts here

    def live_at(self, timestamp: int, purpose: str) -> bool:
        """What ``is_live`` answers in a block with this timestamp (same rules)."""
        return (
            self.status is RequestStatus.GRANTED
            and timestamp < self.expiry
            and purpose.encode("utf-8") == self.purpose.encode("utf-8")
        )


def _purpose(purpose: str) -> str:
    if not isinstance(purpose, str):
        raise ChainError("purpose must be a string")
    n = len(purpose.encode("utf-8"))
    if n == 0:
        raise ChainError("purpose must not be empty")
    if n > MAX_PURPOSE_BYTES:
        raise ChainError(f"purpose is {n} bytes; at most {MAX_PURPOSE_BYTES} are allowed")
    return purpose


def _uint(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**256:
        raise ChainError(f"{what} must be a non-negative integer")
    return value


def _topic_uint(value: int) -> bytes:
    return value.to_bytes(32, "big")


def _topic_address(address: str) -> bytes:
    return bytes(12) + bytes.fromhex(checksum(address)[2:])


class DataAgreementsClient(_Client):
    """Offer datasets, request them, grant/reject/revoke, move the payments.

    ``DataAgreementsClient(backend, address, account)``; ``account`` (an eth-account
    ``LocalAccount``) is needed only for transactions, not for the views.
    """

    artifact_name = "DataAgreements"

    # -- transactions ---------------------------------------------------------
    def offer(
        self,
        dataset: bytes,
        terms: bytes | None = None,
        *,
        price: int = 0,
        max_duration: int,
        response_window: int,
        auto_grant: bool = False,
        min_duration: int | None = None,
    ) -> tuple[int, Receipt]:
        """Offer a dataset (``dataset`` = SHA-256 of its manifest, ``terms`` = SHA-256
        of a terms document or None) for ``price`` wei per request; grants last at least
        ``min_duration`` (None: one day, or ``max_duration`` if shorter) and at most
        ``max_duration`` seconds; the owner has ``response_window`` seconds (≤ 30 days)
        to answer a request. Returns ``(offer_id, receipt)``.
        """
        max_d = _uint(max_duration, "max_duration")
        min_d = min(DEFAULT_MIN_DURATION, max_d) if min_duration is None else min_duration
        receipt = self._transact(
            "offer",
            [
                _hash32(dataset, "dataset digest"),
                _ZERO32 if terms is None else _hash32(terms, "terms digest"),
                _uint(price, "price"),
                _uint(min_d, "min_duration"),
                max_d,
                _uint(response_window, "response_window"),
                bool(auto_grant),
            ],
        )
        return int(self._event(receipt, "OfferCreated")["offer_id"]), receipt

    def close_offer(self, offer_id: int) -> Receipt:
        """Stop new requests for an offer (owner only); existing requests are unaffected."""
        return self._transact("close_offer", [_uint(offer_id, "offer id")])

    def request(self, offer_id: int, purpose: str, value: int | None = None) -> tuple[int, Receipt]:
        """Request an offer for ``purpose``, paying ``value`` wei (default: the offer's
        price, read first; the contract refuses any other amount). Returns
        ``(request_id, receipt)``; an auto-grant offer's request is already granted.
        """
        oid = _uint(offer_id, "offer id")
        if value is None:
            info = self.offer_info(oid)
            if info is None:
                raise ChainError(f"DataAgreements: unknown offer {oid}")
            value = info.price
        receipt = self._transact("request", [oid, _purpose(purpose)], value=_uint(value, "value"))
        return int(self._event(receipt, "Requested")["request_id"]), receipt

    def grant(self, request_id: int, expiry: int, wrapped_key: bytes | None = None) -> Receipt:
        """Grant a pending request until unix time ``expiry`` (owner only, before the
        deadline; now + min_duration ≤ ``expiry`` ≤ now + max_duration); ``wrapped_key``
        is the digest of the data key wrapped to the requester (None: set later). The
        escrow then streams to the owner until ``expiry`` (see :meth:`settle`).
        """
        key = _ZERO32 if wrapped_key is None else _hash32(wrapped_key, "wrapped key digest")
        return self._transact(
            "grant", [_uint(request_id, "request id"), _uint(expiry, "expiry"), key]
        )

    def reject(self, request_id: int) -> Receipt:
        """Reject a pending request (owner only); the requester is refunded (credited)."""
        return self._transact("reject", [_uint(request_id, "request id")])

    def reclaim(self, request_id: int) -> Receipt:
        """Take back the escrow of an unanswered request after its deadline (requester)."""
        return self._transact("reclaim", [_uint(request_id, "request id")])

    def cancel(self, request_id: int) -> Receipt:
        """Withdraw a pending request at any time (requester); the escrow is refunded."""
        return self._transact("cancel", [_uint(request_id, "request id")])

    def settle(self, request_id: int) -> tuple[int, Receipt]:
        """Credit a grant's owner the accrued part of its price (anyone may call);
        returns ``(wei released, receipt)``."""
        receipt = self._transact("settle", [_uint(request_id, "request id")])
        return int(self._event(receipt, "Settled")["released"]), receipt

    def revoke(self, request_id: int) -> Receipt:
        """Revoke a grant (owner only): not live from this block on; the owner is
        credited the accrued part of the price, the requester the rest."""
        return self._transact("revoke", [_uint(request_id, "request id")])

    def set_wrapped_key(self, request_id: int, wrapped_key: bytes) -> Receipt:
        """Record the wrapped data key digest of a granted request (owner only)."""
        return self._transact(
            "set_wrapped_key",
            [_uint(request_id, "request id"), _hash32(wrapped_key, "wrapped key digest")],
        )

    def withdraw(self) -> tuple[int, Receipt]:
        """Send the account its whole credited balance; returns ``(wei, receipt)``."""
        receipt = self._transact("withdraw", [])
        return int(self._event(receipt, "Withdrawn")["amount"]), receipt

    # -- views ----------------------------------------------------------------
    def is_live(self, request_id: int, purpose: str) -> bool:
        """Whether the request is, at the latest block, a live grant for ``purpose``."""
        if isinstance(purpose, str) and len(purpose.encode("utf-8")) > MAX_PURPOSE_BYTES:
            return False  # no request can carry such a purpose
        return bool(self._call("is_live", [_uint(request_id, "request id"), purpose]))

    def offer_info(self, offer_id: int) -> OfferInfo | None:
        """An offer, or None if there is no such offer."""
        oid = _uint(offer_id, "offer id")
        owner, dataset, terms, price, min_d, max_d, window, auto, is_open = self._call(
            "offer_info", [oid]
        )
        if int(owner, 16) == 0:
            return None
        return OfferInfo(
            oid, owner, bytes(dataset), bytes(terms), int(price), int(max_d), int(window),
            bool(auto), bool(is_open), int(min_d),
        )  # fmt: skip

    def request_info(self, request_id: int) -> RequestInfo | None:
        """A request, or None if there is no such request."""
        rid = _uint(request_id, "request id")
        requester, oid, purpose, status, escrow, expiry, key, deadline, paid, granted_at = (
            self._call("request_info", [rid])
        )
        if int(status) == 0:
            return None
        return RequestInfo(
            rid, requester, int(oid), str(purpose), RequestStatus(int(status)), int(escrow),
            int(expiry), bytes(key), int(deadline), int(paid), int(granted_at),
        )  # fmt: skip

    def settleable(self, request_id: int) -> int:
        """Wei of a grant's price accrued to the owner and not yet credited (at the
        latest block); what :meth:`settle` would release."""
        return int(self._call("settleable", [_uint(request_id, "request id")]))

    def balance_of(self, account: str) -> int:
        """Wei credited to ``account`` and not yet withdrawn."""
        return int(self._call("balance_of", [checksum(account, "account")]))

    def offer_count(self) -> int:
        return int(self._call("offer_count", []))

    def request_count(self) -> int:
        return int(self._call("request_count", []))

    def total_escrowed(self) -> int:
        """Wei held in escrow: pending requests and the unreleased part of grants."""
        return int(self._call("total_escrowed", []))

    def total_credited(self) -> int:
        """Wei credited to accounts and not yet withdrawn."""
        return int(self._call("total_credited", []))

    # -- history --------------------------------------------------------------
    def list_offers(
        self,
        *,
        owner: str | None = None,
        dataset: bytes | None = None,
        from_block: int = 0,
    ) -> list[OfferInfo]:
        """Offers (current state), oldest first, found through ``OfferCreated`` events;
        optionally only those of ``owner`` and/or for ``dataset``. ``from_block``: the
        deployment's ``deployed_at_block`` makes the scan cheaper.
        """
        topics: list[bytes | None] = [
            event_topic(self.artifact.abi, "OfferCreated"),
            None,
            None if owner is None else _topic_address(owner),
            None if dataset is None else _hash32(dataset, "dataset digest"),
        ]
        while topics[-1] is None:
            topics.pop()
        out: list[OfferInfo] = []
        for lg in self.backend.get_logs(self.address, topics, from_block=from_block):
            ev = decode_event(self.artifact.abi, "OfferCreated", lg.topics, lg.data)
            info = self.offer_info(int(ev["offer_id"]))
            if info is not None:
                out.append(info)
        return out

    def list_requests(
        self,
        *,
        offer_id: int | None = None,
        requester: str | None = None,
        from_block: int = 0,
    ) -> list[RequestInfo]:
        """Requests (current state), oldest first, found through ``Requested`` events;
        optionally only those for ``offer_id`` and/or by ``requester``.
        """
        topics: list[bytes | None] = [
            event_topic(self.artifact.abi, "Requested"),
            None,
            None if offer_id is None else _topic_uint(_uint(offer_id, "offer id")),
            None if requester is None else _topic_address(requester),
        ]
        while topics[-1] is None:
            topics.pop()
        out: list[RequestInfo] = []
        for lg in self.backend.get_logs(self.address, topics, from_block=from_block):
            ev = decode_event(self.artifact.abi, "Requested", lg.topics, lg.data)
            info = self.request_info(int(ev["request_id"]))
            if info is not None:
                out.append(info)
        return out
