"""Shared helpers of the swarm tests: workspaces on one chain, real nodes, threaded members.

Moved here from test_runner.py so several test files run swarms the same way.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ailedger import Workspace
from ailedger._chain import AggregationRule
from ailedger._node import serving
from ailedger._node.app import create_app
from ailedger._provenance import types as t
from ailedger._swarm import encode, get_params, set_params
from ailedger._swarm.runner import RoundResult, SwarmMember, publish

RULES = {"fedavg": AggregationRule.FEDAVG, "median": AggregationRule.MEDIAN}
WINDOW = 40  # seconds; rounds end early once every member acted, so this only bounds faults


def running(app: Any) -> AbstractContextManager[str]:
    """Serve ``app`` on a free loopback port (the node's own helper)."""
    return serving(app)


class Data:
    def __init__(self) -> None:
        from sklearn.datasets import load_digits
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import train_test_split

        x, y = load_digits(return_X_y=True)
        x = x / 16.0
        self.xtr, self.xte, self.ytr, self.yte = train_test_split(
            x, y, test_size=0.3, random_state=0, stratify=y
        )
        self.classes = np.unique(y)
        self.parts = np.array_split(np.random.default_rng(0).permutation(len(self.xtr)), 3)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = LogisticRegression(max_iter=300).fit(self.xtr, self.ytr)
        self.central = float(m.score(self.xte, self.yte))
        self.init = {"coef": np.zeros((10, 64)), "intercept": np.zeros(10)}

    def trainer(self, i: int, poison: bool = False) -> Callable[..., tuple[Any, int]]:
        from sklearn.linear_model import LogisticRegression

        part = self.parts[i]

        def train(g: dict[str, np.ndarray], r: int) -> tuple[dict[str, np.ndarray], int]:
            m = LogisticRegression(max_iter=30, warm_start=True)
            set_params(m, g, classes=self.classes)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                m.fit(self.xtr[part], self.ytr[part])
            p = get_params(m)
            if poison:  # sign-flipped and scaled ×10 update
                p = {k: g[k] - 10.0 * (p[k] - g[k]) for k in p}
            return p, len(part)

        return train

    def accuracy(self, params: dict[str, np.ndarray]) -> float:
        from sklearn.linear_model import LogisticRegression

        m = set_params(LogisticRegression(), params, classes=self.classes)
        return float(m.score(self.xte, self.yte))


@pytest.fixture(scope="module")
def data() -> Data:
    return Data()


@pytest.fixture(scope="module")
def swarm_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Three workspaces on one chain, each with its node running."""
    root = tmp_path_factory.mktemp("swarm")
    a = Workspace.init(root / "a", name="a")
    homes = [root / "a"]
    for n in ("b", "c"):
        Workspace.init(
            root / n, name=n, chain=str(root / "a" / "chain.sqlite"),
            contracts=str(root / "a" / "deployment.json"),
        )
        homes.append(root / n)
    a.close()
    with ExitStack() as stack:
        urls = [stack.enter_context(running(create_app(h))) for h in homes]
        yield {"homes": homes, "urls": urls, "root": root}


def create(
    env: dict[str, Any], data: Data, rule: str, quorum: int = 2, commit_window: int = WINDOW
) -> int:
    ws = Workspace.open(env["homes"][0])
    try:
        spec = publish(ws, encode(data.init))
        addrs = [Workspace.open(h).address for h in env["homes"]]
        sid, _ = ws.swarm_rounds().create_swarm(
            bytes.fromhex(spec), RULES[rule], 0, addrs, quorum=quorum,
            commit_window=commit_window, submit_window=WINDOW,
        )
        return int(sid)
    finally:
        ws.close()


def run_members(
    env: dict[str, Any],
    sid: int,
    trainers: list[Callable[..., Any]],
    rounds: int,
    *,
    urls: list[str] | None = None,
    classes: list[type[SwarmMember]] | None = None,
    active: tuple[int, ...] = (0, 1, 2),
) -> list[list[RoundResult]]:
    """Join all three (sequentially: the last join starts round 0), then run in threads."""
    urls = urls or env["urls"]
    classes = classes or [SwarmMember] * 3
    for i, h in enumerate(env["homes"]):
        ws = Workspace.open(h)
        try:
            classes[i](ws, sid, train=trainers[i], node_url=urls[i], timeout=60).join()
        finally:
            ws.close()
    results: list[list[RoundResult]] = [[], [], []]
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        ws = Workspace.open(env["homes"][i])
        try:
            m = classes[i](ws, sid, train=trainers[i], node_url=urls[i], timeout=60)
            results[i] = m.run(rounds)
        except BaseException as e:  # surfaced below, in the test thread
            errors.append(e)
        finally:
            ws.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in active]
    for th in threads:
        th.start()
    for th in threads:
        th.join(180)
    assert not errors, errors
    assert all(len(results[i]) == rounds for i in active)
    return results


def statements(home: Path, sid: int) -> list[dict[str, Any]]:
    """The FEDERATED_ROUND predicates of swarm ``sid`` in a workspace's log, in log order."""
    from ailedger._provenance.lineage import effective, parse_entry

    ws = Workspace.open(home)

    def blob(d: str) -> bytes | None:
        try:
            return ws.blobs.get(d)
        except Exception:
            return None

    try:
        out = []
        for i in range(ws.log.size):
            parsed = parse_entry(ws.log.get(i))
            if parsed is None:
                continue
            ptype, pred, _ = effective(parsed[1], blob)
            if ptype == t.FEDERATED_ROUND and pred["swarm"]["id"] == sid:
                out.append({"subject": parsed[1]["subject"], "predicate": pred})
        return out
    finally:
        ws.close()



class _Gate:
    """Orders submissions: honest members submit only after the faulty one did (bounded)."""

    def __init__(self) -> None:
        self.events: dict[int, threading.Event] = {}
        self.lock = threading.Lock()

    def event(self, r: int) -> threading.Event:
        with self.lock:
            return self.events.setdefault(r, threading.Event())


def _members(gate: _Gate, wrong: bool) -> list[type[SwarmMember]]:
    class Honest(SwarmMember):
        def submit_digest(self, aggregated: str) -> str:
            r = self.info().current_round
            self.event_wait = gate.event(r).wait(30)
            return aggregated

    class Faulty(SwarmMember):
        def submit_digest(self, aggregated: str) -> str:
            return "ee" * 32 if wrong else aggregated

        def on_submitted(self, r: int, digest: str) -> None:
            gate.event(r).set()

    return [Honest, Honest, Faulty]

