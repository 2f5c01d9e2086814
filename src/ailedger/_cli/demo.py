"""``ailedger demo``: the story, end to end, on a throwaway workspace.

Every step uses the same public API and checks a user would; the demo exits
non-zero if any outcome is not what the story claims (a tamper not caught, a
receipt not verifying), so ``make demo`` is a smoke test too.
"""

from __future__ import annotations

import base64
import hashlib
import sqlite3
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.panel import Panel

from .. import Workspace, merkle, statement, verify_receipt
from .._anchor import check_anchor
from .._chain import log_id_of
from .._log.note import Checkpoint
from ..errors import ChainError, Error, VerificationError

# Wide enough for lineage trees when piped (a terminal keeps its own width).
console = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 120)


def _step(title: str) -> None:
    console.print()
    console.rule(f"[bold cyan]{title}")


def _ok(msg: str) -> None:
    console.print(f"  [green]✔[/green] {msg}")


def _caught(msg: str) -> None:
    console.print(f"  [red]✘ caught:[/red] {msg}")


class DemoFailedError(Error):
    pass


def _digest(data: bytes) -> dict[str, str]:
    return {"sha256": hashlib.sha256(data).hexdigest()}


def run_demo() -> None:
    with tempfile.TemporaryDirectory(prefix="ailedger-demo-") as tmp:
        _story(Path(tmp))
        from .demo_ml import run_ml_story
        from .demo_share import run_share_story
        from .demo_swarm import run_swarm_story

        run_ml_story(Path(tmp))
        run_share_story(Path(tmp))
        run_swarm_story(Path(tmp))
    console.print()
    console.print("[bold green]Demo finished: every check behaved as described.[/bold green]")


def _story(tmp: Path) -> None:
    console.print(
        Panel.fit(
            "ailedger records what happens to data and models as signed in-toto statements\n"
            "in an append-only RFC 9162 Merkle log. Anyone holding a receipt can check it.",
            title="ailedger demo",
        )
    )

    _step("1. A workspace: one identity, one log")
    ws = Workspace.init(tmp / "ws", name="clinic-ml")
    console.print(f"  origin        {ws.origin}")
    console.print(f"  keyid         {ws.keyid}")
    console.print(f"  verifier key  {ws.verifier_key}")
    console.print(f"  account       {ws.address}")

    _step("2. Recording the life of a model as signed statements")
    dataset = b"age,bp,outcome\n63,145,1\n37,130,0\n41,130,0\n56,120,1\n"
    model = b"\x00weights:" + hashlib.sha256(dataset).digest()
    story = [
        (
            "dataset registered",
            statement(
                [{"name": "heart.csv", "digest": _digest(dataset)}],
                "https://ailedger.dev/dataset/v1",
                {"records": 4, "license": "CC-BY-4.0", "schema": ["age", "bp", "outcome"]},
            ),
        ),
        (
            "model trained",
            statement(
                [{"name": "model.bin", "digest": _digest(model)}],
                "https://slsa.dev/provenance/v1",
                {
                    "buildDefinition": {
                        "buildType": "https://ailedger.dev/training/v1",
                        "externalParameters": {"epochs": 5, "lr": 0.01},
                        "resolvedDependencies": [{"name": "heart.csv", "digest": _digest(dataset)}],
                    },
                    "runDetails": {"builder": {"id": "https://ailedger.dev/builder/local"}},
                },
            ),
        ),
        (
            "model evaluated",
            statement(
                [{"name": "model.bin", "digest": _digest(model)}],
                "https://ailedger.dev/evaluation/v1",
                {"metric": "accuracy", "value": "0.75", "dataset": _digest(dataset)},
            ),
        ),
    ]
    indices = []
    for what, st in story:
        i = ws.record(st)
        indices.append(i)
        _ok(f"{what:<20} → log index {i}")
    batch = [
        statement(
            [{"name": f"prediction-{k}", "digest": _digest(b"%d" % k)}],
            "https://ailedger.dev/prediction/v1",
            {"output": k % 2},
        )
        for k in range(1000)
    ]
    first = ws.record_many(batch)
    _ok(f"1000 predictions in one durable batch → indices {first[0]}…{first[-1]}")

    _step("3. A signed checkpoint (C2SP tlog-checkpoint, Ed25519 signed note)")
    note = ws.log.checkpoint()
    console.print("  " + note.replace("\n", "\n  ").rstrip())

    _step("4. Anchoring: the chain is the log's witness")
    console.print(f"  embedded EVM chain in {ws.path / 'chain.sqlite'} (no node to start)")
    first_anchor = ws.anchor()
    _ok(
        f"checkpoint of size {first_anchor.size} anchored in block {first_anchor.block_number},"
        f" tx {first_anchor.tx_hash[:18]}…, {first_anchor.gas_used:,} gas"
    )
    _ok("one transaction covers every entry in the tree, however many")

    _step("5. Receipts: anyone can verify inclusion, and the anchor")
    receipts = {}
    reg = ws.registry()
    for i in indices:
        receipts[i] = ws.receipt(i)
        res = verify_receipt(receipts[i], ws.log.get(i), ws.verifier_key, ws.trusted_keys())
        chk = check_anchor(res.checkpoint, ws.verifier, reg)
        pt = res.statement["predicateType"] if res.statement else "?"
        _ok(
            f"entry {i} is in the tree of size {res.checkpoint.size} ({pt}),"
            f" anchored in block {chk.block_number}"
        )
    console.print("  receipt (c2sp.org/tlog-proof@v1) for entry 1:")
    console.print("  " + receipts[indices[1]].replace("\n", "\n  ").rstrip(), style="dim")

    _step("6. The log only grows: consistency between two checkpoints, checked on chain")
    old = Checkpoint.from_note(note)
    ws.record(
        statement(
            [{"name": "model.bin", "digest": _digest(model)}],
            "https://ailedger.dev/deployment/v1",
            {"env": "staging"},
        )
    )
    new = Checkpoint.from_note(ws.log.checkpoint())
    proof = ws.log.consistency_proof(old.size, new.size)
    merkle.verify_consistency(old.size, new.size, proof, old.root, new.root)
    _ok(f"tree {new.size} extends tree {old.size} ({len(proof)} hashes prove it)")
    second = ws.anchor()
    _ok(
        f"anchored size {second.size}: the contract verified that proof with the SHA-256"
        f" precompile ({second.gas_used:,} gas)"
    )

    _step("7. The chain refuses to rewrite history, even from the log's owner")
    log_id = log_id_of(ws.origin)
    entries = [ws.log.get(i) for i in range(new.size)]
    forged = list(entries)
    forged[1] = forged[1].replace(b"payload", b"PAYLOAD", 1)  # a different history
    try:
        reg.anchor(log_id, new.size, merkle.root(forged), [])
    except ChainError as e:
        _caught(f"forged history of the same size: {e}")
    else:
        raise DemoFailedError("the chain accepted a forged checkpoint of the same size")
    forged.append(b"one more")
    hashes = [merkle.leaf_hash(x) for x in forged]
    try:
        reg.anchor(
            log_id,
            len(forged),
            merkle.root(forged),
            merkle.consistency_proof(new.size, hashes),
        )
    except ChainError as e:
        _caught(f"forged history that grows: {e}")
    else:
        raise DemoFailedError("the chain accepted a forged extension")
    try:
        reg.anchor(log_id, old.size, old.root, [])
    except ChainError as e:
        _caught(f"rollback to size {old.size}: {e}")
    else:
        raise DemoFailedError("the chain accepted a rollback")

    _step("8. Tampering: flip one byte of a stored entry")
    target = indices[1]
    ws.close()
    db = sqlite3.connect(ws.path / "log.sqlite")
    data = bytearray(db.execute("SELECT data FROM entries WHERE idx=?", (target,)).fetchone()[0])
    pos = data.index(b'"payload":"') + 20
    data[pos] ^= 0x01
    db.execute("UPDATE entries SET data=? WHERE idx=?", (bytes(data), target))
    db.commit()
    db.close()
    console.print(f"  flipped byte {pos} of entry {target} directly in log.sqlite")
    ws = Workspace.open(ws.path)
    rep = ws.log.fsck()
    if rep.ok:
        raise DemoFailedError("fsck did not notice the modified entry")
    for p in rep.problems[:3]:
        _caught(f"fsck: {p}")
    if len(rep.problems) > 3:
        console.print(f"    … and {len(rep.problems) - 3} more (every hash above it changes too)")
    try:
        verify_receipt(receipts[target], ws.log.get(target), ws.verifier_key)
    except VerificationError as e:
        _caught(f"receipt verification: {e}")
    else:
        raise DemoFailedError("a receipt verified against a modified entry")
    forged_receipt = receipts[indices[0]].replace(
        base64.b64encode(old.root).decode(), base64.b64encode(bytes(32)).decode()
    )
    try:
        verify_receipt(forged_receipt, ws.log.get(indices[0]), ws.verifier_key)
    except VerificationError as e:
        _caught(f"forged checkpoint root: {e}")
    else:
        raise DemoFailedError("a receipt with a forged checkpoint verified")
    ws.close()
