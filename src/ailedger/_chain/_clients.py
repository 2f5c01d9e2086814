"""Typed clients for the deployed contracts, on top of any ChainBackend."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from eth_utils.crypto import keccak

from ..errors import ChainError
from ._abi import decode_event, event_topic
from ._artifacts import Artifact, load_artifact
from ._backend import Call, ChainBackend, Receipt, checksum

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

MAX_PROOF_HASHES = 63
_ZERO_ADDRESS = "0x" + "00" * 20
T = TypeVar("T")


@dataclass(frozen=True)
class View(Generic[T]):
    """One contract read, described but not made: a client's ``*_view`` method returns it
    so several reads (of any contracts on one chain) can share a round trip (:func:`read_all`).
    """

    call: Call
    decode: Callable[[Any], T]


def read_all(backend: ChainBackend, views: Sequence[View[Any]]) -> list[Any]:
    """Make ``views`` in one ``call_many`` (a JSON-RPC batch on a node); decoded, in order."""
    outs = backend.call_many([v.call for v in views])
    return [v.decode(o) for v, o in zip(views, outs, strict=True)]


@dataclass(frozen=True)
class AnchoredCheckpoint:
    """The latest anchored checkpoint of a log, as the contract stores it."""

    size: int
    root: bytes
    block_number: int
    timestamp: int


@dataclass(frozen=True)
class AnchorRecord:
    """One ``Anchored`` event: where and when a checkpoint was anchored."""

    log_id: bytes
    size: int
    root: bytes
    previous_size: int
    previous_root: bytes
    chain_id: int
    contract: str
    tx_hash: str
    block_number: int
    timestamp: int
    gas_used: int | None = None


@dataclass(frozen=True)
class LogInfo:
    owner: str
    origin: str
    verifier_key: str
    binding: bytes = b""


@dataclass(frozen=True)
class Identity:
    account: str
    name: str
    ed25519: bytes
    x25519: bytes
    registered_at: int
    updated_at: int
    revoked: bool
    revoked_at: int


def log_id_of(origin: str) -> bytes:
    """The CheckpointRegistry id of a log: keccak256 of the origin's UTF-8 bytes."""
    return keccak(origin.encode("utf-8"))


def _hash32(value: bytes, what: str) -> bytes:
    if not isinstance(value, (bytes, bytearray)) or len(value) != 32:
        raise ChainError(f"{what} must be 32 bytes")
    return bytes(value)


class _Client:
    artifact_name: str

    def __init__(
        self, backend: ChainBackend, address: str, account: LocalAccount | None = None
    ) -> None:
        self.backend = backend
        self.address = checksum(address, f"{self.artifact_name} address")
        self.account = account
        self.artifact: Artifact = load_artifact(self.artifact_name)

    def _signer(self) -> LocalAccount:
        if self.account is None:
            raise ChainError(f"{self.artifact_name} client has no account to send transactions")
        return self.account

    def _transact(
        self, fn: str, args: Sequence[object], *, value: int = 0, min_gas: int = 0
    ) -> Receipt:
        return self.backend.transact(
            self._signer(), self.address, self.artifact.abi, fn, args, value=value,
            min_gas=min_gas,
        )  # fmt: skip

    def _event(self, receipt: Receipt, name: str) -> dict[str, Any]:
        """The first ``name`` event this contract emitted in ``receipt``."""
        topic = event_topic(self.artifact.abi, name)
        for lg in receipt.logs:
            if lg.address == self.address and lg.topics and lg.topics[0] == topic:
                return decode_event(self.artifact.abi, name, lg.topics, lg.data)
        raise ChainError(f"transaction {receipt.tx_hash} emitted no {name} event")

    def _call(self, fn: str, args: Sequence[object]) -> Any:
        return self.backend.call(self.address, self.artifact.abi, fn, args)

    def _view(self, fn: str, args: Sequence[object], decode: Callable[[Any], T]) -> View[T]:
        return View((self.address, self.artifact.abi, fn, list(args)), decode)

    def _read(self, view: View[T]) -> T:
        return view.decode(self.backend.call(*view.call))


class CheckpointRegistryClient(_Client):
    """Register logs and anchor their checkpoints; read anchored history."""

    artifact_name = "CheckpointRegistry"

    def register_log(
        self, origin: str, verifier_key: str, binding: bytes = b""
    ) -> tuple[bytes, Receipt]:
        """Register a log; ``binding`` is the log key's signature authorising this account."""
        receipt = self._transact("register_log", [origin, verifier_key, bytes(binding)])
        return log_id_of(origin), receipt

    def anchor(
        self, log_id: bytes, size: int, root: bytes, proof: Sequence[bytes] = ()
    ) -> AnchorRecord:
        """Anchor (size, root) with a consistency proof from the last anchor."""
        receipt = self._transact(
            "anchor",
            [_hash32(log_id, "log id"), size, _hash32(root, "root"), [bytes(p) for p in proof]],
        )
        topic = event_topic(self.artifact.abi, "Anchored")
        for lg in receipt.logs:
            if lg.address == self.address and lg.topics and lg.topics[0] == topic:
                return self._record(
                    lg.topics, lg.data, receipt.tx_hash, receipt.block_number, receipt.gas_used
                )
        raise ChainError(f"anchor transaction {receipt.tx_hash} emitted no Anchored event")

    def _record(
        self,
        topics: Sequence[bytes],
        data: bytes,
        tx_hash: str,
        block_number: int,
        gas_used: int | None,
    ) -> AnchorRecord:
        ev = decode_event(self.artifact.abi, "Anchored", topics, data)
        return AnchorRecord(
            log_id=bytes(ev["log_id"]),
            size=int(ev["size"]),
            root=bytes(ev["root"]),
            previous_size=int(ev["previous_size"]),
            previous_root=bytes(ev["previous_root"]),
            chain_id=self.backend.chain_id,
            contract=self.address,
            tx_hash=tx_hash,
            block_number=block_number,
            timestamp=self.backend.block_timestamp(block_number),
            gas_used=gas_used,
        )

    def latest(self, log_id: bytes) -> AnchoredCheckpoint | None:
        size, root, block, ts = self._call("latest", [_hash32(log_id, "log id")])
        if size == 0:
            return None
        return AnchoredCheckpoint(int(size), bytes(root), int(block), int(ts))

    def root_at(self, log_id: bytes, size: int) -> bytes | None:
        root = self._call("root_at", [_hash32(log_id, "log id"), size])
        assert isinstance(root, bytes)
        return None if root == b"\x00" * 32 else root

    def log_info(self, log_id: bytes) -> LogInfo | None:
        info = self._call("log_info", [_hash32(log_id, "log id")])
        owner, origin, verifier_key, binding = info
        if owner == _ZERO_ADDRESS or int(owner, 16) == 0:
            return None
        return LogInfo(
            owner=owner, origin=origin, verifier_key=verifier_key, binding=bytes(binding)
        )

    def history(self, log_id: bytes, *, from_block: int = 0) -> list[AnchorRecord]:
        """Every anchor of a log, oldest first, with block timestamps."""
        topic = event_topic(self.artifact.abi, "Anchored")
        logs = self.backend.get_logs(
            self.address, [topic, _hash32(log_id, "log id")], from_block=from_block
        )
        return [self._record(lg.topics, lg.data, lg.tx_hash, lg.block_number, None) for lg in logs]


class IdentityRegistryClient(_Client):
    """Bind the account to its name and public keys; resolve other accounts."""

    artifact_name = "IdentityRegistry"

    def register(self, name: str, ed25519: bytes, x25519: bytes) -> Receipt:
        return self._transact(
            "register", [name, _hash32(ed25519, "Ed25519 key"), _hash32(x25519, "X25519 key")]
        )

    def rotate(self, ed25519: bytes, x25519: bytes) -> Receipt:
        return self._transact(
            "rotate", [_hash32(ed25519, "Ed25519 key"), _hash32(x25519, "X25519 key")]
        )

    def revoke(self) -> Receipt:
        return self._transact("revoke", [])

    def resolve(self, account: str) -> Identity | None:
        return self._read(self.resolve_view(account))

    def resolve_view(self, account: str) -> View[Identity | None]:
        addr = checksum(account, "account")

        def decode(out: Any) -> Identity | None:
            name, ed, x, reg, upd, revoked, revoked_at = out
            if reg == 0:
                return None
            return Identity(
                addr, name, bytes(ed), bytes(x), int(reg), int(upd), bool(revoked),
                int(revoked_at),
            )  # fmt: skip

        return self._view("resolve", [addr], decode)

    def account_of(self, ed25519: bytes) -> str | None:
        addr = self._call("account_of", [_hash32(ed25519, "Ed25519 key")])
        assert isinstance(addr, str)
        return None if int(addr, 16) == 0 else addr
