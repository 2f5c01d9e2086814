"""Anchoring checkpoints on chain, and checking receipts against anchors (DESIGN §4).

The chain is the log's witness: ``CheckpointRegistry`` accepts a checkpoint only
from the log's owner and only if an RFC 9162 consistency proof from the last
anchored checkpoint verifies on chain. So once a checkpoint is anchored, no
other history of that log can be anchored, and none can be rolled back.

Anchoring is idempotent and safe to re-run after any failure: the chain, not
the local cache, decides what is anchored. A local record (the log's
``witnesses`` table) is written only after the anchor is read back from chain.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import rfc8785

from . import merkle
from ._log.note import Checkpoint, Verifier
from .errors import ChainError, InputError, VerificationError

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

    from ._chain import AnchorRecord, ChainBackend, CheckpointRegistryClient, Deployment, LogInfo
    from ._log.store import Log


@dataclass(frozen=True)
class AnchorResult:
    """What ``ailedger anchor`` did: anchored (size, root), or found it already anchored."""

    size: int
    root: bytes
    chain_id: int
    contract: str
    tx_hash: str
    block_number: int
    timestamp: int
    gas_used: int | None
    already: bool  # True when the chain had this checkpoint before this call

    @classmethod
    def of(cls, rec: AnchorRecord, *, already: bool) -> AnchorResult:
        return cls(
            rec.size, rec.root, rec.chain_id, rec.contract, rec.tx_hash, rec.block_number,
            rec.timestamp, rec.gas_used, already=already,
        )  # fmt: skip

    def ref(self, log_id: bytes) -> str:
        """The receipt ``extra`` anchor reference (canonical JSON; unauthenticated)."""
        return rfc8785.dumps(
            {
                "anchor": {
                    "chain_id": self.chain_id,
                    "contract": self.contract,
                    "tx": self.tx_hash,
                    "block": self.block_number,
                    "log_id": "0x" + log_id.hex(),
                    "size": self.size,
                }
            }
        ).decode()


@dataclass(frozen=True)
class AnchorCheck:
    """The on-chain evidence for a checkpoint: the anchor it is, or is consistent with."""

    anchored_size: int
    anchored_root: bytes
    block_number: int
    timestamp: int
    tx_hash: str
    exact: bool  # the checkpoint itself is anchored (else: a later, consistent one is)
    chain_id: int
    contract: str


def open_backend(spec: dict[str, Any], home: Path | None = None) -> ChainBackend:
    """Connect to the chain a workspace (or a verifier) names."""
    from ._chain import EmbeddedBackend, RpcBackend

    kind = spec.get("backend")
    if kind == "embedded":
        path = Path(spec["path"])
        if home is not None and not path.is_absolute():
            path = home / path
        if not path.exists():
            raise ChainError(f"embedded chain {path} is missing")
        return EmbeddedBackend(path, create=False)
    if kind == "rpc":
        return RpcBackend(str(spec["url"]), expected_chain_id=spec.get("chain_id"))
    raise ChainError(f"unknown chain backend {kind!r} in the workspace config")


def chain_spec(target: str) -> dict[str, Any]:
    """``--chain`` value: an http(s) JSON-RPC URL, or the path of an embedded chain file."""
    if target.startswith(("http://", "https://")):
        return {"backend": "rpc", "url": target}
    p = Path(target)
    if p.is_dir():
        p = p / "chain.sqlite"
    if not p.exists():
        raise InputError(f"--chain {target}: not an http(s) URL or an embedded chain file")
    return {"backend": "embedded", "path": str(p.absolute())}


def registry(
    backend: ChainBackend, deployment: Deployment, account: LocalAccount | None = None
) -> CheckpointRegistryClient:
    from ._chain import CheckpointRegistryClient

    return CheckpointRegistryClient(backend, deployment.contracts["CheckpointRegistry"], account)


def binding_message(chain_id: int, registry_address: str, owner: str, origin: str) -> bytes:
    """What the log key signs to authorise ``owner`` to register and anchor ``origin``.

    Bound to one chain and one registry, so a binding cannot be replayed elsewhere.
    """
    return (
        f"ailedger/log-owner/v1\n{chain_id}\n{registry_address.lower()}\n"
        f"{owner.lower()}\n{origin}\n"
    ).encode()


def ensure_log_registered(
    reg: CheckpointRegistryClient,
    origin: str,
    verifier_key: str,
    sign: Callable[[bytes], bytes],
) -> bytes:
    """Register the log on first use; refuse if the chain binds its origin to another key.

    ``sign`` is the log key's Ed25519 signer: the registration carries its signature
    over :func:`binding_message`, which verifiers check before trusting any anchor.
    """
    from ._chain import log_id_of

    log_id = log_id_of(origin)
    info = reg.log_info(log_id)
    if info is None:
        owner = reg._signer().address
        msg = binding_message(reg.backend.chain_id, reg.address, owner, origin)
        reg.register_log(origin, verifier_key, sign(msg))
        return log_id
    if info.verifier_key != verifier_key:
        raise ChainError(
            f"log {origin} is registered on chain with another verifier key: not ours to anchor"
        )
    if reg.account is not None and info.owner.lower() != reg.account.address.lower():
        raise ChainError(
            f"log {origin} was registered by another account ({info.owner}) without this log's"
            " authorisation; anchor under a new origin and report the squatter"
        )
    return log_id


def _check_binding(info: LogInfo, verifier: Verifier, reg: CheckpointRegistryClient) -> None:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import ed25519

    msg = binding_message(reg.backend.chain_id, reg.address, info.owner, info.origin)
    try:
        ed25519.Ed25519PublicKey.from_public_bytes(verifier.public).verify(info.binding, msg)
    except (InvalidSignature, ValueError) as e:
        raise VerificationError(
            f"log {info.origin} is registered on chain by {info.owner} without the log key's"
            " authorisation: its anchors are not the log's"
        ) from e


def anchor(
    log: Log,
    reg: CheckpointRegistryClient,
    verifier: Verifier,
    sign: Callable[[bytes], bytes],
) -> AnchorResult:
    """Anchor the log's latest checkpoint (signing one if the tree grew). Idempotent."""
    note = log.checkpoint()
    cp = Checkpoint.from_note(note)
    if cp.size == 0:
        raise InputError("nothing to anchor: the log is empty")
    log_id = ensure_log_registered(reg, cp.origin, str(verifier), sign)
    latest = reg.latest(log_id)
    if latest is not None and latest.size > cp.size:
        raise ChainError(
            f"the chain has an anchor at size {latest.size} but this log has only {cp.size}"
            " entries: this is not the anchored log, or it was rolled back"
        )
    # The chain checks this too; checking first gives a clear error and spends no gas.
    if latest is not None and log.root(latest.size) != latest.root:
        raise ChainError(
            f"this log's tree at size {latest.size} differs from the anchored one:"
            " refusing to anchor a split view"
        )
    if latest is not None and latest.size == cp.size:
        result = _find(reg, log_id, cp.size, already=True)
    else:
        proof = log.consistency_proof(latest.size, cp.size) if latest is not None else []
        result = AnchorResult.of(reg.anchor(log_id, cp.size, cp.root, proof), already=False)
    if reg.root_at(log_id, cp.size) != cp.root:  # read back before recording anything
        raise ChainError(f"anchor of size {cp.size} is not on chain after the transaction")
    log.set_witness(cp.size, result.ref(log_id))
    return result


def _find(reg: CheckpointRegistryClient, log_id: bytes, size: int, already: bool) -> AnchorResult:
    for rec in reversed(reg.history(log_id)):
        if rec.size == size:
            return AnchorResult.of(rec, already=already)
    raise ChainError(f"anchor of size {size} has no Anchored event on chain")


def check_anchor(
    cp: Checkpoint,
    verifier: Verifier,
    reg: CheckpointRegistryClient,
    log: Log | None = None,
    from_block: int = 0,
) -> AnchorCheck:
    """Check on chain that ``cp`` is anchored, or consistent with a later anchor.

    Fails closed: an unregistered log, a log bound to another key, a different
    root at the same size (a split view) or no anchor at or above ``cp.size``
    all raise :class:`VerificationError`. A later anchor counts only with a
    consistency proof from ``log`` verified against the *on-chain* root.
    """
    from ._chain import log_id_of

    log_id = log_id_of(cp.origin)
    info = reg.log_info(log_id)
    where = f"chain {reg.backend.chain_id} at {reg.address}"
    if info is None:
        raise VerificationError(f"log {cp.origin} is not registered on {where}")
    if info.verifier_key != str(verifier):
        raise VerificationError(
            f"{where} binds log {cp.origin} to another verifier key than the one given"
        )
    _check_binding(info, verifier, reg)
    on_chain = reg.root_at(log_id, cp.size)
    if on_chain is not None and on_chain != cp.root:
        raise VerificationError(
            f"split view: {where} has a different root for {cp.origin} at size {cp.size}"
        )
    history = reg.history(log_id, from_block=from_block)
    if on_chain is not None:
        rec = next(r for r in reversed(history) if r.size == cp.size)
        return AnchorCheck(
            rec.size,
            rec.root,
            rec.block_number,
            rec.timestamp,
            rec.tx_hash,
            True,
            rec.chain_id,
            rec.contract,
        )
    later = [r for r in history if r.size > cp.size]
    if not later:
        latest = history[-1].size if history else 0
        raise VerificationError(
            f"checkpoint of size {cp.size} is not anchored yet (latest anchor: size {latest});"
            " run `ailedger anchor`, or verify with --offline"
        )
    rec = later[0]
    if log is None:
        raise VerificationError(
            f"checkpoint of size {cp.size} is not anchored itself, and checking it against the"
            f" anchor at size {rec.size} needs the log's consistency proof"
        )
    merkle.verify_consistency(
        cp.size, rec.size, log.consistency_proof(cp.size, rec.size), cp.root, rec.root
    )
    return AnchorCheck(
        rec.size,
        rec.root,
        rec.block_number,
        rec.timestamp,
        rec.tx_hash,
        False,
        rec.chain_id,
        rec.contract,
    )


def parse_extra(extra: bytes | None) -> dict[str, Any] | None:
    """The anchor reference in a receipt's ``extra`` line, if it is one (never trusted)."""
    if not extra:
        return None
    try:
        doc = json.loads(extra)
    except ValueError:
        return None
    anchor_ref = doc.get("anchor") if isinstance(doc, dict) else None
    return anchor_ref if isinstance(anchor_ref, dict) else None
