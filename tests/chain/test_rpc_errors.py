"""RPC backend failure modes: each one a clear ChainError."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from eth_account import Account

from ailedger._chain import (
    CheckpointRegistryClient,
    Deployment,
    RpcBackend,
    deploy_all,
    load_artifact,
    load_deployment,
)
from ailedger.errors import ChainError

from ..conftest import ANVIL_CHAIN_ID, ANVIL_KEY, AnvilNode, free_port


def test_unreachable_url() -> None:
    with pytest.raises(ChainError, match="cannot reach the Ethereum node"):
        RpcBackend(f"http://127.0.0.1:{free_port()}")


def test_wrong_chain_id(anvil: AnvilNode) -> None:
    with pytest.raises(ChainError, match=f"serves chain id {ANVIL_CHAIN_ID}, expected 5"):
        RpcBackend(anvil.url, expected_chain_id=5)


def test_no_code_at_address(anvil: AnvilNode, tmp_path: Path) -> None:
    b = RpcBackend(anvil.url)
    nobody = Account.create().address
    reg = CheckpointRegistryClient(b, nobody)
    with pytest.raises(ChainError, match="no contract code at"):
        reg.latest(b"\0" * 32)
    dep = Deployment(ANVIL_CHAIN_ID, {"CheckpointRegistry": nobody, "IdentityRegistry": nobody})
    dep.save(tmp_path / "d.json")
    with pytest.raises(ChainError, match="no contract code at"):
        load_deployment(tmp_path / "d.json", b)


def test_deployment_validation(anvil: AnvilNode, tmp_path: Path) -> None:
    b = RpcBackend(anvil.url)
    dep = deploy_all(b, Account.from_key(ANVIL_KEY))
    dep.save(tmp_path / "d.json")
    assert load_deployment(tmp_path / "d.json", b) == dep
    assert set(dep.as_dict()) == {"chain_id", "contracts", "deployed_at_block"}
    wrong_chain = Deployment(1, dep.contracts, dep.deployed_at_block)
    with pytest.raises(ChainError, match="deployment is for chain id 1"):
        wrong_chain.validate(b)
    swapped = Deployment(
        ANVIL_CHAIN_ID,
        {
            "CheckpointRegistry": dep.contracts["IdentityRegistry"],
            "IdentityRegistry": dep.contracts["CheckpointRegistry"],
        },
    )
    with pytest.raises(ChainError, match="is not ailedger's CheckpointRegistry"):
        swapped.validate(b)
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(ChainError, match="not valid JSON"):
        Deployment.load(tmp_path / "bad.json")
    with pytest.raises(ChainError, match="no address for IdentityRegistry"):
        Deployment.from_dict(
            {
                "chain_id": 1,
                "contracts": {"CheckpointRegistry": dep.contracts["CheckpointRegistry"]},
            }
        )
    with pytest.raises(ChainError, match="cannot read deployment"):
        Deployment.load(tmp_path / "missing.json")


def test_unfunded_account(anvil: AnvilNode) -> None:
    b = RpcBackend(anvil.url)
    with pytest.raises(ChainError, match="has no funds"):
        b.deploy(Account.create(), load_artifact("CheckpointRegistry"))
    poor = Account.create()
    b.send_value(Account.from_key(ANVIL_KEY), poor.address, 1000)
    with pytest.raises(ChainError, match="cannot pay for this transaction"):
        b.deploy(poor, load_artifact("CheckpointRegistry"))


def test_revert_reason_from_mined_failed_transaction(anvil: AnvilNode) -> None:
    """With an explicit gas limit nothing is estimated: the tx is mined with
    status 0 and the reason comes from an eth_call replay."""
    b = RpcBackend(anvil.url)
    acct = Account.from_key(ANVIL_KEY)
    dep = deploy_all(b, acct)
    art = load_artifact("CheckpointRegistry")
    with pytest.raises(ChainError, match=r"^CheckpointRegistry: unknown log$") as info:
        b.transact(
            acct,
            dep.contracts["CheckpointRegistry"],
            art.abi,
            "anchor",
            [b"\1" * 32, 1, b"\2" * 32, []],
            gas=100_000,
        )
    receipt = info.value.receipt  # type: ignore[attr-defined]
    assert receipt is not None and receipt.status == 0


def test_connection_dropped_mid_transaction(anvil_factory: type[AnvilNode]) -> None:
    node = anvil_factory("--no-mining")
    b = RpcBackend(node.url, receipt_timeout=60)
    errors: list[BaseException] = []

    def send() -> None:
        try:
            b.send_value(Account.from_key(ANVIL_KEY), Account.create().address, 1)
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=send)
    t.start()
    # The transaction is pending (no mining); the node goes away while we wait.
    import time

    time.sleep(1.0)
    node.stop()
    t.join(30)
    assert not t.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], ChainError)
    assert "lost the connection" in str(errors[0]) and "may still be mined" in str(errors[0])
    with pytest.raises(ChainError, match="cannot reach"):
        b.block_number()
