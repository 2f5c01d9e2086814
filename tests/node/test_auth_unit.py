"""Request signing, the replay cache and the grant decision, without a chain or server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from ailedger import Workspace
from ailedger._chain._agreements import OfferInfo, RequestInfo, RequestStatus
from ailedger._node.auth import NonceCache, UnauthenticatedError, sign_headers, verify_request
from ailedger._node.gateway import (
    ForbiddenError,
    GrantChecker,
    MemoryAgreementsView,
    RequesterIdentity,
)
from ailedger.errors import NotFoundError

OWNER = "0x" + "11" * 20
ME = "0x" + "22" * 20
KEY = ed25519.Ed25519PrivateKey.generate()
PUB = KEY.public_key().public_bytes_raw()


def _signed(now: int | None = None, nonce: str | None = None):  # type: ignore[no-untyped-def]
    h = sign_headers(KEY, ME, "aud", "GET", "/data/1?purpose=p", now=now, nonce=nonce)
    return verify_request(h, "aud", "GET", "/data/1?purpose=p", b"")


def test_signature_covers_every_field() -> None:
    h = sign_headers(KEY, ME, "aud", "GET", "/data/1?purpose=p")
    assert verify_request(h, "aud", "GET", "/data/1?purpose=p", b"").account == ME
    for aud, method, target, body in [
        ("other", "GET", "/data/1?purpose=p", b""),
        ("aud", "POST", "/data/1?purpose=p", b""),
        ("aud", "GET", "/data/1?purpose=q", b""),
        ("aud", "GET", "/data/1?purpose=p", b"x"),
    ]:
        with pytest.raises(UnauthenticatedError, match="bad request signature"):
            verify_request(h, aud, method, target, body)
    for field, value in [("AILedger-Account", "0x" + "33" * 20), ("AILedger-Nonce", "0" * 32),
                         ("AILedger-Timestamp", str(int(h["AILedger-Timestamp"]) + 1))]:  # fmt: skip
        with pytest.raises(UnauthenticatedError):
            verify_request({**h, field: value}, "aud", "GET", "/data/1?purpose=p", b"")
    for field, value in [("AILedger-Key", "zz"), ("AILedger-Nonce", "short"),
                         ("AILedger-Account", "nope"), ("AILedger-Timestamp", "-5")]:  # fmt: skip
        with pytest.raises(UnauthenticatedError):
            verify_request({**h, field: value}, "aud", "GET", "/data/1?purpose=p", b"")


def test_timestamp_window() -> None:
    t = int(time.time())
    _signed(now=t - 299)
    with pytest.raises(UnauthenticatedError, match="stale"):
        _signed(now=t - 400)
    with pytest.raises(UnauthenticatedError, match="stale"):
        _signed(now=t + 400)


def test_nonce_cache_refuses_replays_across_restarts_and_is_bounded(tmp_path) -> None:
    db = tmp_path / "n.sqlite"
    c = NonceCache(db)
    r = _signed()
    c.check_and_add(r)
    with pytest.raises(UnauthenticatedError, match="replayed"):
        c.check_and_add(r)
    c.close()
    c2 = NonceCache(db)
    with pytest.raises(UnauthenticatedError, match="replayed"):
        c2.check_and_add(r)
    # Entries expire after the window, so the table stays bounded by time.
    c2.check_and_add(_signed(), now=time.time() + 10_000)
    small = NonceCache(None, limit=2)
    small.check_and_add(_signed())
    small.check_and_add(_signed())
    with pytest.raises(UnauthenticatedError, match="full"):
        small.check_and_add(_signed())


def _view(status: RequestStatus = RequestStatus.GRANTED, expiry: int | None = None,
          requester: str = ME, owner: str = OWNER, revoked: bool = False) -> MemoryAgreementsView:  # fmt: skip
    v = MemoryAgreementsView()
    v.identities[ME] = RequesterIdentity(ME, PUB, b"x" * 32, revoked)
    v.offers[1] = OfferInfo(1, owner, b"\x01" * 32, b"\x00" * 32, 0, 10, 10, False, True)
    exp = int(time.time()) + 100 if expiry is None else expiry
    v.requests[7] = RequestInfo(7, requester, 1, "p", status, 0, exp, b"\x02" * 32, 0)
    return v


def test_grant_checker_decisions() -> None:
    r = _signed()
    g = GrantChecker(_view(), OWNER).check(7, "p", r)
    assert (g.dataset, g.wrapped_key_digest, g.requester) == ("01" * 32, "02" * 32, ME)
    cases = [
        (_view(), 8, "p", NotFoundError, "no request"),
        (_view(), 7, "q", ForbiddenError, "purpose"),
        (_view(expiry=int(time.time()) - 1), 7, "p", ForbiddenError, "expired"),
        (_view(RequestStatus.REVOKED), 7, "p", ForbiddenError, "revoked"),
        (_view(RequestStatus.PENDING), 7, "p", ForbiddenError, "pending"),
        (_view(RequestStatus.REJECTED), 7, "p", ForbiddenError, "rejected"),
        (_view(requester="0x" + "44" * 20), 7, "p", ForbiddenError, "another account"),
        (_view(owner="0x" + "55" * 20), 7, "p", NotFoundError, "does not serve"),
        (_view(revoked=True), 7, "p", UnauthenticatedError, "revoked"),
        (MemoryAgreementsView(), 7, "p", UnauthenticatedError, "no identity"),
    ]
    for view, rid, purpose, exc, msg in cases:
        with pytest.raises(exc, match=msg):
            GrantChecker(view, OWNER).check(rid, purpose, r)
    other = ed25519.Ed25519PrivateKey.generate()
    h = sign_headers(other, ME, "aud", "GET", "/x")
    with pytest.raises(UnauthenticatedError, match="someone else"):
        GrantChecker(_view(), OWNER).check(7, "p", verify_request(h, "aud", "GET", "/x", b""))


def test_serve_cli_prints_where_it_listens(tmp_path) -> None:
    Workspace.init(tmp_path / "ws", name="t").close()
    env = {**os.environ, "AILEDGER_HOME": str(tmp_path / "ws")}
    p = subprocess.Popen([sys.executable, "-m", "ailedger", "serve", "--port", "0"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert p.stdout is not None
        line = p.stdout.readline()
        m = re.fullmatch(r"listening on (http://127\.0\.0\.1:(\d+))\n", line)
        assert m, line
        assert "/openapi.json" in p.stdout.readline()
        r = httpx.get(m.group(1) + "/checkpoint", timeout=30)
        assert r.status_code == 200 and r.text.startswith("ailedger.local/t-")
    finally:
        p.terminate()
        p.wait(15)
    bad = subprocess.run([sys.executable, "-m", "ailedger", "serve", "--port", "70000"], env=env,
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert bad.returncode != 0 and bad.stderr.startswith("ailedger: error:")
    assert "Traceback" not in bad.stderr
