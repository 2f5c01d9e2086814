"""`ailedger share`: two organisations on one chain, through the real CLI."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import ailedger
from ailedger._chain import RequestStatus
from ailedger._crypto.hpke_wrap import unwrap_key
from ailedger._provenance.datasets import find_dataset
from ailedger._provenance.encrypted import wrapped_key_for

from .conftest import PYTHON, cli_env


def run(home: Path, *args: str, ok: bool = True) -> str:
    p = subprocess.run([PYTHON, "-m", "ailedger", *args], env=cli_env(home), capture_output=True, timeout=180)
    if ok:
        assert p.returncode == 0, p.stderr.decode()
    else:
        assert p.returncode != 0, p.stdout.decode()
        err = p.stderr.decode()
        assert err.startswith("ailedger: error: ") and err.count("\n") == 1, err
        return err
    return p.stdout.decode()


@pytest.fixture
def orgs(tmp_path: Path) -> tuple[Path, Path, Path]:
    a, b, c = tmp_path / "hospital", tmp_path / "lab", tmp_path / "stranger"
    run(a, "init", "--name", "hospital")
    for h, n in ((b, "lab"), (c, "stranger")):
        run(h, "init", "--name", n, "--chain", str(a / "chain.sqlite"), "--contracts", str(a / "deployment.json"))
    data = tmp_path / "wards"
    data.mkdir()
    (data / "admissions.csv").write_text("age,lactate\n71,4.2\n55,1.1\n")
    run(a, "data", "add", str(data), "--name", "wards", "--encrypt")
    return a, b, c


def test_offer_request_grant_revoke_and_payment(orgs: tuple[Path, Path, Path]) -> None:
    a, b, c = orgs
    assert run(a, "share", "offer", "wards", "--price", "1000").startswith("offer 1: dataset wards")
    assert "pending" in run(b, "share", "request", "1", "--purpose", "sepsis research")
    # only the owner grants, and a wrong price or the owner's own request are refused
    assert "not offer owner" in run(c, "share", "grant", "1", ok=False)
    assert "owner" in run(a, "share", "request", "1", "--purpose", "x", ok=False)
    assert "granted request 1" in run(a, "share", "grant", "1", "--days", "2")
    ws_b = ailedger.Workspace.open(b)
    da = ws_b.agreements()
    info = da.request_info(1)
    assert info is not None and info.status == RequestStatus.GRANTED
    assert da.is_live(1, "sepsis research") and not da.is_live(1, "marketing")
    # the data key was wrapped to the lab's registered X25519 key, and only the lab opens it
    ws_a = ailedger.Workspace.open(a)
    rec = find_dataset(ws_a, "wards")
    assert rec is not None
    import hashlib

    doc = wrapped_key_for(ws_a, "wards", hashlib.sha256(ws_b.x25519_public).hexdigest())
    assert doc is not None and hashlib.sha256(doc.encode()).digest() == info.wrapped_key
    assert len(unwrap_key(doc, ws_b._identity.x25519, dataset_digest=rec.manifest_digest)) == 32
    with pytest.raises(ailedger.Error):
        unwrap_key(doc, ws_a._identity.x25519, dataset_digest=rec.manifest_digest)
    assert "revoked grant 1" in run(a, "share", "revoke", "1")
    assert not da.is_live(1, "sepsis research")
    # revoked seconds into a 2-day grant: the unused time (all 1000 wei, rounded) is refunded
    assert "withdrew 1000 wei" in run(b, "share", "withdraw")
    assert "nothing to withdraw" in run(a, "share", "withdraw", ok=False)
    assert "revoked" in run(b, "share", "list")
    ws_a.close()
    ws_b.close()


def test_reject_refunds_and_bad_input(orgs: tuple[Path, Path, Path]) -> None:
    a, b, _ = orgs
    run(a, "share", "offer", "wards", "--price", "500")
    run(b, "share", "request", "1", "--purpose", "audit")
    assert "rejected request 1" in run(a, "share", "reject", "1")
    assert "withdrew 500 wei" in run(b, "share", "withdraw")
    assert "not pending" in run(a, "share", "grant", "1", ok=False)
    assert "no dataset named" in run(a, "share", "offer", "nope", ok=False)
    assert "unknown offer" in run(b, "share", "request", "9", "--purpose", "x", ok=False)
    run(a, "share", "offer", "wards", "--price", "-1", ok=False)


def test_plain_datasets_are_not_offered_and_grants_print_the_capped_end(
    orgs: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    import time

    a, b, _ = orgs
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "x.csv").write_text("a\n1\n")
    run(a, "data", "add", str(plain), "--name", "plain")
    err = run(a, "share", "offer", "plain", ok=False)
    assert "not encrypted" in err and "--encrypt" in err
    assert "offer 1" in run(a, "share", "offer", "wards", "--max-days", "30")
    run(b, "share", "request", "1", "--purpose", "p")
    out = run(a, "share", "grant", "1", "--days", "1000")
    until = out.rsplit("until ", 1)[1].strip()
    end = time.mktime(time.strptime(until, "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    assert end <= time.time() + 30 * 86400 + 5
    ws_b = ailedger.Workspace.open(b)
    info = ws_b.agreements().request_info(1)
    assert info is not None and abs(info.expiry - end) <= 1
    ws_b.close()


def test_cancel_and_settle(orgs: tuple[Path, Path, Path]) -> None:
    a, b, _ = orgs
    run(a, "share", "offer", "wards", "--price", "700")
    run(b, "share", "request", "1", "--purpose", "audit")
    assert "DataAgreements: " in run(a, "share", "cancel", "1", ok=False)  # not the owner's to cancel
    assert "cancelled request 1" in run(b, "share", "cancel", "1")
    assert "withdrew 700 wei" in run(b, "share", "withdraw")
    run(a, "share", "offer", "wards", "--price", str(10**18))  # offer 2: enough wei to accrue per second
    run(b, "share", "request", "2", "--purpose", "audit")
    run(a, "share", "grant", "2", "--days", "2")
    out = run(b, "share", "settle", "2")  # anyone may settle; the owner is credited what it earned
    assert out.startswith("settled request 2: ")
