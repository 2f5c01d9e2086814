"""Log benchmarks (issue 2): appends, signed statements, proofs, and the cost curve to 10^7.

    python benchmarks/bench_log.py            # full run (~3 min, ~2 GB temp disk)
    python benchmarks/bench_log.py --quick    # smaller sizes, for a smoke run

Every figure is the median of several runs and stands beside a baseline measured
in the same run, so the ratio is meaningful on a noisy shared machine:

- append_many vs. the plain-Python floor: just hashing the leaves (hashlib) and
  just inserting the same rows into SQLite (no tree) — what bounds us;
- record_many vs. bare Ed25519 signing and RFC 8785 canonicalisation, and the
  published Tessera figure (~2,900 signed entries/s on 12 cores);
- proofs vs. the plain recursive RFC 9162 reference (ailedger.merkle over an
  in-memory list, O(n) per proof).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import rfc8785

import ailedger
from ailedger import merkle

TESSERA_PUBLISHED = 2900.0  # entries/s, 12 cores (DESIGN §7)


def median_rate(fn: Callable[[], int], runs: int) -> float:
    """Median of ``runs`` rates; ``fn`` returns how many items it did."""
    rates = []
    for _ in range(runs):
        t = time.perf_counter()
        n = fn()
        rates.append(n / (time.perf_counter() - t))
    return statistics.median(rates)


def fresh_ws(root: Path, name: str) -> ailedger.Workspace:
    p = root / name
    if p.exists():
        shutil.rmtree(p)
    return ailedger.Workspace.init(p, name="bench")


def bench_append_many(root: Path, runs: int, n: int) -> list[tuple[str, float, str]]:
    entries = [os.urandom(500) for _ in range(n)]

    def ours() -> int:
        ws = fresh_ws(root, "append")
        for i in range(0, n, 10_000):
            ws.log.append_many(entries[i : i + 10_000])
        ws.close()
        return n

    def hash_only() -> int:
        sha = hashlib.sha256
        for e in entries:
            sha(b"\x00" + e).digest()
        return n

    def sqlite_only() -> int:
        p = root / "raw.sqlite"
        p.unlink(missing_ok=True)
        db = sqlite3.connect(p, isolation_level=None)
        db.executescript("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;")
        db.execute("CREATE TABLE e(idx INTEGER PRIMARY KEY, data BLOB)")
        for i in range(0, n, 10_000):
            db.execute("BEGIN")
            db.executemany("INSERT INTO e VALUES (?,?)", enumerate(entries[i : i + 10_000], i))
            db.execute("COMMIT")
        db.close()
        return n

    r = median_rate(ours, runs)
    h = median_rate(hash_only, runs)
    s = median_rate(sqlite_only, runs)
    return [
        ("append_many, 500-byte entries, batches of 10k (entries/s)", r, "target ≥ 100,000"),
        ("  floor: leaf hashing only (hashlib)", h, f"ours = {r / h:.2f}× of it"),
        ("  floor: SQLite insert of the same rows, no tree", s, f"ours = {r / s:.2f}× of it"),
    ]


def bench_record_many(root: Path, runs: int, n: int) -> list[tuple[str, float, str]]:
    sts = [
        ailedger.statement(
            [{"name": f"model-{i}.bin", "digest": {"sha256": hashlib.sha256(b"%d" % i).hexdigest()}}],
            "https://ailedger.dev/prediction/v1",
            {"input_sha256": hashlib.sha256(b"in%d" % i).hexdigest(), "output": i % 7},
        )
        for i in range(n)
    ]
    ws = fresh_ws(root, "record")

    def ours() -> int:
        for i in range(0, n, 5_000):
            ws.record_many(sts[i : i + 5_000])
        return n

    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    payloads = [rfc8785.dumps(s) for s in sts]

    def sign_only() -> int:
        for p in payloads:
            key.sign(p)
        return n

    def canon_only() -> int:
        for s in sts:
            rfc8785.dumps(s)
        return n

    r = median_rate(ours, runs)
    sg = median_rate(sign_only, runs)
    c = median_rate(canon_only, runs)
    ws.close()
    return [
        ("record_many: sign DSSE + append, 1 core (statements/s)", r, "target ≥ 10,000"),
        ("  published: Tessera, 12 cores", TESSERA_PUBLISHED, f"ours = {r / TESSERA_PUBLISHED:.1f}×"),
        ("  floor: Ed25519 signing only (cryptography)", sg, f"ours = {r / sg:.2f}× of it"),
        ("  floor: RFC 8785 canonicalisation only (rfc8785)", c, f"ours = {r / c:.2f}× of it"),
    ]


def bench_proofs(root: Path, runs: int, n: int) -> list[tuple[str, float, str]]:
    ws = fresh_ws(root, "proofs")
    entries = [b"e%d" % i for i in range(n)]
    ws.log.append_many(entries)
    root_hash = ws.log.root()
    import random

    rng = random.Random(1)
    idx = [rng.randrange(n) for _ in range(5_000)]
    leaf_hashes = [merkle.leaf_hash(e) for e in entries]
    proofs = [ws.log.inclusion_proof(i, n) for i in idx]

    def gen() -> int:
        for i in idx:
            ws.log.inclusion_proof(i, n)
        return len(idx)

    def verify() -> int:
        for i, p in zip(idx, proofs, strict=True):
            merkle.verify_inclusion(leaf_hashes[i], i, n, p, root_hash)
        return len(idx)

    def cons() -> int:
        for i in idx[:2000]:
            ws.log.consistency_proof(i + 1, n)
        return 2000

    ref_n = min(n, 20_000)
    ref_leaves = leaf_hashes[:ref_n]

    def reference() -> int:
        for i in idx[:20]:
            merkle.inclusion_proof(i % ref_n, ref_leaves)
        return 20

    g = median_rate(gen, runs)
    v = median_rate(verify, runs)
    c = median_rate(cons, runs)
    ref = median_rate(reference, runs)
    ws.close()
    return [
        (f"inclusion proof generation at size {n:,} (proofs/s)", g, "target ≥ 20,000"),
        (f"consistency proof generation at size {n:,} (proofs/s)", c, "target ≥ 20,000"),
        (f"inclusion proof verification, {len(proofs[0])} hashes (proofs/s)", v, "target ≥ 20,000"),
        (f"  baseline: plain in-memory reference at size {ref_n:,}", ref, f"ours = {g / ref:,.0f}×"),
    ]


def bench_curve(root: Path, sizes: list[int], entry_size: int) -> list[tuple[int, float, float]]:
    """Append rate and proof time measured as the log grows past each size."""
    ws = fresh_ws(root, "curve")
    out = []
    blob = os.urandom(entry_size)
    n = 0

    def make(start: int, count: int) -> list[bytes]:
        return [blob[:-8] + (start + k).to_bytes(8, "big") for k in range(count)]

    for target in sizes:
        while n < target:  # fill fast, in big batches
            step = min(50_000, target - n)
            ws.log.append_many(make(n, step))
            n += step
        start, rates = n, []
        for _ in range(3):
            es = make(n, 5_000)
            t = time.perf_counter()
            ws.log.append_many(es)
            rates.append(5_000 / (time.perf_counter() - t))
            n += 5_000
        t = time.perf_counter()
        for k in range(2000):
            ws.log.inclusion_proof((k * 7919) % n, n)
        proof_us = (time.perf_counter() - t) / 2000 * 1e6
        out.append((start, statistics.median(rates), proof_us))
        print(f"  curve: size {start:>12,}  {statistics.median(rates):>10,.0f} appends/s"
              f"  {proof_us:6.1f} µs/proof", file=sys.stderr)
    ws.close()
    return out


def main() -> str:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    runs = 3 if args.quick else 5
    tmp = Path(tempfile.mkdtemp(prefix="ailedger-bench-"))
    try:
        rows = []
        rows += bench_append_many(tmp, runs, 50_000 if args.quick else 200_000)
        rows += bench_record_many(tmp, runs, 10_000 if args.quick else 30_000)
        rows += bench_proofs(tmp, runs, 100_000 if args.quick else 1_000_000)
        sizes = [10**3, 10**4, 10**5, 10**6] + ([] if args.quick else [10**7])
        curve = bench_curve(tmp, sizes, 100)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    lines = ["| measure | median | vs. baseline / target |", "|---|---:|---|"]
    for name, value, note in rows:
        lines.append(f"| {name} | {value:,.0f} | {note} |")
    lines += [
        "",
        "Cost per append as the log grows (100-byte entries, batches of 5k, median of 3 batches"
        " measured at each size; inclusion proof time at that size):",
        "",
        "| log size | appends/s | vs. first | µs per inclusion proof |",
        "|---:|---:|---:|---:|",
    ]
    base = curve[0][1]
    for n, rate, us in curve:
        lines.append(f"| {n:,} | {rate:,.0f} | {rate / base:.2f}× | {us:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(main())
