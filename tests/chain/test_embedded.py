"""Embedded backend: persistence, locking across processes, crash safety."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from eth_account import Account

from ailedger import merkle
from ailedger._chain import (
    CheckpointRegistryClient,
    EmbeddedBackend,
    deploy_all,
    load_deployment,
)
from ailedger.errors import ChainError

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("_worker.py")
LEAVES = [merkle.leaf_hash(b"%d" % i) for i in range(2000)]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    return env


def setup_chain(path: Path, logs: int = 1) -> tuple[str, str, list[bytes]]:
    owner = Account.create()
    with EmbeddedBackend(path) as backend:
        backend.fund(owner.address)
        dep = deploy_all(backend, owner)
        dep.save(path.with_name("deployment.json"))
        reg = CheckpointRegistryClient(backend, dep.contracts["CheckpointRegistry"], owner)
        ids = [reg.register_log(f"log-{i}", "vk")[0] for i in range(logs)]
    return dep.contracts["CheckpointRegistry"], owner.key.hex(), ids


def worker(path: Path, registry: str, key: str, log_id: bytes, start: int, count: int):  # type: ignore[no-untyped-def]
    return subprocess.Popen(
        [
            sys.executable,
            str(WORKER),
            str(path),
            registry,
            key,
            log_id.hex(),
            str(start),
            str(count),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=_env(),
    )


def test_state_survives_reopen(tmp_path: Path) -> None:
    db = tmp_path / "chain.db"
    registry, key, (log_id,) = setup_chain(db)
    with EmbeddedBackend(db) as b:
        reg = CheckpointRegistryClient(b, registry, Account.from_key(key))
        rec = reg.anchor(log_id, 5, merkle.root_from_leaf_hashes(LEAVES[:5]))
        head, chain_id = b.block_number(), b.chain_id
    with EmbeddedBackend(db, expected_chain_id=chain_id) as b:
        assert b.block_number() == head
        load_deployment(tmp_path / "deployment.json", b)
        reg = CheckpointRegistryClient(b, registry, Account.from_key(key))
        assert reg.latest(log_id).size == 5  # type: ignore[union-attr]
        assert b.receipt(rec.tx_hash) is not None
        reg.anchor(
            log_id,
            9,
            merkle.root_from_leaf_hashes(LEAVES[:9]),
            merkle.consistency_proof(5, LEAVES[:9]),
        )
        assert b.block_number() == head + 1


def test_genesis_alloc_chain_id_and_bad_files(tmp_path: Path) -> None:
    acct = Account.create()
    with EmbeddedBackend(tmp_path / "a.db", chain_id=4242, genesis_alloc={acct.address: 7}) as b:
        assert b.chain_id == 4242 and b.balance(acct.address) == 7
        assert b.block_number() == 0
    with pytest.raises(ChainError, match="chain id 4242, expected 1"):
        EmbeddedBackend(tmp_path / "a.db", expected_chain_id=1)
    with pytest.raises(ChainError, match="does not exist"):
        EmbeddedBackend(tmp_path / "missing" / "a.db")
    (tmp_path / "junk.db").write_bytes(b"not a database at all" * 100)
    with pytest.raises(ChainError):
        EmbeddedBackend(tmp_path / "junk.db")
    with EmbeddedBackend(tmp_path / "a.db") as b:
        with pytest.raises(ChainError, match="no funds"):
            b.send_value(Account.create(), acct.address, 1)
        with pytest.raises(ChainError, match="block 99 does not exist"):
            b.block_timestamp(99)
        assert b.receipt("0x" + "11" * 32) is None


def test_timestamps_follow_wall_clock(tmp_path: Path) -> None:
    with EmbeddedBackend(tmp_path / "t.db") as b:
        acct = Account.create()
        b.fund(acct.address)
        time.sleep(1.1)
        b.fund(acct.address)
        stamps = [b.block_timestamp(n) for n in range(b.block_number() + 1)]
        assert all(x < y for x, y in itertools.pairwise(stamps))
        assert abs(stamps[-1] - time.time()) < 3


def test_two_processes_share_one_chain(tmp_path: Path) -> None:
    db = tmp_path / "chain.db"
    # Both workers use the same account: nonces must be read under the lock.
    registry, key, (a, c) = setup_chain(db, logs=2)
    with EmbeddedBackend(db) as b:
        start = b.block_number()
    procs = [worker(db, registry, key, a, 0, 15), worker(db, registry, key, c, 0, 15)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    with EmbeddedBackend(db) as b:
        assert b.block_number() == start + 30
        reg = CheckpointRegistryClient(b, registry)
        for log_id, out in zip((a, c), outs, strict=True):
            lines = out.split()
            hashes = lines[1::2]
            assert len(hashes) == 15
            assert all(b.receipt(h) is not None for h in hashes)
            assert [h.size for h in reg.history(log_id)] == list(range(1, 16))


def test_sigkill_during_transactions(tmp_path: Path) -> None:
    db = tmp_path / "chain.db"
    registry, key, (log_id,) = setup_chain(db)
    size = 0
    returned: list[str] = []
    for delay in (0.6, 1.1, 0.3):
        p = worker(db, registry, key, log_id, size, 10_000)
        assert p.stdout is not None
        deadline = time.monotonic() + delay
        first = p.stdout.readline()  # at least one anchor before the kill
        assert first, "worker produced no output"
        lines = [first]
        while time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        lines += p.stdout.read().splitlines()
        printed = [ln.split() for ln in lines if ln.strip()]
        returned += [h for _, h in printed]
        with EmbeddedBackend(db) as b:
            reg = CheckpointRegistryClient(b, registry, Account.from_key(key))
            latest = reg.latest(log_id)
            assert latest is not None
            last_printed = int(printed[-1][0])
            # The kill may land after a commit but before the print: at most one more.
            assert last_printed <= latest.size <= last_printed + 1
            assert latest.root == merkle.root_from_leaf_hashes(LEAVES[: latest.size])
            for h in returned:
                r = b.receipt(h)
                assert r is not None and r.status == 1
            assert [x.size for x in reg.history(log_id)] == list(range(1, latest.size + 1))
            size = latest.size
    # The chain is still usable.
    with EmbeddedBackend(db) as b:
        reg = CheckpointRegistryClient(b, registry, Account.from_key(key))
        reg.anchor(
            log_id,
            size + 1,
            merkle.root_from_leaf_hashes(LEAVES[: size + 1]),
            merkle.consistency_proof(size, LEAVES[: size + 1]),
        )
