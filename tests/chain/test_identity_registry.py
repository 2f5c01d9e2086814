"""IdentityRegistry on both backends, including every revert path."""

from __future__ import annotations

import os

import pytest

from ailedger._chain import TransactionReverted

from .conftest import ChainEnv


def key() -> bytes:
    return os.urandom(32)


def reverts(match: str):  # type: ignore[no-untyped-def]
    return pytest.raises(TransactionReverted, match=f"^IdentityRegistry: {match}")


def test_register_resolve_rotate_revoke(chain: ChainEnv) -> None:
    ids = chain.identities()
    ed, x = key(), key()
    r = ids.register("alice", ed, x)
    ident = ids.resolve(chain.owner.address)
    assert ident is not None
    assert (ident.name, ident.ed25519, ident.x25519, ident.revoked) == ("alice", ed, x, False)
    assert ident.registered_at == r.block_number
    assert ids.account_of(ed) == chain.owner.address
    assert ids.resolve(chain.other.address) is None
    assert ids.account_of(key()) is None

    ed2, x2 = key(), key()
    r2 = ids.rotate(ed2, x2)
    ident = ids.resolve(chain.owner.address)
    assert ident is not None and (ident.ed25519, ident.x25519) == (ed2, x2)
    assert ident.updated_at == r2.block_number
    # The old key stays attributed to the account.
    assert ids.account_of(ed) == chain.owner.address

    r3 = ids.revoke()
    ident = ids.resolve(chain.owner.address)
    assert ident is not None and ident.revoked and ident.revoked_at == r3.block_number
    assert ident.name == "alice"


def test_register_reverts(chain: ChainEnv) -> None:
    ids = chain.identities()
    ed = key()
    with reverts("empty name"):
        ids.register("", key(), key())
    with reverts("empty Ed25519 key"):
        ids.register("a", b"\0" * 32, key())
    with reverts("empty X25519 key"):
        ids.register("a", key(), b"\0" * 32)
    ids.register("a", ed, key())
    with reverts("already registered"):
        ids.register("a", key(), key())
    with reverts("Ed25519 key bound to another account"):
        chain.identities(chain.other).register("b", ed, key())


def test_rotate_and_revoke_reverts(chain: ChainEnv) -> None:
    ids = chain.identities(chain.other)
    with reverts("not registered"):
        ids.rotate(key(), key())
    with reverts("not registered"):
        ids.revoke()
    mine = key()
    chain.identities().register("owner", mine, key())
    ids.register("other", key(), key())
    with reverts("Ed25519 key bound to another account"):
        ids.rotate(mine, key())
    with reverts("empty X25519 key"):
        ids.rotate(key(), b"\0" * 32)
    ids.revoke()
    with reverts("identity revoked"):
        ids.rotate(key(), key())
    with reverts("identity revoked"):
        ids.revoke()
    with reverts("identity revoked"):
        ids.register("again", key(), key())
