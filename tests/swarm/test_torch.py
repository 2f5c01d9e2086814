"""PyTorch for real: ``state_dict`` ⇄ ``ailedger-params/v1`` and a swarm of torch MLPs.

The adapter test compares bytes: every tensor's raw little-endian bytes, in the module's
order, with its name, dtype and shape in the header, and the same bytes after loading the
decoded parameters into a fresh model. The swarm test runs three members through the real
runner (embedded chain, a node per member on loopback, one thread per member) on disjoint
thirds of scikit-learn's digits and compares the result with one model trained on all of it.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from ailedger import Workspace
from ailedger._swarm import decode
from ailedger._swarm.adapters import params_to_state_dict, state_dict_to_params
from ailedger._swarm.params import MAGIC, encode
from ailedger.errors import InputError

from .conftest import create, run_members, statements

torch = pytest.importorskip("torch")
nn = torch.nn

ROUNDS, LOCAL_EPOCHS = 4, 2


def _net(dtype: Any = None) -> Any:
    m = nn.Sequential(
        nn.Linear(64, 48), nn.BatchNorm1d(48), nn.ReLU(), nn.Linear(48, 10)
    )
    return m if dtype is None else m.to(dtype)


def _header(data: bytes) -> tuple[list[dict[str, Any]], int]:
    (n,) = struct.unpack_from("<I", data, len(MAGIC))
    start = len(MAGIC) + 4
    return json.loads(data[start : start + n])["tensors"], start + n


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_state_dict_round_trip_is_byte_exact(dtype: Any) -> None:
    torch.manual_seed(1)
    src = _net(dtype)
    src.train()
    src(torch.randn(16, 64, dtype=dtype))  # BatchNorm running stats move off their init
    sd = src.state_dict()
    data = encode(state_dict_to_params(sd, floats_only=True))

    floats = [(k, v) for k, v in sd.items() if v.is_floating_point()]
    assert [k for k in sd if k not in dict(floats)] == ["1.num_batches_tracked"]
    tensors, pos = _header(data)
    want = "<f4" if dtype == torch.float32 else "<f8"
    assert tensors == [
        {"dtype": want, "name": k, "shape": list(v.shape)} for k, v in floats
    ]
    # The data section is each tensor's own memory, in state_dict order, nothing else.
    assert data[pos:] == b"".join(v.contiguous().numpy().tobytes() for _, v in floats)

    dst = _net(dtype)
    res = dst.load_state_dict(params_to_state_dict(decode(data), like=dst.state_dict()),
                              strict=False)
    assert not res.unexpected_keys
    for k, v in floats:
        got = dst.state_dict()[k]
        assert got.dtype == dtype and torch.equal(got, v), k
    assert encode(state_dict_to_params(dst.state_dict(), floats_only=True)) == data


def test_state_dict_refusals() -> None:
    sd = _net().state_dict()
    with pytest.raises(InputError, match="num_batches_tracked"):
        state_dict_to_params(sd)
    # Other float precisions are refused, never skipped (even with floats_only).
    for dt in (torch.bfloat16, torch.float16):
        with pytest.raises(InputError, match="convert"):
            state_dict_to_params({"w": torch.ones(3, dtype=dt)}, floats_only=True)
    p = state_dict_to_params(sd, floats_only=True)
    p.pop("3.bias")
    with pytest.raises(InputError, match=r"lack the model's tensors \['3.bias'\]"):
        params_to_state_dict(p, like=sd)
    p = state_dict_to_params(sd, floats_only=True)
    p["3.weight"] = np.zeros((10, 47), np.float32)
    with pytest.raises(InputError, match="shape"):
        params_to_state_dict(p, like=sd)
    # A tensor that requires grad, non-contiguous (transposed) and on the autograd tape.
    w = torch.randn(3, 5, requires_grad=True)
    got = state_dict_to_params({"w": w.t() * 2})["w"]
    assert got.flags["C_CONTIGUOUS"] and np.array_equal(got, (w.t() * 2).detach().numpy())


class TorchDigits:
    """An MLP on digits: ``init`` for create(), one trainer per member, test accuracy."""

    def __init__(self) -> None:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        x, y = load_digits(return_X_y=True)
        x = (x / 16.0).astype(np.float32)
        xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
        self.xtr, self.ytr = torch.from_numpy(xtr), torch.from_numpy(ytr)
        self.xte, self.yte = torch.from_numpy(xte), torch.from_numpy(yte)
        self.parts = np.array_split(np.random.default_rng(0).permutation(len(xtr)), 3)
        torch.manual_seed(0)
        self.template = self._mlp()
        self.init = state_dict_to_params(self.template.state_dict())
        central = self._mlp()
        central.load_state_dict(self.template.state_dict())
        # Same number of passes over every example as the swarm makes in total.
        self._fit(central, self.xtr, self.ytr, ROUNDS * LOCAL_EPOCHS, seed=0)
        self.central = self._score(central)

    @staticmethod
    def _mlp() -> Any:
        return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))

    @staticmethod
    def _fit(m: Any, x: Any, y: Any, epochs: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
        m.train()
        for _ in range(epochs):
            perm = torch.randperm(len(x), generator=g)
            for i in range(0, len(x), 32):
                b = perm[i : i + 32]
                opt.zero_grad()
                nn.functional.cross_entropy(m(x[b]), y[b]).backward()
                opt.step()

    def _score(self, m: Any) -> float:
        m.eval()
        with torch.no_grad():
            return float((m(self.xte).argmax(1) == self.yte).float().mean())

    def trainer(self, i: int) -> Callable[..., tuple[dict[str, np.ndarray], int]]:
        part = torch.from_numpy(self.parts[i])
        model = self._mlp()  # one per member: its thread alone touches it

        def train(g: dict[str, np.ndarray], r: int) -> tuple[dict[str, np.ndarray], int]:
            model.load_state_dict(params_to_state_dict(g, like=model.state_dict()))
            self._fit(model, self.xtr[part], self.ytr[part], LOCAL_EPOCHS, seed=100 * i + r)
            return state_dict_to_params(model.state_dict()), len(part)

        return train

    def accuracy(self, params: dict[str, np.ndarray]) -> float:
        m = self._mlp()
        m.load_state_dict(params_to_state_dict(params, like=m.state_dict()))
        return self._score(m)


def test_torch_mlp_swarm_reaches_centralised_accuracy(swarm_env: dict[str, Any]) -> None:
    data = TorchDigits()
    assert data.central > 0.95, data.central
    sid = create(swarm_env, data, "fedavg")  # type: ignore[arg-type]
    res = run_members(swarm_env, sid, [data.trainer(i) for i in range(3)], ROUNDS)
    assert all(x.status == "finalized" and not x.skipped for rr in res for x in rr)
    final = res[0][-1].global_digest
    assert {rr[-1].global_digest for rr in res} == {final}
    ws = Workspace.open(swarm_env["homes"][2])
    try:
        g = decode(ws.blobs.get(final), expected_digest=final)
    finally:
        ws.close()
    # The agreed model keeps the MLP's tensors, names and float32 dtype.
    assert [(k, v.dtype, v.shape) for k, v in g.items()] == [
        (k, np.dtype("<f4"), v.shape) for k, v in data.init.items()
    ]
    acc = data.accuracy(g)
    # FedAvg over 3 non-overlapping shards, 2 local epochs per round: close to, not equal
    # to, one model trained on everything for as many passes.
    assert acc >= data.central - 0.04, (acc, data.central)
    assert acc > data.accuracy(data.init) + 0.5
    sts = statements(swarm_env["homes"][0], sid)
    assert [s["predicate"]["round"] for s in sts] == list(range(ROUNDS))
    assert sts[-1]["subject"][0]["digest"] == {"sha256": final}
