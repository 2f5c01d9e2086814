"""CheckpointRegistry: every function and every revert path, on both backends."""

from __future__ import annotations

import time

import pytest

from ailedger import merkle
from ailedger._chain import TransactionReverted, log_id_of
from ailedger.errors import ChainError

from .conftest import ChainEnv

LEAVES = [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(200)]


def tree(n: int) -> bytes:
    return merkle.root_from_leaf_hashes(LEAVES[:n])


def proof(m: int, n: int) -> list[bytes]:
    return merkle.consistency_proof(m, LEAVES[:n])


def reverts(match: str):  # type: ignore[no-untyped-def]
    return pytest.raises(TransactionReverted, match=f"^CheckpointRegistry: {match}")


def test_register_and_log_info(chain: ChainEnv) -> None:
    reg = chain.registry()
    log_id, receipt = reg.register_log("example.com/log", "example.com/log+abcd+AQ==")
    assert receipt.status == 1
    assert log_id == log_id_of("example.com/log")
    assert (
        reg.backend.call(reg.address, reg.artifact.abi, "log_id_of", ["example.com/log"]) == log_id
    )
    info = reg.log_info(log_id)
    assert info is not None
    assert (info.owner, info.origin, info.verifier_key) == (
        chain.owner.address,
        "example.com/log",
        "example.com/log+abcd+AQ==",
    )
    assert reg.log_info(log_id_of("other")) is None
    assert reg.latest(log_id) is None


def test_duplicate_registration_reverts(chain: ChainEnv) -> None:
    chain.registry().register_log("dup", "vk")
    with reverts("log already registered"):
        chain.registry(chain.other).register_log("dup", "vk2")


def test_empty_origin_or_key_reverts(chain: ChainEnv) -> None:
    with reverts("empty origin"):
        chain.registry().register_log("", "vk")
    with reverts("empty verifier key"):
        chain.registry().register_log("o", "")


def test_anchor_history_latest_root_at(chain: ChainEnv) -> None:
    reg = chain.registry()
    log_id, _ = reg.register_log("hist", "vk")
    before = int(time.time())
    first = reg.anchor(log_id, 3, tree(3))
    assert (first.size, first.previous_size, first.previous_root) == (3, 0, b"\0" * 32)
    assert first.gas_used and first.chain_id == chain.backend.chain_id
    second = reg.anchor(log_id, 8, tree(8), proof(3, 8))
    third = reg.anchor(log_id, 13, tree(13), proof(8, 13))
    assert (third.previous_size, third.previous_root) == (8, tree(8))
    latest = reg.latest(log_id)
    assert latest is not None
    assert (latest.size, latest.root, latest.block_number) == (13, tree(13), third.block_number)
    assert latest.timestamp == chain.backend.block_timestamp(third.block_number)
    assert latest.timestamp >= before - 2
    assert reg.root_at(log_id, 8) == tree(8)
    assert reg.root_at(log_id, 9) is None
    assert reg.root_at(log_id, 0) is None
    hist = reg.history(log_id)
    assert [(h.size, h.root, h.tx_hash) for h in hist] == [
        (3, tree(3), first.tx_hash),
        (8, tree(8), second.tx_hash),
        (13, tree(13), third.tx_hash),
    ]
    stamps = [h.timestamp for h in hist]
    assert stamps == sorted(stamps)
    assert reg.history(log_id_of("nothing")) == []


def test_power_of_two_old_size(chain: ChainEnv) -> None:
    reg = chain.registry()
    log_id, _ = reg.register_log("pow2", "vk")
    reg.anchor(log_id, 4, tree(4))
    reg.anchor(log_id, 16, tree(16), proof(4, 16))
    reg.anchor(log_id, 17, tree(17), proof(16, 17))
    assert reg.latest(log_id).size == 17  # type: ignore[union-attr]


def test_unregistered_log_reverts(chain: ChainEnv) -> None:
    with reverts("unknown log"):
        chain.registry().anchor(log_id_of("nope"), 1, tree(1))


def test_non_owner_reverts(chain: ChainEnv) -> None:
    log_id, _ = chain.registry().register_log("mine", "vk")
    with reverts("not owner"):
        chain.registry(chain.other).anchor(log_id, 1, tree(1))
    chain.registry().anchor(log_id, 1, tree(1))
    with reverts("not owner"):
        chain.registry(chain.other).anchor(log_id, 2, tree(2), proof(1, 2))


def test_first_anchor_with_proof_reverts(chain: ChainEnv) -> None:
    log_id, _ = chain.registry().register_log("first", "vk")
    with reverts("first anchor takes no proof"):
        chain.registry().anchor(log_id, 5, tree(5), [tree(1)])


def test_zero_size_reverts(chain: ChainEnv) -> None:
    log_id, _ = chain.registry().register_log("zero", "vk")
    with reverts("size must be positive"):
        chain.registry().anchor(log_id, 0, merkle.EMPTY_ROOT)


def test_equal_and_stale_size_revert(chain: ChainEnv) -> None:
    reg = chain.registry()
    log_id, _ = reg.register_log("stale", "vk")
    reg.anchor(log_id, 10, tree(10))
    with reverts("size must exceed the anchored size"):
        reg.anchor(log_id, 10, tree(10))
    with reverts("size must exceed the anchored size"):
        reg.anchor(log_id, 7, tree(7), proof(7, 10))


def test_wrong_root_reverts(chain: ChainEnv) -> None:
    reg = chain.registry()
    log_id, _ = reg.register_log("wrongroot", "vk")
    reg.anchor(log_id, 6, tree(6))
    forged = merkle.root_from_leaf_hashes(LEAVES[:6] + [merkle.leaf_hash(b"evil")] * 5)
    with reverts("proof does not match the new root"):
        reg.anchor(log_id, 11, forged, proof(6, 11))


def test_bad_proof_reverts(chain: ChainEnv) -> None:
    reg = chain.registry()
    log_id, _ = reg.register_log("badproof", "vk")
    reg.anchor(log_id, 6, tree(6))
    p = proof(6, 11)
    p[0] = bytes([p[0][0] ^ 1]) + p[0][1:]
    with reverts("proof does not match"):
        reg.anchor(log_id, 11, tree(11), p)
    with reverts("consistency proof too short"):
        reg.anchor(log_id, 11, tree(11), proof(6, 11)[:-1])
    with reverts("consistency proof too long"):
        reg.anchor(log_id, 11, tree(11), [*proof(6, 11), tree(1)])
    with reverts("empty consistency proof"):
        reg.anchor(log_id, 11, tree(11), [])


def test_overlong_proof_reverts(chain: ChainEnv) -> None:
    reg = chain.registry()
    log_id, _ = reg.register_log("overlong", "vk")
    reg.anchor(log_id, 6, tree(6))
    with reverts("proof longer than 63 hashes"):
        reg.anchor(log_id, 11, tree(11), [tree(1)] * 64)


def test_rollback_after_forged_history_is_impossible(chain: ChainEnv) -> None:
    """A split view: a second tree of the same size with other leaves."""
    reg = chain.registry()
    log_id, _ = reg.register_log("split", "vk")
    reg.anchor(log_id, 5, tree(5))
    other = [merkle.leaf_hash(b"x%d" % i) for i in range(9)]
    with reverts("proof does not match"):
        reg.anchor(
            log_id, 9, merkle.root_from_leaf_hashes(other), merkle.consistency_proof(5, other)
        )


def test_client_input_checks(chain: ChainEnv) -> None:
    with pytest.raises(ChainError, match="root must be 32 bytes"):
        chain.registry().anchor(b"\0" * 32, 1, b"short")
    with pytest.raises(ChainError, match="not an Ethereum address"):
        chain.registry().backend.code_at("0x1234")


def test_size_too_large_reverts(chain: ChainEnv) -> None:
    reg = chain.registry()
    log_id, _ = reg.register_log("toolarge", "vk")
    with reverts("size too large"):
        reg.anchor(log_id, 2**64, tree(1))
    reg.anchor(log_id, 2**64 - 1, tree(1))  # the largest size that fits the packed slot


def test_proof_not_matching_the_anchored_root_reverts(chain: ChainEnv) -> None:
    """A proof valid for another old tree does not extend the anchored one."""
    reg = chain.registry()
    log_id, _ = reg.register_log("oldroot", "vk")
    reg.anchor(log_id, 6, tree(6))
    other = [merkle.leaf_hash(b"other%d" % i) for i in range(11)]
    p = merkle.consistency_proof(6, other)  # consistent 6 -> 11, but of another history
    with reverts("proof does not match the anchored root"):
        reg.anchor(log_id, 11, merkle.root_from_leaf_hashes(other), p)
