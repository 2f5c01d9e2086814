"""Deploying the contracts and checking a recorded deployment (deployment.json)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ChainError
from ._artifacts import CONTRACT_NAMES, REQUIRED_CONTRACTS, load_artifact
from ._backend import ChainBackend, checksum

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount


@dataclass(frozen=True)
class Deployment:
    """Where the contracts live: ``{chain_id, contracts: {name: address}, deployed_at_block}``.

    ``CheckpointRegistry`` and ``IdentityRegistry`` are always present;
    ``DataAgreements`` and ``SwarmRounds`` are absent from deployments recorded
    before they existed (see :func:`deploy_missing`).
    """

    chain_id: int
    contracts: dict[str, str] = field(default_factory=dict)
    deployed_at_block: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "chain_id": self.chain_id,
            "contracts": dict(self.contracts),
            "deployed_at_block": self.deployed_at_block,
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2, sort_keys=True) + "\n"

    def save(self, path: str | Path) -> None:
        """Write atomically (temp file + rename)."""
        p = Path(path)
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_text(self.to_json(), encoding="utf-8")
        tmp.replace(p)

    @classmethod
    def from_dict(cls, data: object) -> Deployment:
        if not isinstance(data, dict):
            raise ChainError("deployment must be a JSON object")
        try:
            chain_id = data["chain_id"]
            contracts = data["contracts"]
            block = data.get("deployed_at_block", 0)
        except KeyError as exc:
            raise ChainError(f"deployment is missing {exc.args[0]!r}") from None
        if isinstance(chain_id, bool) or not isinstance(chain_id, int) or chain_id <= 0:
            raise ChainError("deployment chain_id must be a positive integer")
        if isinstance(block, bool) or not isinstance(block, int) or block < 0:
            raise ChainError("deployment deployed_at_block must be a non-negative integer")
        if not isinstance(contracts, dict):
            raise ChainError("deployment contracts must be an object")
        out: dict[str, str] = {}
        for name in CONTRACT_NAMES:
            if name not in contracts:
                if name in REQUIRED_CONTRACTS:
                    raise ChainError(f"deployment has no address for {name}")
                continue
            out[name] = checksum(contracts[name], f"{name} address")
        return cls(chain_id=chain_id, contracts=out, deployed_at_block=block)

    @classmethod
    def load(cls, path: str | Path) -> Deployment:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ChainError(f"cannot read deployment {path}: {exc.strerror}") from None
        except ValueError as exc:
            raise ChainError(f"deployment {path} is not valid JSON: {exc}") from None
        return cls.from_dict(data)

    def validate(self, backend: ChainBackend) -> None:
        """Check the backend's chain id and that each address holds our contract."""
        if backend.chain_id != self.chain_id:
            raise ChainError(
                f"deployment is for chain id {self.chain_id}, but the node serves "
                f"chain id {backend.chain_id}"
            )
        for name, address in self.contracts.items():
            code = backend.code_at(address)
            if not code:
                raise ChainError(f"no contract code at {address} ({name}) on chain {self.chain_id}")
            if code != load_artifact(name).runtime_bytecode:
                raise ChainError(f"the contract at {address} is not ailedger's {name}")


def deploy_all(backend: ChainBackend, account: LocalAccount) -> Deployment:
    """Deploy every contract with ``account``; returns the deployment record."""
    start = backend.block_number()
    contracts = {name: backend.deploy(account, load_artifact(name)) for name in CONTRACT_NAMES}
    return Deployment(chain_id=backend.chain_id, contracts=contracts, deployed_at_block=start + 1)


def deploy_missing(
    backend: ChainBackend, account: LocalAccount, deployment: Deployment
) -> Deployment:
    """Deploy the contracts a recorded deployment lacks (e.g. ``DataAgreements`` or
    ``SwarmRounds`` for a deployment made before they existed); returns the completed
    record (the same one if nothing was missing). ``deployed_at_block`` is kept: event
    scans still start there.
    """
    if backend.chain_id != deployment.chain_id:
        raise ChainError(
            f"deployment is for chain id {deployment.chain_id}, but the node serves "
            f"chain id {backend.chain_id}"
        )
    missing = [n for n in CONTRACT_NAMES if n not in deployment.contracts]
    if not missing:
        return deployment
    contracts = dict(deployment.contracts)
    for name in missing:
        contracts[name] = backend.deploy(account, load_artifact(name))
    return Deployment(deployment.chain_id, contracts, deployment.deployed_at_block)


def load_deployment(path: str | Path, backend: ChainBackend) -> Deployment:
    """Read deployment.json and validate it against the backend."""
    dep = Deployment.load(path)
    dep.validate(backend)
    return dep
