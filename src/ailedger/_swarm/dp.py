"""Differential privacy for model updates: L2 clipping plus Gaussian noise, and a
zCDP privacy accountant.

Mechanism (per round, per member): the update ``Δ = local − global`` (all tensors viewed
as one vector) is scaled to L2 norm at most ``C`` (``clip``), then every coordinate gets
independent ``N(0, (σ·C)²)`` noise, ``σ`` = ``noise_multiplier``. The noise comes from a
numpy ``Generator(PCG64(seed))``; the seed is recorded so the draw can be reproduced and
audited (keep it secret until the round is over: whoever knows it can subtract the noise).

Accounting: the Gaussian mechanism with L2 sensitivity ``C`` and noise ``σ·C`` is
``ρ = 1/(2σ²)``-zCDP (Bun & Steinke 2016, Prop. 1.6); zCDP composes by adding ρ; ρ-zCDP
implies ``(ρ + 2·√(ρ·ln(1/δ)), δ)``-DP (Prop. 1.3). Assumptions, stated so nobody reads
more into the numbers: the unit of privacy is the member's whole update (neighbouring =
the update present or replaced by zero, as in DP-FedAvg — for arbitrary substitution the
sensitivity is 2C and ρ is four times larger); no amplification by subsampling is
claimed; every round is counted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError
from .params import Params, normalise

__all__ = ["Accountant", "DPConfig", "PrivacySpent", "epsilon", "l2_norm", "privatize", "rho"]

_BLOCK = 1 << 16


@dataclass(frozen=True)
class DPConfig:
    """Differential-privacy settings.

    @param clip: L2 bound C on the whole update (> 0).
    @param noise_multiplier: σ; the noise standard deviation is σ·C (> 0).
    @param delta: the δ at which ε is reported (0 < δ < 1).
    """

    clip: float
    noise_multiplier: float
    delta: float

    def __post_init__(self) -> None:
        for name in ("clip", "noise_multiplier", "delta"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise InputError(f"DP {name} must be a finite number, got {v!r}")
        if self.clip <= 0:
            raise InputError(f"DP clip must be > 0, got {self.clip}")
        if self.noise_multiplier <= 0:
            raise InputError(
                f"DP noise_multiplier must be > 0, got {self.noise_multiplier} "
                "(without noise there is no privacy guarantee)"
            )
        if not 0 < self.delta < 1:
            raise InputError(f"DP delta must be in (0, 1), got {self.delta}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"clip": self.clip, "noiseMultiplier": self.noise_multiplier, "delta": self.delta}


@dataclass(frozen=True)
class PrivacySpent:
    """What one :func:`privatize` call did and cost.

    @param rho: zCDP cost of this round, 1/(2σ²).
    @param epsilon: ε of this round alone at ``delta``.
    @param delta: δ.
    @param seed: the PCG64 seed of the noise.
    @param norm: L2 norm of the update before clipping.
    @param scale: the clipping factor applied, min(1, C/norm).
    """

    rho: float
    epsilon: float
    delta: float
    seed: int
    norm: float
    scale: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "rho": self.rho,
            "epsilon": self.epsilon,
            "delta": self.delta,
            "seed": self.seed,
            "norm": self.norm,
            "scale": self.scale,
        }


def rho(noise_multiplier: float) -> float:
    """zCDP cost of one Gaussian-mechanism release: ρ = 1/(2σ²)."""
    if noise_multiplier <= 0:
        raise InputError("noise_multiplier must be > 0")
    return 1.0 / (2.0 * noise_multiplier * noise_multiplier)


def epsilon(total_rho: float, delta: float) -> float:
    """(ε, δ)-DP implied by ρ-zCDP: ε = ρ + 2·√(ρ·ln(1/δ))."""
    if total_rho < 0 or not 0 < delta < 1:
        raise InputError("need ρ ≥ 0 and 0 < δ < 1")
    return total_rho + 2.0 * math.sqrt(total_rho * math.log(1.0 / delta))


def l2_norm(params: Mapping[str, Any]) -> float:
    """L2 norm of all tensors as one vector, deterministic (float64 block sums + fsum)."""
    parts: list[float] = []
    for arr in normalise(params).values():
        flat = arr.reshape(-1)
        for s in range(0, flat.size, _BLOCK):
            b = flat[s : s + _BLOCK].astype(np.float64)
            parts.append(float(np.add.reduce(b * b)))
    return math.sqrt(math.fsum(parts))


def privatize(
    delta: Mapping[str, Any], cfg: DPConfig, rng: int
) -> tuple[Params, PrivacySpent]:
    """Clip an update to L2 norm ``cfg.clip`` and add seeded Gaussian noise.

    Noise is drawn tensor by tensor in the mapping's order, C order within a tensor, as
    float64 ``standard_normal`` from ``Generator(PCG64(rng))``, scaled by σ·C, added in
    float64 and rounded once to the tensor's dtype — so the same update, config and seed
    give the same bytes.

    @param delta: the update (local − global), ordered name -> float array.
    @param cfg: clipping bound, noise multiplier, δ.
    @param rng: the seed (a non-negative int; recorded in the result). Draw it from
        ``secrets.randbits(64)`` in production.
    @return: ``(privatised update, spent)``.
    @raise InputError: bad update or seed.
    """
    if isinstance(rng, bool) or not isinstance(rng, int) or rng < 0:
        raise InputError(f"the DP seed must be a non-negative integer, got {rng!r}")
    p = normalise(delta)
    norm = l2_norm(p)
    scale = 1.0 if norm <= cfg.clip else cfg.clip / norm
    gen = np.random.Generator(np.random.PCG64(rng))
    sd = cfg.noise_multiplier * cfg.clip
    out: Params = {}
    for name, arr in p.items():
        noisy = arr.astype(np.float64)
        if scale != 1.0:
            noisy *= scale
        noise = gen.standard_normal(arr.shape, dtype=np.float64)
        noise *= sd
        noisy += noise
        out[name] = noisy.astype(arr.dtype)
    r = rho(cfg.noise_multiplier)
    spent = PrivacySpent(
        rho=r,
        epsilon=epsilon(r, cfg.delta),
        delta=cfg.delta,
        seed=rng,
        norm=norm,
        scale=scale,
    )
    return out, spent


class Accountant:
    """Cumulative privacy spent by one member over rounds (zCDP composition).

    @param delta: δ at which cumulative ε is reported.
    """

    def __init__(self, delta: float) -> None:
        if not 0 < delta < 1:
            raise InputError(f"accountant delta must be in (0, 1), got {delta}")
        self.delta = delta
        self.rho = 0.0
        self.rounds: list[float] = []

    def spend(self, noise_multiplier: float) -> float:
        """Record one Gaussian release with multiplier σ; returns the cumulative ε."""
        r = rho(noise_multiplier)
        self.rounds.append(r)
        self.rho = math.fsum(self.rounds)
        return self.epsilon

    def record(self, spent: PrivacySpent) -> float:
        """Record a :func:`privatize` result; returns the cumulative ε."""
        self.rounds.append(spent.rho)
        self.rho = math.fsum(self.rounds)
        return self.epsilon

    @property
    def epsilon(self) -> float:
        """Cumulative ε at ``delta`` (0 before any round)."""
        return epsilon(self.rho, self.delta) if self.rounds else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: rounds, per-round ρ, cumulative ρ, ε, δ."""
        return {
            "rounds": len(self.rounds),
            "rhoPerRound": list(self.rounds),
            "rho": self.rho,
            "epsilon": self.epsilon,
            "delta": self.delta,
        }
