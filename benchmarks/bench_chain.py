"""Chain benchmark: anchor() gas by tree size, anchors/s on both backends,
DataAgreements gas per function (next to a plain 21,000-gas transfer), and
SwarmRounds gas per function by swarm size.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_chain.py [--runs 5] [--anchors 40]

Needs anvil (``bash scripts/install_anvil.sh``) for the RPC figures; pass
``--no-anvil`` to skip them. Prints markdown tables.

Trees of up to 2**41 leaves are never materialised: leaf i is the entry
``i mod 1024``, so every aligned full subtree of 1024 leaves or more at a given
level has the same hash, and full-subtree hashes are memoised by
(level, index mod period). Proofs are genuine RFC 9162 proofs of that tree and
are checked with ailedger.merkle.verify_consistency before being sent.
"""

from __future__ import annotations

import argparse
import hashlib
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from functools import cache
from pathlib import Path

from eth_account import Account

from ailedger import merkle
from ailedger._chain import (
    CheckpointRegistryClient,
    DataAgreementsClient,
    EmbeddedBackend,
    RpcBackend,
    SwarmRoundsClient,
    deploy_all,
)
from ailedger._chain._backend import ChainBackend

ROOT = Path(__file__).resolve().parents[1]
ANVIL = ROOT / ".tools/anvil/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"
ANVIL_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
PERIOD_BITS = 10


@cache
def _full(level: int, key: int) -> bytes:
    if level == 0:
        return merkle.leaf_hash(key.to_bytes(8, "big"))
    return merkle.node_hash(
        _full(level - 1, _key(level - 1, 2 * key)), _full(level - 1, _key(level - 1, 2 * key + 1))
    )


def _key(level: int, index: int) -> int:
    return index % (1 << (PERIOD_BITS - level)) if level < PERIOD_BITS else 0


def mth(lo: int, hi: int) -> bytes:
    """Root of leaves [lo, hi) of the synthetic tree (lo aligned as in RFC 9162)."""
    n = hi - lo
    if n & (n - 1) == 0 and lo % n == 0:
        level = n.bit_length() - 1
        return _full(level, _key(level, lo >> level))
    k = 1 << ((n - 1).bit_length() - 1)
    return merkle.node_hash(mth(lo, lo + k), mth(lo + k, hi))


def consistency(m: int, n: int) -> list[bytes]:
    """RFC 9162 PROOF(m, D[n]) over the synthetic tree (mirrors ailedger.merkle)."""
    out: list[bytes] = []
    lo, hi, mm, complete = 0, n, m, True
    while True:
        if mm == hi - lo:
            if not complete:
                out.append(mth(lo, hi))
            break
        k = 1 << ((hi - lo - 1).bit_length() - 1)
        if mm <= k:
            out.append(mth(lo + k, hi))
            hi = lo + k
        else:
            out.append(mth(lo, lo + k))
            lo, mm, complete = lo + k, mm - k, False
    out.reverse()
    return out


def worst_old_size(n: int) -> int:
    """The old size (among a spread of candidates) with the longest proof to n."""
    cands = {1, 3, n - 1, n // 2 + 1, n // 3, (n // 3) | 1, n - (n >> 2) - 1}
    cands |= {n - (1 << j) - 1 for j in range(1, n.bit_length() - 1)}
    cands = {c for c in cands if 0 < c < n}
    return max(sorted(cands), key=lambda c: len(consistency(c, n)))


_seq = iter(range(10**9))


def new_log(reg: CheckpointRegistryClient) -> bytes:
    log_id, _ = reg.register_log(f"bench.ailedger.local/{time.time_ns()}-{next(_seq)}", "vk")
    return log_id


def gas_row(reg: CheckpointRegistryClient, m: int, n: int) -> tuple[int, int]:
    proof = consistency(m, n)
    merkle.verify_consistency(m, n, proof, mth(0, m), mth(0, n))
    log_id = new_log(reg)
    reg.anchor(log_id, m, mth(0, m))
    rec = reg.anchor(log_id, n, mth(0, n), proof)
    assert rec.gas_used is not None
    return len(proof), rec.gas_used


def throughput(reg: CheckpointRegistryClient, anchors: int, base: int = 1 << 20) -> float:
    """Anchors per second for consecutive checkpoints of one log (proofs pre-built)."""
    log_id = new_log(reg)
    reg.anchor(log_id, base, mth(0, base))
    steps = [
        (base + 7 * (i + 1), consistency(base + 7 * i, base + 7 * (i + 1))) for i in range(anchors)
    ]
    roots = [mth(0, s) for s, _ in steps]
    t0 = time.perf_counter()
    for (size, proof), root in zip(steps, roots, strict=True):
        reg.anchor(log_id, size, root, proof)
    return anchors / (time.perf_counter() - t0)


def setup(backend: ChainBackend, funder: object | None) -> CheckpointRegistryClient:
    owner = Account.create()
    if isinstance(backend, EmbeddedBackend):
        backend.fund(owner.address)
    else:
        backend.send_value(Account.from_key(ANVIL_KEY), owner.address, 10**21)
    dep = deploy_all(backend, owner)
    return CheckpointRegistryClient(backend, dep.contracts["CheckpointRegistry"], owner)


def agreements_gas(backend: ChainBackend) -> list[tuple[str, int]]:
    """Gas of every DataAgreements function on a fresh deployment. A function is
    measured twice where the first call pays for first-time storage (e.g. the
    owner's first credit, the first pending escrow): both are real costs."""
    accts = [Account.create() for _ in range(2)]
    for a in accts:
        if isinstance(backend, EmbeddedBackend):
            backend.fund(a.address)
        else:
            backend.send_value(Account.from_key(ANVIL_KEY), a.address, 10**21)
    dep = deploy_all(backend, accts[0])
    owner = DataAgreementsClient(backend, dep.contracts["DataAgreements"], accts[0])
    req = DataAgreementsClient(backend, dep.contracts["DataAgreements"], accts[1])
    ds = hashlib.sha256(b"dataset").digest()
    key = hashlib.sha256(b"key").digest()
    day = 86400
    rows: list[tuple[str, int]] = []
    transfer = backend.send_value(accts[0], accts[1].address, 1).gas_used
    rows.append(("(baseline) plain transfer", transfer))
    terms = {"price": 10**15, "min_duration": 60, "max_duration": day, "response_window": day}
    oid, rc = owner.offer(ds, ds, **terms)  # type: ignore[arg-type]
    rows.append(("offer (first)", rc.gas_used))
    oid2, rc = owner.offer(ds, ds, **terms)  # type: ignore[arg-type]
    rows.append(("offer", rc.gas_used))
    auto, _ = owner.offer(ds, None, auto_grant=True, **terms)  # type: ignore[arg-type]
    purpose = "training a fraud classifier"  # 27 bytes: one storage word
    r1, rc = req.request(oid, purpose)
    rows.append(("request (first, escrowed)", rc.gas_used))
    r2, rc = req.request(oid, purpose)
    rows.append(("request (escrowed)", rc.gas_used))
    r3, rc = req.request(oid, purpose)
    r4, rc = req.request(oid, "p" * 128)
    rows.append(("request (128-byte purpose)", rc.gas_used))
    now = backend.block_timestamp(backend.block_number())
    rc = owner.grant(r1, now + 3600, key)
    rows.append(("grant (first)", rc.gas_used))
    rc = owner.grant(r2, now + 3600, key)
    rows.append(("grant", rc.gas_used))
    r6, _ = req.request(oid, purpose)
    rows.append(("cancel (requester's first credit)", req.cancel(r6).gas_used))
    _pass_time(backend, accts[0], 2)
    rows.append(("settle (owner's first credit)", req.settle(r2)[1].gas_used))
    _pass_time(backend, accts[0], 1)
    rows.append(("settle (again)", req.settle(r2)[1].gas_used))
    r5, rc = req.request(auto, purpose)
    rows.append(("request (auto-grant)", rc.gas_used))
    rows.append(("set_wrapped_key", owner.set_wrapped_key(r5, key).gas_used))
    rows.append(("reject", owner.reject(r3).gas_used))
    rows.append(("reject (128-byte purpose)", owner.reject(r4).gas_used))
    rows.append(("revoke (settles, refunds the rest)", owner.revoke(r1).gas_used))
    rows.append(("close_offer", owner.close_offer(oid2).gas_used))
    rows.append(("withdraw (owner, EOA)", owner.withdraw()[1].gas_used))
    rows.append(("withdraw (requester, EOA)", req.withdraw()[1].gas_used))
    return rows


def _pass_time(backend: ChainBackend, funder: object, seconds: int) -> None:
    """Move chain time on by ``seconds``: anvil jumps its clock; the embedded chain
    stamps each block at least 1 s after its parent, so mining blocks is enough."""
    if isinstance(backend, RpcBackend):
        import requests

        for method, params in (("evm_increaseTime", [seconds]), ("evm_mine", [])):
            requests.post(backend.url, json={"jsonrpc": "2.0", "id": 1, "method": method,
                                             "params": params}, timeout=10)  # fmt: skip
        return
    for _ in range(seconds + 1):
        backend.send_value(funder, "0x" + "11" * 20, 1)  # type: ignore[arg-type]


def swarm_gas(backend: ChainBackend, n: int) -> list[tuple[str, int]]:
    """Gas of every SwarmRounds function for a swarm of ``n`` members (quorum n//2+1).
    Finalising submissions and close_round loop over the members: the worst case is
    measured (every member committed and submitted; every member missed)."""
    accts = [Account.create() for _ in range(n + 1)]
    for a in accts:
        if isinstance(backend, EmbeddedBackend):
            backend.fund(a.address)
        else:
            backend.send_value(Account.from_key(ANVIL_KEY), a.address, 10**19)
    dep = deploy_all(backend, accts[0])
    cs = [SwarmRoundsClient(backend, dep.contracts["SwarmRounds"], a) for a in accts]
    members = [a.address for a in accts[1:]]
    spec = hashlib.sha256(b"spec").digest()
    quorum = n // 2 + 1
    rows: list[tuple[str, int]] = []
    sid, rc = cs[0].create_swarm(spec, 2, (n - 1) // 2, members, quorum, 3600, 3600)
    rows.append(("create_swarm (first)", rc.gas_used))
    sid2, rc = cs[0].create_swarm(spec, 0, 0, members, quorum, 1, 1)
    rows.append(("create_swarm", rc.gas_used))
    url = "http://node.example.org:8750"
    rows.append(("join (first member)", cs[1].join(sid, url).gas_used))
    for c in cs[2:-1]:
        c.join(sid, url)
    rows.append(("join (URL update)", cs[1].join(sid, url + "/").gas_used))
    rows.append(("join (last member: starts round 0)", cs[-1].join(sid, url).gas_used))
    upd = [hashlib.sha256(b"u%d" % i).digest() for i in range(n + 1)]
    rows.append(("commit (first of the round)", cs[1].commit(sid, 0, upd[1], 1000).gas_used))
    for i in range(2, n + 1):
        rc = cs[i].commit(sid, 0, upd[i], 1000)
    rows.append(("commit (last of the round)", rc.gas_used))
    g = hashlib.sha256(b"global").digest()
    bad = hashlib.sha256(b"bad").digest()
    # Every member submits: n - quorum wrong digests first, then the honest ones.
    for i in range(quorum + 1, n + 1):
        cs[i].submit_global(sid, 0, bad)
    rows.append(("submit_global (first)", cs[1].submit_global(sid, 0, g).gas_used))
    for i in range(2, quorum):
        cs[i].submit_global(sid, 0, g)
    rc = cs[quorum].submit_global(sid, 0, g)
    rows.append((f"submit_global (finalising; {n - quorum} minority)", rc.gas_used))
    # close_round: every member joined, nobody committed, all n missed.
    for c in cs[1:]:
        c.join(sid2, url)
    _pass_time(backend, accts[0], 3)
    rows.append((f"close_round ({n} missed)", cs[0].close_round(sid2, 0).gas_used))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--anchors", type=int, default=40)
    ap.add_argument("--no-anvil", action="store_true")
    args = ap.parse_args()

    tmp = tempfile.TemporaryDirectory()
    embedded = EmbeddedBackend(Path(tmp.name) / "bench.db")
    reg_e = setup(embedded, None)
    anvil = None
    reg_r = None
    if not args.no_anvil:
        if not ANVIL.is_file():
            print(
                "anvil missing: run `bash scripts/install_anvil.sh` (or --no-anvil)",
                file=sys.stderr,
            )
            return 1
        with socket.socket() as sock:  # a free port on loopback
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        anvil = subprocess.Popen(
            [str(ANVIL), "--host", "127.0.0.1", "--port", str(port), "--silent"],
            stdout=subprocess.DEVNULL,
        )
        for _ in range(100):
            try:
                reg_r = setup(RpcBackend(f"http://127.0.0.1:{port}"), None)
                break
            except Exception:
                time.sleep(0.1)
    try:
        print("### anchor() gas by tree size\n")
        print("| new size | old size | proof hashes | gas (embedded) | gas (anvil) |")
        print("|---:|---:|---:|---:|---:|")
        for k in range(10, 41, 5):
            for n in (1 << k, (1 << k) + (1 << (k - 1)) - 1):
                m = worst_old_size(n)
                plen, gas_e = gas_row(reg_e, m, n)
                gas_r = gas_row(reg_r, m, n)[1] if reg_r is not None else None
                size = f"2^{k}" if n == 1 << k else f"2^{k}+2^{k - 1}-1"
                print(f"| {size} ({n}) | {m} | {plen} | {gas_e} | {gas_r if gas_r else '-'} |")
        print("\n### DataAgreements gas per function (reclaim costs about what reject does)\n")
        print("| function | gas (embedded) | gas (anvil) | × plain transfer |")
        print("|---|---:|---:|---:|")
        rows_e = agreements_gas(embedded)
        rows_r = agreements_gas(reg_r.backend) if reg_r is not None else None
        for i, (fn, gas) in enumerate(rows_e):
            other = f"{rows_r[i][1]:,}" if rows_r is not None else "-"
            print(f"| {fn} | {gas:,} | {other} | {gas / rows_e[0][1]:.1f} |")
        sizes = (4, 16, 32)
        print("\n### SwarmRounds gas per function, by swarm size (quorum n/2+1)\n")
        print("| function | " + " | ".join(f"n={n}" for n in sizes) + " | anvil, n=4 |")
        print("|---|" + "---:|" * (len(sizes) + 1))
        per_n = [swarm_gas(embedded, n) for n in sizes]
        swarm_r = swarm_gas(reg_r.backend, sizes[0]) if reg_r is not None else None
        for i, (fn, _) in enumerate(per_n[0]):
            fn = fn.replace(f"{sizes[0] - sizes[0] // 2 - 1} minority", "n/2-1 minority")
            fn = fn.replace(f"({sizes[0]} missed)", "(n missed)")
            other = "-" if swarm_r is None else f"{swarm_r[i][1]:,}"
            print(f"| {fn} | " + " | ".join(f"{rows[i][1]:,}" for rows in per_n) + f" | {other} |")
        print("\n### anchors per second (consecutive anchors of one log, ~2^20 leaves)\n")
        print(f"| backend | median of {args.runs} runs × {args.anchors} anchors | runs |")
        print("|---|---:|---|")
        for name, reg in (("embedded (SQLite file)", reg_e), ("rpc (anvil)", reg_r)):
            if reg is None:
                continue
            runs = [throughput(reg, args.anchors) for _ in range(args.runs)]
            print(
                f"| {name} | {statistics.median(runs):.1f} | "
                + ", ".join(f"{r:.1f}" for r in runs)
                + " |"
            )
        print(
            f"\nhash of this benchmark's tree definition: "
            f"{hashlib.sha256(mth(0, 1 << 40)).hexdigest()[:16]} (root of 2^40)"
        )
    finally:
        embedded.close()
        if anvil is not None:
            anvil.terminate()
            anvil.wait()
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
