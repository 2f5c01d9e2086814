"""The ``ailedger`` command line.

Output meant for machines (receipts, checkpoints, hashes) goes to stdout
verbatim; errors are one line on stderr and a non-zero exit, never a traceback
(set ``AILEDGER_DEBUG=1`` to see one).
"""

from __future__ import annotations

import base64
import os
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from .. import Workspace
from .._anchor import AnchorResult, chain_spec
from .._log.note import Checkpoint, Verifier
from .._statements import intoto
from .._verify import verify_envelope, verify_receipt
from .._workspace import resolve_home
from ..errors import Error, InputError, VerificationError

app = typer.Typer(
    name="ailedger",
    help="A verifiable ledger for AI: signed statements in an RFC 9162 Merkle log.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
log_app = typer.Typer(
    help="The Merkle log: append, read, checkpoint, prove, fsck.", no_args_is_help=True
)
identity_app = typer.Typer(help="This workspace's identity.", no_args_is_help=True)
chain_app = typer.Typer(help="The chain: status and contract deployment.", no_args_is_help=True)
app.add_typer(log_app, name="log")
app.add_typer(identity_app, name="identity")
app.add_typer(chain_app, name="chain")

Home = Annotated[
    Path | None,
    typer.Option("--home", help="Workspace folder (default: $AILEDGER_HOME or ./.ailedger)."),
]


def _open(home: Path | None) -> Workspace:
    return Workspace.open(resolve_home(home))


def _read_input(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except FileNotFoundError as e:
        raise InputError(f"{path}: no such file") from e
    except IsADirectoryError as e:
        raise InputError(f"{path} is a directory") from e
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror}") from e


def _out(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


# -- workspace and identity ---------------------------------------------------------


@app.command()
def init(
    home: Home = None,
    name: Annotated[str | None, typer.Option(help="Identity name (default: $USER).")] = None,
    chain: Annotated[
        str | None,
        typer.Option(help="Ethereum JSON-RPC URL (default: an embedded chain in the workspace)."),
    ] = None,
    contracts: Annotated[
        Path | None, typer.Option(help="deployment.json of contracts to join (with --chain).")
    ] = None,
) -> None:
    """Create a workspace: keys, log, blob store, config, and its chain."""
    if contracts is not None and chain is None:
        raise InputError("--contracts joins a deployment on another chain: pass --chain URL too")
    target = resolve_home(home)
    ws = Workspace.init(target, name=name, chain=chain, contracts=contracts)
    with ws:
        enc = "encrypted" if os.environ.get("AILEDGER_PASSPHRASE") else "not encrypted"
        _out(f"initialised workspace {target}")
        _out(f"name:         {ws.name}")
        _out(f"keyid:        {ws.keyid}")
        _out(f"verifier key: {ws.verifier_key}")
        _out(f"account:      {ws.address}")
        _out(f"keys:         {enc} (AILEDGER_PASSPHRASE)")
        cfg = ws.chain_config
        where = cfg.get("url") or "embedded"
        if cfg.get("deployment"):
            _out(f"chain:        {where} (chain id {cfg['chain_id']}), contracts ready")
        else:
            _out(
                f"chain:        {where} (chain id {cfg['chain_id']}): account has no funds;"
                f" fund {ws.address}, then run `ailedger chain deploy`"
            )


@identity_app.command("show")
def identity_show(home: Home = None) -> None:
    """Print name, keyid, log origin and verifier key, and the chain account."""
    with _open(home) as ws:
        _out(f"name:         {ws.name}")
        _out(f"keyid:        {ws.keyid}")
        _out(f"origin:       {ws.origin}")
        _out(f"verifier key: {ws.verifier_key}")
        _out(f"ed25519:      {ws.ed25519_public.hex()}")
        _out(f"x25519:       {ws.x25519_public.hex()}")
        _out(f"account:      {ws.address}")


@identity_app.command("trust")
def identity_trust(
    public_key: Annotated[str, typer.Argument(help="Ed25519 public key: 64 hex or base64.")],
    home: Home = None,
) -> None:
    """Accept DSSE envelopes signed by another Ed25519 key in `log append`."""
    raw = _parse_pubkey(public_key)
    with _open(home) as ws:
        _out(ws.trust(raw))


def _parse_pubkey(text: str) -> bytes:
    t = text.strip()
    try:
        raw = bytes.fromhex(t) if len(t) == 64 else base64.b64decode(t, validate=True)
    except ValueError as e:
        raise InputError("public key must be 64 hex characters or base64") from e
    if len(raw) != 32:
        raise InputError("an Ed25519 public key is 32 bytes")
    return raw


@identity_app.command("register")
def identity_register(home: Home = None) -> None:
    """Bind the chain account to this name and its Ed25519/X25519 keys (IdentityRegistry)."""
    with _open(home) as ws:
        if not ws.chain_config.get("deployment"):
            ws.chain_setup()  # registers the identity too
            _out(f"registered {ws.name} for {ws.address}")
            return
        changed = ws.register_identity()
        _out(f"{'registered' if changed else 'already registered:'} {ws.name} for {ws.address}")


# -- chain ---------------------------------------------------------------------------


@chain_app.command("status")
def chain_status(home: Home = None) -> None:
    """Backend, chain id, block, contract addresses, account balance, latest anchor."""
    from .._chain import log_id_of

    with _open(home) as ws:
        cfg = ws.chain_config
        backend = ws.chain
        _out(f"backend:      {cfg.get('backend')} {cfg.get('url') or cfg.get('path', '')}".rstrip())
        _out(f"chain id:     {backend.chain_id}")
        _out(f"block:        {backend.block_number()}")
        _out(f"account:      {ws.address}")
        _out(f"balance:      {backend.balance(ws.address) / 10**18:.6f} ETH")
        if not cfg.get("deployment"):
            _out("contracts:    not deployed (run `ailedger chain deploy` once funded)")
            return
        for name, addr in ws.deployment.contracts.items():
            _out(f"{name + ':':<13} {addr}")
        reg = ws.registry()
        latest = reg.latest(log_id_of(ws.origin))
        if latest is None:
            _out("anchored:     nothing yet")
        else:
            _out(
                f"anchored:     size {latest.size} in block {latest.block_number}"
                f" at {_utc(latest.timestamp)}"
            )


@chain_app.command("deploy")
def chain_deploy(home: Home = None) -> None:
    """Deploy the contracts (if none are configured), register the log and identity."""
    with _open(home) as ws:
        dep = ws.chain_setup()
        for name, addr in dep.contracts.items():
            _out(f"{name}: {addr}")
        _out(f"deployment: {ws.path / 'deployment.json'}")


@app.command()
def anchor(home: Home = None) -> None:
    """Anchor the latest checkpoint on chain (one transaction whatever the size; idempotent)."""
    with _open(home) as ws:
        _print_anchor(ws.anchor())


def _anchor_after_append(ws: Workspace, index: int, receipt: bool = False) -> None:
    try:
        r = ws.anchor()
    except Error as e:
        if receipt:
            _out(ws.receipt(index))  # the entry is in the log: hand out its receipt anyway
        raise type(e)(
            f"entry {index} was appended, but anchoring failed: {e}; run `ailedger anchor`"
        ) from e
    if receipt:  # stdout carries only the receipt
        sys.stderr.write(f"anchored: size {r.size} in block {r.block_number}, tx {r.tx_hash}\n")
    else:
        _print_anchor(r)


def _print_anchor(r: AnchorResult) -> None:
    state = "already anchored" if r.already else "anchored"
    _out(f"{state}: size {r.size} root {base64.b64encode(r.root).decode()}")
    gas = f", gas {r.gas_used}" if r.gas_used is not None else ""
    _out(f"chain {r.chain_id} block {r.block_number} at {_utc(r.timestamp)}, tx {r.tx_hash}{gas}")


def _utc(ts: int) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- statements ---------------------------------------------------------------------


@app.command()
def attest(
    paths: Annotated[
        list[Path], typer.Argument(help="Files to attest (their sha256 are the subjects).")
    ],
    type_: Annotated[str, typer.Option("--type", help="predicateType URI.")],
    predicate: Annotated[
        Path | None, typer.Option(help="JSON file with the predicate object.")
    ] = None,
    anchor: Annotated[
        bool, typer.Option("--anchor", help="Anchor the checkpoint before issuing the receipt.")
    ] = False,
    home: Home = None,
) -> None:
    """Sign an in-toto statement about files, append it, print the index and a receipt."""
    import json

    pred = None
    if predicate is not None:
        try:
            pred = json.loads(_read_input(str(predicate)))
        except (ValueError, RecursionError) as e:
            raise InputError(f"{predicate}: not valid JSON ({e})") from e
        if not isinstance(pred, dict):
            raise InputError(f"{predicate}: the predicate must be a JSON object")
    subjects = [intoto.subject_for_file(p) for p in paths]
    st = intoto.statement(subjects, type_, pred)
    with _open(home) as ws:
        index = ws.record(st)
        # The index goes to stderr so that `attest … > receipt.txt` saves just the receipt.
        sys.stderr.write(f"index {index}\n")
        if anchor:
            _anchor_after_append(ws, index, receipt=True)
        _out(ws.receipt(index))


# -- log ----------------------------------------------------------------------------


@log_app.command("append")
def log_append(
    file: Annotated[
        str, typer.Argument(help="A signed DSSE envelope (canonical JSON), or - for stdin.")
    ],
    anchor: Annotated[
        bool, typer.Option("--anchor", help="Then anchor the new checkpoint.")
    ] = False,
    home: Home = None,
) -> None:
    """Append a signed DSSE envelope after checking its signature; print its index.

    The envelope must be RFC 8785 canonical JSON (one trailing newline is ignored)
    and signed by this workspace's key or one added with `identity trust`.
    """
    data = _read_input(file)
    if data.endswith(b"\n"):  # editors add one; canonical JSON never ends in whitespace
        data = data[:-1]
    with _open(home) as ws:
        if len(data) > 64 * 1024:
            raise InputError(f"entry is {len(data)} bytes; the limit is 65536")
        # The same checks a verifier makes: canonical envelope, in-toto payload type, a
        # canonical Statement v1 payload, and a signature by a key this workspace trusts.
        verify_envelope(data, ws.trusted_keys())
        index = ws.log.append(data)
        _out(str(index))
        if anchor:
            _anchor_after_append(ws, index)


@log_app.command("get")
def log_get(index: int, home: Home = None) -> None:
    """Print entry INDEX (its bytes, verbatim)."""
    with _open(home) as ws:
        data = ws.log.get(_nonneg(index, "INDEX"))
        # Byte-exact when piped (so `log get N > f` round-trips); a newline for people.
        sys.stdout.buffer.write(data + b"\n" if sys.stdout.isatty() else data)


@log_app.command("checkpoint")
def log_checkpoint(home: Home = None) -> None:
    """Print the signed checkpoint of the current tree (signing a new one if it grew)."""
    with _open(home) as ws:
        sys.stdout.write(ws.log.checkpoint())


@log_app.command("verifier-key")
def log_verifier_key(home: Home = None) -> None:
    """Print the log's C2SP note verifier key."""
    with _open(home) as ws:
        _out(ws.verifier_key)


@log_app.command("proof")
def log_proof(
    index: int,
    size: Annotated[
        int | None, typer.Option(help="Prove against the checkpoint issued at this size.")
    ] = None,
    home: Home = None,
) -> None:
    """Print a tlog-proof@v1 receipt for entry INDEX."""
    with _open(home) as ws:
        sys.stdout.write(
            ws.receipt(_nonneg(index, "INDEX"), None if size is None else _nonneg(size, "--size"))
        )


@log_app.command("consistency")
def log_consistency(
    old: int,
    new: Annotated[int | None, typer.Argument()] = None,
    home: Home = None,
) -> None:
    """Print the RFC 9162 consistency proof from size OLD to NEW (default: now), base64."""
    with _open(home) as ws:
        proof = ws.log.consistency_proof(
            _nonneg(old, "OLD"), None if new is None else _nonneg(new, "NEW")
        )
        for h in proof:
            _out(base64.b64encode(h).decode())


@log_app.command("fsck")
def log_fsck(home: Home = None) -> None:
    """Recompute every hash and checkpoint from the entries; exit 1 on any mismatch."""
    with _open(home) as ws:
        rep = ws.log.fsck()
    if rep.ok:
        _out(f"ok: {rep.size} entries, {rep.checkpoints} checkpoints verified")
        return
    for p in rep.problems:
        _out(f"FAIL: {p}")
    raise VerificationError(f"fsck found {len(rep.problems)} problem(s) in the log")


@app.command("verify-receipt")
def verify_receipt_cmd(
    receipt: Annotated[str, typer.Argument(help="A tlog-proof@v1 receipt file, or -.")],
    entry: Annotated[
        Path | None, typer.Option(help="The entry bytes (default: read from the workspace log).")
    ] = None,
    verifier_key: Annotated[
        str | None, typer.Option(help="The log's verifier key (default: this workspace's).")
    ] = None,
    signer_key: Annotated[
        list[str] | None,
        typer.Option(help="Also trust DSSE signatures by this Ed25519 key (hex or base64)."),
    ] = None,
    offline: Annotated[
        bool, typer.Option("--offline", help="Check signatures and proofs only, not the anchor.")
    ] = False,
    chain: Annotated[
        str | None,
        typer.Option(help="Chain to check the anchor on: JSON-RPC URL or embedded chain file."),
    ] = None,
    contracts: Annotated[
        Path | None, typer.Option(help="deployment.json naming the CheckpointRegistry.")
    ] = None,
    home: Home = None,
) -> None:
    """Verify a receipt: checkpoint signature, inclusion proof, entry signature, and anchor.

    The entry, if it is a DSSE envelope, must be signed by the log's key, a key this
    workspace trusts, or a --signer-key. The anchor is checked on the workspace's chain or
    on --chain/--contracts; with neither (a bare third party), or with --offline, it is not
    checked and the output says so.
    """
    from .._crypto.keys import keyid_of
    from .._log.receipt import Receipt

    text = _read_input(receipt)
    parsed = Receipt.parse(text)
    ws = None
    try:
        if entry is None or verifier_key is None or (not offline and chain is None):
            try:
                ws = _open(home)
            except Error as e:
                if entry is None or verifier_key is None:
                    raise InputError(f"{e}; or pass --entry and --verifier-key") from e
        vk = Verifier.parse(verifier_key.strip()) if verifier_key else _need(ws).verifier
        data = _read_input(str(entry)) if entry is not None else _need(ws).log.get(parsed.index)
        trusted = {keyid_of(vk.public): vk.public}
        if ws is not None:
            trusted.update(ws.trusted_keys())
        for k in signer_key or []:
            raw = _parse_pubkey(k)
            trusted[keyid_of(raw)] = raw
        res = verify_receipt(text, data, vk, trusted)
        cp = res.checkpoint
        lines = [
            f"OK: entry {res.index} is in {cp.origin} at tree size {cp.size}",
            f"root: {base64.b64encode(cp.root).decode()}",
        ]
        if res.statement is not None:
            lines.append(f"statement signed by keyid {res.signers[0]}")
            lines.append(f"predicateType: {res.statement['predicateType']}")
        else:
            lines.append("entry: raw bytes, not a DSSE envelope (inclusion proven, no signer)")
        if offline:
            lines.append("anchor: not checked (--offline: signatures and proofs only)")
        elif chain is None and (ws is None or not ws.chain_config):
            lines.append(
                "anchor: not checked (no chain given: pass --chain and --contracts to check it)"
            )
        else:
            lines.append(_check_anchor_cmd(res.checkpoint, vk, res.extra, ws, chain, contracts))
        for line in lines:  # only once every check passed
            _out(line)
    finally:
        if ws is not None:
            ws.close()


def _check_anchor_cmd(
    cp: Checkpoint,
    vk: Verifier,
    extra: bytes | None,
    ws: Workspace | None,
    chain: str | None,
    contracts: Path | None,
) -> str:
    from .._anchor import check_anchor, open_backend, parse_extra, registry
    from .._chain import Deployment

    if chain is not None:
        if contracts is None:
            raise InputError("--chain needs --contracts (the deployment.json to trust)")
        backend = open_backend(chain_spec(chain))
        dep = Deployment.load(contracts)
        dep.validate(backend)
        reg = registry(backend, dep)
        log = ws.log if ws is not None and ws.origin == cp.origin else None
    else:
        ws = _need(ws)
        reg = ws.registry()
        backend = ws.chain
        dep = ws.deployment
        log = ws.log if ws.origin == cp.origin else None
    try:
        chk = check_anchor(cp, vk, reg, log, from_block=dep.deployed_at_block)
    finally:
        if chain is not None:
            backend.close()
    how = (
        "anchored"
        if chk.exact
        else f"consistent with the checkpoint of size {chk.anchored_size} anchored"
    )
    line = (
        f"anchor: {how} on chain {chk.chain_id} in block {chk.block_number}"
        f" at {_utc(chk.timestamp)} (tx {chk.tx_hash})"
    )
    ref = parse_extra(extra)
    if ref is not None and chk.exact and ref.get("tx") != chk.tx_hash:
        line += "\nnote: the receipt's (unauthenticated) anchor reference names another tx"
    return line


def _need(ws: Workspace | None) -> Workspace:
    if ws is None:  # only reachable if the option logic above changes
        raise InputError("a workspace is needed for this")
    return ws


def _register_provenance() -> None:
    from . import data, lineage, node, runs, share, swarm

    for mod in (data, runs, lineage, share, node, swarm):
        mod.register(app)


_register_provenance()


@app.command()
def demo() -> None:
    """Tell the ailedger story on a temporary workspace."""
    from .demo import run_demo

    run_demo()


def _nonneg(v: int, what: str) -> int:
    if v < 0:
        raise InputError(f"{what} must be a non-negative integer")
    return v


def _fail(msg: str, code: int = 1) -> NoReturn:
    sys.stderr.write(f"ailedger: error: {msg}\n")
    sys.exit(code)


def main() -> None:
    """Console entry point: run the app, turning every error into one line."""
    debug = bool(os.environ.get("AILEDGER_DEBUG"))
    try:
        rv = app(standalone_mode=False)
    except Error as e:
        if debug:
            raise
        _fail(str(e))
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except BrokenPipeError:
        sys.exit(1)
    except typer.Abort:
        _fail("aborted", 1)
    except Exception as e:
        if hasattr(e, "exit_code") and hasattr(e, "show"):
            # typer's usage errors (its vendored click): show help when asked for
            # none, else one line naming the problem.
            if type(e).__name__ == "NoArgsIsHelpError":
                e.show()
                sys.exit(0)
            ctx = getattr(e, "ctx", None)
            where = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
            _fail(f"{e.format_message()}{where}", int(e.exit_code))  # type: ignore[attr-defined]
        if debug:
            raise
        _fail(f"internal error: {type(e).__name__}: {e} (set AILEDGER_DEBUG=1 for a traceback)", 70)
    sys.exit(rv if isinstance(rv, int) else 0)
