"""The chain backend interface and the types every backend returns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from eth_utils.address import is_address, to_checksum_address

from ..errors import ChainError
from ._abi import ABI

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

    from ._artifacts import Artifact


@dataclass(frozen=True)
class RawLog:
    """One log entry of a mined transaction."""

    address: str
    topics: tuple[bytes, ...]
    data: bytes
    block_number: int
    tx_hash: str
    log_index: int


@dataclass(frozen=True)
class Receipt:
    """The outcome of a mined transaction (``status`` 1 = success)."""

    tx_hash: str
    block_number: int
    block_hash: str
    gas_used: int
    status: int
    contract_address: str | None = None
    logs: tuple[RawLog, ...] = field(default=(), repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "tx_hash": self.tx_hash,
            "block_number": self.block_number,
            "block_hash": self.block_hash,
            "gas_used": self.gas_used,
            "status": self.status,
            "contract_address": self.contract_address,
        }


class TransactionReverted(ChainError):  # noqa: N818 - reads as the event
    """A transaction was refused by a contract; ``str(err)`` is the contract's reason.

    ``receipt`` is set when the reverted transaction was mined (it used gas and a
    nonce); it is ``None`` when the revert was caught before sending.
    """

    def __init__(self, reason: str, receipt: Receipt | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.receipt = receipt


# One read-only contract call: (address, abi, function name, arguments).
Call = tuple[str, ABI, str, Sequence[Any]]


@runtime_checkable
class ChainBackend(Protocol):
    """What the contract clients need from a chain. Transactions are always
    signed locally with the caller's ``LocalAccount``; node-held keys are never used.
    """

    @property
    def chain_id(self) -> int: ...

    def block_number(self) -> int:
        """Number of the latest mined block."""
        ...

    def block_timestamp(self, number: int) -> int:
        """Unix timestamp of a mined block."""
        ...

    def balance(self, address: str) -> int:
        """Balance in wei."""
        ...

    def code_at(self, address: str) -> bytes:
        """Deployed code at an address (empty if none)."""
        ...

    def deploy(self, account: LocalAccount, artifact: Artifact, *args: Any) -> str:
        """Deploy a contract; returns its checksummed address."""
        ...

    def transact(
        self,
        account: LocalAccount,
        address: str,
        abi: ABI,
        fn_name: str,
        args: Sequence[Any],
        *,
        value: int = 0,
        gas: int | None = None,
        min_gas: int = 0,
    ) -> Receipt:
        """Sign, send and wait for a contract call; raises TransactionReverted.

        ``min_gas`` is a floor under the estimated limit, for calls whose cost depends on
        what is mined before them (the estimate is taken against the current head).
        """
        ...

    def send_value(self, account: LocalAccount, to: str, value: int) -> Receipt:
        """Plain value transfer."""
        ...

    def call(
        self,
        address: str,
        abi: ABI,
        fn_name: str,
        args: Sequence[Any],
        *,
        sender: str | None = None,
    ) -> Any:
        """Read-only call against the latest block; returns the decoded result."""
        ...

    def call_many(self, calls: Sequence[Call]) -> list[Any]:
        """Several read-only calls ``(address, abi, fn_name, args)``, decoded, in order: in
        one round trip where the transport allows it (a JSON-RPC batch). Raises as ``call``
        does for the first call that fails.
        """
        ...

    def get_logs(
        self,
        address: str,
        topics: Sequence[bytes | None],
        *,
        from_block: int = 0,
        to_block: int | None = None,
    ) -> list[RawLog]:
        """Logs emitted by ``address`` whose topics match (None = any)."""
        ...

    def receipt(self, tx_hash: str) -> Receipt | None:
        """Receipt of a mined transaction, or None if unknown."""
        ...

    def close(self) -> None: ...


def checksum(address: str, what: str = "address") -> str:
    """A checksummed address, or an InputError-like ChainError for garbage."""
    if not isinstance(address, str) or not is_address(address):
        raise ChainError(f"{what} {address!r} is not an Ethereum address")
    return to_checksum_address(address)


def topics_match(log_topics: Sequence[bytes], wanted: Sequence[bytes | None]) -> bool:
    if len(wanted) > len(log_topics):
        return False
    return all(w is None or bytes(w) == bytes(t) for w, t in zip(wanted, log_topics, strict=False))


class SigningBackend:
    """What both backends share above their one transport-specific step, ``_send``.

    ``_send(account, to, data, value=, gas=, min_gas=)`` signs locally, submits, waits and
    returns the mined receipt (raising TransactionReverted); contract calls, deployments and
    transfers are the same on every backend and are built on it here.
    """

    def _send(
        self,
        account: LocalAccount,
        to: str | None,
        data: bytes,
        *,
        value: int = 0,
        gas: int | None = None,
        min_gas: int = 0,
    ) -> Receipt:
        raise NotImplementedError

    def deploy(self, account: LocalAccount, artifact: Artifact, *args: Any) -> str:
        """Deploy a contract; returns its checksummed address."""
        from ._abi import encode_deploy

        receipt = self._send(account, None, encode_deploy(artifact.bytecode, artifact.abi, args))
        if receipt.contract_address is None:
            raise ChainError(f"deploying {artifact.name} created no contract")
        return receipt.contract_address

    def transact(
        self,
        account: LocalAccount,
        address: str,
        abi: ABI,
        fn_name: str,
        args: Sequence[Any],
        *,
        value: int = 0,
        gas: int | None = None,
        min_gas: int = 0,
    ) -> Receipt:
        """Sign, send and wait for a contract call; raises TransactionReverted."""
        from ._abi import encode_call

        to = checksum(address, "contract address")
        return self._send(
            account, to, encode_call(abi, fn_name, args), value=value, gas=gas, min_gas=min_gas
        )

    def send_value(self, account: LocalAccount, to: str, value: int) -> Receipt:
        """Transfer ``value`` wei."""
        return self._send(account, checksum(to), b"", value=value)
