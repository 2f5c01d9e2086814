"""Swarm rounds end to end with real components on loopback.

Three workspaces share one embedded chain; each serves its blob store with a real node
(uvicorn in a thread); each member runs its rounds in its own thread with its own
``Workspace`` handle, so commits, fetches and submissions really interleave. Training is
scikit-learn ``LogisticRegression`` on disjoint thirds of ``load_digits``.

Where a test needs a faulty member's submission to land before the honest quorum (so the
chain records it as a minority rather than refusing it as late), the honest members wait
(bounded) for the faulty member's ``on_submitted`` hook — ordering only, no timing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ailedger import ChainError, Workspace
from ailedger._swarm import encode
from ailedger._swarm.runner import SwarmMember

from .conftest import Data, _Gate, _members, create, run_members, running, statements

# lbfgs capped at 30 iterations per round warns; catch_warnings is not thread-safe.
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def test_fedavg_rounds_agree_and_match_centralised(swarm_env: dict[str, Any], data: Data) -> None:
    sid = create(swarm_env, data, "fedavg")
    res = run_members(swarm_env, sid, [data.trainer(i) for i in range(3)], 3)
    for r in range(3):
        outs = {res[i][r].global_digest for i in range(3)}
        assert len(outs) == 1, outs
        assert all(res[i][r].status == "finalized" for i in range(3))
        assert all(not res[i][r].skipped for i in range(3))
    ws = Workspace.open(swarm_env["homes"][0])
    try:
        info = ws.swarm_rounds().swarm_info(sid)
        assert info is not None and info.global_digest is not None
        final = info.global_digest.hex()
        assert info.finalized_rounds == 3
    finally:
        ws.close()
    assert res[0][-1].global_digest == final
    from ailedger._swarm import decode

    g = decode(Workspace.open(swarm_env["homes"][1]).blobs.get(final), expected_digest=final)
    acc = data.accuracy(g)
    assert acc >= data.central - 0.02, (acc, data.central)
    for h in swarm_env["homes"]:
        sts = statements(h, sid)
        assert [s["predicate"]["round"] for s in sts] == [0, 1, 2]
        last = sts[-1]
        assert last["subject"][0]["digest"] == {"sha256": final}
        p = last["predicate"]
        assert p["outcome"]["status"] == "finalized"
        assert p["outcome"]["globalDigest"] == {"sha256": final}
        assert p["rule"] == {"rule": "fedavg"}
        assert len(p["members"]) == 3 and all(m["used"] for m in p["members"])
        assert sts[1]["predicate"]["inputGlobal"] == sts[0]["subject"][0]["digest"]
    swarm_env["fedavg_acc"] = acc


def test_poisoned_member_median_keeps_accuracy(swarm_env: dict[str, Any], data: Data) -> None:
    sid = create(swarm_env, data, "median")
    trainers = [data.trainer(0), data.trainer(1), data.trainer(2, poison=True)]
    res = run_members(swarm_env, sid, trainers, 3)
    final = res[0][-1].global_digest
    assert all(res[i][-1].global_digest == final for i in range(3))
    assert all(x.status == "finalized" for rr in res for x in rr)
    from ailedger._swarm import decode

    ws = Workspace.open(swarm_env["homes"][0])
    try:
        g = decode(ws.blobs.get(final), expected_digest=final)
    finally:
        ws.close()
    honest = swarm_env.get("fedavg_acc", data.central)
    acc = data.accuracy(g)
    assert acc >= honest - 0.05, (acc, honest)
    # The poisoned update is on record: its committed digest is in every round statement.
    sts = statements(swarm_env["homes"][0], sid)
    assert len(sts) == 3
    assert all(s["predicate"]["rule"] == {"rule": "median"} for s in sts)


def test_wrong_bytes_are_skipped_and_recorded(swarm_env: dict[str, Any], data: Data) -> None:
    """C commits its real update but its node serves other (validly encoded) bytes: A and B
    skip it and say why in their statements; C's own aggregate differs — a minority."""
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    other = encode({"coef": np.ones((10, 64)), "intercept": np.ones(10)})

    async def liar(request: Any) -> Response:
        return Response(other, media_type="application/octet-stream")

    app = Starlette(routes=[Route("/blob/sha256/{d}", liar)])
    sid = create(swarm_env, data, "fedavg")
    gate = _Gate()
    with running(app) as bad_url:
        urls = [*swarm_env["urls"][:2], bad_url]
        res = run_members(
            swarm_env, sid, [data.trainer(i) for i in range(3)], 1, urls=urls,
            classes=_members(gate, wrong=False),
        )
    c_addr = Workspace.open(swarm_env["homes"][2]).address
    for i in (0, 1):
        assert c_addr in res[i][0].skipped
        assert "do not match the committed digest" in res[i][0].skipped[c_addr]
        p = statements(swarm_env["homes"][i], sid)[0]["predicate"]
        entry = next(m for m in p["members"] if m["address"] == c_addr)
        assert entry["used"] is False and "do not match" in entry["skipped"]
        assert p["outcome"]["status"] == "finalized"
    assert res[0][0].global_digest == res[1][0].global_digest == res[2][0].global_digest
    p = statements(swarm_env["homes"][2], sid)[0]["predicate"]
    assert p["computed"] != p["outcome"]["globalDigest"]
    assert p["outcome"]["minority"] == [{"address": c_addr, "digest": p["computed"]}]


def test_wrong_global_digest_is_minority_on_chain(swarm_env: dict[str, Any], data: Data) -> None:
    sid = create(swarm_env, data, "fedavg")
    gate = _Gate()
    res = run_members(
        swarm_env, sid, [data.trainer(i) for i in range(3)], 2,
        classes=_members(gate, wrong=True),
    )
    c_addr = Workspace.open(swarm_env["homes"][2]).address
    ws = Workspace.open(swarm_env["homes"][0])
    try:
        sw = ws.swarm_rounds()
        assert sw.minority(sid, c_addr) == 2
        hist = sw.history(sid, from_block=ws.deployment.deployed_at_block)
        assert [o.minority for o in hist] == [((c_addr, b"\xee" * 32),)] * 2
    finally:
        ws.close()
    # C still follows the agreed model (fetched from a supporter) and records its minority.
    for r in range(2):
        assert res[2][r].global_digest == res[0][r].global_digest
        p = res[2][r].predicate
        assert p["submitted"] == {"sha256": "ee" * 32}
        assert p["outcome"]["minority"][0]["address"] == c_addr


TRAIN_MODULE = """
import os

def train(params, r):
    k = int(os.environ["MEMBER_K"])
    return {"w": params["w"] + k}, 10 * k
"""


def cli(home: Path, *args: str, cwd: Path | None = None, k: int = 1) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AILEDGER_HOME": str(home), "MEMBER_K": str(k)}
    return subprocess.run(
        [sys.executable, "-m", "ailedger", *args], env=env, cwd=cwd,
        capture_output=True, text=True, timeout=150,
    )


def test_cli_create_join_run_status_lineage(swarm_env: dict[str, Any], tmp_path: Path) -> None:
    homes, urls = swarm_env["homes"], swarm_env["urls"]
    (tmp_path / "mytrain.py").write_text(TRAIN_MODULE)
    init = tmp_path / "init.params"
    init.write_bytes(encode({"w": np.zeros(4)}))
    addrs = [Workspace.open(h).address for h in homes]
    out = cli(homes[0], "swarm", "create", "--members", ",".join(addrs), "--quorum", "2",
              "--rule", "fedavg", "--init", str(init), "--commit-window", "40",
              "--submit-window", "40")
    assert out.returncode == 0, out.stderr
    sid = int(out.stdout.split()[1].rstrip(":"))
    for h, u in zip(homes, urls, strict=True):
        j = cli(h, "swarm", "join", str(sid), "--node", u)
        assert j.returncode == 0, j.stderr
    assert "started" in j.stdout
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "ailedger", "swarm", "run", str(sid), "--train",
             "mytrain:train", "--rounds", "2", "--out", str(tmp_path / f"final{i}.params")],
            env={**os.environ, "AILEDGER_HOME": str(h), "MEMBER_K": str(i + 1)},
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for i, h in enumerate(homes)
    ]
    outs = [p.communicate(timeout=150) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    finals = {(tmp_path / f"final{i}.params").read_bytes() for i in range(3)}
    assert len(finals) == 1
    from ailedger._swarm import decode

    # fedavg of w+1, w+2, w+3 weighted 10, 20, 30: +14/6 per round.
    w = decode(finals.pop())["w"]
    assert np.allclose(w, 2 * 14 / 6)
    st = cli(homes[1], "swarm", "status", str(sid))
    assert st.returncode == 0, st.stderr
    assert "round 0 finalized" in st.stdout and "round 1 finalized" in st.stdout
    lin = cli(homes[0], "lineage", str(tmp_path / "final0.params"))
    assert lin.returncode == 0, lin.stderr
    assert "federated" in lin.stdout.lower() or "swarm" in lin.stdout.lower(), lin.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["swarm", "run", "1", "--train", "nosuchmodule_xyz:f"], "cannot import"),
        (["swarm", "run", "1", "--train", "nocolon"], "module:function"),
        (["swarm", "status", "999"], "no swarm 999"),
        (["swarm", "create", "--members", "0x0000000000000000000000000000000000000001",
          "--quorum", "1", "--rule", "bogus", "--init", "/nonexistent"], "unknown rule"),
        (["swarm", "create", "--members", "0x0000000000000000000000000000000000000001",
          "--quorum", "1", "--init", "/nonexistent"], "No such file"),
        (["swarm", "create", "--members", "0x0000000000000000000000000000000000000001",
          "--quorum", "1", "--rule", "krum", "--init", "/nonexistent"], "needs a parameter"),
    ],
)
def test_cli_bad_input(swarm_env: dict[str, Any], args: list[str], message: str) -> None:
    out = cli(swarm_env["homes"][0], *args)
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ailedger: error:"), out.stderr
    assert message in lines[0], lines[0]


def test_dp_budget_recorded_per_round(swarm_env: dict[str, Any], data: Data) -> None:
    from ailedger._swarm import DPConfig

    cfg = DPConfig(clip=5.0, noise_multiplier=1.0, delta=1e-5)

    class DP(SwarmMember):
        def __init__(self, *a: Any, **k: Any) -> None:
            super().__init__(*a, dp=cfg, **k)

    sid = create(swarm_env, data, "fedavg")
    res = run_members(swarm_env, sid, [data.trainer(i) for i in range(3)], 2, classes=[DP] * 3)
    assert len({res[i][-1].global_digest for i in range(3)}) == 1
    for i in range(3):
        dp = [x.predicate["dp"] for x in res[i]]
        assert dp[0]["round"]["rho"] == pytest.approx(0.5)
        assert dp[0]["config"] == {"clip": 5.0, "noiseMultiplier": 1.0, "delta": 1e-5}
        assert dp[1]["cumulative"]["rounds"] == 2 and dp[1]["cumulative"]["rho"] == pytest.approx(1.0)
        assert dp[1]["cumulative"]["epsilon"] > dp[0]["cumulative"]["epsilon"]
        seed = dp[0]["round"]["seed"]
        assert set(seed) == {"sha256"}  # the seed itself stays private
        import hashlib
        import sqlite3

        db = sqlite3.connect(swarm_env["homes"][i] / "provenance.sqlite")
        (opening,) = db.execute(
            "SELECT opening FROM swarm_dp_seeds WHERE swarm = ? AND round = 0", (sid,)
        ).fetchone()
        db.close()
        assert hashlib.sha256(opening.encode()).hexdigest() == seed["sha256"]


def test_crashed_member_is_missed_and_honest_quorum_finalises(
    swarm_env: dict[str, Any], data: Data
) -> None:
    """C joins, then never takes part: A and B wait out the (short) commit window,
    aggregate their two updates and finalise; C's miss is on chain and in the statements."""
    sid = create(swarm_env, data, "fedavg", commit_window=10)
    # Embedded-chain blocks are stamped max(wall clock, parent + 1 s): after a burst of
    # transactions chain time runs ahead of the wall clock and, with nobody transacting,
    # waits for it. Empty transfers (time passing on chain) let the deadline arrive —
    # only once A and B have committed, so a slow (loaded) machine cannot close the
    # window on an honest member before it commits.
    stop = threading.Event()

    def tick() -> None:
        ws = Workspace.open(swarm_env["homes"][2])
        try:
            sw = ws.swarm_rounds()
            while not stop.wait(0.3):
                ri = sw.round_info(sid, 0)
                if ri is not None and ri.commit_count >= 2:
                    ws.chain.send_value(ws.account, ws.address, 0)
        finally:
            ws.close()

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    try:
        res = run_members(
            swarm_env, sid, [data.trainer(i) for i in range(3)], 1, active=(0, 1)
        )
    finally:
        stop.set()
        ticker.join(10)
    c_addr = Workspace.open(swarm_env["homes"][2]).address
    assert res[0][0].status == res[1][0].status == "finalized"
    assert res[0][0].global_digest == res[1][0].global_digest
    assert len(res[0][0].used) == 2
    ws = Workspace.open(swarm_env["homes"][0])
    try:
        assert ws.swarm_rounds().misses(sid, c_addr) == 1
    finally:
        ws.close()
    for i in (0, 1):
        p = statements(swarm_env["homes"][i], sid)[0]["predicate"]
        assert p["outcome"]["missed"] == [c_addr]
        entry = next(m for m in p["members"] if m["address"] == c_addr)
        assert "update" not in entry and entry["nodeUrl"] == swarm_env["urls"][2]


def test_peer_updates_are_fetched_while_a_slower_peer_still_trains(
    swarm_env: dict[str, Any], data: Data
) -> None:
    # A member downloads each update as soon as its commitment is on chain: the slow peer
    # does not finish training (so cannot commit) until member 0 has fetched member 1's
    # update. Ordering only: the slow peer's wait is bounded, and a timeout fails the test.
    import time

    sid = create(swarm_env, data, "fedavg")
    addr = [Workspace.open(h).address for h in swarm_env["homes"]]
    got_fast = threading.Event()
    waited: list[bool] = []
    fetched: dict[str, float] = {}
    train2 = data.trainer(2)

    def slow(g: dict[str, np.ndarray], r: int) -> tuple[dict[str, np.ndarray], int]:
        waited.append(got_fast.wait(30))
        return train2(g, r)

    class Recording(SwarmMember):
        def _fetch_update(self, member: str, d: str, like: Any, url: str | None = None) -> Any:
            fetched.setdefault(member, time.monotonic())
            out = super()._fetch_update(member, d, like, url)
            if member == addr[1]:
                got_fast.set()
            return out

    res = run_members(
        swarm_env, sid, [data.trainer(0), data.trainer(1), slow], 1,
        classes=[Recording, SwarmMember, SwarmMember],
    )  # fmt: skip
    assert waited == [True]  # member 1's update was in hand before member 2 could commit
    assert fetched[addr[1]] < fetched[addr[2]]
    assert all(res[i][0].status == "finalized" and not res[i][0].skipped for i in range(3))
    assert len({res[i][0].global_digest for i in range(3)}) == 1


def test_a_member_joining_mid_round_is_fetched_from_its_url(
    swarm_env: dict[str, Any], data: Data
) -> None:
    # Member 2 joins after round 0 started and after member 0 began waiting for commits:
    # its node URL did not exist at member 0's first poll. Member 0 MUST still fetch its
    # update (the URL is read with the commitment), not skip it as "no node URL".
    sid = create(swarm_env, data, "fedavg", quorum=2)
    homes, urls = swarm_env["homes"], swarm_env["urls"]
    trainers = [data.trainer(i) for i in range(3)]
    joined2 = threading.Event()
    waited: list[bool] = []

    def train1(g: dict[str, np.ndarray], r: int) -> tuple[dict[str, np.ndarray], int]:
        waited.append(joined2.wait(60))  # so the round waits for member 2's commit too
        return trainers[1](g, r)

    train = [trainers[0], train1, trainers[2]]

    def member(i: int, ws: Workspace) -> SwarmMember:
        return SwarmMember(ws, sid, train=train[i], node_url=urls[i], timeout=60)

    def join(i: int) -> None:
        ws = Workspace.open(homes[i])  # a workspace handle belongs to one thread
        try:
            member(i, ws).join()
            if i == 1:
                ws.swarm_rounds().start(sid)
        finally:
            ws.close()

    results: dict[int, Any] = {}
    errors: list[BaseException] = []
    polled = threading.Event()

    class FirstPoll(SwarmMember):
        def _wait(self, until: Any, limit: float, what: str) -> None:
            def poll() -> bool:
                done = bool(until())
                polled.set()  # member 2's URL is unset at this poll
                return done

            super()._wait(poll if what.endswith("commits") else until, limit, what)

    def run(i: int) -> None:
        ws = Workspace.open(homes[i])
        try:
            m = FirstPoll(ws, sid, train=train[i], node_url=urls[i], timeout=60) if i == 0 \
                else member(i, ws)
            results[i] = m.step()
        except BaseException as e:
            errors.append(e)
        finally:
            ws.close()

    join(0)
    join(1)
    threads = [threading.Thread(target=run, args=(i,)) for i in (0, 1)]
    for th in threads:
        th.start()
    assert polled.wait(60)
    join(2)
    joined2.set()
    threads.append(threading.Thread(target=run, args=(2,)))
    threads[-1].start()
    for th in threads:
        th.join(120)
    assert not any(th.is_alive() for th in threads)
    assert not errors, errors
    assert waited == [True]
    assert all(results[i].status == "finalized" for i in range(3))
    assert not results[0].skipped, results[0].skipped
    assert len(results[0].used) == 3
    assert len({results[i].global_digest for i in range(3)}) == 1


def test_commitments_hidden_from_the_polls_are_read_when_the_wait_ends(
    swarm_env: dict[str, Any], data: Data, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A batch's calls may resolve different blocks: the round can count a commitment that
    # the same poll's commitment read did not see. Member 0's polls are made blind to
    # member 2's commitment; the read after the wait MUST still find and use it.
    import ailedger._chain as chain_mod

    sid = create(swarm_env, data, "fedavg")
    addr2 = Workspace.open(swarm_env["homes"][2]).address
    local = threading.local()
    real = chain_mod.read_all

    def blind(backend: Any, views: Any) -> list[Any]:
        got = real(backend, views)
        if getattr(local, "blind", False) and views and views[0].call[2] == "round_info":
            for i, v in enumerate(views):
                if v.call[2] == "commitment" and v.call[3][2] == addr2:
                    got[i] = None
        return got

    monkeypatch.setattr(chain_mod, "read_all", blind)

    class Blind(SwarmMember):
        def step(self, r: int | None = None) -> Any:
            local.blind = True
            return super().step(r)

    res = run_members(swarm_env, sid, [data.trainer(i) for i in range(3)], 1,
                      classes=[Blind, SwarmMember, SwarmMember])  # fmt: skip
    assert not res[0][0].skipped and len(res[0][0].used) == 3
    assert len({res[i][0].global_digest for i in range(3)}) == 1
    # Its own aggregate is the agreed model (whether or not the quorum needed its vote).
    assert res[0][0].predicate["computed"] == {"sha256": res[0][0].global_digest}


def test_a_timed_out_wait_does_not_wait_for_running_downloads(
    swarm_env: dict[str, Any], data: Data
) -> None:
    # Member 2 never commits, so the wait for commits times out; member 1's update is
    # being downloaded by a fetch that hangs. The timeout MUST surface while that fetch
    # still hangs (before, the step waited for every queued download first).
    sid = create(swarm_env, data, "fedavg")
    homes, urls = swarm_env["homes"], swarm_env["urls"]
    release, started = threading.Event(), threading.Event()
    returned: list[bool] = []

    def hanging(url: str, digest: str) -> bytes | None:
        started.set()
        release.wait(60)
        returned.append(True)
        return None

    for i in range(3):
        ws = Workspace.open(homes[i])
        try:
            SwarmMember(ws, sid, train=data.trainer(i), node_url=urls[i]).join()
        finally:
            ws.close()
    errors: list[BaseException] = []

    def run1() -> None:
        ws = Workspace.open(homes[1])
        try:
            SwarmMember(ws, sid, train=data.trainer(1), node_url=urls[1], timeout=8).step()
        except BaseException as e:
            errors.append(e)
        finally:
            ws.close()

    th = threading.Thread(target=run1)
    th.start()
    ws0 = Workspace.open(homes[0])
    try:
        m = SwarmMember(ws0, sid, train=data.trainer(0), node_url=urls[0], fetch=hanging,
                        timeout=8)  # fmt: skip
        with pytest.raises(ChainError, match="timed out waiting for round 0 commits"):
            m.step()
        assert started.is_set()  # member 1's update was being downloaded ...
        assert returned == []  # ... and that download was not waited for
    finally:
        release.set()
        ws0.close()
        th.join(60)
    assert len(errors) == 1 and "timed out" in str(errors[0])
