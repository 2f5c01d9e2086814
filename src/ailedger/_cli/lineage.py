"""CLI commands for AI provenance (lineage). Registered on the root app by `register`.

- ``ailedger lineage ARTIFACT``: the graph as a tree (model ← run ← datasets; evaluations,
  predictions; who signed, when anchored);
- ``ailedger verify ARTIFACT [--bundle FILE --verifier-key KEY|--trust-bundle-key]
  [--offline]``: a ✔/✘ checklist, exit 0 only if every check passed;
- ``ailedger export ARTIFACT -o FILE [--format bundle|prov-json|intoto]``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.tree import Tree

    from .._provenance.lineage import LineageGraph, StatementNode


# Same as app.Home; defined here because typer resolves annotations in module globals.
Home = Annotated[
    Path | None,
    typer.Option("--home", help="Workspace folder (default: $AILEDGER_HOME or ./.ailedger)."),
]


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""

    @app.command("lineage")
    def lineage_cmd(
        artifact: Annotated[str, typer.Argument(help="A file, sha256:<hex>, or a dataset name.")],
        as_json: Annotated[
            bool, typer.Option("--json", help="Print the graph as JSON instead of a tree.")
        ] = False,
        home: Home = None,
    ) -> None:
        """Draw where ARTIFACT came from: runs, datasets, evaluations, predictions, signers."""
        from .._provenance.lineage import lineage
        from .app import _open, _out

        with _open(home) as ws:
            g = lineage(ws, artifact)
        if as_json:
            _out(json.dumps(graph_json(g), indent=1, sort_keys=True))
            return
        _print(draw(g))

    @app.command("verify")
    def verify_cmd(
        artifact: Annotated[
            str | None,
            typer.Argument(
                help="A file, sha256:<hex>, or dataset name (with --bundle: default its artifact)."
            ),
        ] = None,
        bundle: Annotated[
            Path | None,
            typer.Option("--bundle", help="Verify from an export bundle, no workspace."),
        ] = None,
        offline: Annotated[
            bool, typer.Option("--offline", help="Check signatures, proofs and data, not anchors.")
        ] = False,
        chain: Annotated[
            str | None,
            typer.Option(help="Chain to check anchors on: JSON-RPC URL or embedded chain file."),
        ] = None,
        contracts: Annotated[
            Path | None, typer.Option(help="deployment.json naming the registries to trust.")
        ] = None,
        verifier_key: Annotated[
            str | None,
            typer.Option("--verifier-key", help="The log's verifier key, known out of band."),
        ] = None,
        trust_bundle_key: Annotated[
            bool,
            typer.Option(
                "--trust-bundle-key",
                help="With --bundle: accept the log key the bundle carries (a warning is"
                " printed; anyone can make a bundle with their own key).",
            ),
        ] = False,
        home: Home = None,
    ) -> None:
        """Verify every signature, proof, checkpoint, anchor and blob in ARTIFACT's lineage."""
        from .._provenance.bundle import read_bundle
        from .._provenance.verify import verify_artifact
        from ..errors import InputError, VerificationError
        from .app import _open, _out

        if contracts is not None and chain is None:
            raise InputError("--contracts needs --chain (where those contracts live)")
        if bundle is not None:
            b = read_bundle(bundle)
            if verifier_key is None and contracts is None and not trust_bundle_key:
                # Fail closed before checking anything: a bundle signed by its own
                # (attacker's) key is self-consistent, so nothing inside it can vouch for it.
                raise InputError(
                    "--bundle: nothing binds the log key the bundle carries: pass the"
                    " log's verifier key with --verifier-key (obtained out of band from the"
                    " publisher), bind it with --chain and --contracts, or accept it with"
                    " --trust-bundle-key"
                )
            rep = verify_artifact(
                b,
                artifact,
                offline=offline,
                chain=chain,
                contracts=contracts,
                verifier_key=verifier_key,
                trust_bundle_key=trust_bundle_key,
            )
        else:
            if artifact is None:
                raise InputError("name the artifact to verify (or pass --bundle FILE)")
            with _open(home) as ws:
                rep = verify_artifact(
                    ws,
                    artifact,
                    offline=offline,
                    chain=chain,
                    contracts=contracts,
                    verifier_key=verifier_key,
                )
        label = rep.name or "artifact"
        _out(f"{label} sha256:{rep.digest}")
        for c in rep.checks:
            _out("  " + c.line())
        for w in rep.warnings:
            _out(f"  ! {w}")
        if not rep.ok:
            raise VerificationError(rep.summary())
        _out(rep.summary())

    @app.command("export")
    def export_cmd(
        artifact: Annotated[str, typer.Argument(help="A file, sha256:<hex>, or a dataset name.")],
        output: Annotated[
            str, typer.Option("-o", "--output", help="Output file, or - for stdout.")
        ],
        fmt: Annotated[
            str, typer.Option("--format", help="bundle (default), prov-json or intoto.")
        ] = "bundle",
        anchor: Annotated[
            bool, typer.Option("--anchor", help="Anchor the latest checkpoint first.")
        ] = False,
        home: Home = None,
    ) -> None:
        """Write ARTIFACT's lineage for another machine or tool to verify."""
        from .._provenance import bundle as bdl
        from ..errors import InputError
        from .app import _open

        if fmt not in bdl.FORMATS:
            raise InputError(f"--format must be one of {', '.join(bdl.FORMATS)}, not {fmt!r}")
        with _open(home) as ws:
            if anchor:
                ws.anchor()
            if fmt == "bundle":
                data = bdl.dumps(bdl.export_bundle(ws, artifact))
            elif fmt == "intoto":
                data = bdl.export_intoto(ws, artifact)
            else:
                data = (
                    json.dumps(bdl.export_prov(ws, artifact), indent=1, sort_keys=True) + "\n"
                ).encode()
        _write(output, data)


def _write(output: str, data: bytes) -> None:
    from ..errors import InputError

    if output == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    p = Path(output)
    tmp = p.with_name(f".{p.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise InputError(f"cannot write {output}: {e.strerror}") from None
    sys.stderr.write(f"wrote {output} ({len(data)} bytes)\n")


def _print(tree: Tree) -> None:
    from rich.console import Console

    # Piped output is for grep and logs: one line per node, never wrapped or cut.
    width = None if sys.stdout.isatty() else 1000
    Console(highlight=False, width=width).print(tree)


# -- drawing -----------------------------------------------------------------------


def _label(n: StatementNode) -> str:
    from rich.markup import escape

    pred = n.predicate
    bits = [f"[bold]\\[{n.index}][/bold] {n.kind}"]
    if n.kind == "run":
        ext = pred.get("buildDefinition", {}).get("externalParameters", {})
        if isinstance(ext, dict) and ext.get("name"):
            bits.append(f"[cyan]{escape(str(ext['name']))}[/cyan]")
        status = next(
            (
                b.get("annotations", {}).get("status")
                for b in pred.get("runDetails", {}).get("byproducts", [])
                if isinstance(b, dict) and b.get("name") == "outcome"
            ),
            None,
        )
        if status:
            bits.append(f"({escape(str(status))})")
    elif n.kind == "dataset" and pred.get("name"):
        fp = pred.get("fingerprint", {})
        bits.append(f"[cyan]{escape(str(pred['name']))}[/cyan]")
        if isinstance(fp, dict) and fp.get("files") is not None:
            bits.append(f"{fp.get('files')} files, {fp.get('bytes')} bytes")
    elif n.kind == "evaluation":
        ds = pred.get("dataset", {})
        if isinstance(ds, dict) and ds.get("name"):
            bits.append(f"on [cyan]{escape(str(ds['name']))}[/cyan]")
        m = pred.get("metrics")
        if isinstance(m, dict) and m:
            bits.append(escape(", ".join(f"{k}={v}" for k, v in list(m.items())[:4])))
    elif n.kind == "predictions":
        bits.append(f"{pred.get('count')} predictions")
    elif n.kind in ("round", "contribution") and isinstance(pred.get("swarm"), dict):
        what = f"swarm {pred['swarm'].get('id')} round {pred.get('round')}"
        if n.kind == "round":
            out, rule = pred.get("outcome"), pred.get("rule")
            status = out.get("status") if isinstance(out, dict) else None
            rule_name = rule.get("rule") if isinstance(rule, dict) else None
            what += f" ({status}, {rule_name}, {len(pred.get('members') or [])} members)"
        else:
            names = [str(d.get("name")) for d in pred.get("datasets") or [] if isinstance(d, dict)]
            what = f"by {pred.get('member')} to {what}, datasets: {', '.join(names) or 'none'}"
        bits.append(escape(what))
    elif n.kind == "access" and n.agreement:
        bits.append(escape(n.agreement))
    else:
        bits.append(escape(n.predicate_type))
    who = n.signer or (f"keyid {n.keyids[0][:12]}…" if n.keyids else "unsigned")
    bits.append(f"— signed by [green]{escape(who)}[/green]")
    if n.time:
        bits.append(f"at {escape(n.time)}")
    bits.append(f"[dim]{escape(n.anchor)}[/dim]" if n.anchor else "[yellow]not anchored[/yellow]")
    return " ".join(bits)


MAX_TREE_DEPTH = 40  # terminals (and rich) cope badly with deeper nesting


def draw(g: LineageGraph) -> Tree:
    """The lineage as a rich Tree: producers and their inputs, then what refers to it."""
    from rich.markup import escape
    from rich.tree import Tree

    root = Tree(f"[bold]{escape(g.name or 'artifact')}[/bold] sha256:{g.digest}")

    drawn: set[int] = set()

    def add_statement(parent: Tree, i: int, seen: frozenset[int]) -> None:
        n = g.nodes[i]
        t = parent.add(_label(n))
        if i in seen:
            t.add("[dim](cycle)[/dim]")
            return
        if i in drawn:  # a shared input (one dataset, many runs): draw its history once
            t.add("[dim](inputs shown above)[/dim]")
            return
        if len(seen) >= MAX_TREE_DEPTH:
            t.add(f"[dim]… deeper history not drawn (use --json for all {len(g.nodes)})[/dim]")
            return
        drawn.add(i)
        for dep in n.dependencies:
            kind = dep.ref.kind or "input"
            d = t.add(
                f"← {escape(kind)} [cyan]{escape(dep.ref.name or '')}[/cyan]"
                f" sha256:{dep.ref.digest[:16]}…"
            )
            if not dep.producers and kind == "member-dataset":
                d.add("[dim]registered in that member's log (its contribution is verified)[/dim]")
            elif not dep.producers:
                d.add("[dim]no recorded history[/dim]")
            for j in dep.producers:
                add_statement(d, j, seen | {i})

    if g.producers:
        made = root.add("[bold]made by[/bold]")
        for i in g.producers:
            add_statement(made, i, frozenset())
    groups: dict[str, list[int]] = {}
    for i in g.referrers:
        n = g.nodes[i]
        key = {
            "run": "used by runs",
            "evaluation": "evaluations",
            "predictions": "predictions",
        }.get(n.kind, "other statements")
        groups.setdefault(key, []).append(i)
    for key in ("evaluations", "predictions", "used by runs", "other statements"):
        if key in groups:
            sub = root.add(f"[bold]{key}[/bold]")
            for i in groups[key]:
                sub.add(_label(g.nodes[i]))
    return root


def graph_json(g: LineageGraph) -> dict[str, Any]:
    """A plain-JSON form of the graph (``lineage --json``)."""
    return {
        "artifact": {"name": g.name, "digest": {"sha256": g.digest}},
        "producers": g.producers,
        "referrers": g.referrers,
        "statements": [
            {
                "index": n.index,
                "predicateType": n.predicate_type,
                "kind": n.kind,
                "keyids": list(n.keyids),
                "signer": n.signer,
                "time": n.time,
                "anchor": n.anchor,
                "subjects": [{"name": r.name, "digest": {"sha256": r.digest}} for r in n.subjects],
                "dependencies": [
                    {
                        "name": d.ref.name,
                        "kind": d.ref.kind,
                        "digest": {"sha256": d.ref.digest},
                        "producers": d.producers,
                    }
                    for d in n.dependencies
                ],
            }
            for n in g
        ],
    }
