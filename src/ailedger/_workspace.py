"""A workspace: one identity, one log, one blob store, one config (DESIGN §2).

Layout of the folder::

    config.json        name, origin, format version
    keys/identity.json the private keys (0600, encrypted with AILEDGER_PASSPHRASE)
    log.sqlite         the Merkle log (entries, subtree hashes, checkpoints)
    blobs/             content-addressed blobs over 64 KiB
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._cas.blobs import LocalBlobStore
from ._crypto.keys import PASSPHRASE_ENV, Identity
from ._log.note import Checkpoint, Verifier, sign_note
from ._log.receipt import Receipt
from ._log.store import MAX_ENTRY, Log
from ._statements import dsse, intoto
from .errors import ChainError, InputError, WorkspaceError

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

    from ._anchor import AnchorResult
    from ._chain import (
        ChainBackend,
        CheckpointRegistryClient,
        DataAgreementsClient,
        Deployment,
        IdentityRegistryClient,
        SwarmRoundsClient,
    )
    from ._provenance.predictions import PredictionLogger

HOME_ENV = "AILEDGER_HOME"
DEFAULT_HOME = ".ailedger"
_CONFIG = "config.json"
_FORMAT = "ailedger-workspace/v1"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
EXTERNAL_PREDICATE = "https://ailedger.dev/external-predicate/v1"


def resolve_home(home: str | os.PathLike[str] | None) -> Path:
    """``--home``, else ``$AILEDGER_HOME``, else ``./.ailedger``."""
    if home:
        return Path(home)
    env = os.environ.get(HOME_ENV)
    return Path(env) if env else Path(DEFAULT_HOME)


class Workspace:
    """An ailedger workspace. Create with :meth:`init`, open with :meth:`open`."""

    def __init__(self, path: Path, config: dict[str, Any], identity: Identity) -> None:
        self._path = path
        self._config = config
        self._identity = identity
        self._verifier = Verifier.parse(config["verifier_key"])
        if self._verifier.public != identity.ed25519_public:
            raise WorkspaceError(f"{path}: config and key file belong to different identities")
        self._log: Log | None = None
        self._backend: ChainBackend | None = None
        self._validated = False
        self._account: LocalAccount | None = None
        self.blobs = LocalBlobStore(path / "blobs")

    # -- lifecycle -----------------------------------------------------------------

    @classmethod
    def init(
        cls,
        path: str | os.PathLike[str],
        name: str | None = None,
        *,
        chain: str | None = None,
        contracts: str | os.PathLike[str] | None = None,
    ) -> Workspace:
        """Create a workspace in ``path`` (missing or empty folder); refuse anything else.

        With no ``chain``, an embedded EVM chain is created in the workspace and
        the contracts are deployed on it. With ``chain`` (a JSON-RPC URL), the
        node must answer; ``contracts`` (a deployment.json) joins an existing
        deployment, which is validated. If the account has no funds yet, the
        workspace is still created: fund the account, then ``chain deploy``.

        The workspace is built in a temporary sibling folder and renamed into
        place, so a failed init leaves nothing behind and a concurrent init
        cannot produce a mix of two identities.
        """
        target = Path(path)
        name = name or _default_name()
        if not _NAME.fullmatch(name):
            raise InputError(
                f"invalid name {name!r}: use letters, digits, '.', '_' or '-' (max 64)"
            )
        if target.exists():
            if (target / _CONFIG).exists():
                raise WorkspaceError(f"{target} is already an ailedger workspace; left unchanged")
            if not target.is_dir():
                raise WorkspaceError(f"{target} exists and is not a folder")
            if any(target.iterdir()):
                raise WorkspaceError(f"{target} is not empty; choose a new or empty folder")
        parent = target.absolute().parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.init-", dir=parent))
        except OSError as e:
            raise WorkspaceError(f"cannot create {target}: {e.strerror}") from e
        try:
            ident = Identity.generate()
            origin = f"ailedger.local/{name}-{ident.keyid[:8]}"
            (tmp / "keys").mkdir(mode=0o700)
            ident.save(tmp / "keys" / "identity.json", os.environ.get(PASSPHRASE_ENV) or None)
            from ._log.note import verifier_key

            config = {
                "format": _FORMAT,
                "name": name,
                "origin": origin,
                "keyid": ident.keyid,
                "verifier_key": verifier_key(origin, ident.ed25519_public),
                "trusted_keys": {},
                "chain": _initial_chain(chain),
            }
            _write_json(tmp / _CONFIG, config)
            (tmp / "blobs").mkdir()
            ws = cls(tmp, config, ident)
            ws.log.checkpoint()  # create the database and sign the empty tree
            try:
                ws._init_chain(contracts)
            finally:
                ws.close()
            os.chmod(tmp, 0o700)
            _move_into_place(tmp, target)
        except OSError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            raise WorkspaceError(f"cannot create the workspace at {target}: {e.strerror}") from e
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return cls.open(target)

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Workspace:
        p = Path(path)
        cfg = p / _CONFIG
        if not cfg.exists():
            raise WorkspaceError(
                f"no ailedger workspace at {p}: run `ailedger init` or set {HOME_ENV}/--home"
            )
        try:
            config = json.loads(cfg.read_text())
            if config.get("format") != _FORMAT:
                raise ValueError("unknown format")
        except (ValueError, OSError) as e:
            raise WorkspaceError(f"{cfg} is not a valid workspace config: {e}") from e
        ident = Identity.load(p / "keys" / "identity.json", os.environ.get(PASSPHRASE_ENV) or None)
        return cls(p, config, ident)

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._backend is not None:
            self._backend.close()
            self._backend = None

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- identity ------------------------------------------------------------------

    @property
    def path(self) -> Path:
        return self._path

    @property
    def name(self) -> str:
        return str(self._config["name"])

    @property
    def origin(self) -> str:
        return str(self._config["origin"])

    @property
    def keyid(self) -> str:
        """DSSE keyid: hex SHA-256 of the raw Ed25519 public key."""
        return self._identity.keyid

    @property
    def verifier_key(self) -> str:
        """The C2SP note verifier key of this workspace's log."""
        return str(self._config["verifier_key"])

    @property
    def verifier(self) -> Verifier:
        return self._verifier

    @property
    def address(self) -> str:
        """The chain account (secp256k1) address."""
        return str(self.account.address)

    @property
    def ed25519_public(self) -> bytes:
        return self._identity.ed25519_public

    @property
    def x25519_public(self) -> bytes:
        return self._identity.x25519_public

    def trusted_keys(self) -> dict[str, bytes]:
        """Ed25519 keys whose DSSE envelopes this workspace accepts: keyid → raw key."""
        keys = {self.keyid: self.ed25519_public}
        for kid, b64 in self._config.get("trusted_keys", {}).items():
            keys[kid] = base64.b64decode(b64)
        return keys

    def trust(self, public_key: bytes) -> str:
        """Accept DSSE envelopes signed by ``public_key`` in ``log append``; returns its keyid."""
        from ._crypto.keys import ed25519_public_from_raw, keyid_of

        ed25519_public_from_raw(public_key)
        kid = keyid_of(public_key)
        self._config.setdefault("trusted_keys", {})[kid] = base64.b64encode(public_key).decode()
        _write_json(self._path / _CONFIG, self._config, replace=True)
        return kid

    # -- log -----------------------------------------------------------------------

    @property
    def log(self) -> Log:
        if self._log is None:
            ident = self._identity
            origin = self.origin

            def signer(text: str) -> str:
                return sign_note(text, origin, ident.ed25519)

            self._log = Log(
                self._path / "log.sqlite",
                origin,
                signer,
                self._verifier,
                state_path=self._path / "checkpoint.signed",
            )
        return self._log

    def sign(self, statement: Mapping[str, Any]) -> dsse.Envelope:
        """Sign an in-toto statement as a DSSE envelope with the workspace key."""
        intoto.validate(statement)
        payload = intoto.canonical(statement)
        return dsse.sign(payload, dsse.INTOTO_PAYLOAD_TYPE, self._identity.ed25519, self.keyid)

    def _entry_for(self, statement: Mapping[str, Any]) -> bytes:
        entry = dsse.to_bytes(self.sign(statement))
        if len(entry) <= MAX_ENTRY:
            return entry
        # Too big for one log entry (DESIGN §3): move the predicate to the blob
        # store and sign a statement that commits to it by digest instead.
        pred = intoto.canonical(statement.get("predicate", {}))
        digest = self.blobs.put(pred)
        from ._node.public import mark_public

        mark_public(self.path, digest)  # the log commits to it: verifiers fetch it on /blob
        slim = dict(statement)
        slim["predicate"] = {
            "externalPredicate": {
                "predicateType": statement["predicateType"],
                "digest": {"sha256": digest},
                "size": len(pred),
                "mediaType": "application/json",
            }
        }
        slim["predicateType"] = EXTERNAL_PREDICATE
        entry = dsse.to_bytes(self.sign(slim))
        if len(entry) > MAX_ENTRY:
            raise InputError("statement is too large even with its predicate in the blob store")
        return entry

    def record(self, statement: Mapping[str, Any]) -> int:
        """Sign an in-toto statement and append it; returns its log index once durable."""
        return self.log.append(self._entry_for(statement))

    def record_many(self, statements: Iterable[Mapping[str, Any]]) -> list[int]:
        """Sign and append statements in one durable batch (all or none)."""
        return self.log.append_many([self._entry_for(s) for s in statements])

    def receipt(self, index: int, size: int | None = None) -> str:
        """A ``tlog-proof@v1`` receipt for ``index`` against the latest checkpoint.

        With ``size``, against the checkpoint issued at that size, which must exist.
        """
        note = self.log.checkpoint() if size is None else self.log.checkpoint_at(size)
        cp = Checkpoint.from_note(note)
        proof = self.log.inclusion_proof(index, cp.size)
        ref = self.log.witness(cp.size)
        return Receipt(index, tuple(proof), note, ref.encode() if ref else None).text()

    # -- chain ---------------------------------------------------------------------

    @property
    def chain_config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = self._config.get("chain") or {}
        return cfg

    @property
    def account(self) -> LocalAccount:
        """The secp256k1 chain account (eth-account), signing transactions locally."""
        # Deriving the address from the key costs ~4 ms of pure Python: once per session.
        if self._account is None:
            from eth_account import Account

            self._account = Account.from_key(self._identity.secp256k1)
        return self._account

    @property
    def chain(self) -> ChainBackend:
        """The chain backend (opened on first use)."""
        if self._backend is None:
            from ._anchor import open_backend

            if not self.chain_config:
                raise ChainError("this workspace has no chain configured")
            self._backend = open_backend(self.chain_config, self._path)
        return self._backend

    @property
    def deployment(self) -> Deployment:
        from ._chain import Deployment

        dep = self.chain_config.get("deployment")
        if not dep:
            raise ChainError(
                "no contracts deployed for this workspace yet: fund the account"
                f" {self.address}, then run `ailedger chain deploy`"
            )
        return Deployment.from_dict(dep)

    def registry(self) -> CheckpointRegistryClient:
        from ._anchor import registry

        dep = self.deployment
        if not self._validated:
            # Chain id and contract code are checked once per session, so a wrong node
            # or a missing contract is one clear error, not a confusing revert later.
            dep.validate(self.chain)
            self._validated = True
        return registry(self.chain, dep, self.account)

    def identity_registry(self) -> IdentityRegistryClient:
        from ._chain import IdentityRegistryClient

        self.registry()  # validates the deployment
        return IdentityRegistryClient(
            self.chain, self.deployment.contracts["IdentityRegistry"], self.account
        )

    def _save_config(self) -> None:
        _write_json(self._path / _CONFIG, self._config, replace=True)

    def _init_chain(self, contracts: str | os.PathLike[str] | None) -> None:
        from ._chain import EmbeddedBackend, load_deployment

        cfg = self.chain_config
        if cfg.get("backend") == "embedded":
            embedded = EmbeddedBackend(self._path / cfg["path"], create=not cfg.get("shared"))
            embedded.fund(self.address)  # a private dev chain: mint the gas we need
            self._backend = embedded
        backend = self.chain
        cfg["chain_id"] = backend.chain_id
        if contracts is not None:
            dep = load_deployment(Path(contracts), backend)
            cfg["deployment"] = dep.as_dict()
        self._save_config()
        if backend.balance(self.address) == 0:
            return  # `chain deploy` / `identity register` once the account is funded
        self.chain_setup()

    def chain_setup(self) -> Deployment:
        """Deploy the contracts if none are configured, register the log and identity.

        Idempotent: each step is skipped when the chain already has it.
        """
        from ._anchor import ensure_log_registered
        from ._chain import deploy_all

        backend = self.chain
        if backend.balance(self.address) == 0:
            raise ChainError(
                f"account {self.address} has no funds on chain {backend.chain_id}: fund it first"
            )
        if not self.chain_config.get("deployment"):
            dep = deploy_all(backend, self.account)
            self.chain_config["deployment"] = dep.as_dict()
            self._save_config()
            dep.save(self._path / "deployment.json")
        ensure_log_registered(
            self.registry(), self.origin, self.verifier_key, self._identity.ed25519.sign
        )
        self.register_identity()
        return self.deployment

    def register_identity(self) -> bool:
        """Bind the account to name, Ed25519 and X25519 keys on chain; False if already so."""
        ids = self.identity_registry()
        mine = ids.resolve(self.address)
        if mine is not None:
            if mine.revoked:
                raise ChainError(f"identity of {self.address} was revoked on chain")
            if (mine.ed25519, mine.x25519) != (self.ed25519_public, self.x25519_public):
                ids.rotate(self.ed25519_public, self.x25519_public)
                return True
            return False
        ids.register(self.name, self.ed25519_public, self.x25519_public)
        return True

    def agreements(self) -> DataAgreementsClient:
        """The DataAgreements client, deploying the contract if this deployment predates it."""
        from ._chain import DataAgreementsClient, deploy_missing

        dep = self.deployment
        if "DataAgreements" not in dep.contracts:
            dep = deploy_missing(self.chain, self.account, dep)
            self.chain_config["deployment"] = dep.as_dict()
            self._save_config()
            dep.save(self._path / "deployment.json")
        self.registry()  # validates the deployment once per session
        return DataAgreementsClient(self.chain, dep.contracts["DataAgreements"], self.account)

    def swarm_rounds(self) -> SwarmRoundsClient:
        """The SwarmRounds client, deploying the contract if this deployment predates it."""
        from ._chain import SwarmRoundsClient, deploy_missing

        dep = self.deployment
        if "SwarmRounds" not in dep.contracts:
            dep = deploy_missing(self.chain, self.account, dep)
            self.chain_config["deployment"] = dep.as_dict()
            self._save_config()
            dep.save(self._path / "deployment.json")
        self.registry()  # validates the deployment once per session
        return SwarmRoundsClient(self.chain, dep.contracts["SwarmRounds"], self.account)

    def unwrap_key(self, wrapped_doc: str, dataset_digest: str | None = None) -> bytes:
        """Open a data key wrapped (HPKE) to this workspace's X25519 key."""
        from ._crypto.hpke_wrap import unwrap_key

        return unwrap_key(wrapped_doc, self._identity.x25519, dataset_digest=dataset_digest)

    def predictions(
        self, model: str | os.PathLike[str], *, batch_size: int = 10_000
    ) -> PredictionLogger:
        """A cheap logger of a model's predictions: one signed statement per batch.

        ``with ws.predictions("model.pkl") as p: p.log(x, y)`` — each prediction can later
        get its own proof (``ailedger prediction proof``).
        """
        from ._provenance.predictions import PredictionLogger

        return PredictionLogger(self, model, batch_size=batch_size)

    def anchor(self) -> AnchorResult:
        """Anchor the latest checkpoint on chain (one transaction; idempotent)."""
        import fcntl

        from ._anchor import anchor

        # Two processes anchoring one log would race between reading the last
        # anchor and sending the next; the contract would refuse the loser. One
        # lock per workspace makes read-check-send atomic instead.
        with open(self._path / "anchor.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not self.chain_config.get("deployment"):
                self.chain_setup()
            return anchor(self.log, self.registry(), self._verifier, self._identity.ed25519.sign)


def _move_into_place(tmp: Path, target: Path) -> None:
    """Put the finished workspace at ``target`` (missing, or an empty folder).

    A missing target gets one atomic rename. An existing empty folder (maybe the
    shell's current directory, which must not be replaced) gets the parts moved
    in, config.json last: a folder is a workspace only once config.json is there.
    """
    if not target.exists():
        os.rename(tmp, target)
        return
    if any(target.iterdir()):
        raise WorkspaceError(f"{target} is not empty; choose a new or empty folder")
    for child in sorted(tmp.iterdir(), key=lambda c: c.name == _CONFIG):
        os.rename(child, target / child.name)
    os.chmod(target, 0o700)
    tmp.rmdir()


def _initial_chain(chain: str | None) -> dict[str, Any]:
    if chain is None:
        return {"backend": "embedded", "path": "chain.sqlite"}
    if chain.startswith(("http://", "https://")):
        return {"backend": "rpc", "url": chain}
    p = Path(chain)
    if p.is_dir():
        p = p / "chain.sqlite"
    if p.is_file():
        # Another workspace's embedded chain: several identities on one laptop chain
        # (its file lock serialises them). Still not a third-party witness.
        return {"backend": "embedded", "path": str(p.absolute()), "shared": True}
    raise InputError(
        f"--chain must be an http(s) JSON-RPC URL or an embedded chain file, got {chain!r}"
    )


def _default_name() -> str:
    user = os.environ.get("USER") or "local"
    clean = re.sub(r"[^A-Za-z0-9._-]", "-", user)[:64]
    return clean if _NAME.fullmatch(clean) else "local"


def _write_json(path: Path, obj: Any, replace: bool = False) -> None:
    data = (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
