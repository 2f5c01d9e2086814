"""``ailedger swarm``: create, join, inspect and run decentralised training swarms.

A thin layer over :mod:`ailedger._swarm.runner` and the ``SwarmRounds`` contract; the round
protocol and the statements it records are in docs/swarm.md.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import InputError

if TYPE_CHECKING:
    from .._swarm.params import Params

Home = Annotated[
    Path | None,
    typer.Option("--home", help="Workspace folder (default: $AILEDGER_HOME or ./.ailedger)."),
]

_MAGIC = b"ailedger-params/v1\n"


def load_params_file(path: Path) -> bytes:
    """The canonical encoding of a parameters file: ``ailedger-params/v1`` bytes or ``.npz``.

    @raise InputError: unreadable file or not parameters.
    """
    from .._swarm import encode
    from .._swarm.params import decode

    try:
        data = path.read_bytes()
    except OSError as e:
        raise InputError(f"{path}: {e.strerror}") from None
    if data.startswith(_MAGIC):
        decode(data)  # strict: refuses anything that is not one canonical encoding
        return data
    if data.startswith(b"PK"):
        import io

        import numpy as np

        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                params: Params = {k: z[k] for k in z.files}
        except Exception as e:
            raise InputError(f"{path}: not a readable .npz: {e}") from None
        return encode(params)
    raise InputError(f"{path}: not an ailedger-params/v1 file nor a NumPy .npz archive")


def load_train(spec: str) -> Any:
    """``module:function`` → the function (the current folder is importable)."""
    mod_name, _, fn_name = spec.partition(":")
    if not mod_name or not fn_name:
        raise InputError(f"--train must be module:function, got {spec!r}")
    if "" not in sys.path:
        sys.path.insert(0, "")
    try:
        mod = importlib.import_module(mod_name)
    except Exception as e:
        raise InputError(f"cannot import {mod_name!r}: {type(e).__name__}: {e}") from None
    fn = getattr(mod, fn_name, None)
    if not callable(fn):
        raise InputError(f"{mod_name} has no function {fn_name!r}")
    return fn


def _no_training(params: Params, r: int) -> tuple[Params, int]:
    raise InputError("no training function given")


def register(app: typer.Typer) -> None:
    """Add the ``swarm`` commands to the root app."""
    from .app import _open, _out

    swarm = typer.Typer(
        help="Decentralised training: swarms coordinated on chain (SwarmRounds).",
        no_args_is_help=True,
    )
    app.add_typer(swarm, name="swarm")

    @swarm.command("create")
    def create_cmd(
        members: Annotated[str, typer.Option(help="Member addresses, comma-separated.")],
        quorum: Annotated[int, typer.Option(help="Submissions of one digest that finalise.")],
        init: Annotated[
            Path, typer.Option(help="Initial parameters (ailedger-params/v1 or .npz).")
        ],
        rule: Annotated[str, typer.Option(help="fedavg | median | trimmed_mean | krum")] = "fedavg",
        param: Annotated[
            int | None, typer.Option(help="trimmed_mean: trimmed per end; krum: f.")
        ] = None,
        commit_window: Annotated[int, typer.Option(help="Seconds for commits.")] = 600,
        submit_window: Annotated[int, typer.Option(help="Seconds for submissions.")] = 600,
        home: Home = None,
    ) -> None:
        """Create a swarm; the initial parameters' digest is its model spec (served publicly)."""
        from .._chain import AggregationRule
        from .._swarm.aggregate import rule_spec
        from .._swarm.runner import RULE_NAMES, publish

        if rule not in RULE_NAMES:
            raise InputError(f"unknown rule {rule!r}; use one of {', '.join(RULE_NAMES)}")
        lib_param = None if rule in ("fedavg", "median") else param
        rule_spec(rule, lib_param)  # one clear error for a missing or bad parameter
        addrs = [a.strip() for a in members.split(",") if a.strip()]
        if not addrs:
            raise InputError("--members needs at least one address")
        data = load_params_file(init)
        with _open(home) as ws:
            spec = publish(ws, data)
            sid, _ = ws.swarm_rounds().create_swarm(
                bytes.fromhex(spec), AggregationRule(RULE_NAMES.index(rule)), int(param or 0),
                addrs, quorum=quorum, commit_window=commit_window, submit_window=submit_window,
            )
            _out(f"swarm {sid}: {len(addrs)} members, quorum {quorum}, rule {rule}"
                 f", model spec sha256:{spec}")

    @swarm.command("join")
    def join_cmd(
        swarm_id: Annotated[int, typer.Argument(metavar="SWARM")],
        node: Annotated[str, typer.Option(help="URL of this member's `ailedger serve` node.")],
        home: Home = None,
    ) -> None:
        """Join a swarm, registering this member's node URL (the last join starts round 0)."""
        from .._swarm.runner import SwarmMember

        with _open(home) as ws:
            m = SwarmMember(ws, swarm_id, train=_no_training, node_url=node)
            m.join()
            info = m.info()
            started = "started" if info.started else "waiting for members"
            _out(f"joined swarm {swarm_id} with {node} ({info.joined_count}/"
                 f"{info.member_count} joined, {started})")

    @swarm.command("status")
    def status_cmd(
        swarm_id: Annotated[int, typer.Argument(metavar="SWARM")],
        home: Home = None,
    ) -> None:
        """Show a swarm: rule, members, settled rounds with digests, misses and minorities."""
        from .._swarm.runner import SwarmMember

        with _open(home) as ws:
            m = SwarmMember(ws, swarm_id, train=_no_training)
            info = m.info()
            sw = m.sw
            g = info.global_digest.hex() if info.global_digest else "-"
            _out(f"swarm {swarm_id}: rule {m.rule_spec}, quorum {info.quorum}/"
                 f"{info.member_count}, windows {info.commit_window}s+{info.submit_window}s")
            _out(f"model spec sha256:{m.model_spec}")
            _out(f"current round {info.current_round}"
                 f"{'' if info.started else ' (not started)'}, finalised rounds "
                 f"{info.finalized_rounds}, global sha256:{g}")
            for a in sw.members(swarm_id):
                url = sw.node_url(swarm_id, a) or "(not joined)"
                _out(f"  member {a} {url} misses={sw.misses(swarm_id, a)}"
                     f" minority={sw.minority(swarm_id, a)}")
            for o in sw.history(swarm_id, from_block=ws.deployment.deployed_at_block):
                d = o.global_digest.hex() if o.global_digest else "-"
                extra = ""
                if o.missed:
                    extra += f" missed={','.join(o.missed)}"
                if o.minority:
                    extra += " minority=" + ",".join(f"{a}:{x.hex()[:16]}" for a, x in o.minority)
                _out(f"  round {o.round} {o.status.name.lower()} sha256:{d}"
                     f" supporters={len(o.supporters)}{extra}")

    @swarm.command("run")
    def run_cmd(
        swarm_id: Annotated[int, typer.Argument(metavar="SWARM")],
        train: Annotated[
            str, typer.Option(help="module:function; gets (params, round), returns"
                              " (params, num_examples).")
        ],
        rounds: Annotated[int, typer.Option(help="Rounds to take part in.")] = 1,
        node: Annotated[
            str | None, typer.Option(help="This member's node URL (joins if not joined).")
        ] = None,
        out: Annotated[
            Path | None, typer.Option(help="Write the final global parameters here.")
        ] = None,
        dp_clip: Annotated[float | None, typer.Option(help="DP: L2 clip of the update.")] = None,
        dp_noise: Annotated[float, typer.Option(help="DP: noise multiplier σ.")] = 1.0,
        dp_delta: Annotated[float, typer.Option(help="DP: δ.")] = 1e-5,
        dataset: Annotated[
            list[str] | None,
            typer.Option(help="A registered dataset (`data add`) this member trains on;"
                         " repeatable. Named in each round's signed contribution."),
        ] = None,
        home: Home = None,
    ) -> None:
        """Take part in rounds: train, commit, aggregate, submit, record each round."""
        from .._swarm import encode
        from .._swarm.dp import DPConfig
        from .._swarm.runner import SwarmMember

        if rounds < 1:
            raise InputError("--rounds must be at least 1")
        fn = load_train(train)
        dp = DPConfig(clip=dp_clip, noise_multiplier=dp_noise, delta=dp_delta) if dp_clip else None
        with _open(home) as ws:
            m = SwarmMember(ws, swarm_id, train=fn, node_url=node, dp=dp,
                            datasets=list(dataset or []))
            if not m.sw.node_url(swarm_id, ws.address):
                m.join(node)
            for _ in range(rounds):
                res = m.step()
                skipped = f", skipped {len(res.skipped)}" if res.skipped else ""
                _out(f"round {res.round} {res.status}: global sha256:{res.global_digest}"
                     f" (used {len(res.used)}{skipped}; statement {res.statement_index})")
            if out is not None:
                out.write_bytes(encode(m.global_params()))
                _out(f"wrote {out}")

    @swarm.command("prove")
    def prove_cmd(
        swarm_id: Annotated[int, typer.Argument(metavar="SWARM")],
        round: Annotated[int, typer.Argument(metavar="ROUND")],
        output: Annotated[
            str, typer.Option("-o", "--output", help="Proof file, or - for stdout.")
        ] = "-",
        home: Home = None,
    ) -> None:
        """Write a self-contained proof of this member's contribution to ROUND (anchors first)."""
        import json

        from .._swarm.contribution import prove
        from .lineage import _write

        if swarm_id < 0 or round < 0:
            raise InputError("SWARM and ROUND must be non-negative")
        with _open(home) as ws:
            doc = prove(ws, swarm_id, round)
        _write(output, (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode())

    @swarm.command("check-proof")
    def check_proof_cmd(
        proof: Annotated[Path, typer.Argument(metavar="FILE", help="From `swarm prove`.")],
        chain: Annotated[
            str | None,
            typer.Option(help="Chain to check on: JSON-RPC URL or embedded chain file"
                         " (default: this workspace's)."),
        ] = None,
        contracts: Annotated[
            Path | None, typer.Option(help="With --chain: the deployment.json to trust.")
        ] = None,
        home: Home = None,
    ) -> None:
        """Verify a contribution proof: signatures, receipts, anchors and the chain."""
        from .._swarm.contribution import check_proof
        from .app import _read_input

        data = _read_input(str(proof))
        if (chain is None) != (contracts is None):
            raise InputError("--chain and --contracts go together")
        if chain is not None and contracts is not None:
            res = _check_on(data, chain, contracts)
        else:
            with _open(home) as ws:
                res = check_proof(
                    data, swarm_rounds=ws.swarm_rounds(), identities=ws.identity_registry(),
                    checkpoints=ws.registry(),
                )  # fmt: skip
        names = ", ".join(
            f"{d['name']} (root {d['fingerprint']['root'][:16]}…)" for d in res.datasets
        ) or "no datasets named"
        _out(f"✔ {res.member} contributed update sha256:{res.update} to swarm {res.swarm_id}"
             f" round {res.round}")
        _out(f"  datasets: {names}")
        _out(f"  round finalised to sha256:{res.global_digest}; log checkpoint size"
             f" {res.tree_size} anchored in block {res.anchor_block}")
        if not res.backed_on_chain:
            _out("  note: the member did not submit before the quorum finalised; that the"
                 " final model includes its update rests on its own signed round statement")


def _check_on(data: bytes, chain: str, contracts: Path) -> Any:
    from .._anchor import chain_spec, open_backend, registry
    from .._chain import Deployment, IdentityRegistryClient, SwarmRoundsClient
    from .._swarm.contribution import check_proof

    backend = open_backend(chain_spec(chain))
    try:
        dep = Deployment.load(str(contracts))
        dep.validate(backend)
        if "SwarmRounds" not in dep.contracts:
            raise InputError(f"{contracts} names no SwarmRounds contract")
        return check_proof(
            data,
            swarm_rounds=SwarmRoundsClient(backend, dep.contracts["SwarmRounds"]),
            identities=IdentityRegistryClient(backend, dep.contracts["IdentityRegistry"]),
            checkpoints=registry(backend, dep),
        )
    finally:
        backend.close()
