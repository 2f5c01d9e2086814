from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from ailedger import InputError
from ailedger._swarm import (
    Accountant,
    DPConfig,
    aggregate,
    encode,
    get_params,
    l2_norm,
    params_to_state_dict,
    privatize,
    set_params,
    state_dict_to_params,
)


def _delta() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"w": rng.standard_normal((10, 10)).astype(np.float32) * 5, "b": rng.standard_normal(10)}


def test_clipping_bounds_norm() -> None:
    cfg = DPConfig(clip=1.0, noise_multiplier=1e-9, delta=1e-5)
    out, spent = privatize(_delta(), cfg, 1)
    assert spent.norm > 1 and spent.scale == pytest.approx(1 / spent.norm)
    assert l2_norm(out) == pytest.approx(1.0, rel=1e-5)
    small = {"w": np.full(4, 0.1)}
    out, spent = privatize(small, DPConfig(clip=10.0, noise_multiplier=1e-9, delta=1e-5), 1)
    assert spent.scale == 1.0
    np.testing.assert_allclose(out["w"], small["w"], atol=1e-6)


def test_noise_seeded_and_reproducible() -> None:
    cfg = DPConfig(clip=1.0, noise_multiplier=2.0, delta=1e-5)
    a, sa = privatize(_delta(), cfg, 42)
    b, _ = privatize(_delta(), cfg, 42)
    c, _ = privatize(_delta(), cfg, 43)
    assert encode(a) == encode(b) != encode(c)
    assert sa.seed == 42 and a["w"].dtype == np.float32
    # the noise is what the recorded seed says: N(0, (σC)²) from PCG64(seed), tensor order
    g = np.random.Generator(np.random.PCG64(42))
    clipped_w = _delta()["w"].astype(np.float64) * sa.scale
    np.testing.assert_array_equal(a["w"], (clipped_w + g.standard_normal((10, 10)) * 2.0).astype(np.float32))
    big = privatize({"w": np.zeros(200_000)}, cfg, 7)[0]["w"]
    assert np.std(big) == pytest.approx(2.0, rel=0.01)


def test_accountant_formula() -> None:
    acc = Accountant(delta=1e-5)
    assert acc.epsilon == 0.0
    for _ in range(10):
        acc.spend(2.0)
    rho = 10 / (2 * 4.0)
    assert acc.rho == pytest.approx(rho)
    assert acc.epsilon == pytest.approx(rho + 2 * math.sqrt(rho * math.log(1e5)))
    _, spent = privatize(_delta(), DPConfig(1.0, 1.0, 1e-5), 1)
    assert spent.rho == 0.5
    assert spent.epsilon == pytest.approx(0.5 + 2 * math.sqrt(0.5 * math.log(1e5)))
    acc.record(spent)
    assert acc.to_dict()["rounds"] == 11 and acc.rho == pytest.approx(rho + 0.5)


@pytest.mark.parametrize("args", [(0, 1, 1e-5), (1, 0, 1e-5), (1, 1, 0), (1, 1, 1), (math.nan, 1, 1e-5), (True, 1, 0.1)])
def test_bad_config(args) -> None:
    with pytest.raises(InputError):
        DPConfig(*args)


def test_bad_seed() -> None:
    with pytest.raises(InputError, match="seed"):
        privatize(_delta(), DPConfig(1, 1, 1e-5), -1)


# --- scikit-learn ------------------------------------------------------------

def test_sklearn_round_trip_regressors() -> None:
    from sklearn.linear_model import LinearRegression, Ridge

    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((50, 4)), rng.standard_normal(50)
    for cls in (LinearRegression, Ridge):
        m = cls().fit(x, y)
        p = get_params(m)
        assert p["intercept"].shape == () and p["coef"].shape == (4,)
        m2 = set_params(cls(), p)
        np.testing.assert_array_equal(m2.predict(x), m.predict(x))
    with pytest.raises(InputError, match="fit it first"):
        get_params(Ridge())


def test_sklearn_classifier_needs_classes() -> None:
    from sklearn.linear_model import LogisticRegression

    p = {"coef": np.zeros((3, 4)), "intercept": np.zeros(3)}
    with pytest.raises(InputError, match="classes"):
        set_params(LogisticRegression(), p)
    with pytest.raises(InputError, match="row"):
        set_params(LogisticRegression(), p, classes=[0, 1])
    with pytest.raises(InputError, match="coef and intercept"):
        set_params(LogisticRegression(), {"w": np.zeros(2)}, classes=[0, 1])
    m = set_params(LogisticRegression(), p, classes=[0, 1, 2])
    assert m.predict(np.zeros((2, 4))).tolist() == [0, 0]


def test_federated_logistic_regression_matches_centralised() -> None:
    """3 parties, disjoint thirds of digits, FedAvg rounds: set the global parameters,
    train a few lbfgs iterations warm-started from them, average by example count."""
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = x / 16.0  # a fixed public scaling, no party-specific statistics
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    classes = np.unique(y)
    parts = np.array_split(np.random.default_rng(0).permutation(len(xtr)), 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        central = LogisticRegression(max_iter=300).fit(xtr, ytr).score(xte, yte)
        g = None
        for _ in range(3):
            ups = []
            for p in parts:
                m = LogisticRegression(max_iter=30, warm_start=True)
                if g is not None:
                    set_params(m, g, classes=classes)
                m.fit(xtr[p], ytr[p])
                ups.append((get_params(m), len(p)))
            g = aggregate("fedavg", ups)
        fed = set_params(LogisticRegression(), g, classes=classes).score(xte, yte)
        assert fed >= central - 0.02, (fed, central)



# --- PyTorch (duck-typed: torch is not a dependency) ---------------------------

class _FakeTensor:
    def __init__(self, a: np.ndarray) -> None:
        self._a = a
        self.calls: list[str] = []

    def detach(self) -> _FakeTensor:
        self.calls.append("detach")
        return self

    def cpu(self) -> _FakeTensor:
        self.calls.append("cpu")
        return self

    def numpy(self) -> np.ndarray:
        return self._a


def test_state_dict_to_params_duck_typed() -> None:
    sd = {
        "layer.weight": _FakeTensor(np.ones((2, 3), dtype=np.float32)),
        "layer.bias": _FakeTensor(np.zeros(2, dtype=np.float32)),
        "bn.num_batches_tracked": _FakeTensor(np.array(5, dtype=np.int64)),
    }
    with pytest.raises(InputError, match="floats_only"):
        state_dict_to_params(sd)
    p = state_dict_to_params(sd, floats_only=True)
    assert list(p) == ["layer.weight", "layer.bias"]
    assert sd["layer.weight"].calls == ["detach", "cpu", "detach", "cpu"]
    p["layer.weight"][0, 0] = 7  # a copy, not the model's memory
    assert sd["layer.weight"].numpy()[0, 0] == 1


def test_params_to_state_dict() -> None:
    p = {"w": np.arange(4, dtype=np.float32)}
    try:
        import torch  # type: ignore[import-not-found]
    except ImportError:
        with pytest.raises(InputError, match="PyTorch is not installed"):
            params_to_state_dict(p)
        return
    sd = params_to_state_dict(p, like={"w": torch.zeros(4, dtype=torch.float64)})
    assert sd["w"].dtype == torch.float64 and sd["w"].tolist() == [0, 1, 2, 3]
    assert np.array_equal(state_dict_to_params(sd)["w"], p["w"].astype(np.float64))
