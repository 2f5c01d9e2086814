"""Deterministic aggregation of model updates: FedAvg, coordinate-wise median,
trimmed mean and (multi-)Krum.

Every member of a swarm runs :func:`aggregate` on the same committed updates and must get
the same bytes, so:

* updates are first put in canonical order — ascending by their digest
  (:func:`ailedger._swarm.params.digest`), ties (identical updates) by ``num_examples``;
  the order they are passed in never matters;
* arithmetic is float64, element by element, in that fixed order, with no BLAS and no
  reduction whose association depends on the machine; the result is rounded once to each
  tensor's dtype (IEEE-754 round-to-nearest-even);
* order statistics use a fixed sorting network of ``np.minimum``/``np.maximum`` (whose
  output is the sorted multiset whatever the input order) after turning ``-0.0`` into
  ``+0.0`` so the sign of a zero cannot depend on the CPU's min/max instruction;
* Krum's squared distances are summed per 16 384-element block by ``np.add.reduce`` (fixed
  pairwise order) and the blocks combined with :func:`math.fsum` (exactly rounded).

``docs/swarm-aggregation.md`` has the exact definition of every rule.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import InputError
from .params import Params, digest, normalise

__all__ = [
    "RULES",
    "AggregationReport",
    "aggregate",
    "aggregate_with_report",
    "rule_spec",
    "sorting_network",
]

RULES = ("fedavg", "median", "trimmed_mean", "krum")
BLOCK = 1 << 14  # elements per block: 16 float64 rows of it stay in a 2 MiB L2 cache
_F64 = np.dtype("<f8")


@dataclass(frozen=True)
class AggregationReport:
    """What an aggregation did, for the audit trail.

    @param rule: the normalised rule spec (see :func:`rule_spec`).
    @param digests: the input updates' digests in canonical (ascending) order.
    @param num_examples: their example counts, same order.
    @param selected: digests of the updates the result is built from (all of them for
        fedavg/median/trimmed_mean; the Krum choice for krum).
    @param trimmed: values trimmed from each end per coordinate (trimmed_mean), else 0.
    @param scores: Krum scores in canonical order (empty for other rules).
    @param result: digest of the aggregated parameters.
    """

    rule: dict[str, Any]
    digests: tuple[str, ...]
    num_examples: tuple[int, ...]
    selected: tuple[str, ...]
    trimmed: int = 0
    scores: tuple[float, ...] = field(default_factory=tuple)
    result: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (scores as floats; everything else strings and integers)."""
        return {
            "rule": dict(self.rule),
            "updates": [
                {"digest": d, "numExamples": n}
                for d, n in zip(self.digests, self.num_examples, strict=True)
            ],
            "selected": list(self.selected),
            "trimmed": self.trimmed,
            "scores": list(self.scores),
            "result": self.result,
        }


def _int(v: object, what: str, minimum: int) -> int:
    if type(v) is not int and not isinstance(v, np.integer):
        raise InputError(f"{what} must be an integer, got {v!r}")
    iv = int(v)
    if iv < minimum:
        raise InputError(f"{what} must be at least {minimum}, got {iv}")
    return iv


def rule_spec(rule: str, param: object = None) -> dict[str, Any]:
    """Validate a rule and its parameter and return the canonical JSON-ready spec.

    * ``fedavg``, ``median``: no parameter → ``{"rule": "fedavg"}``.
    * ``trimmed_mean``: a float β in [0, 0.5) (fraction trimmed from each end, read as the
      decimal it prints as) → ``{"rule": "trimmed_mean", "beta": "0.2"}``; or an int count
      k ≥ 0 → ``{"rule": "trimmed_mean", "trim": 1}``; or such a mapping.
    * ``krum``: an int f ≥ 0 (Byzantine members tolerated) or ``{"f": f, "m": m}`` (multi-Krum
      averages the m best; m defaults to 1) → ``{"rule": "krum", "f": 1, "m": 1}``.

    @raise InputError: unknown rule or a bad parameter.
    """
    if rule not in RULES:
        raise InputError(f"unknown aggregation rule {rule!r}; use one of {', '.join(RULES)}")
    if rule in ("fedavg", "median"):
        if param is not None:
            raise InputError(f"rule {rule} takes no parameter, got {param!r}")
        return {"rule": rule}
    if param is None:
        what = "β (float) or a trim count (int)" if rule == "trimmed_mean" else "f (int)"
        raise InputError(f"rule {rule} needs a parameter: {what}")
    if rule == "trimmed_mean":
        if isinstance(param, Mapping):
            if set(param) == {"beta"}:
                param = param["beta"]
                if isinstance(param, str):
                    try:
                        param = float(param)
                    except ValueError as e:
                        raise InputError(f"trimmed_mean beta {param!r} is not a number") from e
            elif set(param) == {"trim"}:
                param = param["trim"]
            else:
                raise InputError(
                    'trimmed_mean parameter mapping must be {"beta": β} or {"trim": k}'
                )
        if isinstance(param, float):
            if not math.isfinite(param) or not 0.0 <= param < 0.5:
                raise InputError(f"trimmed_mean β must be in [0, 0.5), got {param!r}")
            return {"rule": rule, "beta": repr(param)}
        return {"rule": rule, "trim": _int(param, "trimmed_mean trim count", 0)}
    # krum
    if isinstance(param, Mapping):
        extra = set(param) - {"f", "m"}
        if extra or "f" not in param:
            raise InputError('krum parameter mapping must be {"f": f} or {"f": f, "m": m}')
        f = _int(param["f"], "krum f", 0)
        m = _int(param.get("m", 1), "krum m", 1)
    else:
        f = _int(param, "krum f", 0)
        m = 1
    return {"rule": rule, "f": f, "m": m}


def sorting_network(n: int) -> list[tuple[int, int]]:
    """Batcher's odd–even merge sort comparators for ``n`` inputs (i < j; min goes to i).

    Built for the next power of two; comparators touching a position ≥ n are dropped,
    which is exact because those positions act as +∞ and such a comparator is a no-op.
    """
    if n < 1:
        raise InputError("a sorting network needs at least one input")
    p = 1
    while p < n:
        p *= 2
    out: list[tuple[int, int]] = []

    def merge(lo: int, hi: int, r: int) -> None:
        step = r * 2
        if step < hi - lo:
            merge(lo, hi, step)
            merge(lo + r, hi, step)
            out.extend((i, i + r) for i in range(lo + r, hi - r, step))
        else:
            out.append((lo, lo + r))

    def sort(lo: int, hi: int) -> None:
        if hi - lo >= 1:
            mid = lo + (hi - lo) // 2
            sort(lo, mid)
            sort(mid + 1, hi)
            merge(lo, hi, 1)

    sort(0, p - 1)
    return [(i, j) for i, j in out if j < n]


_Arr = npt.NDArray[Any]


def _prepare(
    updates: Sequence[tuple[Mapping[str, Any], int]], digests: Sequence[str] | None
) -> tuple[list[Params], list[int], list[str]]:
    if isinstance(updates, (str, bytes)) or not isinstance(updates, Sequence):
        raise InputError("updates must be a sequence of (parameters, num_examples) pairs")
    if not updates:
        raise InputError("no updates to aggregate")
    if digests is not None and len(digests) != len(updates):
        raise InputError(f"{len(digests)} digests given for {len(updates)} updates")
    items: list[tuple[str, int, Params]] = []
    for i, u in enumerate(updates):
        if not isinstance(u, tuple) or len(u) != 2:
            raise InputError(f"update {i} must be a (parameters, num_examples) pair")
        p = normalise(u[0])
        n = _int(u[1], f"update {i} num_examples", 1)
        d = digest(p) if digests is None else str(digests[i]).lower()
        items.append((d, n, p))
    # Canonical order: by digest, then count; equal keys mean equal bytes and count, so
    # the sort is total on everything that affects the result.
    items.sort(key=lambda t: (t[0], t[1]))
    ref = items[0][2]
    for d, _, p in items[1:]:
        if list(p) != list(ref):
            raise InputError(
                f"update {d[:12]} has tensors {list(p)[:5]}, expected {list(ref)[:5]} "
                "(same names in the same order)"
            )
        for name, arr in p.items():
            r = ref[name]
            if arr.shape != r.shape or arr.dtype != r.dtype:
                raise InputError(
                    f"update {d[:12]} tensor {name!r} is {arr.dtype.name}{list(arr.shape)}, "
                    f"expected {r.dtype.name}{list(r.shape)}"
                )
    return [t[2] for t in items], [t[1] for t in items], [t[0] for t in items]


def _blocks(size: int) -> range:
    return range(0, size, BLOCK)


def _weighted_mean(ps: list[Params], weights: list[int]) -> Params:
    total = float(sum(weights))
    out: Params = {}
    # Block by block, so the float64 accumulators stay in cache (whole-tensor float64
    # temporaries made this 5x slower on 1M parameters); element-wise, so the bytes are
    # those of the whole-tensor form: 0.0 + w0*p0 + w1*p1 + ..., divided, cast.
    size = max((r.size for r in ps[0].values()), default=0)
    acc_buf = np.empty(min(BLOCK, size), dtype=_F64)
    tmp_buf = np.empty_like(acc_buf)
    for name, r in ps[0].items():
        flat = [p[name].reshape(-1) for p in ps]
        res = np.empty(r.size, dtype=r.dtype)
        for s in _blocks(r.size):
            e = min(s + BLOCK, r.size)
            acc, tmp = acc_buf[: e - s], tmp_buf[: e - s]
            acc.fill(0.0)
            for f, w in zip(flat, weights, strict=True):
                # dtype=: a float32 block times a Python float is a float32 product under
                # NumPy's promotion rules; the rule is float64 products (docs).
                np.multiply(f[s:e], float(w), out=tmp, dtype=_F64)
                acc += tmp
            acc /= total
            res[s:e] = acc
        out[name] = res.reshape(r.shape)
    return out


def _order_stat(ps: list[Params], lo: int, hi: int) -> Params:
    """Per coordinate, the mean (float64) of sorted positions lo..hi-1, cast back."""
    n = len(ps)
    net = sorting_network(n)
    count = float(hi - lo)
    out: Params = {}
    for name, r in ps[0].items():
        flat = [p[name].reshape(-1) for p in ps]
        res = np.empty(r.size, dtype=r.dtype)
        for s in _blocks(r.size):
            e = min(s + BLOCK, r.size)
            # + 0.0 maps -0.0 to +0.0: min/max of signed zeros is CPU-dependent
            rows = [f[s:e] + r.dtype.type(0.0) for f in flat]
            tmp = np.empty_like(rows[0])
            for i, j in net:
                a, b = rows[i], rows[j]
                np.minimum(a, b, out=tmp)
                np.maximum(a, b, out=b)
                rows[i], tmp = tmp, a
            if hi - lo == 1:
                res[s:e] = rows[lo]
            else:
                acc = rows[lo].astype(_F64)
                for k in range(lo + 1, hi):
                    acc += rows[k]
                acc /= count
                res[s:e] = acc
        out[name] = res.reshape(r.shape)
    return out


def _krum_scores(ps: list[Params], f: int) -> list[float]:
    n = len(ps)
    parts: list[list[list[float]]] = [[[] for _ in range(n)] for _ in range(n)]
    for name, r in ps[0].items():
        flat = [p[name].reshape(-1) for p in ps]
        for s in _blocks(r.size):
            e = min(s + BLOCK, r.size)
            x = np.empty((n, e - s), dtype=_F64)
            for i in range(n):
                x[i] = flat[i][s:e]
            for i in range(n - 1):
                d = x[i + 1 :] - x[i]
                d *= d
                sums = np.add.reduce(d, axis=1)
                for k, v in enumerate(sums.tolist()):
                    parts[i][i + 1 + k].append(v)
    dist = [[0.0] * n for _ in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            dist[i][j] = dist[j][i] = math.fsum(parts[i][j])
    k = n - f - 2
    scores = []
    for i in range(n):
        near = sorted(dist[i][j] for j in range(n) if j != i)[:k]
        scores.append(math.fsum(near))
    return scores


def aggregate_with_report(
    rule: str,
    updates: Sequence[tuple[Mapping[str, Any], int]],
    *,
    param: object = None,
    digests: Sequence[str] | None = None,
) -> tuple[Params, AggregationReport]:
    """Aggregate updates deterministically and say what was used.

    @param rule: ``fedavg`` | ``median`` | ``trimmed_mean`` | ``krum``.
    @param updates: ``(parameters, num_examples)`` pairs; parameters as in
        :mod:`ailedger._swarm.params`; all with the same names, order, shapes and dtypes.
    @param param: the rule's parameter (see :func:`rule_spec`).
    @param digests: the updates' digests if already known (e.g. verified on fetch); saves
        hashing every update again. They decide the canonical order, so they must be the
        true digests.
    @return: ``(aggregated parameters, report)``.
    @raise InputError: empty input, mismatched tensors, bad parameter, too few updates.
    """
    spec = rule_spec(rule, param)
    ps, ns, ds = _prepare(updates, digests)
    n = len(ps)
    trimmed = 0
    scores: list[float] = []
    selected = list(ds)
    if rule == "fedavg":
        out = _weighted_mean(ps, ns)
    elif rule == "median":
        out = _order_stat(ps, (n - 1) // 2, n // 2 + 1)
    elif rule == "trimmed_mean":
        trimmed = math.floor(Fraction(spec["beta"]) * n) if "beta" in spec else spec["trim"]
        if n - 2 * trimmed < 1:
            raise InputError(
                f"trimmed_mean trims {trimmed} from each end of {n} updates, leaving none; "
                f"it needs at least {2 * trimmed + 1} updates"
            )
        out = _order_stat(ps, trimmed, n - trimmed)
    else:
        f, m = spec["f"], spec["m"]
        if n < 2 * f + 3:
            raise InputError(
                f"krum with f={f} needs at least {2 * f + 3} updates (n ≥ 2f + 3), got {n}"
            )
        if m > n - f:
            raise InputError(f"multi-krum m={m} must be at most n - f = {n - f}")
        scores = _krum_scores(ps, f)
        # ties go to the update that comes first in canonical (digest) order
        best = sorted(range(n), key=lambda i: (scores[i], i))[:m]
        best.sort()
        selected = [ds[i] for i in best]
        if m == 1:
            out = {k: v.copy() for k, v in ps[best[0]].items()}
        else:
            out = _weighted_mean([ps[i] for i in best], [1] * m)
    report = AggregationReport(
        rule=spec,
        digests=tuple(ds),
        num_examples=tuple(ns),
        selected=tuple(selected),
        trimmed=trimmed,
        scores=tuple(scores),
        result=digest(out, allow_nonfinite=True),
    )
    return out, report


def aggregate(
    rule: str,
    updates: Sequence[tuple[Mapping[str, Any], int]],
    *,
    param: object = None,
    digests: Sequence[str] | None = None,
) -> Params:
    """Aggregate updates deterministically; :func:`aggregate_with_report` also returns the
    audit report. Same arguments and errors."""
    return aggregate_with_report(rule, updates, param=param, digests=digests)[0]
