"""``ailedger share``: offer datasets under DataAgreements, request, grant, reject, revoke.

The contract holds the terms and the escrow; this module only turns names into digests,
wraps the data key to the grantee's registered X25519 key on grant, and prints state.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Annotated

import typer

from ..errors import ChainError, InputError, NotFoundError

# Module-level so typer can resolve the (string) annotations.
Home = Annotated[
    Path | None,
    typer.Option("--home", help="Workspace folder (default: $AILEDGER_HOME or ./.ailedger)."),
]


def register(app: typer.Typer) -> None:
    """Add the ``share`` commands to the root app."""
    from .app import _open, _out, _read_input

    share = typer.Typer(
        help="Share datasets under on-chain agreements (DataAgreements).", no_args_is_help=True
    )
    app.add_typer(share, name="share")

    @share.command("offer")
    def offer_cmd(
        name: Annotated[str, typer.Argument(help="A dataset registered with --encrypt.")],
        price: Annotated[int, typer.Option(help="Price per request, in wei.")] = 0,
        auto_grant: Annotated[
            bool, typer.Option("--auto-grant", help="Grant every paid request at once.")
        ] = False,
        terms: Annotated[
            Path | None, typer.Option(help="Terms document; its sha256 goes on chain.")
        ] = None,
        max_days: Annotated[float, typer.Option(help="Longest grant, in days.")] = 30.0,
        response_days: Annotated[
            float, typer.Option(help="Days the owner has to answer a request.")
        ] = 7.0,
        home: Home = None,
    ) -> None:
        """Offer a dataset: its manifest digest, terms digest and price go on chain."""
        from .._provenance.datasets import find_dataset
        from .._provenance.encrypted import encryption_of

        if price < 0 or max_days <= 0 or response_days <= 0:
            raise InputError("--price must be ≥ 0 and the durations > 0")
        with _open(home) as ws:
            rec = find_dataset(ws, name)
            if rec is None:
                raise NotFoundError(f"no dataset named {name!r}: run `ailedger data add` first")
            if encryption_of(ws, rec.name, rec.version) is None:
                # Nothing could ever be delivered: the node releases only sealed data
                # under a wrapped key, so requesters would pay for nothing.
                raise InputError(
                    f"dataset {name!r} is not encrypted: register it with"
                    f" `ailedger data add <path> --name {name} --encrypt` and offer that"
                )
            terms_digest = None
            if terms is not None:
                doc = _read_input(str(terms))
                terms_digest = bytes.fromhex(ws.blobs.put(doc))  # kept, so it can be shown
            oid, _ = ws.agreements().offer(
                bytes.fromhex(rec.manifest_digest),
                terms_digest,
                price=price,
                max_duration=int(max_days * 86400),
                response_window=int(response_days * 86400),
                auto_grant=auto_grant,
            )
            _out(f"offer {oid}: dataset {name} (sha256:{rec.manifest_digest[:16]}…), {price} wei")

    @share.command("request")
    def request_cmd(
        offer: Annotated[int, typer.Argument(help="Offer id.")],
        purpose: Annotated[str, typer.Option(help="What the data will be used for.")],
        home: Home = None,
    ) -> None:
        """Request access to an offer for a purpose; the price is escrowed by the contract."""
        with _open(home) as ws:
            da = ws.agreements()
            rid, _ = da.request(offer, purpose)
            info = da.request_info(rid)
            state = info.status.name.lower() if info else "?"
            _out(f"request {rid}: offer {offer}, purpose {purpose!r}, {state}")

    @share.command("grant")
    def grant_cmd(
        request: Annotated[int, typer.Argument(help="Request id.")],
        days: Annotated[
            float | None, typer.Option(help="Grant length in days (default: the longest).")
        ] = None,
        home: Home = None,
    ) -> None:
        """Grant a pending request: wraps the data key to the requester's registered key."""
        with _open(home) as ws:
            da = ws.agreements()
            req = da.request_info(request)
            if req is None:
                raise NotFoundError(f"no request {request}")
            off = da.offer_info(req.offer_id)
            assert off is not None
            if off.owner.lower() != ws.address.lower():
                # The contract refuses it too; say so before wrapping any key.
                raise ChainError(f"DataAgreements: not offer owner (offer {off.offer_id})")
            if days is not None and days <= 0:
                raise InputError("--days must be > 0")
            now = int(time.time())
            # The contract caps a grant at the offer's longest duration: print what holds.
            expiry = min(
                now + (off.max_duration if days is None else int(days * 86400)),
                now + off.max_duration,
            )
            wrapped = _wrap_for(ws, off.dataset, req.requester)
            digest = hashlib.sha256(wrapped.encode()).digest()
            da.grant(request, expiry, digest)
            until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expiry))
            _out(f"granted request {request} to {req.requester} until {until}")

    @share.command("reject")
    def reject_cmd(request: int, home: Home = None) -> None:
        """Reject a pending request; the requester is refunded."""
        with _open(home) as ws:
            ws.agreements().reject(request)
            _out(f"rejected request {request} (escrow refunded to the requester)")

    @share.command("revoke")
    def revoke_cmd(request: int, home: Home = None) -> None:
        """Revoke a grant: the gateway refuses it from now on; unused time is refunded."""
        with _open(home) as ws:
            ws.agreements().revoke(request)
            _out(f"revoked grant {request} (unused time is refunded to the requester)")

    @share.command("cancel")
    def cancel_cmd(request: int, home: Home = None) -> None:
        """Withdraw your own pending request; the escrow is refunded."""
        with _open(home) as ws:
            ws.agreements().cancel(request)
            _out(f"cancelled request {request} (escrow refunded; run `ailedger share withdraw`)")

    @share.command("settle")
    def settle_cmd(request: int, home: Home = None) -> None:
        """Credit the owner the part of a grant's price earned so far (anyone may call it)."""
        with _open(home) as ws:
            wei, _ = ws.agreements().settle(request)
            _out(f"settled request {request}: {wei} wei credited to the owner")

    @share.command("withdraw")
    def withdraw_cmd(home: Home = None) -> None:
        """Send this account's credited payments and refunds to it."""
        with _open(home) as ws:
            wei, _ = ws.agreements().withdraw()
            _out(f"withdrew {wei} wei to {ws.address}")

    @share.command("list")
    def list_cmd(home: Home = None) -> None:
        """Offers, requests and grants on this chain, with their state."""
        with _open(home) as ws:
            da = ws.agreements()
            me = ws.address.lower()
            for o in da.list_offers():
                mine = " (yours)" if o.owner.lower() == me else ""
                _out(
                    f"offer {o.offer_id}{mine}: dataset sha256:{o.dataset.hex()[:16]}…,"
                    f" {o.price} wei, {'auto-grant' if o.auto_grant else 'owner grants'},"
                    f" {'open' if o.open else 'closed'}"
                )
            for r in da.list_requests():
                who = "you" if r.requester.lower() == me else r.requester
                line = f"request {r.request_id}: offer {r.offer_id} by {who} for {r.purpose!r}"
                line += f", {r.status.name.lower()}"
                if r.expiry:
                    line += f" until {time.strftime('%Y-%m-%d', time.gmtime(r.expiry))}"
                _out(line)


def _wrap_for(ws: object, dataset: bytes, requester: str) -> str:
    """Wrap the dataset key to the requester's X25519 key from IdentityRegistry.

    The latest encrypted registration with the offer's manifest is used, and the node
    is told which (``record_wrap``): the same data registered under another name has
    another key, and the gateway must serve the registration this key opens.
    """
    from .._node.gateway import record_wrap
    from .._provenance.datasets import list_datasets
    from .._provenance.encrypted import encryption_of, wrap_dataset_key
    from .._workspace import Workspace

    assert isinstance(ws, Workspace)
    recs = [
        r
        for r in list_datasets(ws)
        if r.manifest_digest == dataset.hex() and encryption_of(ws, r.name, r.version) is not None
    ]
    if not recs:
        raise NotFoundError(
            f"dataset sha256:{dataset.hex()} is not registered here with --encrypt:"
            " there is no key to grant"
        )
    rec = recs[-1]
    ident = ws.identity_registry().resolve(requester)
    if ident is None or ident.revoked:
        raise ChainError(
            f"{requester} has no live identity in IdentityRegistry: it must run"
            " `ailedger identity register` before it can be granted a key"
        )
    doc = wrap_dataset_key(ws, rec.name, ident.x25519, version=rec.version)
    record_wrap(ws, hashlib.sha256(doc.encode()).hexdigest(), rec.name, rec.version)
    return doc
