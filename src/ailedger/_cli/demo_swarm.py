"""The last part of ``ailedger demo``: three organisations train one model, no central server.

Each holds a disjoint third of scikit-learn's bundled digits dataset, serves its updates from
its own node, and commits their digests on chain; every member aggregates the same committed
updates and a round is final when a quorum agrees on one global digest. Then one member turns
malicious (a sign-flipped, scaled update); with the coordinate-wise median the honest members
still agree and the model stays accurate.

Each hospital registers its third as a dataset first; every round's signed contribution
names it, so the final model's lineage lists every round and, under each, every member's
dataset; one member then proves its contribution (`swarm prove`) and a peer checks the
proof against the chain (`swarm check-proof`).
"""

from __future__ import annotations

import json
import threading
import warnings
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from .. import Error, Workspace
from .._chain import AggregationRule
from .._node.app import create_app
from .._provenance.datasets import add_dataset
from .._provenance.lineage import lineage
from .._swarm import encode, get_params, set_params
from .._swarm.runner import RoundResult, SwarmMember, publish
from .demo import DemoFailedError, _caught, _ok, _step, console
from .demo_share import _serving_app
from .lineage import draw


def run_swarm_story(tmp: Path) -> None:
    # Members train in threads, and catch_warnings is not thread-safe: silence the short
    # local fits' convergence warnings for the whole story instead.
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        _story(tmp)


def _story(tmp: Path) -> None:
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    _step("13. Decentralised training: three hospitals, one model, no aggregator")
    tmp = tmp / "swarm"
    tmp.mkdir()
    homes = [tmp / n for n in ("north", "south", "east")]
    Workspace.init(homes[0], name="north").close()
    for h in homes[1:]:
        Workspace.init(
            h,
            name=h.name,
            chain=str(homes[0] / "chain.sqlite"),
            contracts=str(homes[0] / "deployment.json"),
        ).close()

    x, y = load_digits(return_X_y=True)
    x = x / 16.0
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    classes = list(np.unique(y))
    parts = np.array_split(np.random.default_rng(0).permutation(len(xtr)), 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        central = float(LogisticRegression(max_iter=300).fit(xtr, ytr).score(xte, yte))

    def trainer(i: int, poison: bool = False) -> Callable[..., tuple[Any, int]]:
        def train(g: dict[str, Any], r: int) -> tuple[dict[str, Any], int]:
            m = LogisticRegression(max_iter=30, warm_start=True)
            set_params(m, g, classes=classes)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                m.fit(xtr[parts[i]], ytr[parts[i]])
            p = get_params(m)
            if poison:
                p = {k: g[k] - 10.0 * (p[k] - g[k]) for k in p}
            return p, len(parts[i])

        return train

    def accuracy(params: dict[str, Any]) -> float:
        m = set_params(LogisticRegression(), params, classes=classes)
        return float(m.score(xte, yte))

    init = {"coef": np.zeros((10, 64)), "intercept": np.zeros(10)}
    shards = [f"{h.name}-records" for h in homes]
    for i, h in enumerate(homes):
        folder = tmp / f"{h.name}-data"
        folder.mkdir()
        rows = np.column_stack([xtr[parts[i]], ytr[parts[i]]])
        np.savetxt(folder / "train.csv", rows, delimiter=",", fmt="%.6g")
        with Workspace.open(h) as ws:
            add_dataset(ws, folder, name=shards[i])
    _ok("each hospital registered its own third as a dataset in its own log: "
        + ", ".join(shards))

    with ExitStack() as stack:
        urls = [stack.enter_context(_serving_app(create_app(h))) for h in homes]

        def swarm(rule: AggregationRule) -> int:
            ws = Workspace.open(homes[0])
            try:
                spec = publish(ws, encode(init))
                addrs = [Workspace.open(h).address for h in homes]
                sid, _ = ws.swarm_rounds().create_swarm(
                    bytes.fromhex(spec),
                    rule,
                    0,
                    addrs,
                    quorum=2,
                    commit_window=60,
                    submit_window=60,
                )
                return int(sid)
            finally:
                ws.close()

        def run(
            sid: int, trainers: list[Callable[..., Any]], rounds: int
        ) -> list[list[RoundResult]]:
            for i, h in enumerate(homes):
                ws = Workspace.open(h)
                try:
                    SwarmMember(ws, sid, train=trainers[i], node_url=urls[i], timeout=90,
                                datasets=[shards[i]]).join()
                finally:
                    ws.close()
            results: list[list[RoundResult]] = [[], [], []]
            errors: list[BaseException] = []

            def worker(i: int) -> None:
                ws = Workspace.open(homes[i])
                try:
                    member = SwarmMember(ws, sid, train=trainers[i], node_url=urls[i],
                                         timeout=90, datasets=[shards[i]])
                    results[i] = member.run(rounds)
                except BaseException as e:
                    errors.append(e)
                finally:
                    ws.close()

            threads = [threading.Thread(target=worker, args=(i,)) for i in range(3)]
            for th in threads:
                th.start()
            for th in threads:
                th.join(300)
            if errors:
                raise DemoFailedError(f"a swarm member failed: {errors[0]}")
            return results

        def final(home: Path, sid: int) -> dict[str, Any]:
            ws = Workspace.open(home)
            try:
                return SwarmMember(ws, sid, train=trainer(0), timeout=30).global_params()
            finally:
                ws.close()

        sid = swarm(AggregationRule.FEDAVG)
        res = run(sid, [trainer(i) for i in range(3)], 3)
        digests = {res[i][-1].global_digest for i in range(3)}
        if len(digests) != 1:
            raise DemoFailedError(f"members disagree on the global model: {digests}")
        acc = accuracy(final(homes[0], sid))
        _ok(
            "3 rounds of FedAvg, every round final at quorum on one digest"
            f" ({next(iter(digests))[:16]}…)"
        )
        _ok(f"federated accuracy {acc:.3f} vs centralised {central:.3f} (data never pooled)")
        if acc < central - 0.02:
            raise DemoFailedError("federated accuracy is more than 2 points below centralised")
        _lineage_and_proof(tmp, homes, sid, next(iter(digests)), shards)

        sid = swarm(AggregationRule.MEDIAN)
        res = run(sid, [trainer(0), trainer(1), trainer(2, poison=True)], 2)
        acc_bad = accuracy(final(homes[0], sid))
        _caught("'east' sends sign-flipped, scaled updates; the median rule ignores them")
        _ok(f"accuracy with a malicious member: {acc_bad:.3f} (honest: {acc:.3f})")
        if acc_bad < acc - 0.05:
            raise DemoFailedError("the robust rule lost more than 5 points to the attack")
        ws = Workspace.open(homes[0])
        try:
            n = sum(1 for r in res[0] if r.statement_index is not None)
            console.print(
                f"  every round is a signed statement in each member's log ({n} in north's)"
            )
        finally:
            ws.close()


def _lineage_and_proof(
    tmp: Path, homes: list[Path], sid: int, final: str, shards: list[str]
) -> None:
    """The final model's lineage names every member's dataset; south proves its part."""
    from .._swarm import contribution

    model = tmp / "swarm-model.params"
    with Workspace.open(homes[0]) as ws:
        model.write_bytes(ws.blobs.get(final))
        g = lineage(ws, model)
    rounds = [n for n in g if n.kind == "round"]
    named = {
        d.ref.name or "" for n in rounds for d in n.dependencies if d.ref.kind == "member-dataset"
    }
    if len(rounds) != 3 or not all(any(s in x for x in named) for s in shards):
        raise DemoFailedError("the final model's lineage does not name every member's dataset")
    _ok(f"lineage of swarm-model.params in north's log: {len(rounds)} rounds, each naming every"
        " member's dataset (`ailedger lineage swarm-model.params`):")
    console.print(draw(g))
    with Workspace.open(homes[1]) as ws:
        proof = contribution.prove(ws, sid, 2)  # `ailedger swarm prove <sid> 2 -o proof.json`
    (tmp / "south-proof.json").write_text(json.dumps(proof, indent=1, sort_keys=True))
    with Workspace.open(homes[2]) as ws:  # `ailedger swarm check-proof proof.json`, by east
        res = contribution.check_proof(
            proof, swarm_rounds=ws.swarm_rounds(), identities=ws.identity_registry(),
            checkpoints=ws.registry(),
        )  # fmt: skip
        _ok(f"south proved its round-2 update sha256:{res.update[:16]}… came from"
            f" {', '.join(d['name'] for d in res.datasets)}: signatures, receipts, anchor"
            " and on-chain commitment checked by east")
        bad = json.loads(json.dumps(proof))
        bad["roundStatement"]["index"] += 1
        try:
            contribution.check_proof(
                bad, swarm_rounds=ws.swarm_rounds(), identities=ws.identity_registry(),
                checkpoints=ws.registry(),
            )  # fmt: skip
        except Error as e:
            _caught(f"the same proof with one index changed: {e}")
        else:
            raise DemoFailedError("an edited contribution proof was accepted")
