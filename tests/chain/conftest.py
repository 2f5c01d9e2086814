"""Fixtures of the chain suite: an anvil node and both backends, parametrized."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from ailedger._chain import (
    CheckpointRegistryClient,
    Deployment,
    EmbeddedBackend,
    IdentityRegistryClient,
    RpcBackend,
    deploy_all,
)
from ailedger._chain._backend import ChainBackend

from ..conftest import ANVIL_CHAIN_ID, ANVIL_KEY


@dataclass
class ChainEnv:
    kind: str
    backend: ChainBackend
    owner: LocalAccount
    other: LocalAccount
    deployment: Deployment

    def fund(self, address: str, amount: int = 10**20) -> None:
        if isinstance(self.backend, EmbeddedBackend):
            self.backend.fund(address, amount)
        else:
            self.backend.send_value(Account.from_key(ANVIL_KEY), address, amount)

    def new_account(self, funded: bool = True) -> LocalAccount:
        acct: LocalAccount = Account.create()
        if funded:
            self.fund(acct.address)
        return acct

    def registry(self, account: LocalAccount | None = None) -> CheckpointRegistryClient:
        return CheckpointRegistryClient(
            self.backend, self.deployment.contracts["CheckpointRegistry"], account or self.owner
        )

    def identities(self, account: LocalAccount | None = None) -> IdentityRegistryClient:
        return IdentityRegistryClient(
            self.backend, self.deployment.contracts["IdentityRegistry"], account or self.owner
        )


def make_backend(kind: str, tmp_path: Path, anvil_url: str | None) -> ChainBackend:
    if kind == "embedded":
        return EmbeddedBackend(tmp_path / "chain.db")
    assert anvil_url is not None
    return RpcBackend(anvil_url, expected_chain_id=ANVIL_CHAIN_ID)


@pytest.fixture(params=["embedded", "rpc"])
def backend_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def chain_env(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[ChainEnv]:
    """Two funded accounts and every contract deployed, on backend ``kind``."""
    url = request.getfixturevalue("anvil").url if kind == "rpc" else None
    backend = make_backend(kind, tmp_path, url)
    env = ChainEnv(kind, backend, Account.create(), Account.create(), Deployment(1))
    env.fund(env.owner.address)
    env.fund(env.other.address)
    env.deployment = deploy_all(backend, env.owner)
    yield env
    backend.close()


@pytest.fixture
def chain(backend_kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[ChainEnv]:
    yield from chain_env(backend_kind, tmp_path, request)


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[ChainEnv]:
    backend = EmbeddedBackend(tmp_path / "chain.db")
    env = ChainEnv("embedded", backend, Account.create(), Account.create(), Deployment(1))
    env.fund(env.owner.address)
    env.fund(env.other.address)
    env.deployment = deploy_all(backend, env.owner)
    yield env
    backend.close()
