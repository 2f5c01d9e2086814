"""Fixtures of the chain suite: an anvil node and both backends, parametrized."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
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

ROOT = Path(__file__).resolve().parents[2]
ANVIL = ROOT / ".tools/anvil/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"
# anvil's first default dev account (public, well-known test key).
ANVIL_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
ANVIL_CHAIN_ID = 31337


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class AnvilNode:
    def __init__(self, *extra: str) -> None:
        if not ANVIL.is_file():
            pytest.fail(
                f"anvil is not installed at {ANVIL}; run `bash scripts/install_anvil.sh` first",
                pytrace=False,
            )
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [str(ANVIL), "--host", "127.0.0.1", "--port", str(self.port), "--silent", *extra],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                requests.post(
                    self.url,
                    json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []},
                    timeout=1,
                )
                break
            except requests.exceptions.RequestException:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    pytest.fail(f"anvil did not start on {self.url}", pytrace=False)
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="session")
def anvil() -> Iterator[AnvilNode]:
    node = AnvilNode()
    yield node
    node.stop()


@pytest.fixture
def anvil_factory() -> Iterator[type[AnvilNode]]:
    started: list[AnvilNode] = []

    class Factory(AnvilNode):
        def __init__(self, *extra: str) -> None:
            super().__init__(*extra)
            started.append(self)

    yield Factory
    for node in started:
        node.stop()


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


@pytest.fixture
def chain(backend_kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[ChainEnv]:
    url = request.getfixturevalue("anvil").url if backend_kind == "rpc" else None
    backend = make_backend(backend_kind, tmp_path, url)
    env = ChainEnv(backend_kind, backend, Account.create(), Account.create(), Deployment(1))
    env.fund(env.owner.address)
    env.fund(env.other.address)
    env.deployment = deploy_all(backend, env.owner)
    yield env
    backend.close()


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[ChainEnv]:
    backend = EmbeddedBackend(tmp_path / "chain.db")
    env = ChainEnv("embedded", backend, Account.create(), Account.create(), Deployment(1))
    env.fund(env.owner.address)
    env.fund(env.other.address)
    env.deployment = deploy_all(backend, env.owner)
    yield env
    backend.close()
