"""A stateful model of CheckpointRegistry: random appends, honest anchors and
attacks (forged same-size history, rollback, non-owner) against the contract,
compared with a Python model after every step."""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path

import pytest
from eth_account import Account
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from ailedger import merkle
from ailedger._chain import (
    CheckpointRegistryClient,
    EmbeddedBackend,
    TransactionReverted,
    deploy_all,
)

_n = itertools.count()


class RegistryMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.TemporaryDirectory()
        self.backend = EmbeddedBackend(Path(self.tmp.name) / "chain.db")
        self.owner = Account.create()
        self.mallory = Account.create()
        self.backend.fund(self.owner.address)
        self.backend.fund(self.mallory.address)
        dep = deploy_all(self.backend, self.owner)
        addr = dep.contracts["CheckpointRegistry"]
        self.reg = CheckpointRegistryClient(self.backend, addr, self.owner)
        self.evil = CheckpointRegistryClient(self.backend, addr, self.mallory)
        self.log_id, _ = self.reg.register_log(f"model-{next(_n)}", "vk")
        self.leaves: list[bytes] = []
        # The model: anchored (size, root) in order.
        self.anchored: list[tuple[int, bytes]] = []

    def teardown(self) -> None:
        self.backend.close()
        self.tmp.cleanup()

    def root(self, n: int) -> bytes:
        return merkle.root_from_leaf_hashes(self.leaves[:n])

    @rule(k=st.integers(1, 40))
    def append(self, k: int) -> None:
        base = len(self.leaves)
        self.leaves += [merkle.leaf_hash(b"e%d" % (base + i)) for i in range(k)]

    @precondition(lambda self: len(self.leaves) > (self.anchored[-1][0] if self.anchored else 0))
    @rule()
    def anchor(self) -> None:
        n = len(self.leaves)
        proof = merkle.consistency_proof(self.anchored[-1][0], self.leaves) if self.anchored else []
        self.reg.anchor(self.log_id, n, self.root(n), proof)
        self.anchored.append((n, self.root(n)))

    @precondition(lambda self: bool(self.anchored))
    @rule(data=st.data())
    def forged_history(self, data: st.DataObject) -> None:
        """A split view: same old prefix length, different content, same new size."""
        last = self.anchored[-1][0]
        n = data.draw(st.integers(last + 1, last + 40))
        forged = [merkle.leaf_hash(b"forged%d" % i) for i in range(n)]
        with pytest.raises(TransactionReverted, match=r"^CheckpointRegistry: proof does not match"):
            self.reg.anchor(
                self.log_id,
                n,
                merkle.root_from_leaf_hashes(forged),
                merkle.consistency_proof(last, forged),
            )

    @precondition(lambda self: bool(self.anchored))
    @rule(data=st.data())
    def rollback(self, data: st.DataObject) -> None:
        last = self.anchored[-1][0]
        n = data.draw(st.integers(1, last))
        with pytest.raises(TransactionReverted, match=r"^CheckpointRegistry: size must exceed"):
            self.reg.anchor(self.log_id, n, self.root(n), [])

    @rule()
    def non_owner(self) -> None:
        n = max(1, len(self.leaves))
        with pytest.raises(TransactionReverted, match=r"^CheckpointRegistry: not owner"):
            self.evil.anchor(self.log_id, n, self.root(n), [])

    @invariant()
    def chain_matches_model(self) -> None:
        latest = self.reg.latest(self.log_id)
        if not self.anchored:
            assert latest is None
            return
        assert latest is not None
        assert (latest.size, latest.root) == self.anchored[-1]


RegistryMachine.TestCase.settings = settings(max_examples=30, stateful_step_count=20, deadline=None)
TestRegistryMachine = RegistryMachine.TestCase


def test_model_history_matches_events(tmp_path: Path) -> None:
    """History read back from events is exactly the anchored sequence."""
    backend = EmbeddedBackend(tmp_path / "c.db")
    owner = Account.create()
    backend.fund(owner.address)
    dep = deploy_all(backend, owner)
    reg = CheckpointRegistryClient(backend, dep.contracts["CheckpointRegistry"], owner)
    log_id, _ = reg.register_log("h", "vk")
    leaves = [merkle.leaf_hash(b"%d" % i) for i in range(64)]
    sizes = [1, 2, 3, 7, 8, 31, 64]
    prev = 0
    for s in sizes:
        reg.anchor(
            log_id,
            s,
            merkle.root_from_leaf_hashes(leaves[:s]),
            merkle.consistency_proof(prev, leaves[:s]) if prev else [],
        )
        prev = s
    assert [h.size for h in reg.history(log_id)] == sizes
    backend.close()
