"""The RPC backend: any Ethereum JSON-RPC node through web3.py.

Transactions are signed locally with eth-account (never ``eth_sendTransaction``),
with EIP-1559 fees when the node reports a base fee and legacy gas prices
otherwise. Nonces are tracked per account so a process can send back-to-back
transactions without waiting for the node's pending pool to catch up.
Every web3/requests failure is turned into a one-line ChainError.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

import requests
from eth_typing import ChecksumAddress
from eth_utils.address import to_checksum_address
from web3 import Web3
from web3.exceptions import ContractLogicError, TransactionNotFound, Web3Exception, Web3RPCError

from ..errors import ChainError
from ._abi import ABI, decode_output, encode_call, revert_reason
from ._backend import (
    Call,
    RawLog,
    Receipt,
    SigningBackend,
    TransactionReverted,
    checksum,
    topics_match,
)

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount


T = TypeVar("T")


def _hexstr(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    s = str(value)
    return s if s.startswith("0x") else "0x" + s


def _bytes(value: Any) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    return bytes.fromhex(str(value).removeprefix("0x"))


def _revert_data(exc: ContractLogicError) -> bytes | None:
    data = exc.data
    if isinstance(data, dict):
        data = data.get("data")
    if isinstance(data, str) and data.startswith("0x"):
        try:
            return bytes.fromhex(data[2:])
        except ValueError:
            return None
    return None


def _reason(exc: ContractLogicError) -> str:
    data = _revert_data(exc)
    if data:
        return revert_reason(data)
    msg = " ".join(str(exc.message or exc).split())
    return msg.removeprefix("execution reverted: ") or "transaction reverted without a reason"


# Calls per JSON-RPC batch: public nodes commonly cap batches at 50–100 requests.
_BATCH_MAX = 50


@dataclass(frozen=True)
class _Preflight:
    balance: int
    fees: dict[str, int]
    nonce: int
    gas: int | None


class RpcBackend(SigningBackend):
    """A chain reached over JSON-RPC (HTTP). Checks the node on construction."""

    def __init__(
        self,
        url: str,
        *,
        expected_chain_id: int | None = None,
        request_timeout: float = 30.0,
        receipt_timeout: float = 120.0,
        poll_interval: float = 0.05,
    ) -> None:
        self.url = url
        self.receipt_timeout = receipt_timeout
        self.poll_interval = poll_interval
        self._provider = Web3.HTTPProvider(url, request_kwargs={"timeout": request_timeout})
        self._w3 = Web3(self._provider)
        # web3's validation middleware re-reads eth_chainId before every eth_call and
        # estimate: one extra round trip per read (40 of a swarm round's 74 requests). The
        # chain id is checked once below and signed into every transaction ourselves.
        self._w3.middleware_onion.remove("validation")
        self._nonces: dict[str, int] = {}
        self._batches = True  # until the node refuses one
        self._nonce_lock = threading.Lock()
        self._chain_id = self._rpc(lambda: int(self._w3.eth.chain_id), "read the chain id")
        if expected_chain_id is not None and expected_chain_id != self._chain_id:
            raise ChainError(
                f"node at {url} serves chain id {self._chain_id}, expected {expected_chain_id}"
            )

    def _rpc(self, fn: Callable[[], T], what: str) -> T:
        try:
            return fn()
        except ChainError:
            raise
        except ContractLogicError as exc:
            raise TransactionReverted(_reason(exc)) from None
        except (requests.exceptions.ConnectionError, ConnectionError) as exc:
            raise ChainError(
                f"cannot reach the Ethereum node at {self.url} to {what}: {type(exc).__name__}"
            ) from None
        except requests.exceptions.Timeout:
            raise ChainError(f"the Ethereum node at {self.url} timed out ({what})") from None
        except Web3RPCError as exc:
            msg = " ".join(str(exc.message).split())
            raise ChainError(f"the Ethereum node at {self.url} refused to {what}: {msg}") from None
        except (Web3Exception, requests.exceptions.RequestException, ValueError) as exc:
            msg = " ".join(str(exc).split())
            raise ChainError(f"could not {what} on {self.url}: {msg}") from None

    def close(self) -> None:
        """Nothing to release: HTTPProvider pools connections per process."""

    # -- reads ----------------------------------------------------------------
    @property
    def chain_id(self) -> int:
        return self._chain_id

    def block_number(self) -> int:
        return self._rpc(lambda: int(self._w3.eth.block_number), "read the block number")

    def block_timestamp(self, number: int) -> int:
        block = self._rpc(lambda: self._w3.eth.get_block(number), f"read block {number}")
        return int(block["timestamp"])

    def balance(self, address: str) -> int:
        addr = cast(ChecksumAddress, checksum(address))
        return self._rpc(lambda: int(self._w3.eth.get_balance(addr)), "read a balance")

    def code_at(self, address: str) -> bytes:
        addr = cast(ChecksumAddress, checksum(address))
        return self._rpc(lambda: bytes(self._w3.eth.get_code(addr)), "read contract code")

    def call(
        self,
        address: str,
        abi: ABI,
        fn_name: str,
        args: Sequence[Any],
        *,
        sender: str | None = None,
    ) -> Any:
        to = checksum(address, "contract address")
        tx: dict[str, Any] = {"to": to, "data": _hexstr(encode_call(abi, fn_name, args))}
        if sender:
            tx["from"] = checksum(sender)
        out = self._rpc(lambda: bytes(self._w3.eth.call(tx)), f"call {fn_name}")  # type: ignore[arg-type]
        return self._decoded(to, abi, fn_name, out)

    def _decoded(self, to: str, abi: ABI, fn_name: str, out: bytes) -> Any:
        # Empty output from a function with outputs: usually no contract at the address.
        if not out and abi and not self.code_at(to):
            raise ChainError(f"no contract code at {to} on chain {self._chain_id}")
        return decode_output(abi, fn_name, out)

    def call_many(self, calls: Sequence[Call]) -> list[Any]:
        out: list[Any] = []
        for i in range(0, len(calls), _BATCH_MAX):
            out += self._call_batch(calls[i : i + _BATCH_MAX])
        return out

    def _batch(self, batch: list[tuple[Any, Any]]) -> list[dict[str, Any]] | None:
        """One JSON-RPC batch; None when it cannot be used, and the reads are then made one
        by one. A node that refuses batches (JSON-RPC invalid request / method not found /
        parse error, a message about batches, an HTTP 4xx other than 408/429, or an answer
        that is not one object per request) is not asked for batches again; a transport
        error, a timeout or a rate limit only costs this one read its batch."""
        if not self._batches:
            return None
        try:
            got: Any = self._provider.make_batch_request(batch)
        except requests.exceptions.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else 0
            if 400 <= status < 500 and status not in (408, 429):
                self._batches = False
            return None
        except (requests.exceptions.RequestException, OSError):
            return None
        except Exception:  # web3 parsing an answer it did not expect (e.g. `[null]`)
            self._batches = False
            return None
        if isinstance(got, dict):  # one error object for the whole batch
            err = got.get("error")
            code = err.get("code") if isinstance(err, dict) else None
            msg = str(err.get("message", "")) if isinstance(err, dict) else ""
            if code in (-32600, -32601, -32700) or "batch" in msg.lower():
                self._batches = False
            return None
        if not (isinstance(got, list) and len(got) == len(batch)
                and all(isinstance(r, dict) for r in got)):  # fmt: skip
            self._batches = False
            return None
        return cast(list[dict[str, Any]], got)

    def _call_batch(self, calls: Sequence[Call]) -> list[Any]:
        got = None
        if len(calls) > 1:
            got = self._batch([
                ("eth_call", [{"to": checksum(a, "contract address"),
                               "data": _hexstr(encode_call(abi, fn, args))}, "latest"])
                for a, abi, fn, args in calls
            ])  # fmt: skip
        if got is None:
            return [self.call(a, abi, fn, args) for a, abi, fn, args in calls]
        out = []
        for (a, abi, fn, args), resp in zip(calls, got, strict=True):
            err = resp.get("error")
            if err is not None:
                data = err.get("data") if isinstance(err, dict) else None
                if isinstance(data, str) and data.startswith("0x") and len(data) > 2:
                    try:
                        reason = revert_reason(_bytes(data))
                    except ValueError:
                        reason = "call reverted with malformed revert data"
                    raise TransactionReverted(reason)
                # Anything else: let the single call produce its usual error.
                out.append(self.call(a, abi, fn, args))
                continue
            try:
                raw = _bytes(resp.get("result") or "0x")
            except (ValueError, TypeError):
                raise ChainError(
                    f"the Ethereum node at {self.url} answered {fn} with a malformed result"
                ) from None
            out.append(self._decoded(a, abi, fn, raw))
        return out

    # -- transactions ---------------------------------------------------------
    def _fees(self) -> dict[str, int]:
        block = self._rpc(lambda: self._w3.eth.get_block("latest"), "read fees")
        base = block.get("baseFeePerGas")
        if base is None:
            return {"gasPrice": self._rpc(lambda: int(self._w3.eth.gas_price), "read fees")}
        try:
            tip = int(self._w3.eth.max_priority_fee)
        except Exception:  # not every node implements eth_maxPriorityFeePerGas
            tip = 10**9
        return {"maxFeePerGas": 2 * int(base) + tip, "maxPriorityFeePerGas": tip}

    def _preflight(self, tx: dict[str, Any], *, estimate: bool) -> _Preflight | None:
        """Balance, fees, pending nonce (and the gas estimate) in ONE JSON-RPC batch; a
        transaction is then that batch, the send and the receipt. None when the node
        refuses batches or any read fails: the caller then reads one by one, which also
        gives a reverting estimate its usual error.
        """
        sender = tx["from"]
        batch: list[tuple[Any, Any]] = [
            ("eth_getBalance", [sender, "latest"]),
            ("eth_getBlockByNumber", ["latest", False]),
            ("eth_gasPrice", []),
            ("eth_maxPriorityFeePerGas", []),
            ("eth_getTransactionCount", [sender, "pending"]),
        ]
        if estimate:
            batch.append(("eth_estimateGas", [dict(tx, value=hex(tx["value"]))]))
        got = self._batch(batch)
        if got is None:
            return None

        def result(i: int) -> Any:
            return got[i].get("result") if got[i].get("error") is None else None

        balance, block, price, tip, nonce = (result(i) for i in range(5))
        gas = result(5) if estimate else None
        if (balance is None or not isinstance(block, dict) or nonce is None
                or (estimate and gas is None)):  # fmt: skip
            return None
        try:
            base = block.get("baseFeePerGas")
            if base is None:
                if price is None:
                    return None
                fees = {"gasPrice": int(price, 16)}
            else:
                t = int(tip, 16) if tip is not None else 10**9  # not every node has the method
                fees = {"maxFeePerGas": 2 * int(base, 16) + t, "maxPriorityFeePerGas": t}
            return _Preflight(
                int(balance, 16), fees, int(nonce, 16), None if gas is None else int(gas, 16)
            )
        except (TypeError, ValueError):
            return None

    def _next_nonce(self, address: str) -> int:
        chain_nonce = self._rpc(
            lambda: int(
                self._w3.eth.get_transaction_count(cast(ChecksumAddress, address), "pending")
            ),
            "read a nonce",
        )
        return max(chain_nonce, self._nonces.get(address, 0))

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
        sender = account.address
        tx: dict[str, Any] = {"from": sender, "value": value, "data": _hexstr(data)}
        if to is not None:
            tx["to"] = to
        pre = self._preflight(tx, estimate=gas is None)
        balance = pre.balance if pre else self.balance(sender)
        if balance == 0:
            raise ChainError(f"account {sender} has no funds on chain {self._chain_id}")
        if gas is None:
            est = pre.gas if pre and pre.gas is not None else self._rpc(
                lambda: int(self._w3.eth.estimate_gas(tx)), "estimate gas"  # type: ignore[arg-type]
            )
            gas = max(est * 6 // 5 + 10_000, min_gas)
        fees = pre.fees if pre else self._fees()
        price = fees.get("maxFeePerGas", fees.get("gasPrice", 0))
        if balance < gas * price + value:
            raise ChainError(
                f"account {sender} cannot pay for this transaction "
                f"(balance {balance} wei, needs up to {gas * price + value} wei)"
            )
        with self._nonce_lock:
            # The local counter covers this process's other threads that read the same
            # pending count before us.
            nonce = (
                max(pre.nonce, self._nonces.get(sender, 0)) if pre else self._next_nonce(sender)
            )
            signed_tx = dict(tx, gas=gas, nonce=nonce, chainId=self._chain_id, **fees)
            del signed_tx["from"]
            if "maxFeePerGas" in fees:
                signed_tx["type"] = 2
            raw = account.sign_transaction(signed_tx).raw_transaction
            tx_hash = self._rpc(
                lambda: self._w3.eth.send_raw_transaction(raw), "send a transaction"
            )
            self._nonces[sender] = nonce + 1
        h = _hexstr(tx_hash)
        receipt = self._wait(h)
        if receipt.status != 1:
            raise TransactionReverted(self._replay_reason(tx, gas, receipt), receipt)
        return receipt

    def _wait(self, tx_hash: str) -> Receipt:
        deadline = time.monotonic() + self.receipt_timeout
        while True:
            try:
                raw = self._w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
            except TransactionNotFound:
                raw = None
            except (requests.exceptions.RequestException, ConnectionError, Web3Exception) as exc:
                raise ChainError(
                    f"lost the connection to {self.url} while waiting for transaction {tx_hash}; "
                    f"it may still be mined ({type(exc).__name__})"
                ) from None
            if raw is not None:
                return _to_receipt(raw)
            if time.monotonic() > deadline:
                raise ChainError(
                    f"transaction {tx_hash} was not mined within {self.receipt_timeout:g}s"
                )
            time.sleep(self.poll_interval)

    def _replay_reason(self, tx: dict[str, Any], gas: int, receipt: Receipt) -> str:
        # The receipt only says status 0: replay the call on the parent state.
        call = dict(tx, gas=gas)
        try:
            self._w3.eth.call(call, max(0, receipt.block_number - 1))  # type: ignore[arg-type]
        except ContractLogicError as exc:
            return _reason(exc)
        except Exception:
            pass
        return f"transaction {receipt.tx_hash} failed (out of gas?)"

    # -- history --------------------------------------------------------------
    def receipt(self, tx_hash: str) -> Receipt | None:
        try:
            raw = self._rpc(
                lambda: self._w3.eth.get_transaction_receipt(tx_hash),  # type: ignore[arg-type]
                "read a receipt",
            )
        except ChainError as exc:
            if "not found" in str(exc).lower():
                return None
            raise
        return _to_receipt(raw)

    def get_logs(
        self,
        address: str,
        topics: Sequence[bytes | None],
        *,
        from_block: int = 0,
        to_block: int | None = None,
    ) -> list[RawLog]:
        flt: dict[str, Any] = {
            "address": checksum(address),
            "fromBlock": from_block,
            "toBlock": "latest" if to_block is None else to_block,
            "topics": [None if t is None else _hexstr(t) for t in topics],
        }
        raw = self._rpc(lambda: self._w3.eth.get_logs(flt), "read logs")  # type: ignore[arg-type]
        out = [_to_log(lg) for lg in raw]
        return [lg for lg in out if topics_match(lg.topics, topics)]


def _to_log(lg: Any) -> RawLog:
    return RawLog(
        address=to_checksum_address(lg["address"]),
        topics=tuple(_bytes(t) for t in lg["topics"]),
        data=_bytes(lg["data"]),
        block_number=int(lg["blockNumber"]),
        tx_hash=_hexstr(lg["transactionHash"]),
        log_index=int(lg["logIndex"]),
    )


def _to_receipt(raw: Any) -> Receipt:
    contract = raw.get("contractAddress")
    return Receipt(
        tx_hash=_hexstr(raw["transactionHash"]),
        block_number=int(raw["blockNumber"]),
        block_hash=_hexstr(raw["blockHash"]),
        gas_used=int(raw["gasUsed"]),
        status=int(raw["status"]),
        contract_address=to_checksum_address(contract) if contract else None,
        logs=tuple(_to_log(lg) for lg in raw.get("logs", [])),
    )
