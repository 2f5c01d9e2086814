# pragma version 0.4.3
"""
@title CheckpointRegistry
@license Apache-2.0
@notice On-chain witness for RFC 9162 Merkle logs. A log is registered once
        (origin, owner, verifier key); its owner then anchors checkpoints
        (size, root). Every anchor after the first must carry an RFC 9162
        section 2.1.4 consistency proof from the last anchored checkpoint,
        verified here with the SHA-256 precompile, so split views and
        rollbacks can never be anchored.
@dev    log_id = keccak256(utf-8 bytes of origin). The latest anchor is kept
        in one packed slot (size | block << 64 | timestamp << 128) and every
        anchored root in roots[log_id][size], which keeps anchor() cheap.
"""

MAX_PROOF: constant(uint256) = 63
MAX_ORIGIN: constant(uint256) = 256
MAX_VERIFIER_KEY: constant(uint256) = 512
MASK64: constant(uint256) = 18446744073709551615  # 2**64 - 1

struct LogInfo:
    owner: address
    origin: String[MAX_ORIGIN]
    verifier_key: String[MAX_VERIFIER_KEY]
    binding: Bytes[64]


event LogRegistered:
    log_id: indexed(bytes32)
    owner: indexed(address)
    origin: String[MAX_ORIGIN]
    verifier_key: String[MAX_VERIFIER_KEY]
    binding: Bytes[64]


event Anchored:
    log_id: indexed(bytes32)
    size: uint256
    root: bytes32
    previous_size: uint256
    previous_root: bytes32


_info: HashMap[bytes32, LogInfo]
_owner: HashMap[bytes32, address]
# size | block_number << 64 | timestamp << 128 of the latest anchor
_latest: HashMap[bytes32, uint256]
_roots: HashMap[bytes32, HashMap[uint256, bytes32]]


@external
@pure
def log_id_of(origin: String[MAX_ORIGIN]) -> bytes32:
    """
    @notice The id a log with this origin is registered under.
    @param origin The log's origin line (C2SP tlog-checkpoint).
    @return keccak256 of the origin's UTF-8 bytes.
    """
    return keccak256(origin)


@external
def register_log(
    origin: String[MAX_ORIGIN], verifier_key: String[MAX_VERIFIER_KEY], binding: Bytes[64]
) -> bytes32:
    """
    @notice Register a log; the caller becomes its owner, the only account
            allowed to anchor its checkpoints. A given origin can be
            registered once.
    @param origin The log's origin line (non-empty, at most 256 bytes).
    @param verifier_key The C2SP signed-note verifier key of the log's
           checkpoints (non-empty, at most 512 bytes).
    @param binding The log key's Ed25519 signature authorising the caller
           as the log's owner (see docs/chain.md). Stored, not checked here:
           the EVM has no Ed25519, so verifiers check it off chain and refuse
           a registration the log key did not authorise.
    @return log_id, keccak256 of the origin's bytes.
    """
    assert len(origin) > 0, "CheckpointRegistry: empty origin"
    assert len(verifier_key) > 0, "CheckpointRegistry: empty verifier key"
    log_id: bytes32 = keccak256(origin)
    assert self._owner[log_id] == empty(address), "CheckpointRegistry: log already registered"
    self._owner[log_id] = msg.sender
    self._info[log_id] = LogInfo(
        owner=msg.sender, origin=origin, verifier_key=verifier_key, binding=binding
    )
    log LogRegistered(
        log_id=log_id, owner=msg.sender, origin=origin, verifier_key=verifier_key, binding=binding
    )
    return log_id


@internal
@pure
def _node(left: bytes32, right: bytes32) -> bytes32:
    # RFC 9162 interior node: SHA-256(0x01 || left || right), via the precompile.
    return sha256(concat(b"\x01", left, right))


@internal
@pure
def _verify_consistency(size1: uint256, size2: uint256, root1: bytes32, root2: bytes32, proof: DynArray[bytes32, MAX_PROOF + 1]):
    # Port of ailedger.merkle.verify_consistency (RFC 9162 section 2.1.4.2),
    # for 0 < size1 < size2 (checked by the caller).
    n: uint256 = len(proof)
    assert n > 0, "CheckpointRegistry: empty consistency proof"
    # A power-of-two size1 is a complete subtree whose root is the first node
    # of the path, so the proof omits it.
    start: uint256 = 1
    fr: bytes32 = proof[0]
    if size1 & (size1 - 1) == 0:
        start = 0
        fr = root1
    sr: bytes32 = fr
    fn: uint256 = size1 - 1
    sn: uint256 = size2 - 1
    for _: uint256 in range(64):
        if fn & 1 == 0:
            break
        fn = fn >> 1
        sn = sn >> 1
    for i: uint256 in range(start, n, bound=MAX_PROOF + 1):
        assert sn != 0, "CheckpointRegistry: consistency proof too long"
        c: bytes32 = proof[i]
        if fn & 1 == 1 or fn == sn:
            fr = self._node(c, fr)
            sr = self._node(c, sr)
            if fn & 1 == 0:
                for _: uint256 in range(64):
                    if fn == 0 or fn & 1 == 1:
                        break
                    fn = fn >> 1
                    sn = sn >> 1
        else:
            sr = self._node(sr, c)
        fn = fn >> 1
        sn = sn >> 1
    assert sn == 0, "CheckpointRegistry: consistency proof too short"
    assert fr == root1, "CheckpointRegistry: proof does not match the anchored root"
    assert sr == root2, "CheckpointRegistry: proof does not match the new root"


@external
def anchor(log_id: bytes32, size: uint256, root: bytes32, proof: DynArray[bytes32, MAX_PROOF + 1]):
    """
    @notice Anchor checkpoint (size, root) of a registered log. Owner only.
            The first anchor takes an empty proof; every later one needs
            size > the last anchored size and an RFC 9162 consistency proof
            from the last anchored (size, root) to (size, root).
    @dev    The ABI bound is 64 so that a 64-hash proof gets a reason string;
            at most 63 hashes are accepted.
    @param log_id The log's id (see log_id_of).
    @param size The checkpoint's tree size (> 0, < 2**64).
    @param root The checkpoint's RFC 9162 root hash.
    @param proof The consistency proof (at most 63 hashes).
    """
    owner: address = self._owner[log_id]
    assert owner != empty(address), "CheckpointRegistry: unknown log"
    assert msg.sender == owner, "CheckpointRegistry: not owner"
    assert len(proof) <= MAX_PROOF, "CheckpointRegistry: proof longer than 63 hashes"
    assert size > 0, "CheckpointRegistry: size must be positive"
    assert size <= MASK64, "CheckpointRegistry: size too large"
    latest: uint256 = self._latest[log_id]
    previous_size: uint256 = latest & MASK64
    previous_root: bytes32 = empty(bytes32)
    if previous_size == 0:
        assert len(proof) == 0, "CheckpointRegistry: first anchor takes no proof"
    else:
        assert size > previous_size, "CheckpointRegistry: size must exceed the anchored size"
        previous_root = self._roots[log_id][previous_size]
        self._verify_consistency(previous_size, size, previous_root, root, proof)
    self._roots[log_id][size] = root
    self._latest[log_id] = size | (block.number << 64) | (block.timestamp << 128)
    log Anchored(log_id=log_id, size=size, root=root, previous_size=previous_size, previous_root=previous_root)


@external
@view
def latest(log_id: bytes32) -> (uint256, bytes32, uint256, uint256):
    """
    @notice The latest anchored checkpoint of a log.
    @param log_id The log's id.
    @return (size, root, block number, block timestamp); all zero if none.
    """
    packed: uint256 = self._latest[log_id]
    size: uint256 = packed & MASK64
    return (size, self._roots[log_id][size], (packed >> 64) & MASK64, packed >> 128)


@external
@view
def root_at(log_id: bytes32, size: uint256) -> bytes32:
    """
    @notice The root anchored for a given tree size.
    @param log_id The log's id.
    @param size A tree size.
    @return The anchored root, or zero if that size was never anchored.
    """
    if size == 0:
        return empty(bytes32)
    return self._roots[log_id][size]


@external
@view
def log_info(log_id: bytes32) -> LogInfo:
    """
    @notice A registered log's owner, origin, verifier key and owner binding.
    @param log_id The log's id.
    @return (owner, origin, verifier_key, binding); owner is zero if not registered.
    """
    return self._info[log_id]
