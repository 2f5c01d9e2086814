"""Compiled contract artifacts, loaded from the package (no compiler at runtime)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from ..errors import ChainError

CONTRACT_NAMES = ("CheckpointRegistry", "IdentityRegistry", "DataAgreements", "SwarmRounds")
# Contracts every deployment.json must name. DataAgreements and SwarmRounds came later: a
# deployment recorded before them still loads (and validates) for the two original contracts.
REQUIRED_CONTRACTS = ("CheckpointRegistry", "IdentityRegistry")


@dataclass(frozen=True)
class Artifact:
    """ABI and bytecode of one contract, as written by scripts/build_contracts.py."""

    name: str
    abi: tuple[dict[str, Any], ...]
    bytecode: bytes
    runtime_bytecode: bytes
    source_sha256: str
    vyper_version: str

    def source(self) -> str:
        """The Vyper source shipped with the package."""
        return (
            resources.files("ailedger._chain")
            .joinpath("contracts")
            .joinpath(f"{self.name}.vy")
            .read_text(encoding="utf-8")
        )

    def source_is_current(self) -> bool:
        """Whether the shipped source still hashes to what the artifact was built from."""
        digest = hashlib.sha256(self.source().encode("utf-8")).hexdigest()
        return digest == self.source_sha256


def _hex(value: str) -> bytes:
    return bytes.fromhex(value[2:] if value.startswith("0x") else value)


@cache
def load_artifact(name: str) -> Artifact:
    """Load a compiled contract by name (one of ``CONTRACT_NAMES``)."""
    if name not in CONTRACT_NAMES:
        raise ChainError(f"unknown contract {name!r}; known: {', '.join(CONTRACT_NAMES)}")
    try:
        raw = (
            resources.files("ailedger._chain")
            .joinpath("artifacts")
            .joinpath(f"{name}.json")
            .read_text(encoding="utf-8")
        )
        data = json.loads(raw)
        return Artifact(
            name=data["contract_name"],
            abi=tuple(data["abi"]),
            bytecode=_hex(data["bytecode"]),
            runtime_bytecode=_hex(data["bytecode_runtime"]),
            source_sha256=data["source_sha256"],
            vyper_version=data["vyper_version"],
        )
    except (OSError, ValueError, KeyError) as exc:
        raise ChainError(f"contract artifact {name} is missing or corrupt: {exc}") from None
