"""Aggregation of model updates: each rule vs a plain numpy mean, and scaling with members.

    python benchmarks/bench_aggregate.py            # 16 updates × 10 M float32 parameters
    python benchmarks/bench_aggregate.py --quick    # 16 updates × 1 M

Every figure is the median of 3 runs. The baseline, ``np.mean(np.stack(updates), axis=0)``
(neither deterministic across machines nor weighted), runs on the same arrays in the same
process, interleaved with ours. Digests are passed in (``digests=``), as a runner that has
verified each fetched update against its commitment has them; hashing the updates is shown
as its own row. Prints a markdown table.
"""

from __future__ import annotations

import hashlib
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np

from ailedger._swarm.aggregate import aggregate
from ailedger._swarm.params import digest

RULES: list[tuple[str, object]] = [
    ("fedavg", None),
    ("median", None),
    ("trimmed_mean", 0.125),
    ("krum", 1),
]


def _median(fn: Callable[[], object], runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    quick = "--quick" in sys.argv
    size = 1_000_000 if quick else 10_000_000
    rng = np.random.default_rng(0)
    all_ups = [
        ({"w": rng.standard_normal(size, dtype=np.float32)}, 1000 + i) for i in range(16)
    ]
    all_ds = [digest(u[0]) for u in all_ups]
    print(f"# Aggregation, {size:,} float32 parameters per update (median of 3)\n")
    print("| updates | rule | ours (s) | np.mean(np.stack) (s) | ratio |")
    print("|---:|---|---:|---:|---:|")
    for n in (2, 4, 8, 16):
        ups, ds = all_ups[:n], all_ds[:n]
        arrays = [u[0]["w"] for u in ups]
        for rule, param in RULES:
            if rule == "krum" and n < 2 * 1 + 3:
                continue
            if rule == "trimmed_mean" and n < 8:
                continue
            base = _median(lambda a=arrays: np.mean(np.stack(a), axis=0))
            ours = _median(lambda r=rule, p=param, u=ups, d=ds: aggregate(r, u, param=p, digests=d))
            label = rule if param is None else f"{rule}({param})"
            print(f"| {n} | {label} | {ours:.3f} | {base:.3f} | {ours / base:.2f}× |")
    t = _median(lambda: [hashlib.sha256(u[0]["w"].tobytes()) for u in all_ups])
    td = _median(lambda: [digest(u[0]) for u in all_ups])
    print(f"| 16 | digest of every update | {td:.3f} | {t:.3f} (hashlib.sha256 of the bytes) | {td / t:.2f}× |")


if __name__ == "__main__":
    main()
