"""Run every benchmark and write their tables to docs/benchmarks-latest.md.

    python benchmarks/run.py           # full run (what `make bench` does)
    python benchmarks/run.py --quick   # smaller sizes, a few minutes

docs/benchmarks.md is the curated record (figures of record, every run they came from, the
analysis); a fresh run never overwrites it: compare docs/benchmarks-latest.md with it.
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DOC = HERE.parent / "docs" / "benchmarks-latest.md"


def _run(script: str, *args: str) -> str:
    p = subprocess.run(
        [sys.executable, str(HERE / script), *args], capture_output=True, text=True, check=False
    )
    sys.stderr.write(p.stderr)
    if p.returncode != 0:
        raise SystemExit(f"{script} failed with exit code {p.returncode}")
    return p.stdout.strip()


def main() -> None:
    quick = "--quick" in sys.argv
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    log = _run("bench_log.py", *(["--quick"] if quick else []))
    chain = _run("bench_chain.py", *(["--runs", "3", "--anchors", "20"] if quick else []))
    fingerprint = _run("bench_fingerprint.py", *(["--quick"] if quick else []))
    tracking = _run("bench_tracking.py", *(["--quick"] if quick else []))
    crypto = _run("bench_crypto.py", *(["--quick"] if quick else []))
    node = _run("bench_node.py", *(["--quick"] if quick else []))
    aggregate = _run("bench_aggregate.py", *(["--quick"] if quick else []))
    swarm = _run("bench_swarm.py", *(["--quick"] if quick else []))
    head = (
        f"Measured {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()}"
        f" cores ({cpu}), Python {platform.python_version()}, SQLite"
        f" {__import__('sqlite3').sqlite_version}{' (--quick)' if quick else ''}."
        " The machine is shared and noisy: every figure is a median, and each baseline was"
        " measured in the same run."
    )
    DOC.write_text(
        "# Benchmarks: the latest run\n\n"
        "Written by `make bench` (`python benchmarks/run.py [--quick]`): the tables of one\n"
        "fresh run, unedited. The figures of record, the runs they came from and what\n"
        "bounds them are in docs/benchmarks.md. Figures are never asserted in tests.\n\n"
        f"{head}\n\n## Log (issue 2)\n\n{log}\n\n## Chain (issue 3)\n\n{chain}\n"
        f"\n## Datasets (issue 4)\n\n{fingerprint}\n"
        f"\n## Tracking and predictions (issue 4)\n\n{tracking}\n"
        f"\n## Encryption at rest (issue 5)\n\n{crypto}\n"
        f"\n## Node and data gateway (issue 5)\n\n{node}\n"
        f"\n## Swarm aggregation (issue 6)\n\n{aggregate}\n"
        f"\n## Swarm rounds: coordination overhead and scaling (issue 6)\n\n{swarm}\n"
    )
    print(DOC.read_text())


if __name__ == "__main__":
    main()
