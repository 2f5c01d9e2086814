"""Node throughput: dataset fetch over loopback, authorised gateway requests/s, tiles/s.

Each figure is printed next to a baseline measured in the same run (median of runs, with
the spread of the runs in brackets, and the load average before and after):
- fetch MB/s (download + decrypt + verify) vs reading the plaintext files from disk, and vs
  copying them to a new folder on the same disk (what any fetch must at least write);
- authorised small requests/s (signed, replay-checked, grant checked on the embedded
  chain, a sealed blob of a few hundred bytes) vs unauthenticated tile requests/s;
- tile requests/s (level-0 full tiles, 8 KiB each).

The node runs in a thread of the benchmark's process (as in the tests), so the node and
the fetcher share one interpreter and two cores.

Usage: .venv/bin/python benchmarks/bench_node.py [--quick] [--runs N]
       (1 GB dataset, 5 runs; --quick: 128 MB, 3 runs)
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.node.conftest import running

from ailedger import Workspace
from ailedger._node.app import create_app
from ailedger._node.client import NodeClient, fetch
from ailedger._provenance.datasets import add_dataset
from ailedger._provenance.encrypted import encryption_of, wrap_dataset_key


def _median(xs: list[float]) -> float:
    return statistics.median(xs)


def _spread(xs: list[float], fmt: str = "{:.0f}") -> str:
    return f"({fmt.format(min(xs))}–{fmt.format(max(xs))})"


def _load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--runs", type=int, default=0)
    args = ap.parse_args()
    total = (128 if args.quick else 1024) << 20
    runs = args.runs or (3 if args.quick else 5)
    tmp = Path(tempfile.mkdtemp(prefix="bench-node-"))
    try:
        data = tmp / "big"
        data.mkdir()
        per = 64 << 20
        for i in range(total // per):
            with open(data / f"part{i:03d}.bin", "wb") as f:
                for _ in range(per // (8 << 20)):
                    f.write(os.urandom(8 << 20))
        small = tmp / "small"
        small.mkdir()
        (small / "s.txt").write_bytes(b"x" * 200)
        owner = Workspace.init(tmp / "owner", name="owner")
        add_dataset(owner, data, encrypt=True)
        add_dataset(owner, small, encrypt=True)
        owner.log.append_many([b"e%d" % i for i in range(256 * 64)])
        req = Workspace.init(tmp / "req", name="req", chain=str(owner.path / "chain.sqlite"),
                             contracts=owner.path / "deployment.json")  # fmt: skip
        da = owner.agreements()
        rids = {}
        for name in ("big", "small"):
            enc = encryption_of(owner, name)
            assert enc is not None
            oid, _ = da.offer(bytes.fromhex(enc.manifest_digest), max_duration=86400, min_duration=60,
                              response_window=86400)  # fmt: skip
            rid, _ = req.agreements().request(oid, "bench")
            doc = wrap_dataset_key(owner, name, req.x25519_public)
            da.grant(rid, int(time.time()) + 86400, hashlib.sha256(doc.encode()).digest())
            rids[name] = rid
        small_enc = encryption_of(owner, "small")
        assert small_enc is not None
        small_blob = small_enc.files[0].sealed_sha256
        rows: list[tuple[str, str, str, str]] = []
        load_before = _load()
        with running(create_app(owner.path)) as url:
            fetch_s, read_s, copy_s = [], [], []
            for i in range(runs):
                t = time.perf_counter()
                for p in sorted(data.iterdir()):
                    with open(p, "rb") as f:
                        while f.read(8 << 20):
                            pass
                read_s.append(time.perf_counter() - t)
                t = time.perf_counter()
                shutil.copytree(data, tmp / f"copy{i}")
                copy_s.append(time.perf_counter() - t)
                shutil.rmtree(tmp / f"copy{i}")
                out = tmp / f"out{i}"
                t = time.perf_counter()
                fetch(req, url, f"request:{rids['big']}", out)
                fetch_s.append(time.perf_counter() - t)
                shutil.rmtree(out)
            mb = total / 1e6
            f_all = [mb / x for x in fetch_s]
            f_mbs, r_mbs, c_mbs = _median(f_all), mb / _median(read_s), mb / _median(copy_s)
            rows.append((f"fetch {mb:.0f} MB (download+decrypt+verify)",
                         f"{f_mbs:.0f} MB/s {_spread(f_all)}",
                         f"plain file read {r_mbs:.0f} MB/s", f"{f_mbs / r_mbs:.2f}"))  # fmt: skip
            rows.append(("", "", f"copy to the same disk {c_mbs:.0f} MB/s", f"{f_mbs / c_mbs:.2f}"))
            n = 300 if args.quick else 1000
            gw, tl = [], []
            with NodeClient(url, req._identity.ed25519, req.address) as c, httpx.Client() as h:
                target = f"/data/{rids['small']}/blob/{small_blob}?purpose=bench"
                for _ in range(runs):
                    t = time.perf_counter()
                    for _ in range(n):
                        r = c._http.send(c.signed(target))
                        assert r.status_code == 200, r.text
                    gw.append(n / (time.perf_counter() - t))
                    t = time.perf_counter()
                    for k in range(n):
                        r = h.get(f"{url}/tile/0/{k % 64:03d}")
                        assert r.status_code == 200
                    tl.append(n / (time.perf_counter() - t))
            g, tt = _median(gw), _median(tl)
            rows.append(("gateway authorised small requests", f"{g:.0f}/s {_spread(gw)}",
                         f"unauthenticated tile requests {tt:.0f}/s", f"{g / tt:.2f}"))  # fmt: skip
            rows.append(
                ("tiles (level 0, 8 KiB)", f"{tt:.0f}/s {_spread(tl)}",
                 f"{tt * 8192 / 1e6:.0f} MB/s", "")
            )  # fmt: skip
        owner.close()
        req.close()
        print(f"## bench_node ({'quick' if args.quick else 'full'}; median of {runs})\n")
        print("| figure | median (spread of runs) | baseline (same run) | ratio |")
        print("|---|---:|---|---:|")
        for r_ in rows:
            print("| " + " | ".join(r_) + " |")
        print(f"\nLoad average (1/5/15 min) before: {load_before}, after: {_load()}.")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
