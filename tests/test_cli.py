"""The command line, run as a user would: real subprocesses, exit codes, one-line errors."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest

from .conftest import PYTHON, cli_env


def run(
    home: Path, *args: str, input: bytes | None = None, ok: bool = True
) -> subprocess.CompletedProcess[bytes]:
    p = subprocess.run(
        [PYTHON, "-m", "ailedger", *args],
        env=cli_env(home),
        input=input,
        capture_output=True,
        timeout=120,
    )
    if ok:
        assert p.returncode == 0, p.stderr.decode()
    else:
        assert p.returncode != 0, p.stdout.decode()
        err = p.stderr.decode()
        assert "Traceback" not in err and err.count("\n") == 1, err
        assert err.startswith("ailedger: error: ")
    return p


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    h = tmp_path_factory.mktemp("cli") / "ws"
    out = run(h, "init", "--name", "carol").stdout.decode()
    assert "verifier key: ailedger.local/carol-" in out
    return h


def test_identity_show(home: Path) -> None:
    out = run(home, "identity", "show").stdout.decode()
    fields = dict(line.split(":", 1) for line in out.strip().splitlines())
    assert fields["name"].strip() == "carol"
    assert len(fields["keyid"].strip()) == 64
    assert fields["account"].strip().startswith("0x")
    assert (
        run(home, "log", "verifier-key").stdout.decode().strip() == fields["verifier key"].strip()
    )


def test_init_refuses_existing(home: Path) -> None:
    p = run(home, "init", ok=False)
    assert b"already an ailedger workspace" in p.stderr


def test_attest_then_verify_receipt(home: Path, tmp_path: Path) -> None:
    f = tmp_path / "model.bin"
    f.write_bytes(b"weights")
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps({"epochs": 3}))
    p = run(home, "attest", str(f), "--type", "https://example.com/train/v1",
            "--predicate", str(pred), "--anchor")
    receipt = p.stdout.decode()  # stdout is just the receipt; the index goes to stderr
    index = int(p.stderr.decode().split("\n")[0].split()[1])
    assert receipt.startswith("c2sp.org/tlog-proof@v1\n")
    rfile = tmp_path / "r.tlog-proof"
    rfile.write_text(receipt)
    entry = tmp_path / "entry.json"
    entry.write_bytes(run(home, "log", "get", str(index)).stdout)
    vk = run(home, "log", "verifier-key").stdout.decode().strip()
    # without a workspace: everything from the command line
    nowhere = tmp_path / "nowhere"
    base = ["verify-receipt", str(rfile), "--entry", str(entry), "--verifier-key", vk]
    out = run(nowhere, *base, "--offline").stdout.decode()
    assert f"OK: entry {index}" in out and "offline" in out
    out = run(nowhere, *base, "--chain", str(home / "chain.sqlite"),
              "--contracts", str(home / "deployment.json")).stdout.decode()
    assert "anchor: anchored on chain 1337" in out
    out = run(nowhere, *base).stdout.decode()
    assert "anchor: not checked (no chain given" in out  # a bare third party: says so
    out = run(home, "verify-receipt", str(rfile)).stdout.decode()
    assert "https://example.com/train/v1" in out and "anchor: anchored" in out
    # the wrong entry, a wrong key, a garbage receipt
    wrong = ["verify-receipt", str(rfile), "--entry", str(f), "--verifier-key", vk, "--offline"]
    run(nowhere, *wrong, ok=False)
    other = vk.split("+")[0] + "+00000000+" + base64.b64encode(b"\x01" + b"\x00" * 32).decode()
    run(home, "verify-receipt", str(rfile), "--verifier-key", other, ok=False)
    (tmp_path / "garbage").write_text("hello\n")
    run(home, "verify-receipt", str(tmp_path / "garbage"), ok=False)
    run(home, "verify-receipt", str(tmp_path / "missing"), ok=False)
    run(nowhere, "verify-receipt", str(rfile), ok=False)


def test_log_append_roundtrip_and_rejections(home: Path, tmp_path: Path) -> None:
    f = tmp_path / "d.txt"
    f.write_text("data")
    run(home, "attest", str(f), "--type", "https://example.com/x/v1")
    size = int(run(home, "log", "checkpoint").stdout.decode().split("\n")[1])
    env = run(home, "log", "get", str(size - 1)).stdout
    idx = int(run(home, "log", "append", "-", input=env + b"\n").stdout)
    assert idx == size
    before = run(home, "log", "checkpoint").stdout
    bad_inputs = [
        b"",
        b"not json",
        b"{}",
        json.dumps(json.loads(env), indent=1).encode(),  # non-canonical
        env.replace(b'"sig":"', b'"sig":"AAAA'),  # bad signature
        b"x" * 70000,
    ]
    forged = json.loads(env)
    forged["signatures"][0]["sig"] = base64.b64encode(b"\x00" * 64).decode()
    bad_inputs.append(json.dumps(forged, separators=(",", ":"), sort_keys=True).encode())
    unsigned = dict(forged, signatures=[])
    bad_inputs.append(json.dumps(unsigned, separators=(",", ":"), sort_keys=True).encode())
    for bad in bad_inputs:
        run(home, "log", "append", "-", input=bad, ok=False)
    assert run(home, "log", "checkpoint").stdout == before  # nothing was appended
    run(home, "log", "append", str(tmp_path / "missing.json"), ok=False)


def test_proofs_and_consistency(home: Path, tmp_path: Path) -> None:
    for i in range(2):
        (tmp_path / f"f{i}").write_text(str(i))
        run(home, "attest", str(tmp_path / f"f{i}"), "--type", "https://example.com/x/v1")
    cp = run(home, "log", "checkpoint").stdout.decode()
    size = int(cp.split("\n")[1])
    assert size >= 2
    receipt = run(home, "log", "proof", "0").stdout.decode()
    assert receipt.startswith("c2sp.org/tlog-proof@v1\nindex 0\n")
    assert receipt.endswith(cp)
    lines = run(home, "log", "consistency", "1").stdout.decode().split()
    assert all(len(base64.b64decode(x)) == 32 for x in lines) and lines
    env = run(home, "log", "get", "0").stdout
    run(home, "log", "append", "-", input=env)
    run(home, "log", "append", "-", input=env)
    p = run(home, "log", "proof", "0", "--size", str(size + 1), ok=False)  # never issued
    assert b"no checkpoint was issued" in p.stderr
    assert run(home, "log", "proof", "0", "--size", str(size)).stdout.decode() == receipt
    run(home, "log", "proof", str(size + 5), ok=False)
    run(home, "log", "consistency", "0", ok=False)
    run(home, "log", "consistency", "1", str(size + 10), ok=False)
    run(home, "log", "get", "999999", ok=False)
    p = subprocess.run(
        [PYTHON, "-m", "ailedger", "log", "get", "abc"], env=cli_env(home), capture_output=True
    )
    assert p.returncode == 2 and b"Traceback" not in p.stderr


def test_fsck_ok_then_detects_tamper(tmp_path: Path) -> None:
    import sqlite3

    h = tmp_path / "ws"
    run(h, "init", "--name", "t")
    f = tmp_path / "x"
    f.write_text("x")
    run(h, "attest", str(f), "--type", "https://example.com/x/v1")
    assert b"ok: 1 entries" in run(h, "log", "fsck").stdout
    db = sqlite3.connect(h / "log.sqlite")
    db.execute(
        "UPDATE entries SET data = CAST(replace(CAST(data AS TEXT), 'payload', 'payloaD') AS BLOB)"
    )
    db.commit()
    db.close()
    p = run(h, "log", "fsck", ok=False)
    assert b"FAIL: entry 0" in p.stdout


def test_missing_workspace_is_one_line(tmp_path: Path) -> None:
    p = run(tmp_path / "none", "identity", "show", ok=False)
    assert b"ailedger init" in p.stderr


def test_demo_runs(tmp_path: Path) -> None:
    p = run(tmp_path, "demo")
    out = p.stdout.decode()
    for expected in (
        "caught: fsck", "caught: receipt verification", "forged history of the same size",
        "rollback to size", "bundle + model.pkl, anchor checked on chain: verified",
        "caught: model changed by one byte: artifact", "caught: training set with one row changed",
        "lab fetched, decrypted and verified", "a third party with no grant: node refused (403)",
        "after revocation: node refused (403)",
        "3 rounds of FedAvg, every round final at quorum", "accuracy with a malicious member",
        "Demo finished",
    ):
        assert expected in out, expected
