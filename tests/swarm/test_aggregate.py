from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ailedger import InputError
from ailedger._swarm.aggregate import aggregate, aggregate_with_report, rule_spec, sorting_network
from ailedger._swarm.params import digest, encode


def _updates(n: int, seed: int = 0, shape: tuple[int, ...] = (7, 5)) -> list[tuple[dict[str, np.ndarray], int]]:
    rng = np.random.default_rng(seed)
    return [
        (
            {"w": rng.standard_normal(shape).astype(np.float32), "b": rng.standard_normal(3)},
            int(rng.integers(1, 100)),
        )
        for _ in range(n)
    ]


def _sorted(ups):  # canonical order, as the module defines it
    return sorted(ups, key=lambda u: (digest(u[0]), u[1]))


def _ref(rule: str, ups, param=None) -> dict[str, np.ndarray]:
    ups = _sorted(ups)
    n = len(ups)
    out = {}
    for name in ups[0][0]:
        x = np.stack([u[0][name].astype(np.float64) for u in ups])
        dt = ups[0][0][name].dtype
        if rule == "fedavg":
            w = np.array([u[1] for u in ups], dtype=np.float64)
            acc = np.zeros(x.shape[1:])
            for i in range(n):
                acc = acc + x[i] * w[i]
            out[name] = (acc / w.sum()).astype(dt)
        elif rule == "median":
            out[name] = np.median(x, axis=0).astype(dt)
        elif rule == "trimmed_mean":
            k = param if isinstance(param, int) else math.floor(param * n + 1e-12)
            s = np.sort(x, axis=0)[k : n - k]
            acc = s[0].copy()
            for r in s[1:]:
                acc = acc + r
            out[name] = (acc / (n - 2 * k)).astype(dt)
    if rule == "krum":
        f = param
        flat = [np.concatenate([v.astype(np.float64).ravel() for v in u[0].values()]) for u in ups]
        scores = []
        for i in range(n):
            d = sorted(float(np.sum((flat[i] - flat[j]) ** 2)) for j in range(n) if j != i)
            scores.append(sum(d[: n - f - 2]))
        best = min(range(n), key=lambda i: (scores[i], i))
        return dict(ups[best][0])
    return out


@pytest.mark.parametrize(
    ("rule", "param", "n"),
    [
        ("fedavg", None, 1),
        ("fedavg", None, 6),
        ("median", None, 1),
        ("median", None, 5),
        ("median", None, 6),
        ("trimmed_mean", 0.2, 5),
        ("trimmed_mean", 0.25, 9),
        ("trimmed_mean", 2, 7),
        ("trimmed_mean", 0, 3),
        ("krum", 0, 3),
        ("krum", 1, 5),
        ("krum", 2, 9),
    ],
)
def test_against_reference(rule: str, param, n: int) -> None:
    ups = _updates(n, seed=n)
    got = aggregate(rule, ups, param=param)
    want = _ref(rule, ups, param)
    assert list(got) == ["w", "b"]
    for k in want:
        assert got[k].dtype == want[k].dtype
        if rule in ("krum", "median"):
            assert np.array_equal(got[k], want[k])
        else:
            np.testing.assert_allclose(got[k], want[k], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fedavg_bytes_across_blocks(dtype: type) -> None:
    # fedavg accumulates block by block (cache-sized); its bytes must be those of the
    # whole-tensor formula (0.0 + w0*x0 + w1*x1 + ..., divided, cast), signed zeros too.
    from ailedger._swarm.aggregate import BLOCK

    rng = np.random.default_rng(7)
    ups = []
    for i in range(4):
        p = {"w": rng.standard_normal((3, BLOCK + 11)).astype(dtype),
             "b": rng.standard_normal(2 * BLOCK + 1).astype(dtype),
             "s": np.asarray(rng.standard_normal(), dtype=dtype)}  # fmt: skip
        p["w"][:, ::5] = -0.0
        ups.append((p, 10 + i))
    got = aggregate("fedavg", ups, param=None)
    want = _ref("fedavg", ups)
    assert encode(got) == encode(want)
    # Every input is -0.0 there: 0.0 + (-0.0) is +0.0, in both forms.
    assert got["s"].shape == () and got["w"][0, 0] == 0 and not np.signbit(got["w"][0, 0])


@pytest.mark.parametrize("rule,param", [("fedavg", None), ("median", None), ("trimmed_mean", 1), ("krum", 1), ("krum", {"f": 1, "m": 3})])
def test_order_independent_bytes(rule: str, param) -> None:
    ups = _updates(5, seed=3)
    ref = encode(aggregate(rule, ups, param=param))
    for perm in itertools.islice(itertools.permutations(ups), 0, 120, 7):
        assert encode(aggregate(rule, list(perm), param=param)) == ref


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 9), st.integers(0, 2**31), st.randoms())
def test_median_any_order_any_n(n: int, seed: int, rnd) -> None:
    ups = _updates(n, seed=seed, shape=(4,))
    # duplicates and signed zeros must not make the bytes depend on the order
    ups[0][0]["b"][0] = -0.0
    if n > 1:
        ups[1][0]["b"][0] = 0.0
    shuffled = list(ups)
    rnd.shuffle(shuffled)
    assert encode(aggregate("median", ups)) == encode(aggregate("median", shuffled))


def test_sorting_network_sorts() -> None:
    rng = np.random.default_rng(1)
    for n in range(1, 20):
        net = sorting_network(n)
        for _ in range(30):
            x = rng.integers(0, 4, n).tolist()
            y = list(x)
            for i, j in net:
                if y[i] > y[j]:
                    y[i], y[j] = y[j], y[i]
            assert y == sorted(x)


def test_report() -> None:
    ups = _updates(5, seed=4)
    out, rep = aggregate_with_report("krum", ups, param=1)
    ds = sorted(digest(u[0]) for u in ups)
    assert list(rep.digests) == ds
    assert len(rep.selected) == 1 and rep.selected[0] in ds
    assert digest(out) == rep.selected[0] == rep.result
    assert len(rep.scores) == 5
    _, rep = aggregate_with_report("trimmed_mean", ups, param=0.2)
    assert rep.trimmed == 1 and rep.rule == {"rule": "trimmed_mean", "beta": "0.2"}
    d = rep.to_dict()
    assert d["updates"][0]["digest"] == ds[0] and d["selected"] == ds


def test_digests_argument_sets_order() -> None:
    ups = _updates(4, seed=5)
    ds = [digest(u[0]) for u in ups]
    assert encode(aggregate("fedavg", ups, digests=ds)) == encode(aggregate("fedavg", ups))


def test_poisoned_update() -> None:
    rng = np.random.default_rng(7)
    base = rng.standard_normal(200)
    honest = [({"w": base + 0.05 * rng.standard_normal(200)}, 100) for _ in range(4)]
    mean = np.mean([u[0]["w"] for u in honest], axis=0)
    for poison in (honest[0][0]["w"] * 100, -honest[0][0]["w"]):
        ups = [*honest, ({"w": poison}, 100)]
        err = {
            r: float(np.linalg.norm(aggregate(r, ups, param=p)["w"] - mean) / np.linalg.norm(mean))
            for r, p in [("fedavg", None), ("median", None), ("trimmed_mean", 1), ("krum", 1)]
        }
        assert err["fedavg"] > 0.3, err
        for r in ("median", "trimmed_mean", "krum"):
            assert err[r] < 0.1, (r, err)


@pytest.mark.parametrize(
    "rule,param,ups,match",
    [
        ("fedavg", None, [], "no updates"),
        ("mean", None, "x", "unknown"),
        ("fedavg", 1, "x", "no parameter"),
        ("krum", None, "x", "needs a parameter"),
        ("krum", 2, "x", "2f \\+ 3"),
        ("krum", {"f": 1, "m": 9}, "x", "at most"),
        ("krum", -1, "x", "at least 0"),
        ("krum", 1.5, "x", "integer"),
        ("trimmed_mean", 0.5, "x", r"\[0, 0.5\)"),
        ("trimmed_mean", 3, "x", "leaving none"),
        ("trimmed_mean", True, "x", "integer"),
        ("fedavg", None, [({"w": np.zeros(2)}, 0)], "at least 1"),
        ("fedavg", None, [({"w": np.zeros(2)}, 1), ({"w": np.zeros(3)}, 1)], "expected"),
        ("fedavg", None, [({"w": np.zeros(2)}, 1), ({"w": np.zeros(2, np.float32)}, 1)], "expected"),
        ("fedavg", None, [({"w": np.zeros(2)}, 1), ({"v": np.zeros(2)}, 1)], "tensors"),
        ("fedavg", None, [({"w": np.array([np.nan])}, 1)], "NaN"),
        ("fedavg", None, [{"w": np.zeros(2)}], "pair"),
    ],
)
def test_bad_input(rule, param, ups, match) -> None:
    if ups == "x":
        ups = _updates(5)
    with pytest.raises(InputError, match=match):
        aggregate(rule, ups, param=param)


def test_rule_spec_forms() -> None:
    assert rule_spec("krum", 1) == {"rule": "krum", "f": 1, "m": 1}
    assert rule_spec("krum", {"f": 1, "m": 2}) == {"rule": "krum", "f": 1, "m": 2}
    assert rule_spec("trimmed_mean", {"beta": "0.1"}) == {"rule": "trimmed_mean", "beta": "0.1"}
    assert rule_spec("trimmed_mean", {"trim": 2}) == {"rule": "trimmed_mean", "trim": 2}
    assert rule_spec("median") == {"rule": "median"}
