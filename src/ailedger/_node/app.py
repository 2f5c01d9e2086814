"""The HTTP node: the log as C2SP tlog-tiles, receipts, blobs, and the data gateway.

``create_app(home)`` builds the FastAPI application over one workspace folder. Every
endpoint is ``async`` and runs on the event loop's thread: the workspace (SQLite log,
embedded chain) is opened lazily on that thread and used only there, which is what
SQLite connections require; blob bodies are streamed in 1 MiB reads (memory is flat
in the dataset size). See docs/node.md.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from .._provenance import types as vocab
from .._statements import intoto
from ..errors import ChainError, Error, InputError, NotFoundError
from . import auth, gateway, public, tiles

if TYPE_CHECKING:
    from .._workspace import Workspace

STREAM_CHUNK = 1 << 20
_HEX64 = re.compile(r"[0-9a-f]{64}")
_IMMUTABLE = "public, max-age=31536000, immutable"
_OCTETS = "application/octet-stream"


def _status(e: Error) -> int:
    if isinstance(e, auth.UnauthenticatedError):
        return 401
    if isinstance(e, gateway.ForbiddenError):
        return 403
    if isinstance(e, NotFoundError):
        return 404
    if isinstance(e, InputError):
        return 400
    if isinstance(e, ChainError):
        return 503
    return 500


def _now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class _State:
    home: Path
    view: gateway.AgreementsView | None
    clock: Callable[[], float]
    ws: Workspace | None = None
    tile_reader: tiles.TileReader | None = None
    nonces: auth.NonceCache | None = None
    checker: gateway.GrantChecker | None = None
    agreement: dict[str, Any] | None = None
    public_db: sqlite3.Connection | None = None
    datasets: gateway.DatasetCache = field(default_factory=gateway.DatasetCache)

    def workspace(self) -> Workspace:
        if self.ws is None:
            from .._workspace import Workspace

            self.ws = Workspace.open(self.home)
        return self.ws

    def reader(self) -> tiles.TileReader:
        if self.tile_reader is None:
            self.tile_reader = tiles.TileReader(self.workspace().path / "log.sqlite")
        return self.tile_reader

    def nonce_cache(self) -> auth.NonceCache:
        if self.nonces is None:
            self.nonces = auth.NonceCache(self.workspace().path / "provenance.sqlite")
        return self.nonces

    def public(self) -> sqlite3.Connection:
        if self.public_db is None:
            self.public_db = public.connect(self.workspace().path)
        return self.public_db

    def grants(self) -> gateway.GrantChecker:
        if self.checker is None:
            ws = self.workspace()
            view = self.view
            self.agreement = {"chainId": None, "contract": None}
            if view is None:
                contracts = ws.deployment.contracts
                if "DataAgreements" not in contracts:
                    raise ChainError(
                        "this node's chain deployment has no DataAgreements contract:"
                        " run `ailedger share offer` (it deploys it) first"
                    )
                ws.registry()  # validates chain id and code once
                view = gateway.ChainAgreementsView(
                    ws.chain, contracts["DataAgreements"], contracts["IdentityRegistry"]
                )
                self.agreement = {
                    "chainId": ws.chain.chain_id,
                    "contract": contracts["DataAgreements"],
                }
            self.checker = gateway.GrantChecker(view, ws.address, self.clock)
        return self.checker

    def close(self) -> None:
        for thing in (self.tile_reader, self.nonces, self.public_db, self.ws):
            if thing is not None:
                thing.close()
        self.tile_reader = self.nonces = self.public_db = self.ws = None


def _target(request: Request) -> str:
    """The request target exactly as sent (what the signature covers)."""
    raw: bytes = request.scope.get("raw_path") or request.url.path.encode()
    qs: bytes = request.scope.get("query_string") or b""
    return (raw + (b"?" + qs if qs else b"")).decode("latin-1")


async def _stream_file(path: Path, size: int) -> AsyncIterator[bytes]:
    left = size
    with open(path, "rb") as f:
        while left > 0:
            chunk = f.read(min(STREAM_CHUNK, left))
            if not chunk:
                return  # shortened on disk meanwhile: the client sees a short body
            left -= len(chunk)
            yield chunk


def _blob_response(ws: Workspace, digest: str) -> StreamingResponse:
    if not _HEX64.fullmatch(digest):
        raise NotFoundError(f"not a lowercase hex sha256 digest: {digest!r}")
    path = gateway.blob_file(ws, digest)
    try:
        size = path.stat().st_size
    except OSError:
        raise NotFoundError(f"no blob sha256:{digest}") from None
    return StreamingResponse(
        _stream_file(path, size),
        media_type=_OCTETS,
        headers={"Content-Length": str(size), "Cache-Control": _IMMUTABLE},
    )


def create_app(
    home: str | Path,
    *,
    view: gateway.AgreementsView | None = None,
    clock: Callable[[], float] = time.time,
) -> FastAPI:
    """The node application for the workspace at ``home``.

    @param view   where grants are read (default: the workspace's chain deployment);
                  tests pass a :class:`gateway.MemoryAgreementsView`
    @param clock  the node's clock (timestamps, expiry)
    """
    state = _State(Path(home), view, clock)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            state.close()

    app = FastAPI(
        lifespan=lifespan,
        title="ailedger node",
        version="1",
        description="A workspace's log as C2SP tlog-tiles, receipts, blobs, and the data"
        " gateway for datasets shared under DataAgreements. See docs/node.md.",
    )
    app.state.node = state

    @app.exception_handler(Error)
    async def _error(request: Request, exc: Error) -> JSONResponse:
        code = _status(exc)
        return JSONResponse({"error": str(exc), "status": code}, status_code=code)

    # -- log ------------------------------------------------------------------------

    @app.get("/node", summary="Who this node is")
    async def node_info() -> dict[str, Any]:
        ws = state.workspace()
        contracts = ws.chain_config.get("deployment", {}).get("contracts", {})
        return {
            "origin": ws.origin,
            "verifier_key": ws.verifier_key,
            "account": ws.address,
            "keyid": ws.keyid,
            "chain_id": ws.chain_config.get("chain_id"),
            "contracts": contracts,
        }

    @app.get("/checkpoint", summary="The signed checkpoint (C2SP tlog-checkpoint)")
    async def checkpoint() -> Response:
        note = state.workspace().log.checkpoint()  # signs the current tree if it grew
        return Response(
            note,
            media_type="text/plain; charset=utf-8",
            headers={"Cache-Control": "public, max-age=2"},
        )

    @app.get("/tile/{level}/{rest:path}", summary="A tlog-tiles hash tile or entry bundle")
    async def tile(level: str, rest: str) -> Response:
        ref = tiles.parse_tile_path(level, rest)
        reader = state.reader()
        data = reader.bundle(ref) if ref.level is None else reader.tile(ref)
        return Response(data, media_type=_OCTETS, headers={"Cache-Control": _IMMUTABLE})

    @app.get("/receipt/{index}", summary="tlog-proof@v1 receipt of a log entry")
    async def receipt(index: int) -> Response:
        if index < 0:
            raise NotFoundError(f"no entry {index}")
        ws = state.workspace()
        if index >= ws.log.size:
            raise NotFoundError(f"no entry {index}: the log has {ws.log.size} entries")
        return Response(ws.receipt(index), media_type="text/plain; charset=utf-8")

    @app.get("/blob/sha256/{digest}", summary="A public blob by SHA-256 (streamed)")
    async def blob(digest: str) -> StreamingResponse:
        # Allow-list only (public.py): sealed data, keys, manifests of encrypted datasets
        # and private blobs are reachable only through a live grant on /data/....
        ws = state.workspace()
        if not _HEX64.fullmatch(digest) or not public.is_public(state.public(), digest):
            raise NotFoundError(f"no public blob sha256:{digest} on this node")
        return _blob_response(ws, digest)

    @app.get(
        "/swarm/{swarm_id}/round/{round}/contribution",
        summary="This member's signed contribution to a swarm round (DSSE envelope)",
    )
    async def swarm_contribution(swarm_id: int, round: int) -> Response:
        # Public like /blob: the envelope is a log entry (tiles serve it too) and its blob
        # is on the allow-list; this route only finds it by (swarm, round). docs/swarm.md.
        from .._swarm import contribution

        if not (0 <= swarm_id < 1 << 63 and 0 <= round < 1 << 63):  # SQLite integers
            raise NotFoundError(f"no contribution to swarm {swarm_id} round {round}")
        env = contribution.served(state.workspace(), swarm_id, round)
        return Response(env, media_type="application/json")

    # -- gateway --------------------------------------------------------------------

    async def authorise(request: Request, request_id: int, purpose: str) -> gateway.Grant:
        ws = state.workspace()
        # These GETs take no body: refuse one from its headers, before reading a byte of
        # it (an unauthenticated peer could otherwise stream gigabytes into memory).
        length = request.headers.get("content-length")
        if request.headers.get("transfer-encoding") is not None or (
            length is not None and length.strip() != "0"
        ):
            raise InputError("a request to /data/... must not have a body")
        signed = auth.verify_request(
            request.headers, ws.origin, request.method, _target(request), b"", now=state.clock()
        )
        checker = state.grants()
        # Identity before nonce: only keys IdentityRegistry binds can use the cache.
        ident = checker.identify(signed)
        state.nonce_cache().check_and_add(signed, now=state.clock())
        if not purpose:
            raise InputError("the purpose query parameter is required")
        return checker.check(request_id, purpose, signed, ident)

    @app.get("/data/{request_id}", summary="Release a dataset to a live grant (signed)")
    async def data(request: Request, request_id: int, purpose: str = "") -> dict[str, Any]:
        grant = await authorise(request, request_id, purpose)
        ws = state.workspace()
        ds = gateway.served_dataset(ws, grant.dataset, grant, state.datasets)
        doc = gateway.wrapped_key_doc(ws, ds, grant)
        doc_digest = hashlib.sha256(doc.encode()).hexdigest()
        entry = ws.log.get(ds.statement_index)
        index = _coalesced_access(state.public(), grant, doc_digest, state.clock())
        if index is None:
            access = _access_statement(ws, state.agreement or {}, grant, ds, doc_digest)
            index = ws.record(access)
            _remember_access(state.public(), grant, doc_digest, index, state.clock())
        return {
            "type": "ailedger/data-release/v1",
            "request_id": grant.request_id,
            "offer_id": grant.offer_id,
            "purpose": grant.purpose,
            "expiry": grant.expiry,
            "dataset": {"sha256": ds.manifest_digest},
            "root": ds.root,
            "wrapped_key": doc,
            "manifest": {"sha256": ds.manifest_digest, "size": ds.blob_sizes[ds.manifest_digest]},
            "sealed_index": {"sha256": ds.index_digest, "size": ds.blob_sizes[ds.index_digest]},
            "files": list(ds.files),
            "statement": {"index": ds.statement_index, "envelope": entry.decode()},
            "access": {"index": index},
        }

    @app.get("/data/{request_id}/blob/{digest}", summary="A blob of a granted dataset (signed)")
    async def data_blob(
        request: Request, request_id: int, digest: str, purpose: str = ""
    ) -> StreamingResponse:
        grant = await authorise(request, request_id, purpose)
        ws = state.workspace()
        ds = gateway.served_dataset(ws, grant.dataset, grant, state.datasets)
        if digest not in ds.blob_sizes:
            raise NotFoundError(f"blob sha256:{digest} is not part of the granted dataset")
        return _blob_response(ws, digest)

    return app


ACCESS_COALESCE = 600  # seconds: one access statement per grant and key per window
_ACCESS_DDL = (
    "CREATE TABLE IF NOT EXISTS node_access (request_id INTEGER PRIMARY KEY,"
    " wrapped_digest TEXT NOT NULL, log_index INTEGER NOT NULL, at REAL NOT NULL)"
)


def _coalesced_access(
    db: sqlite3.Connection, grant: gateway.Grant, wrapped_digest: str, now: float
) -> int | None:
    """The access statement already recorded for this grant within the window, if any.

    A grantee re-fetching in a loop would otherwise append one statement per call to
    the owner's log; the first release in each window is recorded, later ones within
    it point at that statement (docs/node.md §5).
    """
    db.execute(_ACCESS_DDL)
    row = db.execute(
        "SELECT wrapped_digest, log_index, at FROM node_access WHERE request_id = ?",
        (grant.request_id,),
    ).fetchone()
    if row is None or row[0] != wrapped_digest or not 0 <= now - float(row[2]) < ACCESS_COALESCE:
        return None
    return int(row[1])


def _remember_access(
    db: sqlite3.Connection, grant: gateway.Grant, wrapped_digest: str, index: int, now: float
) -> None:
    db.execute(
        "INSERT OR REPLACE INTO node_access VALUES (?,?,?,?)",
        (grant.request_id, wrapped_digest, index, now),
    )


def _access_statement(
    ws: Workspace,
    agreement: dict[str, Any],
    grant: gateway.Grant,
    ds: gateway.ServedDataset,
    wrapped_digest: str,
) -> dict[str, Any]:
    """The provider-side DATA_ACCESS statement (shape in docs/node.md §5)."""
    return intoto.statement(
        [{"name": vocab.dataset_subject_name(ds.name), "digest": vocab.digest(ds.manifest_digest)}],
        vocab.DATA_ACCESS,
        {
            "role": "provider",
            "dataset": {"name": ds.name, "version": ds.version, "root": ds.root},
            "provider": {"account": ws.address, "keyid": ws.keyid},
            "requester": {"account": grant.requester, "keyid": grant.requester_keyid},
            "agreement": {
                "chainId": agreement.get("chainId"),
                "contract": agreement.get("contract"),
                "requestId": grant.request_id,
                "offerId": grant.offer_id,
                "purpose": grant.purpose,
                "expiry": grant.expiry,
            },
            "accessedAt": _now_rfc3339(),
            "delivered": {
                "wrappedKey": vocab.digest(wrapped_digest),
                "manifest": vocab.digest(ds.manifest_digest),
                "sealedIndex": vocab.digest(ds.index_digest),
                "files": len(ds.files),
                "bytes": ds.total_bytes,
            },
        },
    )
