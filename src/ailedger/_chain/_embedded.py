"""The embedded backend: a private py-evm chain persisted in a SQLite file.

py-evm is used directly rather than through eth-tester: eth-tester's
``PyEVMBackend`` always builds its chain over an in-memory database, and
``EthereumTester`` keeps pending transactions and log filters in process
memory, so neither survives a restart or sees blocks mined by another process.
The chain class, VM (Prague) and genesis parameters mirror eth-tester's.

Concurrency: every operation takes ``fcntl.flock`` on ``<db>.lock`` (exclusive
for transactions, shared for reads), then rebuilds the chain object from the
database, so it always works on the current head even if another process has
mined since. A transaction (execute, mine, persist) is one SQLite transaction,
so SIGKILL at any point leaves either the whole block or nothing.

One transaction per block. Block timestamps are wall-clock seconds, except that
Ethereum requires each block to be strictly later than its parent, so more than
one block per second pushes timestamps ahead of the clock until it catches up.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eth.abc import BlockHeaderAPI, ChainDatabaseAPI, ReceiptAPI, VirtualMachineAPI
from eth.chains.base import MiningChain
from eth.exceptions import HeaderNotFound, TransactionNotFound
from eth.vm.forks.prague import PragueVM
from eth.vm.spoof import SpoofTransaction
from eth_account import Account
from eth_bloom.bloom import BloomFilter
from eth_typing import Address, BlockNumber, Hash32
from eth_utils.address import to_canonical_address, to_checksum_address
from eth_utils.crypto import keccak
from eth_utils.exceptions import ValidationError as EthValidationError

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
from ._sqlitedb import SQLiteKV

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount


DEFAULT_EMBEDDED_CHAIN_ID = 1337
GAS_LIMIT = 30_000_000
BLANK_ROOT_HASH = bytes.fromhex("56e81f171bcc55a6ff8345e692c0f86e5b48e01b996cadc001622fb5e363b421")
# Private dev chain only: a well-known faucet key funded at genesis, used by fund().
FAUCET_KEY = keccak(b"ailedger embedded chain dev faucet")
FAUCET_BALANCE = 10**30
DEFAULT_FUND_AMOUNT = 10**21  # 1000 ether
_FORMAT = "ailedger-embedded-chain/1"


def _chain_class(chain_id: int) -> type[MiningChain]:
    class EmbeddedChain(MiningChain):
        vm_configuration = ((BlockNumber(0), PragueVM),)

        def create_header_from_parent(
            self, parent_header: BlockHeaderAPI, **header_params: Any
        ) -> BlockHeaderAPI:
            # Keep the gas limit constant, as eth-tester does.
            header_params["gas_limit"] = parent_header.gas_limit
            return super().create_header_from_parent(parent_header, **header_params)

    EmbeddedChain.chain_id = chain_id
    return EmbeddedChain


def _hex(b: bytes) -> str:
    return "0x" + bytes(b).hex()


def _token_floor(data: bytes) -> int:
    # EIP-7623 (Prague) calldata floor; the gas limit must cover it.
    zeros = data.count(0)
    return 21_000 + 10 * (zeros + 4 * (len(data) - zeros))


class EmbeddedBackend(SigningBackend):
    """A private chain in a SQLite file. Created (with genesis) on first open.

    ``genesis_alloc`` (address → wei) funds accounts at creation; later use
    :meth:`fund`. ``expected_chain_id`` makes opening fail if the file holds a
    different chain.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        chain_id: int = DEFAULT_EMBEDDED_CHAIN_ID,
        expected_chain_id: int | None = None,
        genesis_alloc: Mapping[str, int] | None = None,
        create: bool = True,
    ) -> None:
        self.path = Path(path)
        if not create:
            # Verifiers open someone's chain file: it MUST already be one, and nothing
            # may be written to a file that is not (it could be a log, or anything).
            _check_is_chain(self.path)
        if not self.path.parent.is_dir():
            raise ChainError(f"directory of the embedded chain {self.path} does not exist")
        self._tlock = threading.RLock()
        self._lock_depth = 0
        try:
            self._lock_fd = os.open(str(self.path) + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise ChainError(f"cannot open the lock file of {self.path}: {exc}") from None
        self._db = SQLiteKV(self.path)
        self._faucet: LocalAccount = Account.from_key(FAUCET_KEY)
        with self._locked(exclusive=True):
            stored = self._db.get_meta("chain_id")
            if stored is None:
                self._create(chain_id, genesis_alloc or {})
                stored = str(chain_id)
            elif self._db.get_meta("format") != _FORMAT:
                raise ChainError(f"{self.path} is not an ailedger embedded chain")
        self._chain_id = int(stored)
        self._cls = _chain_class(self._chain_id)
        if expected_chain_id is not None and expected_chain_id != self._chain_id:
            raise ChainError(
                f"embedded chain {self.path} has chain id {self._chain_id}, "
                f"expected {expected_chain_id}"
            )

    # -- plumbing -------------------------------------------------------------
    def _create(self, chain_id: int, alloc: Mapping[str, int]) -> None:
        state: dict[bytes, dict[str, Any]] = {
            to_canonical_address(self._faucet.address): _account(FAUCET_BALANCE)
        }
        for addr, wei in alloc.items():
            state[to_canonical_address(checksum(addr))] = _account(int(wei))
        params = {
            "coinbase": b"\x00" * 20,
            "difficulty": 0,
            "extra_data": b"",
            "gas_limit": GAS_LIMIT,
            "mix_hash": b"\x00" * 32,
            "nonce": b"\x00" * 8,
            "receipt_root": BLANK_ROOT_HASH,
            "timestamp": int(time.time()),
            "transaction_root": BLANK_ROOT_HASH,
        }
        with self._db.transaction():
            _chain_class(chain_id).from_genesis(self._db, params, state)  # type: ignore[arg-type]
            self._db.set_meta("format", _FORMAT)
            self._db.set_meta("chain_id", str(chain_id))

    @contextmanager
    def _locked(self, *, exclusive: bool) -> Iterator[None]:
        with self._tlock:
            if self._lock_depth:
                self._lock_depth += 1
                try:
                    yield
                finally:
                    self._lock_depth -= 1
                return
            if self._lock_fd < 0:
                raise ChainError("the embedded chain is closed")
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            self._lock_depth = 1
            try:
                yield
            finally:
                self._lock_depth = 0
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _chain(self) -> MiningChain:
        # Rebuilt on every use: another process may have mined since.
        return self._cls(self._db)

    def _chaindb(self) -> ChainDatabaseAPI:
        # Header reads need no chain object: building a MiningChain also builds the next
        # block's header (~130 µs), which is most of the cost of reading the head.
        return self._cls.get_chaindb_class()(self._db)

    def close(self) -> None:
        with self._tlock:
            if self._lock_fd >= 0:
                self._db.close()
                os.close(self._lock_fd)
                self._lock_fd = -1

    def __enter__(self) -> EmbeddedBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reads ----------------------------------------------------------------
    @property
    def chain_id(self) -> int:
        return self._chain_id

    def block_number(self) -> int:
        with self._locked(exclusive=False):
            return int(self._chaindb().get_canonical_head().block_number)

    def block_timestamp(self, number: int) -> int:
        with self._locked(exclusive=False):
            try:
                header = self._chaindb().get_canonical_block_header_by_number(BlockNumber(number))
            except HeaderNotFound:
                raise ChainError(f"block {number} does not exist") from None
            return int(header.timestamp)

    def balance(self, address: str) -> int:
        addr = to_canonical_address(checksum(address))
        with self._locked(exclusive=False):
            return int(self._head_state().get_balance(addr))

    def code_at(self, address: str) -> bytes:
        addr = to_canonical_address(checksum(address))
        with self._locked(exclusive=False):
            return bytes(self._head_state().get_code(addr))

    def _head_state(self) -> Any:
        chain = self._chain()
        return chain.get_vm(chain.get_canonical_head()).state

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
        data = encode_call(abi, fn_name, args)
        with self._locked(exclusive=False):
            chain = self._chain()
            ok, out, _ = self._dry_run(chain, sender or _ZERO, to, data, 0)
        return self._result(to, abi, fn_name, ok, out)

    def _result(self, to: str, abi: ABI, fn_name: str, ok: bool, out: bytes) -> Any:
        if not ok:
            raise TransactionReverted(revert_reason(out))
        if not out and abi and not self.code_at(to):
            raise ChainError(f"no contract code at {to} on chain {self._chain_id}")
        return decode_output(abi, fn_name, out)

    def call_many(self, calls: Sequence[Call]) -> list[Any]:
        # No round trip to save in process, but one lock and one chain object for all
        # (another process may mine between separate calls; here they see one head).
        runs = []
        with self._locked(exclusive=False):
            chain = self._chain()
            vm = chain.get_vm(chain.get_canonical_head())
            for a, abi, fn, args in calls:
                to = checksum(a, "contract address")
                data = encode_call(abi, fn, args)
                runs.append((to, self._dry_run(chain, _ZERO, to, data, 0, vm)))
        return [
            self._result(to, abi, fn, ok, raw)
            for (to, (ok, raw, _)), (_, abi, fn, _) in zip(runs, calls, strict=True)
        ]

    def _dry_run(
        self,
        chain: MiningChain,
        sender: str,
        to: str | None,
        data: bytes,
        value: int,
        vm: VirtualMachineAPI | None = None,
    ) -> tuple[bool, bytes, int]:
        """Execute without cost or persistence → (success, output/revert data, gas).
        ``vm``: the head's VM, when several dry runs share one (each runs in its own
        costless state, so none sees another's effects)."""
        if vm is None:
            vm = chain.get_vm(chain.get_canonical_head())
        sender_b = to_canonical_address(sender)
        gas = GAS_LIMIT
        with vm.in_costless_state() as state:
            tx = vm.create_unsigned_transaction(
                nonce=state.get_nonce(sender_b),
                gas_price=0,
                gas=gas,
                to=to_canonical_address(to) if to else Address(b""),
                value=value,
                data=data,
            )
            try:
                computation = state.costless_execute_transaction(
                    SpoofTransaction(tx, from_=sender_b)  # type: ignore[arg-type]
                )
            except EthValidationError as exc:
                raise ChainError(f"transaction is invalid: {exc}") from None
        if computation.is_error:
            err = computation.error
            revert = err.args[0] if err.args and isinstance(err.args[0], bytes) else b""
            if not revert and not _is_revert(err):
                return False, b"", 0
            return False, revert, 0
        used = gas - computation.get_gas_remaining()
        return True, bytes(computation.output), used

    # -- transactions ---------------------------------------------------------
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
        with self._locked(exclusive=True), self._db.transaction():
            chain = self._chain()
            vm = chain.get_vm()
            state = vm.state
            balance = state.get_balance(to_canonical_address(sender))
            if balance == 0:
                raise ChainError(
                    f"account {sender} has no funds on embedded chain {self._chain_id} "
                    "(fund it first)"
                )
            if gas is None:
                ok, out, used = self._dry_run(chain, sender, to, data, value)
                if not ok:
                    raise TransactionReverted(revert_reason(out))
                gas = min(GAS_LIMIT, max(max(used, _token_floor(data)) * 5 // 4 + 20_000, min_gas))
            base_fee = int(chain.header.base_fee_per_gas or 0)
            tip = 10**9
            max_fee = 2 * base_fee + tip
            cost = gas * max_fee + value
            if balance < cost:
                raise ChainError(
                    f"account {sender} cannot pay for this transaction "
                    f"(balance {balance} wei, needs up to {cost} wei)"
                )
            nonce = state.get_nonce(to_canonical_address(sender))
            tx_dict: dict[str, Any] = {
                "type": 2,
                "chainId": self._chain_id,
                "nonce": nonce,
                "gas": gas,
                "maxFeePerGas": max_fee,
                "maxPriorityFeePerGas": tip,
                "value": value,
                "data": data,
            }
            if to is not None:
                tx_dict["to"] = to
            raw = bytes(account.sign_transaction(tx_dict).raw_transaction)
            try:
                tx = vm.get_transaction_builder().decode(raw)
                _, receipt, computation = chain.apply_transaction(tx)
                mined = chain.mine_block(mix_hash=os.urandom(32), blob_gas_used=0)
            except EthValidationError as exc:
                raise ChainError(f"the embedded chain refused the transaction: {exc}") from None
            contract = None
            if to is None:
                from eth._utils.address import generate_contract_address

                contract = to_checksum_address(
                    generate_contract_address(to_canonical_address(sender), nonce)
                )
            result = _receipt(mined.header, tx.hash, 0, receipt, 0, contract)
        if computation.is_error:
            err = computation.error
            revert = err.args[0] if err.args and isinstance(err.args[0], bytes) else b""
            reason = (
                revert_reason(revert)
                if revert or _is_revert(err)
                else (f"transaction failed: {type(err).__name__}")
            )
            raise TransactionReverted(reason, result)
        return result

    def fund(self, address: str, amount: int = DEFAULT_FUND_AMOUNT) -> Receipt:
        """Dev chain only: transfer ``amount`` wei from the genesis faucet."""
        return self.send_value(self._faucet, address, amount)

    # -- history --------------------------------------------------------------
    def receipt(self, tx_hash: str) -> Receipt | None:
        h = bytes.fromhex(tx_hash.removeprefix("0x"))
        with self._locked(exclusive=False):
            chain = self._chain()
            try:
                number, index = chain.chaindb.get_transaction_index(Hash32(h))
            except TransactionNotFound:
                return None
            header = chain.get_canonical_block_header_by_number(number)
            block = chain.get_canonical_block_by_number(number)
            receipts = block.get_receipts(chain.chaindb)
            tx = block.transactions[index]
            prev = receipts[index - 1].gas_used if index else 0
            contract = None
            if not tx.to:
                from eth._utils.address import generate_contract_address

                contract = to_checksum_address(generate_contract_address(tx.sender, tx.nonce))
            first_log = sum(len(r.logs) for r in receipts[:index])
            return _receipt(header, tx.hash, prev, receipts[index], first_log, contract)

    def get_logs(
        self,
        address: str,
        topics: Sequence[bytes | None],
        *,
        from_block: int = 0,
        to_block: int | None = None,
    ) -> list[RawLog]:
        addr = to_canonical_address(checksum(address))
        out: list[RawLog] = []
        with self._locked(exclusive=False):
            chain = self._chain()
            head = int(chain.get_canonical_head().block_number)
            last = head if to_block is None else min(to_block, head)
            for n in range(max(0, from_block), last + 1):
                header = chain.get_canonical_block_header_by_number(BlockNumber(n))
                bloom = BloomFilter(header.bloom)
                # The bloom filter skips blocks without our contract's logs.
                if addr not in bloom:
                    continue
                if topics and topics[0] is not None and bytes(topics[0]) not in bloom:
                    continue
                block = chain.get_canonical_block_by_number(BlockNumber(n))
                log_index = 0
                for tx, rcpt in zip(
                    block.transactions, block.get_receipts(chain.chaindb), strict=True
                ):
                    for lg in rcpt.logs:
                        raw = _raw_log(lg, n, tx.hash, log_index)
                        log_index += 1
                        if bytes(lg.address) == addr and topics_match(raw.topics, topics):
                            out.append(raw)
        return out


_ZERO = "0x" + "00" * 20


def _is_revert(err: Exception) -> bool:
    from eth.exceptions import Revert

    return isinstance(err, Revert)


def _account(balance: int) -> dict[str, Any]:
    return {"balance": balance, "nonce": 0, "code": b"", "storage": {}}


def _raw_log(lg: Any, block_number: int, tx_hash: bytes, log_index: int) -> RawLog:
    return RawLog(
        address=to_checksum_address(lg.address),
        topics=tuple(int(t).to_bytes(32, "big") for t in lg.topics),
        data=bytes(lg.data),
        block_number=block_number,
        tx_hash=_hex(tx_hash),
        log_index=log_index,
    )


def _receipt(
    header: BlockHeaderAPI,
    tx_hash: bytes,
    prev_cumulative: int,
    receipt: ReceiptAPI,
    first_log_index: int,
    contract: str | None,
) -> Receipt:
    number = int(header.block_number)
    logs = tuple(
        _raw_log(lg, number, tx_hash, first_log_index + i) for i, lg in enumerate(receipt.logs)
    )
    return Receipt(
        tx_hash=_hex(tx_hash),
        block_number=number,
        block_hash=_hex(header.hash),
        gas_used=int(receipt.gas_used) - prev_cumulative,
        status=1 if bytes(receipt.state_root) == b"\x01" else 0,
        contract_address=contract if bytes(receipt.state_root) == b"\x01" else None,
        logs=logs,
    )


def _check_is_chain(path: Path) -> None:
    import sqlite3

    if not path.is_file():
        raise ChainError(f"{path} is not an ailedger embedded chain file")
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            row = db.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
        finally:
            db.close()
    except sqlite3.Error:
        row = None
    if row is None or row[0] != _FORMAT:
        raise ChainError(f"{path} is not an ailedger embedded chain file")
