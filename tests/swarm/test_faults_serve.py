"""A member that commits an update on chain but never serves it.

Same set-up as test_runner.py (three workspaces on one embedded chain, each member in its
own thread with its own ``Workspace``, real nodes on loopback). In both cases the honest
quorum MUST finalise with the aggregate of the honest updates alone, and the misbehaviour
MUST be on record: in the honest members' round statements (member skipped, with why) and
on chain as far as the contract records it (the commitment; a minority submission if the
member submitted; its absence from the supporters otherwise).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ailedger import Workspace
from ailedger._node.app import create_app
from ailedger._swarm import decode
from ailedger._swarm.aggregate import aggregate
from ailedger._swarm.params import digest
from ailedger._swarm.runner import RoundResult
from ailedger.errors import NotFoundError

from .conftest import Data, _Gate, _members, create, run_members, running, statements

# lbfgs capped at 30 iterations per round warns; catch_warnings is not thread-safe.
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _address(home: Path) -> str:
    ws = Workspace.open(home)
    try:
        return ws.address
    finally:
        ws.close()


def _check_honest_global(env: dict[str, Any], res: list[list[RoundResult]]) -> str:
    """The agreed global is the fedavg of A's and B's updates, and nothing else."""
    ups = []
    for i in (0, 1):  # each update from its author's own blob store
        lu = res[i][0].predicate["localUpdate"]
        d = lu["digest"]["sha256"]
        ws = Workspace.open(env["homes"][i])
        try:
            ups.append((decode(ws.blobs.get(d), expected_digest=d), lu["numExamples"], d))
        finally:
            ws.close()
    g = res[0][0].global_digest
    assert res[1][0].global_digest == g and res[0][0].status == "finalized"
    agg = aggregate("fedavg", [(p, n) for p, n, _ in ups], digests=[d for _, _, d in ups])
    assert digest(agg) == g
    # Independently of the library's rule: the example-weighted mean of the two.
    (pa, na, _), (pb, nb, _) = ups
    for k in pa:
        np.testing.assert_allclose(agg[k], (na * pa[k] + nb * pb[k]) / (na + nb), rtol=1e-12)
    assert sorted(res[0][0].used) == sorted(d for _, _, d in ups)
    return g


def _check_statements(env: dict[str, Any], sid: int, c_addr: str, c_digest: str, why: str) -> None:
    for i in (0, 1):
        sts = statements(env["homes"][i], sid)
        assert len(sts) == 1
        p = sts[0]["predicate"]
        entry = next(m for m in p["members"] if m["address"] == c_addr)
        # C's commitment is named with its digest, left out, and why.
        assert entry["update"]["digest"] == {"sha256": c_digest}
        assert entry["used"] is False and why in entry["skipped"], entry
        assert [s["member"] for s in p["skipped"]] == [c_addr]
        assert why in p["skipped"][0]["reason"]
        assert p["outcome"]["status"] == "finalized"
        assert c_addr not in p["outcome"]["supporters"] and p["outcome"]["missed"] == []
        assert c_digest not in {u["digest"] for u in p["aggregate"]["updates"]}
        assert len(p["aggregate"]["updates"]) == 2


def test_committed_update_not_served_is_skipped_and_minority(
    swarm_env: dict[str, Any], data: Data
) -> None:
    """C runs the whole protocol, but the node it registered (a real ailedger node) does not
    hold its update, so it answers 404. A and B skip C and finalise on their two updates;
    C aggregates all three, submits first (ordering gate) and is the minority on chain."""
    root: Path = swarm_env["root"]
    # A real node that serves a workspace without C's blobs (e.g. restored without them).
    empty = root / "empty"
    if not empty.exists():
        Workspace.init(
            empty, name="empty", chain=str(root / "a" / "chain.sqlite"),
            contracts=str(root / "a" / "deployment.json"),
        ).close()
    sid = create(swarm_env, data, "fedavg")
    gate = _Gate()
    with running(create_app(empty)) as c_url:
        urls = [*swarm_env["urls"][:2], c_url]
        res = run_members(
            swarm_env, sid, [data.trainer(i) for i in range(3)], 1, urls=urls,
            classes=_members(gate, wrong=False),
        )
    c_addr = _address(swarm_env["homes"][2])
    c_update = res[2][0].predicate["localUpdate"]["digest"]["sha256"]
    for i in (0, 1):
        assert res[i][0].skipped == {c_addr: f"update sha256:{c_update} not served by {c_url}"}
    g = _check_honest_global(swarm_env, res)
    _check_statements(swarm_env, sid, c_addr, c_update, "not served by")

    # C itself: used all three, computed something else, follows the agreed model.
    assert res[2][0].global_digest == g and len(res[2][0].used) == 3
    pc = statements(swarm_env["homes"][2], sid)[0]["predicate"]
    assert pc["computed"] != {"sha256": g}
    assert pc["outcome"]["minority"] == [{"address": c_addr, "digest": pc["computed"]}]

    ws = Workspace.open(swarm_env["homes"][0])
    try:
        sw = ws.swarm_rounds()
        c = sw.commitment(sid, 0, c_addr)
        assert c is not None and c[0].hex() == c_update
        assert sw.minority(sid, c_addr) == 1 and sw.misses(sid, c_addr) == 0
        (o,) = sw.history(sid, from_block=ws.deployment.deployed_at_block)
        assert o.global_digest is not None and o.global_digest.hex() == g
        assert c_addr not in o.supporters
        assert [(a, d.hex()) for a, d in o.minority] == [(c_addr, pc["computed"]["sha256"])]
    finally:
        ws.close()


def test_member_commits_then_its_node_goes_down(swarm_env: dict[str, Any], data: Data) -> None:
    """C joins with its real node, stops the node, commits an update it never published,
    and does nothing more. A and B cannot reach C (transport error after retries), skip it
    and finalise; on chain C has a commitment and no submission."""
    sid = create(swarm_env, data, "fedavg")
    c_home = swarm_env["homes"][2]
    update = data.trainer(2)({k: v.copy() for k, v in data.init.items()}, 0)
    c_digest = digest(update[0])
    node_cm = running(create_app(c_home))
    c_url = node_cm.__enter__()
    done = threading.Event()
    errors: list[BaseException] = []

    def rogue() -> None:
        ws = Workspace.open(c_home)
        try:
            sw = ws.swarm_rounds()
            end = time.monotonic() + 60
            while not (info := sw.swarm_info(sid)) or not info.started:
                if time.monotonic() > end:
                    raise TimeoutError("swarm never started")
                time.sleep(0.05)
            node_cm.__exit__(None, None, None)  # the node is gone before anyone fetches
            sw.commit(sid, 0, bytes.fromhex(c_digest), update[1])
        except BaseException as e:
            errors.append(e)
        finally:
            done.set()
            ws.close()

    th = threading.Thread(target=rogue)
    th.start()
    try:
        res = run_members(
            swarm_env, sid, [data.trainer(i) for i in range(3)], 1,
            urls=[*swarm_env["urls"][:2], c_url], active=(0, 1),
        )
    finally:
        th.join(90)
        if not done.is_set():
            node_cm.__exit__(None, None, None)
    assert not errors, errors
    c_addr = _address(c_home)
    for i in (0, 1):
        assert set(res[i][0].skipped) == {c_addr}
        assert f"node {c_url} unreachable" in res[i][0].skipped[c_addr]
    _check_honest_global(swarm_env, res)
    _check_statements(swarm_env, sid, c_addr, c_digest, "unreachable")
    # Nobody ever had C's bytes: not A, not B.
    for h in swarm_env["homes"][:2]:
        ws = Workspace.open(h)
        try:
            with pytest.raises(NotFoundError):
                ws.blobs.get(c_digest)
        finally:
            ws.close()
    ws = Workspace.open(swarm_env["homes"][0])
    try:
        sw = ws.swarm_rounds()
        c = sw.commitment(sid, 0, c_addr)
        assert c is not None and c[0].hex() == c_digest and c[1] == update[1]
        assert sw.submission(sid, 0, c_addr) is None
        assert sw.misses(sid, c_addr) == 0 and sw.minority(sid, c_addr) == 0
        (o,) = sw.history(sid, from_block=ws.deployment.deployed_at_block)
        assert c_addr not in o.supporters and o.minority == () and o.missed == ()
        assert o.commits[c_addr] == (bytes.fromhex(c_digest), update[1])
    finally:
        ws.close()
