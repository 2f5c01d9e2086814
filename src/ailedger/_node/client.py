"""Fetching a shared dataset from an owner's node: signed requests, verified decryption.

``fetch(ws, url, ...)`` is what ``ailedger data fetch`` runs. The fetcher trusts the
chain, not the node: the dataset digest comes from the on-chain offer, the wrapped-key
digest from the on-chain grant, the owner's Ed25519 key from IdentityRegistry (to check
the DATASET statement and its root), and every blob is checked against its digest while
it streams. Nothing is left in the output folder unless every check passed.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx
from cryptography.hazmat.primitives.asymmetric import ed25519, x25519

from .._provenance import types as vocab
from .._statements import dsse, intoto
from ..errors import ChainError, Error, InputError, NotFoundError, VerificationError
from . import auth

if TYPE_CHECKING:
    from .._provenance.encrypted import DecryptResult
    from .._workspace import Workspace

__all__ = ["FetchResult", "NodeClient", "NodeError", "fetch", "fetch_release", "parse_target"]

_READ = 1 << 20


class NodeError(Error):
    """The node refused a request or could not be reached; the message says which."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class NodeClient:
    """Signed HTTP requests to one node, as one identity (Ed25519 key + chain account)."""

    def __init__(
        self,
        url: str,
        key: ed25519.Ed25519PrivateKey,
        account: str,
        *,
        http: httpx.Client | None = None,
        timeout: float = 60.0,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise InputError(f"--from must be an http(s) URL, got {url!r}")
        self.url = url.rstrip("/")
        self._key = key
        self._account = account
        self._http = http or httpx.Client(timeout=timeout)
        self._own_http = http is None
        self._origin: str | None = None

    def close(self) -> None:
        if self._own_http:
            self._http.close()

    def __enter__(self) -> NodeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _fail(self, r: httpx.Response) -> NodeError:
        try:
            msg = str(r.json().get("error") or r.json().get("detail"))
        except (ValueError, AttributeError):
            msg = r.text[:200]
        return NodeError(f"node refused ({r.status_code}): {msg}", r.status_code)

    def info(self) -> dict[str, Any]:
        """``GET /node``: origin, account, verifier key, chain and contracts."""
        try:
            r = self._http.get(self.url + "/node")
        except httpx.HTTPError as e:
            raise NodeError(f"cannot reach the node at {self.url}: {e}") from e
        if r.status_code != 200:
            raise self._fail(r)
        out: dict[str, Any] = r.json()
        self._origin = str(out["origin"])
        return out

    def origin(self) -> str:
        if self._origin is None:
            self.info()
        assert self._origin is not None
        return self._origin

    def signed(self, path_and_query: str) -> httpx.Request:
        """A signed GET for ``path_and_query`` (already percent-encoded)."""
        req = self._http.build_request("GET", self.url + path_and_query)
        target = req.url.raw_path.decode("ascii")
        req.headers.update(
            auth.sign_headers(self._key, self._account, self.origin(), "GET", target)
        )
        return req

    def release(self, request_id: int, purpose: str) -> dict[str, Any]:
        """``GET /data/<id>?purpose=…``: the wrapped key and what to download."""
        req = self.signed(f"/data/{int(request_id)}?purpose={quote(purpose, safe='')}")
        try:
            r = self._http.send(req)
        except httpx.HTTPError as e:
            raise NodeError(f"cannot reach the node at {self.url}: {e}") from e
        if r.status_code != 200:
            raise self._fail(r)
        try:
            out: dict[str, Any] = r.json()
        except ValueError as e:
            raise VerificationError("the node's release is not JSON") from e
        return out

    @contextmanager
    def open_blob(
        self, request_id: int, purpose: str, digest: str, size: int
    ) -> Iterator[_BlobStream]:
        """Stream one granted blob: a reader that checks its length, not its digest.

        The caller MUST hash what it reads to the end and compare with ``digest``
        (``decrypt_with_wrapped_key`` with a sealed index does).
        """
        q = quote(purpose, safe="")
        req = self.signed(f"/data/{int(request_id)}/blob/{digest}?purpose={q}")
        try:
            r = self._http.send(req, stream=True)
        except httpx.HTTPError as e:
            raise NodeError(f"cannot reach the node at {self.url}: {e}") from e
        try:
            if r.status_code != 200:
                r.read()
                raise self._fail(r)
            yield _BlobStream(r, digest, size)
        finally:
            r.close()

    def download(self, request_id: int, purpose: str, digest: str, size: int, dest: Path) -> None:
        """Stream one granted blob into ``dest``, checking its length and SHA-256.

        @raise VerificationError if the bytes are short, long or not the digest
        """
        q = quote(purpose, safe="")
        req = self.signed(f"/data/{int(request_id)}/blob/{digest}?purpose={q}")
        h = hashlib.sha256()
        n = 0
        try:
            r = self._http.send(req, stream=True)
            try:
                if r.status_code != 200:
                    r.read()
                    raise self._fail(r)
                with open(dest, "xb") as f:
                    for chunk in r.iter_raw(_READ):
                        n += len(chunk)
                        if n > size:
                            raise VerificationError(
                                f"blob sha256:{digest} is longer than the {size} bytes announced"
                            )
                        h.update(chunk)
                        f.write(chunk)
            finally:
                r.close()
        except httpx.HTTPError as e:
            raise VerificationError(
                f"download of blob sha256:{digest} broke off after {n} of {size} bytes: {e}"
            ) from e
        if n != size:
            raise VerificationError(
                f"download of blob sha256:{digest} is truncated: {n} of {size} bytes"
            )
        if not hmac.compare_digest(h.hexdigest(), digest):
            raise VerificationError(f"blob sha256:{digest} arrived with other bytes (tampered)")


class _BlobStream:
    """A granted blob's body as it arrives, read in exact sizes (a blocking reader).

    Refuses more bytes than announced as soon as they arrive and a short body at its
    end, turning a broken connection into a VerificationError. It does not hash: the
    reader (``_decrypt_all``) hashes what it reads and compares with the sealed index.
    """

    def __init__(self, response: httpx.Response, digest: str, size: int) -> None:
        # Network-sized pieces (httpcore reads 64 KiB): re-chunking them in httpx
        # would copy every byte once more before read() joins them.
        self._it = response.iter_raw()
        self._digest = digest
        self._size = size
        self._n = 0
        self._rest = b""
        self._done = False

    def _next(self) -> bytes:
        try:
            chunk = next(self._it, b"")
        except httpx.HTTPError as e:
            raise VerificationError(
                f"download of blob sha256:{self._digest} broke off after {self._n} of"
                f" {self._size} bytes: {e}"
            ) from e
        if not chunk:
            self._done = True
            if self._n != self._size:
                raise VerificationError(
                    f"download of blob sha256:{self._digest} is truncated: {self._n} of"
                    f" {self._size} bytes"
                )
            return b""
        self._n += len(chunk)
        if self._n > self._size:
            raise VerificationError(
                f"blob sha256:{self._digest} is longer than the {self._size} bytes announced"
            )
        return chunk

    def read(self, n: int, /) -> bytes:
        """``n`` bytes, fewer only at the end of the body."""
        rest = self._rest
        if len(rest) >= n:
            self._rest = rest[n:]
            return rest[:n]
        parts = [rest] if rest else []
        have = len(rest)
        self._rest = b""
        while have < n and not self._done:
            chunk = self._next()
            if have + len(chunk) > n:
                # Split only the last piece: slicing the joined buffer would copy it all.
                cut = n - have
                chunk, self._rest = chunk[:cut], chunk[cut:]
            parts.append(chunk)
            have += len(chunk)
        if len(parts) == 1:
            return parts[0]
        return b"".join(parts)


def _hex64(v: Any, what: str) -> str:
    if not isinstance(v, str) or len(v) != 64 or any(c not in "0123456789abcdef" for c in v):
        raise VerificationError(f"the node's release has a malformed {what}")
    return v


def _check_statement(release: dict[str, Any], owner_ed25519: bytes, manifest: str) -> str:
    """Verify the owner's DATASET statement in the release; return its fingerprint root."""
    try:
        env = json.loads(release["statement"]["envelope"])
    except (KeyError, TypeError, ValueError) as e:
        raise VerificationError("the node's release has no DATASET statement") from e
    kid = hashlib.sha256(owner_ed25519).hexdigest()
    payload, _ = dsse.verify(env, {kid: owner_ed25519})
    try:
        st = json.loads(payload)
        ok = st["predicateType"] == vocab.DATASET and any(
            s.get("digest", {}).get("sha256") == manifest for s in st["subject"]
        )
        root = st["predicate"]["fingerprint"]["root"]
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise VerificationError("the DATASET statement in the release is malformed") from e
    if not ok:
        raise VerificationError("the DATASET statement in the release is for another dataset")
    return _hex64(root, "fingerprint root")


def fetch_release(
    client: NodeClient,
    request_id: int,
    purpose: str,
    x25519_private: x25519.X25519PrivateKey,
    out_dir: str | os.PathLike[str],
    *,
    dataset_digest: str,
    wrapped_key_digest: str | None,
    owner_ed25519: bytes | None,
) -> tuple[DecryptResult, dict[str, Any]]:
    """Ask for the release, download every blob, decrypt and verify into ``out_dir``.

    @param dataset_digest      the manifest digest the on-chain offer names
    @param wrapped_key_digest  the digest the on-chain grant names (None: none named)
    @param owner_ed25519       the owner's key from IdentityRegistry: the DATASET
                               statement must verify with it (its root is then required)
    @return the decryption result and the release document
    @raise VerificationError on anything that does not match; ``out_dir`` is untouched
    """
    from .._provenance.encrypted import decrypt_with_wrapped_key

    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out} exists and is not an empty folder: choose a new output folder")
    rel = client.release(request_id, purpose)
    manifest = _hex64((rel.get("manifest") or {}).get("sha256"), "manifest digest")
    if not hmac.compare_digest(manifest, dataset_digest):
        raise VerificationError(
            f"the node released dataset sha256:{manifest}, not the offered sha256:{dataset_digest}"
        )
    doc = rel.get("wrapped_key")
    if not isinstance(doc, str):
        raise VerificationError("the node's release has no wrapped key")
    if wrapped_key_digest is not None and not hmac.compare_digest(
        hashlib.sha256(doc.encode()).hexdigest(), wrapped_key_digest
    ):
        raise VerificationError(
            "the wrapped key from the node is not the one the on-chain grant names (tampered?)"
        )
    root = None if owner_ed25519 is None else _check_statement(rel, owner_ed25519, manifest)
    index = _hex64((rel.get("sealed_index") or {}).get("sha256"), "sealed index digest")
    wanted: dict[str, int] = {}
    try:
        wanted[manifest] = int(rel["manifest"]["size"])
        wanted[index] = int(rel["sealed_index"]["size"])
        paths = {str(f["path"]): _hex64(f["sha256"], "file digest") for f in rel["files"]}
        for f in rel["files"]:
            wanted[str(f["sha256"])] = int(f["size"])
    except (KeyError, TypeError, ValueError) as e:
        raise VerificationError("the node's release is malformed") from e
    parent = out.absolute().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=parent, prefix=f".{out.name}.fetching-"))
    except OSError as e:
        raise InputError(f"cannot create {out}: {e.strerror or e}") from e
    try:
        for digest in (manifest, index):
            client.download(request_id, purpose, digest, wanted[digest], staging / digest)

        # Sealed files are decrypted as they arrive, in one pass: each blob's bytes are
        # hashed (checked against the sealed index at its end), authenticated chunk by
        # chunk, and only authenticated plaintext is written, into a staging folder that
        # becomes ``out`` once every file, digest and the fingerprint checked out.
        def opener(digest: str) -> Callable[[], AbstractContextManager[_BlobStream]]:
            return lambda: client.open_blob(request_id, purpose, digest, wanted[digest])

        result = decrypt_with_wrapped_key(
            doc,
            x25519_private,
            {p: opener(d) for p, d in paths.items()},
            (staging / manifest).read_bytes(),
            out_dir=out,
            expected_root=root,
            sealed_index=(staging / index).read_bytes(),
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return result, rel


def parse_target(target: str) -> tuple[str, int]:
    """``N`` or ``offer:N`` → ("offer", N); ``request:N`` → ("request", N)."""
    kind, _, num = target.rpartition(":")
    kind = kind or "offer"
    if kind not in ("offer", "request") or not num.isdigit():
        raise InputError(f"not an offer or request: {target!r} (use N, offer:N or request:N)")
    return kind, int(num)


@dataclass(frozen=True)
class FetchResult:
    """What ``fetch`` did: the verified data and the two log records of the access."""

    out_dir: str
    request_id: int
    offer_id: int
    purpose: str
    files: int
    bytes: int
    root: str
    manifest_digest: str
    provider_access_index: int | None  # in the owner's log
    access_index: int  # in the fetcher's own log


def fetch(
    ws: Workspace,
    url: str,
    target: str,
    out_dir: str | os.PathLike[str],
    *,
    purpose: str | None = None,
    http: httpx.Client | None = None,
) -> FetchResult:
    """Fetch, decrypt and verify a dataset granted to this workspace; record the access.

    ``target`` is an offer (``N``/``offer:N``: this account's live grant on it) or a
    request (``request:N``). The grant, offer and owner identity are read from the chain.
    """
    from .._chain import DataAgreementsClient, RequestStatus

    kind, num = parse_target(target)
    contracts = ws.deployment.contracts
    if "DataAgreements" not in contracts:
        raise ChainError("this workspace's chain has no DataAgreements contract")
    da = DataAgreementsClient(ws.chain, contracts["DataAgreements"])
    now = int(time.time())
    if kind == "request":
        info = da.request_info(num)
        if info is None:
            raise NotFoundError(f"no request {num} on chain")
    else:
        mine = [
            r
            for r in da.list_requests(offer_id=num, requester=ws.address)
            if r.status is RequestStatus.GRANTED
            and r.expiry > now
            and (purpose is None or r.purpose == purpose)
        ]
        if not mine:
            p = "" if purpose is None else f" for purpose {purpose!r}"
            raise NotFoundError(
                f"no live grant of offer {num} to {ws.address}{p}:"
                " run `ailedger share request` and wait for the owner's grant"
            )
        if purpose is None and len({r.purpose for r in mine}) > 1:
            raise InputError(f"several live grants of offer {num}: choose one with --purpose")
        info = mine[-1]
    use = info.purpose if purpose is None else purpose
    offer = da.offer_info(info.offer_id)
    if offer is None:
        raise NotFoundError(f"no offer {info.offer_id} on chain")
    owner = ws.identity_registry().resolve(offer.owner)
    if owner is None or owner.revoked:
        raise VerificationError(f"the offer's owner {offer.owner} has no live identity on chain")
    wk = info.wrapped_key.hex() if any(info.wrapped_key) else None
    with NodeClient(url, ws._identity.ed25519, ws.address, http=http) as client:
        node = client.info()
        if str(node.get("account", "")).lower() != offer.owner.lower():
            raise VerificationError(
                f"the node at {url} is {node.get('account')}, not the offer's owner {offer.owner}"
            )
        result, rel = fetch_release(
            client,
            info.request_id,
            use,
            ws._identity.x25519,
            out_dir,
            dataset_digest=offer.dataset.hex(),
            wrapped_key_digest=wk,
            owner_ed25519=owner.ed25519,
        )
    st = intoto.statement(
        [{"name": f"dataset:sha256:{result.manifest_digest}",
          "digest": vocab.digest(result.manifest_digest)}],
        vocab.DATA_ACCESS,
        {
            "role": "recipient",
            "dataset": {"root": result.root, "files": result.files, "bytes": result.bytes},
            "provider": {"account": offer.owner, "keyid": hashlib.sha256(owner.ed25519).hexdigest(),
                         "node": url},
            "requester": {"account": ws.address.lower(), "keyid": ws.keyid},
            "agreement": {
                "chainId": ws.chain.chain_id,
                "contract": contracts["DataAgreements"],
                "requestId": info.request_id,
                "offerId": info.offer_id,
                "purpose": use,
                "expiry": info.expiry,
            },
            "accessedAt": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "delivered": {
                "wrappedKey": vocab.digest(hashlib.sha256(rel["wrapped_key"].encode()).hexdigest()),
                "manifest": vocab.digest(result.manifest_digest),
                "sealedIndex": vocab.digest(rel["sealed_index"]["sha256"]),
                "files": result.files,
                "bytes": sum(int(f["size"]) for f in rel["files"]),
            },
            "providerRecord": rel.get("access"),
        },
    )  # fmt: skip
    idx = ws.record(st)
    pa = (rel.get("access") or {}).get("index")
    return FetchResult(
        result.out_dir, info.request_id, info.offer_id, use, result.files, result.bytes,
        result.root, result.manifest_digest, pa if isinstance(pa, int) else None, idx,
    )  # fmt: skip
