"""Tracking and prediction-logging benchmarks (issue 4).

    python benchmarks/bench_tracking.py           # ~30 s training loop, ~4 min in all
    python benchmarks/bench_tracking.py --quick   # ~5 s training loop, < 1 min

(a) Tracking overhead: a real CPU training loop (mini-batch SGD logistic
regression in numpy on scikit-learn's bundled digits data, no download), timed
with and without ``ailedger.track`` around it, ``log_metrics`` called on every
step. Runs are interleaved (plain, tracked, plain, ...) and each figure is the
median of 3, so machine noise hits both alike. Beside it, the direct cost of
everything tracking adds (entering and recording the run, and the same number
of ``log_metrics`` calls with no training) as a share of the plain loop: the
noise-free figure.

(b) Predictions logged per second through ``PredictionLogger.log`` in batches of
10,000 (each batch signed, recorded and fsynced), beside the floor of just
hashing the same inputs and outputs with hashlib in a plain loop.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import ailedger
from ailedger._provenance.predictions import PredictionLogger
from ailedger._provenance.tracking import track


def load_data() -> tuple[Any, Any]:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float64)
    return np.hstack([x, np.ones((len(x), 1))]), y.astype(np.int64)


def train(
    x: Any, y: Any, steps: int, run: Any | None, batch: int = 256, seed: int = 0
) -> float:
    """Softmax regression by mini-batch SGD; returns the final loss."""
    rng = np.random.default_rng(seed)
    k = int(y.max()) + 1
    w = np.zeros((x.shape[1], k))
    onehot = np.eye(k)[y]
    loss = 0.0
    n = len(x)
    for step in range(steps):
        idx = rng.integers(0, n, batch)
        xb, yb = x[idx], onehot[idx]
        z = xb @ w
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        loss = float(-np.mean(np.sum(yb * np.log(p + 1e-12), axis=1)))
        w -= 0.5 * (xb.T @ (p - yb)) / batch
        if run is not None:
            run.log_metrics({"loss": loss, "lr": 0.5}, step=step)
    return loss


def bench_overhead(root: Path, seconds: float, runs: int) -> list[str]:
    x, y = load_data()
    ws = ailedger.Workspace.init(root / "ws-track", name="bench")
    model = root / "model.npy"
    # calibrate the number of steps to the target duration
    # (CPU time, so a busy shared machine does not shrink the loop)
    t = time.process_time()
    train(x, y, 2000, None)
    per_step = (time.process_time() - t) / 2000
    steps = max(200, int(seconds / per_step))

    plain: list[float] = []
    tracked: list[float] = []
    plain_cpu: list[float] = []
    tracked_cpu: list[float] = []
    for i in range(runs):
        t, c = time.perf_counter(), time.process_time()
        train(x, y, steps, None, seed=i)
        plain.append(time.perf_counter() - t)
        plain_cpu.append(time.process_time() - c)

        t, c = time.perf_counter(), time.process_time()
        with track("bench", params={"steps": steps, "lr": 0.5}, workspace=ws) as run:
            run.use(__file__)
            train(x, y, steps, run, seed=i)
            model.write_bytes(b"w" * 1024)
            run.log_model(model)
        tracked.append(time.perf_counter() - t)
        tracked_cpu.append(time.process_time() - c)
        assert run.index is not None and not run.errors
    p, q = statistics.median(plain), statistics.median(tracked)
    pc, qc = statistics.median(plain_cpu), statistics.median(tracked_cpu)

    # the noise-free figure: only what tracking adds, with no training in between
    adds: list[float] = []
    for _ in range(runs):
        t = time.perf_counter()
        with track("bench", params={"steps": steps}, workspace=ws) as run:
            run.use(__file__)
            for step in range(steps):
                run.log_metrics({"loss": 0.1, "lr": 0.5}, step=step)
            run.log_model(model)
        adds.append(time.perf_counter() - t)
    a = statistics.median(adds)
    ws.close()
    return [
        "### Tracking overhead (training loop)",
        "",
        f"Softmax regression, mini-batch SGD in numpy on scikit-learn digits,"
        f" {steps:,} steps, `log_metrics` every step; median of {runs}.",
        "",
        "| measurement | time | vs. plain loop |",
        "|---|---:|---:|",
        f"| plain loop, wall clock (baseline) | {p:.2f} s | 1.000 |",
        f"| same loop inside `track(...)`, wall clock | {q:.2f} s | {q / p:.3f}"
        f" ({(q / p - 1) * 100:+.2f} %) |",
        f"| plain loop, process CPU time (baseline) | {pc:.2f} s | 1.000 |",
        f"| same loop inside `track(...)`, process CPU time | {qc:.2f} s | {qc / pc:.3f}"
        f" ({(qc / pc - 1) * 100:+.2f} %) |",
        f"| what tracking adds alone (enter, {steps:,} `log_metrics`, record) | {a * 1e3:.1f} ms"
        f" | {a / p * 100:.3f} % |",
        "",
        "On a shared machine the whole-loop ratios carry a few % of noise either way; the"
        " last row times only what tracking adds and is the figure to compare with 1 %.",
        "",
        f"Per `log_metrics` call: {(a / steps) * 1e6:.2f} µs (upper bound: includes enter/record)."
        " Target: overhead < 1 %.",
        "",
    ]


def bench_predictions(root: Path, n: int, runs: int) -> list[str]:
    rng = np.random.default_rng(1)
    inputs = [rng.bytes(64) for _ in range(n)]
    outputs = [rng.bytes(8) for _ in range(n)]
    ws = ailedger.Workspace.init(root / "ws-pred", name="bench")
    model = root / "m.bin"
    model.write_bytes(b"model")
    import hashlib

    def floor() -> float:
        sha = hashlib.sha256
        t = time.perf_counter()
        for i, o in zip(inputs, outputs, strict=True):
            sha(i).hexdigest()
            sha(o).hexdigest()
        return n / (time.perf_counter() - t)

    def ours() -> float:
        t = time.perf_counter()
        with PredictionLogger(ws, model, batch_size=10_000) as lg:
            log = lg.log
            for i, o in zip(inputs, outputs, strict=True):
                log(i, o)
        return n / (time.perf_counter() - t)

    f, o = [], []
    for _ in range(runs):
        f.append(floor())
        o.append(ours())
    fm, om = statistics.median(f), statistics.median(o)
    ws.close()
    return [
        "### Predictions logged",
        "",
        f"{n:,} predictions (64-byte input, 8-byte output), batches of 10,000 (each batch"
        f" one signed, fsynced statement and a leaves blob); median of {runs}.",
        "",
        "| measurement | predictions/s | ratio |",
        "|---|---:|---:|",
        f"| hashlib: just hash input and output (floor) | {fm:,.0f} | 1.00 |",
        f"| `PredictionLogger.log` incl. batch flushes | {om:,.0f} | {om / fm:.2f} |",
        "",
        "Target: ≥ 50,000 predictions/s.",
        "",
    ]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    seconds = 5.0 if args.quick else 30.0
    n = 100_000 if args.quick else 300_000
    root = Path(tempfile.mkdtemp(prefix="ailedger-bench-track-"))
    os.environ.pop("AILEDGER_PASSPHRASE", None)
    try:
        out = bench_overhead(root, seconds, 3) + bench_predictions(root, n, 3)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
