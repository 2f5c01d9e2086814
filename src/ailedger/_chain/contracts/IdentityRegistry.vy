# pragma version 0.4.3
"""
@title IdentityRegistry
@license Apache-2.0
@notice Binds an Ethereum account to a display name, an Ed25519 public key
        (signs statements and checkpoints) and an X25519 public key (receives
        wrapped data keys). The account itself registers, rotates and revokes.
@dev    Revocation is final: a revoked identity stays readable (flagged,
        never deleted) so old signatures can still be attributed, and the
        account can neither rotate nor register again. An Ed25519 key, once
        bound to an account, stays bound to it (also after rotation) so no
        other account can claim signatures made with it.
"""

MAX_NAME: constant(uint256) = 64

struct Identity:
    name: String[MAX_NAME]
    ed25519: bytes32
    x25519: bytes32
    registered_at: uint256
    updated_at: uint256
    revoked: bool
    revoked_at: uint256


event IdentityRegistered:
    account: indexed(address)
    ed25519: indexed(bytes32)
    name: String[MAX_NAME]
    x25519: bytes32


event KeysRotated:
    account: indexed(address)
    ed25519: indexed(bytes32)
    previous_ed25519: bytes32
    x25519: bytes32
    previous_x25519: bytes32


event IdentityRevoked:
    account: indexed(address)
    ed25519: indexed(bytes32)


_identities: HashMap[address, Identity]
_by_ed25519: HashMap[bytes32, address]


@internal
def _bind(account: address, ed25519: bytes32, x25519: bytes32):
    assert ed25519 != empty(bytes32), "IdentityRegistry: empty Ed25519 key"
    assert x25519 != empty(bytes32), "IdentityRegistry: empty X25519 key"
    holder: address = self._by_ed25519[ed25519]
    assert holder == empty(address) or holder == account, "IdentityRegistry: Ed25519 key bound to another account"
    self._by_ed25519[ed25519] = account


@external
def register(name: String[MAX_NAME], ed25519: bytes32, x25519: bytes32):
    """
    @notice Register the caller's identity.
    @param name Display name (non-empty, at most 64 bytes).
    @param ed25519 Raw 32-byte Ed25519 public key.
    @param x25519 Raw 32-byte X25519 public key.
    """
    current: Identity = self._identities[msg.sender]
    assert not current.revoked, "IdentityRegistry: identity revoked"
    assert current.registered_at == 0, "IdentityRegistry: already registered"
    assert len(name) > 0, "IdentityRegistry: empty name"
    self._bind(msg.sender, ed25519, x25519)
    self._identities[msg.sender] = Identity(
        name=name,
        ed25519=ed25519,
        x25519=x25519,
        registered_at=block.number,
        updated_at=block.number,
        revoked=False,
        revoked_at=0,
    )
    log IdentityRegistered(account=msg.sender, ed25519=ed25519, name=name, x25519=x25519)


@external
def rotate(ed25519: bytes32, x25519: bytes32):
    """
    @notice Replace the caller's public keys.
    @param ed25519 New raw Ed25519 public key.
    @param x25519 New raw X25519 public key.
    """
    current: Identity = self._identities[msg.sender]
    assert current.registered_at != 0, "IdentityRegistry: not registered"
    assert not current.revoked, "IdentityRegistry: identity revoked"
    self._bind(msg.sender, ed25519, x25519)
    self._identities[msg.sender].ed25519 = ed25519
    self._identities[msg.sender].x25519 = x25519
    self._identities[msg.sender].updated_at = block.number
    log KeysRotated(
        account=msg.sender,
        ed25519=ed25519,
        previous_ed25519=current.ed25519,
        x25519=x25519,
        previous_x25519=current.x25519,
    )


@external
def revoke():
    """
    @notice Revoke the caller's identity, permanently. The record stays
            readable with revoked = True.
    """
    current: Identity = self._identities[msg.sender]
    assert current.registered_at != 0, "IdentityRegistry: not registered"
    assert not current.revoked, "IdentityRegistry: identity revoked"
    self._identities[msg.sender].revoked = True
    self._identities[msg.sender].revoked_at = block.number
    self._identities[msg.sender].updated_at = block.number
    log IdentityRevoked(account=msg.sender, ed25519=current.ed25519)


@external
@view
def resolve(account: address) -> Identity:
    """
    @notice An account's identity.
    @param account The account.
    @return (name, ed25519, x25519, registered_at, updated_at, revoked,
            revoked_at); registered_at is zero if never registered.
    """
    return self._identities[account]


@external
@view
def account_of(ed25519: bytes32) -> address:
    """
    @notice The account an Ed25519 key is (or was) bound to.
    @param ed25519 Raw Ed25519 public key.
    @return The account, or zero if the key was never registered.
    """
    return self._by_ed25519[ed25519]
