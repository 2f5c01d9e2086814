"""Anchoring a workspace's log on chain, on the embedded chain and on a real anvil node."""

from __future__ import annotations

import http.server
import json
import multiprocessing
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from eth_account import Account

import ailedger
from ailedger import ChainError, InputError, VerificationError, merkle
from ailedger._anchor import check_anchor
from ailedger._chain import RpcBackend, log_id_of
from ailedger._log.note import Checkpoint, sign_note
from ailedger._log.receipt import Receipt

from .conftest import ANVIL_KEY, PYTHON, AnvilNode, cli_env, free_port


def _cp(note: str) -> Checkpoint:
    return Checkpoint.parse(note[: note.rfind("\n\n") + 1])


def fund(url: str, address: str, amount: int = 10**19) -> None:
    backend = RpcBackend(url)
    try:
        backend.send_value(Account.from_key(ANVIL_KEY), address, amount)
    finally:
        backend.close()


@pytest.fixture(params=["embedded", "rpc"])
def chain_ws(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ailedger.Workspace]:
    if request.param == "embedded":
        ws = ailedger.Workspace.init(tmp_path / "ws", name="alice")
    else:
        anvil: AnvilNode = request.getfixturevalue("anvil")
        ws = ailedger.Workspace.init(tmp_path / "ws", name="alice", chain=anvil.url)
        assert not ws.chain_config.get("deployment")  # unfunded: nothing deployed yet
        with pytest.raises(ChainError, match="no funds"):
            ws.anchor()
        fund(anvil.url, ws.address)
        ws.chain_setup()
    yield ws
    ws.close()


def test_anchor_is_idempotent_and_one_tx_per_checkpoint(chain_ws: ailedger.Workspace) -> None:
    ws = chain_ws
    with pytest.raises(InputError, match="empty"):
        ws.anchor()
    ws.log.append_many([b"e%d" % i for i in range(1000)])
    first = ws.anchor()
    assert (first.size, first.already) == (1000, False)
    assert first.root == ws.log.root(1000)
    again = ws.anchor()
    assert again.already and again.tx_hash == first.tx_hash
    ws.log.append_many([b"f%d" % i for i in range(37)])
    second = ws.anchor()
    assert second.size == 1037 and second.block_number > first.block_number
    reg = ws.registry()
    history = reg.history(log_id_of(ws.origin))
    assert [h.size for h in history] == [1000, 1037]  # one transaction per checkpoint
    assert reg.root_at(log_id_of(ws.origin), 1037) == ws.log.root(1037)


def test_identity_and_log_are_registered(chain_ws: ailedger.Workspace) -> None:
    ws = chain_ws
    ident = ws.identity_registry().resolve(ws.address)
    assert ident is not None
    assert (ident.name, ident.ed25519, ident.x25519) == ("alice", ws.ed25519_public, ws.x25519_public)
    assert ws.register_identity() is False  # idempotent
    info = ws.registry().log_info(log_id_of(ws.origin))
    assert info is not None and info.verifier_key == ws.verifier_key
    assert info.owner.lower() == ws.address.lower()


def test_receipts_carry_anchor_and_verify_on_chain(chain_ws: ailedger.Workspace) -> None:
    ws = chain_ws
    ws.log.append_many([b"a", b"b", b"c"])
    rec = ws.anchor()
    receipt = Receipt.parse(ws.receipt(1))
    ref = json.loads(receipt.extra or b"")["anchor"]
    assert ref["tx"] == rec.tx_hash and ref["size"] == 3 and ref["chain_id"] == rec.chain_id
    reg = ws.registry()
    cp = _cp(receipt.checkpoint)
    chk = check_anchor(cp, ws.verifier, reg)
    assert chk.exact and chk.block_number == rec.block_number and chk.timestamp > 0
    # a newer checkpoint is only "not anchored yet"...
    ws.log.append(b"d")
    newer = _cp(Receipt.parse(ws.receipt(3)).checkpoint)
    with pytest.raises(VerificationError, match="not anchored yet"):
        check_anchor(newer, ws.verifier, reg)
    # ...and an older one is good with a consistency proof to a later anchor
    ws.log.append(b"e")
    ws.anchor()
    chk = check_anchor(newer, ws.verifier, reg, ws.log)
    assert not chk.exact and chk.anchored_size == 5
    with pytest.raises(VerificationError, match="consistency proof"):
        check_anchor(newer, ws.verifier, reg)  # without the log, fail closed


def test_split_view_is_caught_by_the_anchor(chain_ws: ailedger.Workspace) -> None:
    """A log that signs two histories of one size is exposed: only one can be anchored."""
    ws = chain_ws
    entries = [b"x%d" % i for i in range(8)]
    ws.log.append_many(entries)
    ws.anchor()
    forged = list(entries)
    forged[3] = b"rewritten"
    note = sign_note(Checkpoint(ws.origin, 8, merkle.root(forged)).text(), ws.origin, ws._identity.ed25519)
    hashes = [merkle.leaf_hash(e) for e in forged]
    receipt = Receipt(3, tuple(merkle.inclusion_proof(3, hashes)), note).text()
    # Offline, the forged receipt is perfectly valid: signed by the log's key.
    res = ailedger.verify_receipt(receipt, b"rewritten", ws.verifier_key)
    with pytest.raises(VerificationError, match="split view"):
        check_anchor(res.checkpoint, ws.verifier, ws.registry())
    # and the chain refuses to anchor the forged tree, even from the owner
    with pytest.raises(ChainError, match="CheckpointRegistry: "):
        ws.registry().anchor(log_id_of(ws.origin), 9, merkle.root([*forged, b"y"]),
                             merkle.consistency_proof(8, [*hashes, merkle.leaf_hash(b"y")]))


def test_anchor_refuses_a_rolled_back_or_diverged_log(chain_ws: ailedger.Workspace, tmp_path: Path) -> None:
    ws = chain_ws
    ws.log.append_many([b"a", b"b", b"c", b"d"])
    ws.anchor()
    # The same identity's log, replaced by a different history (e.g. restored from a
    # stale backup and rewritten): the anchor refuses before spending gas.
    import sqlite3

    path = ws.path / "log.sqlite"
    ws.close()
    db = sqlite3.connect(path)
    db.execute("UPDATE nodes SET hash=? WHERE id=?", (merkle.leaf_hash(b"z"), (2 << 50) | 0))
    db.commit()
    db.close()
    ws2 = ailedger.Workspace.open(ws.path)
    ws2.log.append(b"e")
    with pytest.raises((ChainError, ailedger.LogError), match=r"split view|refusing"):
        ws2.anchor()
    ws2.close()


def test_embedded_chain_survives_reopen_in_another_process(tmp_path: Path) -> None:
    ws = ailedger.Workspace.init(tmp_path / "ws", name="p")
    ws.log.append_many([b"1", b"2"])
    rec = ws.anchor()
    ws.close()
    out = subprocess.run(
        [PYTHON, "-m", "ailedger", "chain", "status"], env=cli_env(tmp_path / "ws"),
        capture_output=True, check=True,
    ).stdout.decode()
    assert f"anchored:     size 2 in block {rec.block_number}" in out
    assert "chain id:     1337" in out


def _anchor_loop(path: str, tag: int) -> None:
    w = ailedger.Workspace.open(path)
    for i in range(4):
        w.log.append(b"%d-%d" % (tag, i))
        w.anchor()
    w.close()


def test_two_processes_anchor_one_embedded_chain(tmp_path: Path) -> None:
    ailedger.Workspace.init(tmp_path / "ws", name="p").close()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_anchor_loop, args=(str(tmp_path / "ws"), t)) for t in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    ws = ailedger.Workspace.open(tmp_path / "ws")
    assert ws.anchor().size == 8
    assert ws.log.fsck().ok
    sizes = [h.size for h in ws.registry().history(log_id_of(ws.origin))]
    assert sizes == sorted(sizes) and sizes[-1] == 8
    ws.close()


# -- RPC faults ---------------------------------------------------------------------


def test_init_with_unreachable_node_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(ChainError):
        ailedger.Workspace.init(tmp_path / "ws", chain=f"http://127.0.0.1:{free_port()}")
    assert not (tmp_path / "ws").exists()
    assert not list(tmp_path.iterdir())


def test_join_deployment_and_bad_deployments(anvil: AnvilNode, tmp_path: Path) -> None:
    a = ailedger.Workspace.init(tmp_path / "a", name="a", chain=anvil.url)
    fund(anvil.url, a.address)
    dep = a.chain_setup()
    dep_file = a.path / "deployment.json"
    assert json.loads(dep_file.read_text())["contracts"] == dep.contracts
    b = ailedger.Workspace.init(tmp_path / "b", name="b", chain=anvil.url, contracts=dep_file)
    assert b.chain_config["deployment"]["contracts"] == dep.contracts
    fund(anvil.url, b.address)
    b.log.append(b"hello")
    assert b.anchor().contract == dep.contracts["CheckpointRegistry"]
    b.close()
    wrong_chain = dict(dep.as_dict(), chain_id=1)
    (tmp_path / "wrong.json").write_text(json.dumps(wrong_chain))
    with pytest.raises(ChainError, match="chain id"):
        ailedger.Workspace.init(tmp_path / "c", chain=anvil.url, contracts=tmp_path / "wrong.json")
    no_code = dep.as_dict()
    no_code["contracts"] = {k: "0x" + "11" * 20 for k in no_code["contracts"]}
    (tmp_path / "nocode.json").write_text(json.dumps(no_code))
    with pytest.raises(ChainError, match="no contract code"):
        ailedger.Workspace.init(tmp_path / "d", chain=anvil.url, contracts=tmp_path / "nocode.json")
    assert not (tmp_path / "c").exists() and not (tmp_path / "d").exists()
    a.close()


class _DroppingProxy:
    """Forwards JSON-RPC to anvil, but hangs up after forwarding one eth_sendRawTransaction.

    The transaction is mined; the client never hears back: a dropped connection mid-anchor.
    """

    def __init__(self, upstream: str) -> None:
        self.drop_next_send = False
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                r = requests.post(upstream, data=body, headers={"Content-Type": "application/json"}, timeout=10)
                if proxy.drop_next_send and b"eth_sendRawTransaction" in body:
                    proxy.drop_next_send = False
                    self.close_connection = True
                    return  # no response at all
                self.send_response(r.status_code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(r.content)))
                self.end_headers()
                self.wfile.write(r.content)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


def test_dropped_connection_mid_anchor_then_rerun(anvil_factory: type[AnvilNode], tmp_path: Path) -> None:
    node = anvil_factory()
    proxy = _DroppingProxy(node.url)
    try:
        ws = ailedger.Workspace.init(tmp_path / "ws", name="p", chain=proxy.url)
        fund(node.url, ws.address)
        ws.chain_setup()
        ws.log.append_many([b"a", b"b", b"c"])
        proxy.drop_next_send = True
        with pytest.raises(ChainError):
            ws.anchor()
        assert ws.log.witness(3) is None  # nothing recorded as anchored locally
        again = ws.anchor()  # safe to re-run: the chain says it is there already
        assert again.size == 3 and again.already
        assert ws.log.witness(3) is not None
        assert [h.size for h in ws.registry().history(log_id_of(ws.origin))] == [3]
        ws.close()
    finally:
        proxy.close()


def test_anchor_against_a_stopped_node_fails_cleanly(anvil_factory: type[AnvilNode], tmp_path: Path) -> None:
    node = anvil_factory()
    ws = ailedger.Workspace.init(tmp_path / "ws", name="p", chain=node.url)
    fund(node.url, ws.address)
    ws.chain_setup()
    ws.log.append(b"a")
    ws.close()
    node.stop()
    ws = ailedger.Workspace.open(tmp_path / "ws")
    with pytest.raises(ChainError):
        ws.anchor()
    assert ws.log.witness(1) is None
    ws.close()


# -- CLI ----------------------------------------------------------------------------


def _run(home: Path, *args: str, ok: bool = True, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    env = cli_env(home)
    env.update(extra_env or {})
    p = subprocess.run([PYTHON, "-m", "ailedger", *args], env=env, capture_output=True, timeout=180)
    if ok:
        assert p.returncode == 0, p.stderr.decode()
    else:
        assert p.returncode != 0
        err = p.stderr.decode()
        assert err.startswith("ailedger: error: ") and err.count("\n") == 1, err
    return p


def test_cli_rpc_flow(anvil: AnvilNode, tmp_path: Path) -> None:
    h = tmp_path / "ws"
    out = _run(h, "init", "--name", "eve", "--chain", anvil.url).stdout.decode()
    assert "no funds" in out and "ailedger chain deploy" in out
    address = next(x.split()[-1] for x in out.splitlines() if x.startswith("account:"))
    _run(h, "anchor", ok=False)
    fund(anvil.url, address)
    out = _run(h, "chain", "deploy").stdout.decode()
    assert "CheckpointRegistry: 0x" in out
    status = _run(h, "chain", "status").stdout.decode()
    assert "chain id:     31337" in status and "anchored:     nothing yet" in status
    f = tmp_path / "m.bin"
    f.write_bytes(b"model")
    receipt = _run(h, "attest", str(f), "--type", "https://example.com/m/v1", "--anchor").stdout.decode()
    assert "\nextra " in receipt
    (tmp_path / "r").write_text(receipt)
    out = _run(h, "verify-receipt", str(tmp_path / "r")).stdout.decode()
    assert "anchor: anchored on chain 31337" in out
    # a third party with no workspace: the receipt, the entry, the key, the chain
    entry = _run(h, "log", "get", "0").stdout
    (tmp_path / "e").write_bytes(entry)
    vk = _run(h, "log", "verifier-key").stdout.decode().strip()
    nobody = tmp_path / "nobody"
    out = _run(nobody, "verify-receipt", str(tmp_path / "r"), "--entry", str(tmp_path / "e"),
               "--verifier-key", vk, "--chain", anvil.url, "--contracts", str(h / "deployment.json")).stdout.decode()
    assert "anchor: anchored" in out
    out = _run(nobody, "verify-receipt", str(tmp_path / "r"), "--entry", str(tmp_path / "e"), "--verifier-key", vk).stdout.decode()
    assert "anchor: not checked (no chain given" in out
    out = _run(nobody, "verify-receipt", str(tmp_path / "r"), "--entry", str(tmp_path / "e"),
               "--verifier-key", vk, "--offline").stdout.decode()
    assert "not checked (--offline" in out
    assert "already anchored" in _run(h, "anchor").stdout.decode()
    _run(h, "identity", "register")


def test_cli_log_append_anchor_and_unreachable(tmp_path: Path) -> None:
    h = tmp_path / "ws"
    _run(h, "init", "--name", "emb")
    f = tmp_path / "x"
    f.write_text("x")
    _run(h, "attest", str(f), "--type", "https://example.com/x/v1")
    env = _run(h, "log", "get", "0").stdout
    out = subprocess.run(
        [PYTHON, "-m", "ailedger", "log", "append", "-", "--anchor"], env=cli_env(h), input=env,
        capture_output=True, check=True,
    )
    assert b"anchored: size 2" in out.stdout
    _run(tmp_path / "x2", "init", "--chain", f"http://127.0.0.1:{free_port()}", ok=False)
    _run(tmp_path / "x3", "init", "--contracts", "nope.json", ok=False)
    _run(tmp_path / "x4", "init", "--chain", "ftp://example", ok=False)
    assert not (tmp_path / "x2").exists()


def test_verify_never_writes_to_a_file_that_is_not_a_chain(tmp_path: Path) -> None:
    h = tmp_path / "ws"
    _run(h, "init", "--name", "ro")
    f = tmp_path / "x"
    f.write_text("x")
    receipt = _run(h, "attest", str(f), "--type", "https://example.com/x/v1", "--anchor").stdout
    (tmp_path / "r").write_bytes(receipt)
    before = (h / "log.sqlite").read_bytes()
    p = _run(h, "verify-receipt", str(tmp_path / "r"), "--chain", str(h / "log.sqlite"),
             "--contracts", str(h / "deployment.json"), ok=False)
    assert b"not an ailedger embedded chain" in p.stderr
    assert (h / "log.sqlite").read_bytes() == before
    assert b"ok: 1 entries" in _run(h, "log", "fsck").stdout
    (tmp_path / "empty").write_bytes(b"")
    _run(h, "verify-receipt", str(tmp_path / "r"), "--chain", str(tmp_path / "empty"),
         "--contracts", str(h / "deployment.json"), ok=False)
    assert (tmp_path / "empty").read_bytes() == b""
    assert not (tmp_path / "empty.lock").exists()


def test_attest_anchor_failure_still_reports_the_index(tmp_path: Path) -> None:
    h = tmp_path / "ws"
    _run(h, "init", "--name", "af")
    (h / "chain.sqlite").unlink()
    f = tmp_path / "x"
    f.write_text("x")
    p = subprocess.run([PYTHON, "-m", "ailedger", "attest", str(f), "--type",
                        "https://example.com/x/v1", "--anchor"], env=cli_env(h), capture_output=True)
    assert p.returncode == 1
    assert p.stderr.startswith(b"index 0\n")
    assert b"entry 0 was appended, but anchoring failed" in p.stderr
    assert p.stdout.startswith(b"c2sp.org/tlog-proof@v1\nindex 0\n")


def test_a_squatted_registration_is_refused_not_believed(anvil: AnvilNode, tmp_path: Path) -> None:
    """Registering someone else's origin and key on a shared chain gains the squatter nothing."""
    from ailedger._anchor import registry

    owner = ailedger.Workspace.init(tmp_path / "owner", name="owner", chain=anvil.url)
    fund(anvil.url, owner.address)
    owner.chain_setup()
    dep_file = owner.path / "deployment.json"
    victim = ailedger.Workspace.init(tmp_path / "victim", name="victim", chain=anvil.url, contracts=dep_file)
    mallory = Account.create()
    fund(anvil.url, mallory.address)
    squat = registry(victim.chain, victim.deployment, mallory)
    log_id, _ = squat.register_log(victim.origin, victim.verifier_key, b"\0" * 64)
    squat.anchor(log_id, 1, b"\x66" * 32)
    fund(anvil.url, victim.address)
    victim.log.append(b"genuine")
    with pytest.raises(ChainError, match="without this log's authorisation"):
        victim.anchor()
    cp = _cp(victim.log.checkpoint())
    with pytest.raises(VerificationError, match="without the log key's authorisation"):
        check_anchor(cp, victim.verifier, victim.registry())
    # the genuine registration of the owner carries a binding that verifies
    owner.log.append(b"x")
    owner.anchor()
    chk = check_anchor(_cp(owner.log.checkpoint()), owner.verifier, owner.registry())
    assert chk.exact
    victim.close()
    owner.close()
