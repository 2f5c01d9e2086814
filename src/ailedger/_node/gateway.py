"""The data gateway: who may fetch which encrypted dataset, decided on chain per request.

Checks, in order (docs/node.md §4): the request signature, timestamp and nonce
(``auth.py``, 401); the requester's Ed25519 key is the one IdentityRegistry binds to its
account and the identity is not revoked (401); the request id exists (404); it was made
by that account (403); its offer is this node's and names a dataset served here (404);
it is a live grant — granted, not revoked, not expired, for exactly the stated purpose
(403). Chain state is read at the latest block for every request; reads are cached only
while the chain head does not move (same block ⇒ same state), and expiry is compared
with the node's clock each time.
"""

from __future__ import annotations

import hashlib
import hmac
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .._chain._agreements import OfferInfo, RequestInfo, RequestStatus
from ..errors import Error, NotFoundError, WorkspaceError
from .auth import SignedRequest, UnauthenticatedError

if TYPE_CHECKING:
    from .._chain import ChainBackend
    from .._workspace import Workspace

__all__ = [
    "AgreementsView",
    "ChainAgreementsView",
    "DatasetCache",
    "ForbiddenError",
    "Grant",
    "GrantChecker",
    "MemoryAgreementsView",
    "RequesterIdentity",
    "ServedDataset",
    "record_wrap",
    "served_dataset",
]


class ForbiddenError(Error):
    """Authenticated, but no live grant covers this request (HTTP 403)."""


@dataclass(frozen=True)
class RequesterIdentity:
    """What IdentityRegistry says about an account."""

    account: str
    ed25519: bytes
    x25519: bytes
    revoked: bool


@dataclass(frozen=True)
class Grant:
    """A grant that was live for this request when it was checked."""

    request_id: int
    offer_id: int
    requester: str  # lowercase 0x hex
    requester_keyid: str
    requester_x25519: bytes
    purpose: str
    expiry: int
    dataset: str  # manifest digest, hex
    wrapped_key_digest: str | None  # hex, None when the grant names none


class AgreementsView(Protocol):
    """The chain facts the gateway needs (real: :class:`ChainAgreementsView`)."""

    def identity(self, account: str) -> RequesterIdentity | None: ...

    def request(self, request_id: int) -> RequestInfo | None: ...

    def offer(self, offer_id: int) -> OfferInfo | None: ...

    def chain_time(self) -> int | None:
        """The latest block's timestamp (None: no chain clock)."""
        ...


class GrantChecker:
    """Decides whether a signed request is covered by a live grant of ``owner``'s offer."""

    def __init__(
        self, view: AgreementsView, owner: str, clock: Callable[[], float] = time.time
    ) -> None:
        self._view = view
        self._owner = owner.lower()
        self._clock = clock

    def identify(self, req: SignedRequest) -> RequesterIdentity:
        """The requester's live identity, whose Ed25519 key MUST be the one that signed.

        Run before the nonce is recorded, so a self-made key cannot fill the replay cache.

        @raise UnauthenticatedError  no identity, revoked, or another key (401)
        """
        ident = self._view.identity(req.account)
        if ident is None:
            raise UnauthenticatedError(
                f"account {req.account} has no identity in IdentityRegistry: register it first"
            )
        if ident.revoked:
            raise UnauthenticatedError(
                f"the identity of account {req.account} was revoked on chain"
            )
        if not hmac.compare_digest(ident.ed25519, req.ed25519):
            raise UnauthenticatedError(
                f"the request was signed with a key that IdentityRegistry does not bind to"
                f" {req.account} (signed by someone else?)"
            )
        return ident

    def check(
        self,
        request_id: int,
        purpose: str,
        req: SignedRequest,
        ident: RequesterIdentity | None = None,
    ) -> Grant:
        """The live grant covering ``req`` for ``purpose``, or a refusal.

        @param ident  the result of :meth:`identify` for ``req`` (checked again if None)
        @raise UnauthenticatedError  the key is not the one registered for the account (401)
        @raise NotFoundError    no such request, or not an offer of this node (404)
        @raise ForbiddenError        not the requester, not granted, revoked, expired, or
                                another purpose (403)
        """
        if ident is None:
            ident = self.identify(req)
        if not 0 < request_id < 1 << 64:
            raise NotFoundError(f"no request {request_id} on chain")
        info = self._view.request(request_id)
        if info is None:
            raise NotFoundError(f"no request {request_id} on chain")
        if info.requester.lower() != req.account:
            raise ForbiddenError(
                f"request {request_id} was made by another account, not {req.account}"
            )
        offer = self._view.offer(info.offer_id)
        if offer is None or offer.owner.lower() != self._owner:
            raise NotFoundError(
                f"request {request_id} is for offer {info.offer_id}, which this node does not serve"
            )
        if info.status is not RequestStatus.GRANTED:
            why = {
                RequestStatus.PENDING: "is still pending: the owner has not granted it",
                RequestStatus.REJECTED: "was rejected",
                RequestStatus.RECLAIMED: "was withdrawn by the requester",
                RequestStatus.REVOKED: "was revoked by the owner",
            }[info.status]
            raise ForbiddenError(f"request {request_id} {why}")
        if purpose.encode("utf-8") != info.purpose.encode("utf-8"):
            raise ForbiddenError(
                f"request {request_id} was granted for purpose {info.purpose!r}, not {purpose!r}"
            )
        # Expired by either clock: the node's, or the chain's (blocks mined in a burst
        # run ahead of wall time, and the contract's is_live uses block time).
        now = max(int(self._clock()), self._view.chain_time() or 0)
        if not info.live_at(now, purpose):
            raise ForbiddenError(
                f"the grant of request {request_id} expired at unix time {info.expiry}"
            )
        wk = None if not any(info.wrapped_key) else info.wrapped_key.hex()
        return Grant(
            request_id,
            info.offer_id,
            req.account,
            req.keyid,
            ident.x25519,
            info.purpose,
            info.expiry,
            offer.dataset.hex(),
            wk,
        )


class ChainAgreementsView:
    """:class:`AgreementsView` over the deployed DataAgreements and IdentityRegistry.

    Every call first reads the chain head; cached answers are reused only while the
    head is the same block (state cannot differ within one block), so each request is
    decided on the state of the latest block at that moment.
    """

    def __init__(self, backend: ChainBackend, agreements: str, identities: str) -> None:
        from .._chain import DataAgreementsClient, IdentityRegistryClient

        self._da = DataAgreementsClient(backend, agreements)
        self._ids = IdentityRegistryClient(backend, identities)
        self._backend = backend
        self._lock = threading.Lock()
        self._block = -1
        self._cache: dict[tuple[str, object], Any] = {}

    def _cached(self, kind: str, key: object, fetch: Callable[[], Any]) -> Any:
        with self._lock:
            head = self._backend.block_number()
            if head != self._block:
                self._cache.clear()
                self._block = head
            k = (kind, key)
            if k not in self._cache:
                self._cache[k] = fetch()
            return self._cache[k]

    def identity(self, account: str) -> RequesterIdentity | None:
        def fetch() -> RequesterIdentity | None:
            i = self._ids.resolve(account)
            return (
                None if i is None else RequesterIdentity(i.account, i.ed25519, i.x25519, i.revoked)
            )

        r: RequesterIdentity | None = self._cached("id", account.lower(), fetch)
        return r

    def request(self, request_id: int) -> RequestInfo | None:
        r: RequestInfo | None = self._cached(
            "req", request_id, lambda: self._da.request_info(request_id)
        )
        return r

    def offer(self, offer_id: int) -> OfferInfo | None:
        r: OfferInfo | None = self._cached("offer", offer_id, lambda: self._da.offer_info(offer_id))
        return r

    def chain_time(self) -> int | None:
        t: int = self._cached("time", None, lambda: self._backend.block_timestamp(self._block))
        return t


@dataclass
class MemoryAgreementsView:
    """An in-memory :class:`AgreementsView` for tests and offline use."""

    identities: dict[str, RequesterIdentity] = field(default_factory=dict)
    requests: dict[int, RequestInfo] = field(default_factory=dict)
    offers: dict[int, OfferInfo] = field(default_factory=dict)

    def identity(self, account: str) -> RequesterIdentity | None:
        return self.identities.get(account.lower())

    def request(self, request_id: int) -> RequestInfo | None:
        return self.requests.get(request_id)

    def offer(self, offer_id: int) -> OfferInfo | None:
        return self.offers.get(offer_id)

    def chain_time(self) -> int | None:
        return None


# -- what a grant delivers ------------------------------------------------------------


@dataclass(frozen=True)
class ServedDataset:
    """An encrypted dataset as the gateway serves it (immutable: keyed by manifest digest)."""

    name: str
    version: int
    manifest_digest: str
    index_digest: str
    statement_index: int  # log index of its DATASET statement
    root: str
    files: tuple[dict[str, Any], ...]  # {path, sha256 (sealed blob), size (sealed bytes)}
    blob_sizes: dict[str, int]  # every blob a grantee may fetch: manifest, index, sealed files

    @property
    def total_bytes(self) -> int:
        return sum(self.blob_sizes.values())


def blob_file(ws: Workspace, digest: str) -> Path:
    """Where the workspace's LocalBlobStore keeps ``digest`` (``blobs/sha256/ab/<hex>``)."""
    return ws.path / "blobs" / "sha256" / digest[:2] / digest


_DB = "provenance.sqlite"
_DDL = (
    # Which registration a wrapped key (by its digest) was made from: the owner cannot
    # tell from the HPKE document, and the same data may be registered under two names
    # with two keys.
    "CREATE TABLE IF NOT EXISTS node_wraps (wrapped_digest TEXT PRIMARY KEY,"
    " dataset_name TEXT NOT NULL, version INTEGER NOT NULL) WITHOUT ROWID",
    # The registration a grant was first served from, so every later call for that
    # grant serves the same key and blobs.
    "CREATE TABLE IF NOT EXISTS node_grant_datasets (request_id INTEGER PRIMARY KEY,"
    " dataset_name TEXT NOT NULL, version INTEGER NOT NULL)",
)


def _db(ws: Workspace) -> sqlite3.Connection:
    try:
        db = sqlite3.connect(ws.path / _DB, timeout=30, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        for ddl in _DDL:
            db.execute(ddl)
    except sqlite3.Error as e:
        raise WorkspaceError(f"{ws.path / _DB}: {e}") from e
    return db


def record_wrap(ws: Workspace, wrapped_digest: str, name: str, version: int) -> None:
    """Remember that wrapped key ``wrapped_digest`` wraps the key of ``name`` v``version``."""
    db = _db(ws)
    try:
        db.execute(
            "INSERT OR REPLACE INTO node_wraps VALUES (?,?,?)", (wrapped_digest, name, version)
        )
    finally:
        db.close()


def _registration_for(ws: Workspace, grant: Grant) -> tuple[str, int] | None:
    """The registration this grant is bound to, if already known."""
    db = _db(ws)
    try:
        row = None
        if grant.wrapped_key_digest is not None:
            row = db.execute(
                "SELECT dataset_name, version FROM node_wraps WHERE wrapped_digest = ?",
                (grant.wrapped_key_digest,),
            ).fetchone()
        if row is None and grant.wrapped_key_digest is not None:
            # Wrapped outside `share grant` (the API): the owner's stored wraps say which.
            has = db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'encrypted_keys'"
            ).fetchone()
            for name, version, doc in db.execute(
                "SELECT dataset_name, version, wrapped_doc FROM encrypted_keys" if has else
                "SELECT 1, 1, 1 WHERE 0"
            ):  # fmt: skip
                if hashlib.sha256(str(doc).encode()).hexdigest() == grant.wrapped_key_digest:
                    row = (name, version)
                    break
        if row is None:
            row = db.execute(
                "SELECT dataset_name, version FROM node_grant_datasets WHERE request_id = ?",
                (grant.request_id,),
            ).fetchone()
    finally:
        db.close()
    return None if row is None else (str(row[0]), int(row[1]))


def _bind(ws: Workspace, grant: Grant, name: str, version: int) -> None:
    db = _db(ws)
    try:
        db.execute(
            "INSERT OR IGNORE INTO node_grant_datasets VALUES (?,?,?)",
            (grant.request_id, name, version),
        )
    finally:
        db.close()


_GrantKey = tuple[int, str | None, str]  # request id, wrapped-key digest, manifest digest


class DatasetCache:
    """Loaded :class:`ServedDataset` by (name, version): a registration never changes.

    Also remembers which registration each grant was served from, so a grantee's
    every later request skips the SQLite lookups of :func:`served_dataset`. That
    binding is as permanent as the ``node_grant_datasets`` row written for it; it is
    consulted only after the grant was checked live on chain for the request.
    """

    def __init__(self, limit: int = 64, grants: int = 4096) -> None:
        self._limit = limit
        self._grant_limit = grants
        self._items: dict[tuple[str, int], ServedDataset] = {}
        self._grants: dict[_GrantKey, tuple[str, int]] = {}

    def get(self, key: tuple[str, int]) -> ServedDataset | None:
        return self._items.get(key)

    def put(self, key: tuple[str, int], ds: ServedDataset) -> None:
        if len(self._items) >= self._limit:
            self._items.pop(next(iter(self._items)))
        self._items[key] = ds

    def bound(self, grant: Grant) -> tuple[str, int] | None:
        return self._grants.get((grant.request_id, grant.wrapped_key_digest, grant.dataset))

    def bind(self, grant: Grant, key: tuple[str, int]) -> None:
        if len(self._grants) >= self._grant_limit:
            self._grants.pop(next(iter(self._grants)))
        self._grants[(grant.request_id, grant.wrapped_key_digest, grant.dataset)] = key


def _load(ws: Workspace, name: str, version: int, manifest_digest: str) -> ServedDataset | None:
    from .._provenance.datasets import list_datasets
    from .._provenance.encrypted import encryption_of

    rec = next((r for r in list_datasets(ws, name) if r.version == version), None)
    if rec is None or rec.manifest_digest != manifest_digest:
        return None
    enc = encryption_of(ws, rec.name, rec.version)
    if enc is None:
        return None
    sizes: dict[str, int] = {}
    for d in (enc.manifest_digest, enc.index_digest, *(f.sealed_sha256 for f in enc.files)):
        try:
            sizes[d] = blob_file(ws, d).stat().st_size
        except OSError as e:
            raise NotFoundError(f"blob sha256:{d} of dataset {rec.name} is missing") from e
    files = tuple(
        {"path": f.path, "sha256": f.sealed_sha256, "size": f.sealed_size} for f in enc.files
    )
    return ServedDataset(
        rec.name, rec.version, rec.manifest_digest, enc.index_digest, rec.index, rec.root,
        files, sizes,
    )  # fmt: skip


def served_dataset(
    ws: Workspace,
    manifest_digest: str,
    grant: Grant | None = None,
    cache: DatasetCache | None = None,
) -> ServedDataset:
    """The encrypted registration a grant is served from.

    With ``grant``: the registration its wrapped key was made from (``node_wraps``,
    written by ``share grant``), else the one this grant was first served from, else
    the latest encrypted registration with that manifest — which is then bound to the
    grant. Without: the latest encrypted registration.

    @raise NotFoundError if no encrypted dataset here has that manifest
    """
    from .._provenance.datasets import list_datasets

    def load(key: tuple[str, int]) -> ServedDataset | None:
        ds = cache.get(key) if cache is not None else None
        if ds is None:
            ds = _load(ws, key[0], key[1], manifest_digest)
            if ds is not None and cache is not None:
                cache.put(key, ds)
        return ds

    if grant is not None:
        bound = cache.bound(grant) if cache is not None else None
        if bound is None:
            bound = _registration_for(ws, grant)
        if bound is not None:
            ds = load(bound)
            if ds is not None and ds.manifest_digest == manifest_digest:
                if cache is not None:
                    cache.bind(grant, bound)
                return ds
    for rec in reversed(list_datasets(ws)):
        if rec.manifest_digest != manifest_digest:
            continue
        ds = load((rec.name, rec.version))
        if ds is None:
            continue
        if grant is not None:
            _bind(ws, grant, ds.name, ds.version)
            if cache is not None:
                cache.bind(grant, (ds.name, ds.version))
        return ds
    raise NotFoundError(
        f"dataset sha256:{manifest_digest} is not served by this node (not"
        " registered here with --encrypt)"
    )


def wrapped_key_doc(ws: Workspace, ds: ServedDataset, grant: Grant) -> str:
    """The data key wrapped to the grantee's registered X25519 key.

    When the grant names a wrapped-key digest, that exact document is served from the
    blob store (every wrap is stored there): a recipient granted several times gets,
    for each grant, the document that grant names. Otherwise the stored document for
    the recipient is reused, or the key is wrapped now and stored (the cache).
    """
    from .._crypto.hpke_wrap import parse_wrapped_key, x25519_keyid
    from .._provenance.encrypted import wrap_dataset_key, wrapped_key_for

    kid = x25519_keyid(grant.requester_x25519)
    if grant.wrapped_key_digest is not None:
        try:
            doc = ws.blobs.get(grant.wrapped_key_digest).decode()
            wk = parse_wrapped_key(doc)
        except (Error, UnicodeDecodeError):
            pass  # not here: fall back; the grantee compares digests and refuses
        else:
            if wk.recipient_keyid == kid and wk.dataset_digest == ds.manifest_digest:
                return doc
    stored = wrapped_key_for(ws, ds.name, kid, ds.version)
    if stored is not None:
        return stored
    return wrap_dataset_key(ws, ds.name, grant.requester_x25519, version=ds.version)
