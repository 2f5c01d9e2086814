"""Minimal ABI encoding/decoding shared by every backend.

Both backends speak raw calldata and raw logs, so the contract clients behave
the same whatever node is underneath; web3's contract machinery is not used.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_abi.exceptions import DecodingError
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from ..errors import ChainError

ABI = Sequence[Mapping[str, Any]]

_ERROR_SELECTOR = bytes.fromhex("08c379a0")  # Error(string)
_PANIC_SELECTOR = bytes.fromhex("4e487b71")  # Panic(uint256)


def abi_type(param: Mapping[str, Any]) -> str:
    """Canonical type string of an ABI parameter (tuples expanded)."""
    t = str(param["type"])
    if t.startswith("tuple"):
        inner = ",".join(abi_type(c) for c in param.get("components", []))
        return f"({inner}){t[len('tuple') :]}"
    return t


def find(abi: ABI, kind: str, name: str | None = None) -> Mapping[str, Any]:
    for item in abi:
        if item.get("type") == kind and (name is None or item.get("name") == name):
            return item
    what = kind if name is None else f"{kind} {name!r}"
    raise ChainError(f"the contract ABI has no {what}")


def signature(item: Mapping[str, Any]) -> str:
    return f"{item['name']}({','.join(abi_type(p) for p in item.get('inputs', []))})"


def encode_args(item: Mapping[str, Any], args: Sequence[Any]) -> bytes:
    types = [abi_type(p) for p in item.get("inputs", [])]
    if len(types) != len(args):
        raise ChainError(
            f"{item.get('name', item.get('type'))} takes {len(types)} arguments, got {len(args)}"
        )
    try:
        return abi_encode(types, list(args))
    except Exception as exc:  # eth_abi raises a zoo of encoding errors
        raise ChainError(f"cannot ABI-encode arguments for {signature(item)}: {exc}") from None


def encode_call(abi: ABI, fn_name: str, args: Sequence[Any]) -> bytes:
    item = find(abi, "function", fn_name)
    return keccak(text=signature(item))[:4] + encode_args(item, args)


def encode_deploy(bytecode: bytes, abi: ABI, args: Sequence[Any]) -> bytes:
    ctors = [i for i in abi if i.get("type") == "constructor"]
    if not ctors:
        if args:
            raise ChainError("the contract's constructor takes no arguments")
        return bytecode
    return bytecode + encode_args(ctors[0], args)


def _normalise(value: Any) -> Any:
    if isinstance(value, tuple):
        return tuple(_normalise(v) for v in value)
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    if isinstance(value, str) and len(value) == 42 and value.startswith("0x"):
        return to_checksum_address(value)
    return value


def decode_output(abi: ABI, fn_name: str, data: bytes) -> Any:
    """Decoded return value: a single value, a tuple for several, None for none."""
    item = find(abi, "function", fn_name)
    types = [abi_type(p) for p in item.get("outputs", [])]
    if not types:
        return None
    try:
        values = abi_decode(types, data)
    except (DecodingError, Exception) as exc:
        raise ChainError(
            f"cannot decode the result of {fn_name}: {exc} (is the contract address right?)"
        ) from None
    values = _normalise(values)
    return values[0] if len(values) == 1 else tuple(values)


def event_topic(abi: ABI, event_name: str) -> bytes:
    return keccak(text=signature(find(abi, "event", event_name)))


def decode_event(abi: ABI, event_name: str, topics: Sequence[bytes], data: bytes) -> dict[str, Any]:
    item = find(abi, "event", event_name)
    inputs = item.get("inputs", [])
    indexed = [p for p in inputs if p.get("indexed")]
    plain = [p for p in inputs if not p.get("indexed")]
    out: dict[str, Any] = {}
    try:
        for p, topic in zip(indexed, topics[1:], strict=True):
            t = abi_type(p)
            # Dynamic indexed values are stored as their hash; keep the raw topic.
            if t in ("string", "bytes") or t.endswith("]") or t.startswith("("):
                out[p["name"]] = bytes(topic)
            else:
                out[p["name"]] = _normalise(abi_decode([t], bytes(topic))[0])
        values = abi_decode([abi_type(p) for p in plain], bytes(data))
    except Exception as exc:
        raise ChainError(f"cannot decode a {event_name} event: {exc}") from None
    for p, v in zip(plain, values, strict=True):
        out[p["name"]] = _normalise(v)
    return out


def revert_reason(data: bytes | None) -> str:
    """The one-line reason encoded in revert data (Error(string), Panic or none)."""
    if not data:
        return "transaction reverted without a reason"
    data = bytes(data)
    try:
        if data[:4] == _ERROR_SELECTOR:
            msg = str(abi_decode(["string"], data[4:])[0])
            return " ".join(msg.split()) or "transaction reverted with an empty reason"
        if data[:4] == _PANIC_SELECTOR:
            code = int(abi_decode(["uint256"], data[4:])[0])
            return f"transaction reverted with panic code {code:#x}"
    except Exception:
        pass
    return f"transaction reverted with data 0x{data.hex()}"
