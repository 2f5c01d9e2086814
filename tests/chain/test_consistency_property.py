"""Random trees: valid RFC 9162 consistency proofs are accepted on chain and
mutated ones rejected. Checks run as eth_call simulations of anchor() from the
owner, which execute the contract exactly but keep each example cheap."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ailedger import merkle
from ailedger._chain import TransactionReverted

from .conftest import ChainEnv

_counter = itertools.count()


@st.composite
def tree_pair(draw: st.DrawFn) -> tuple[int, int]:
    n = draw(st.integers(min_value=2, max_value=300))
    m = draw(st.integers(min_value=1, max_value=n - 1))
    return m, n


def simulate(env: ChainEnv, log_id: bytes, size: int, root: bytes, proof: list[bytes]) -> None:
    reg = env.registry()
    env.backend.call(
        reg.address,
        reg.artifact.abi,
        "anchor",
        [log_id, size, root, proof],
        sender=env.owner.address,
    )


def mutations(m: int, n: int, leaves: list[bytes], proof: list[bytes], data: st.DataObject):
    root = merkle.root_from_leaf_hashes(leaves)
    i = data.draw(st.integers(0, len(proof) - 1), label="index")
    bit = data.draw(st.integers(0, 255), label="bit")
    flipped = list(proof)
    flipped[i] = (int.from_bytes(flipped[i], "big") ^ (1 << bit)).to_bytes(32, "big")
    yield "flipped bit", n, root, flipped
    yield "dropped hash", n, root, proof[:i] + proof[i + 1 :]
    yield "extra hash", n, root, [*proof[:i], merkle.leaf_hash(b"x"), *proof[i:]]
    other = data.draw(st.integers(m + 1, n + 5).filter(lambda k: k != n), label="size")
    yield "wrong size", other, root, proof
    yield "wrong root", n, merkle.leaf_hash(root), proof


@pytest.mark.parametrize("backend_kind", ["embedded", "rpc"], indirect=True)
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(pair=tree_pair(), data=st.data())
def test_random_consistency_proofs(
    chain: ChainEnv, pair: tuple[int, int], data: st.DataObject
) -> None:
    m, n = pair
    leaves = [merkle.leaf_hash(b"%d-%d" % (n, i)) for i in range(n)]
    reg = chain.registry()
    log_id, _ = reg.register_log(f"prop-{next(_counter)}-{chain.kind}", "vk")
    reg.anchor(log_id, m, merkle.root_from_leaf_hashes(leaves[:m]))
    proof = merkle.consistency_proof(m, leaves)
    simulate(chain, log_id, n, merkle.root_from_leaf_hashes(leaves), proof)
    for what, size, root, bad in mutations(m, n, leaves, proof, data):
        try:
            merkle.verify_consistency(m, size, bad, merkle.root_from_leaf_hashes(leaves[:m]), root)
        except Exception:
            pass
        else:  # a mutation that happens to stay valid (cannot occur for these) is skipped
            continue
        with pytest.raises(TransactionReverted, match=r"^CheckpointRegistry: "):
            simulate(chain, log_id, size, root, bad)
            pytest.fail(f"{what} proof was accepted for {m}->{size}")
    # And the valid one really anchors.
    rec = reg.anchor(log_id, n, merkle.root_from_leaf_hashes(leaves), proof)
    assert rec.previous_size == m
