"""Model-update side of decentralized (swarm) training: the canonical parameter encoding,
deterministic aggregation rules, differential privacy and model adapters.

See ``docs/swarm-aggregation.md``.
"""

from __future__ import annotations

from .adapters import get_params, params_to_state_dict, set_params, state_dict_to_params
from .aggregate import RULES, AggregationReport, aggregate, aggregate_with_report, rule_spec
from .dp import Accountant, DPConfig, PrivacySpent, epsilon, l2_norm, privatize, rho
from .params import Params, decode, digest, encode, normalise

__all__ = [
    "RULES",
    "Accountant",
    "AggregationReport",
    "DPConfig",
    "Params",
    "PrivacySpent",
    "aggregate",
    "aggregate_with_report",
    "decode",
    "digest",
    "encode",
    "epsilon",
    "get_params",
    "l2_norm",
    "normalise",
    "params_to_state_dict",
    "privatize",
    "rho",
    "rule_spec",
    "set_params",
    "state_dict_to_params",
]
