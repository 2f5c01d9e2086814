"""CLI commands for AI provenance (runs). Registered on the root app by `register`.

``ailedger run -- CMD``, ``ailedger eval``, ``ailedger prediction proof|check-proof``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import Error, InputError


def _home_option() -> Any:
    return typer.Option("--home", help="Workspace folder (default: $AILEDGER_HOME or ./.ailedger).")


HomeOpt = Annotated[Path | None, _home_option()]


def _kv(items: list[str] | None, what: str) -> dict[str, Any]:
    """``k=v`` pairs; values that parse as JSON numbers/booleans/null become those."""
    import json

    out: dict[str, Any] = {}
    for item in items or []:
        k, sep, v = item.partition("=")
        if not sep or not k:
            raise InputError(f"{what} must be KEY=VALUE, got {item!r}")
        try:
            parsed = json.loads(v)
            out[k] = parsed if isinstance(parsed, (int, float, bool)) or parsed is None else v
        except ValueError:
            out[k] = v
    return out


def _err(msg: str) -> None:
    sys.stderr.write(f"ailedger: {msg}\n")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    pred_app = typer.Typer(
        help="Per-prediction proofs from logged prediction batches.", no_args_is_help=True
    )
    app.add_typer(pred_app, name="prediction")

    @app.command(
        "run",
        context_settings={"allow_interspersed_args": False},
    )
    def run_cmd(
        command: Annotated[
            list[str], typer.Argument(help="The command to run, after `--`.", show_default=False)
        ],
        name: Annotated[
            str | None, typer.Option("--name", help="Run name (default: the command's name).")
        ] = None,
        input_: Annotated[
            list[str] | None,
            typer.Option("--input", help="An input: a registered dataset name or a file."),
        ] = None,
        output: Annotated[
            list[Path] | None,
            typer.Option("--output", help="An output file the command must create (subject)."),
        ] = None,
        param: Annotated[
            list[str] | None, typer.Option("--param", help="A hyperparameter KEY=VALUE.")
        ] = None,
        home: HomeOpt = None,
    ) -> None:
        """Run COMMAND and record it as a run: inputs hashed before, outputs after.

        Exits with the command's exit code; a non-zero exit, a missing --output, or an
        --output that existed before and that the command did not modify is recorded as
        a failed run. Arguments that are existing files (the script) are recorded as code.
        """
        from .._provenance import types as ty
        from .._provenance.tracking import Run
        from .app import _open

        if not command:
            raise InputError("no command given: ailedger run [OPTIONS] -- COMMAND...")
        params = _kv(param, "--param")
        with _open(home) as ws:
            r = Run(
                name or Path(command[0]).name,
                params=params,
                workspace=ws,
                strict=True,
                build_type=ty.COMMAND_BUILD_TYPE,
                command=list(command),
                script="",
                capture_packages=False,
                on_warning=lambda m: _err(f"warning: {m}"),
            )
            r.__enter__()
            for x in input_ or []:
                r.use(x)
            outs = list(output or [])
            for arg in _code_args(command, [*(input_ or []), *map(str, outs)]):
                r.use(arg, kind=ty.KIND_CODE)
            before = {p: _stat_key(p) for p in outs}
            code, error = _run_child(command)
            if error is None and code != 0:
                error = {"type": "ExitCode", "message": f"command exited with code {code}"}
            missing = [str(p) for p in outs if not p.is_file()]
            # An --output that was already there and that the command left alone is not
            # something this run produced: recording it would vouch for a stale file.
            stale = [
                str(p)
                for p in outs
                if p.is_file() and before[p] is not None and _stat_key(p) == before[p]
            ]
            for p in outs:
                if p.is_file() and str(p) not in stale:
                    r.log_output(p)
            if missing and error is None:
                error = {
                    "type": "MissingOutput",
                    "message": f"output not created: {', '.join(missing)}",
                }
            if stale and error is None:
                error = {
                    "type": "OutputNotProduced",
                    "message": f"output not produced by the command: {', '.join(stale)}",
                }
            index = r.finish(error=error, exit_code=code)
        where = f"recorded as failed run entry {index}"
        if missing and code == 0:
            raise InputError(f"the command did not create {', '.join(missing)}; {where}")
        if stale and code == 0:
            raise InputError(
                f"output not produced by the command: {', '.join(stale)} existed before and"
                f" was not modified; {where}"
            )
        if error is not None and error.get("type") == "CommandNotFound":
            raise InputError(f"{error['message']}; {where}")
        status = "failed" if error is not None else "succeeded"
        _err(f"recorded {status} run {r.name!r} as entry {index} ({r.invocation_id})")
        if code != 0:
            raise typer.Exit(code)

    @app.command("eval")
    def eval_cmd(
        model: Annotated[str, typer.Option("--model", help="Model file, or sha256:<hex>.")],
        dataset: Annotated[
            str, typer.Option("--dataset", help="Registered dataset name (or a file).")
        ],
        metric: Annotated[list[str], typer.Option("--metric", help="A metric KEY=VALUE (repeat).")],
        run: Annotated[
            str | None, typer.Option("--run", help="invocationId of the run that made it.")
        ] = None,
        home: HomeOpt = None,
    ) -> None:
        """Record an evaluation of MODEL on DATASET; print its log index."""
        from .._provenance.tracking import record_evaluation
        from .app import _open, _out

        metrics = _kv(metric, "--metric")
        if not metrics:
            raise InputError("give at least one --metric KEY=VALUE")
        with _open(home) as ws:
            _out(str(record_evaluation(ws, model, dataset, metrics, run=run)))

    @pred_app.command("proof")
    def prediction_proof_cmd(
        target: Annotated[
            str,
            typer.Argument(help="A batch statement's log index, or a model file / sha256:<hex>."),
        ],
        position: Annotated[
            int | None, typer.Option("--position", help="Position in the batch (with an index).")
        ] = None,
        input_file: Annotated[
            Path | None, typer.Option("--input", help="The prediction's input (bytes of FILE).")
        ] = None,
        input_sha256: Annotated[
            str | None, typer.Option("--input-sha256", help="The input's sha256 (hex).")
        ] = None,
        output_file: Annotated[
            Path | None, typer.Option("--output", help="The prediction's output (FILE).")
        ] = None,
        out: Annotated[
            Path | None, typer.Option("-o", "--out", help="Write the proof here (default stdout).")
        ] = None,
        home: HomeOpt = None,
    ) -> None:
        """Print the proof that one prediction was logged: leaf, batch proof, receipt."""
        from .._provenance.predictions import find_prediction, prediction_proof, value_sha256
        from .._provenance.tracking import file_digest
        from .app import _open, _read_input

        with _open(home) as ws:
            if target.isdigit():
                if position is None:
                    raise InputError("with a batch index, give --position N")
                index, pos = int(target), position
            else:
                if position is not None:
                    raise InputError("--position goes with a batch index, not a model")
                s = target[7:] if target.startswith("sha256:") else None
                model = s if s is not None else file_digest(target)
                if input_sha256 is None and input_file is None:
                    raise InputError("with a model, give --input FILE or --input-sha256 HEX")
                ih = (
                    input_sha256.lower()
                    if input_sha256 is not None
                    else value_sha256(_read_input(str(input_file)))
                )
                oh = value_sha256(_read_input(str(output_file))) if output_file else None
                index, pos = find_prediction(ws, model, input_sha256=ih, output_sha256=oh)
            if pos < 0:
                raise InputError("--position must be a non-negative integer")
            doc = prediction_proof(ws, index, pos)
        if out is None:
            sys.stdout.write(doc)
        else:
            try:
                out.write_text(doc)
            except OSError as e:
                raise InputError(f"cannot write {out}: {e.strerror}") from e

    @pred_app.command("check-proof")
    def prediction_check_cmd(
        proof: Annotated[str, typer.Argument(help="A prediction proof file, or -.")],
        verifier_key: Annotated[
            str | None,
            typer.Option("--verifier-key", help="The log's verifier key (default: workspace's)."),
        ] = None,
        input_file: Annotated[
            Path | None, typer.Option("--input", help="Check the input was FILE's bytes.")
        ] = None,
        output_file: Annotated[
            Path | None, typer.Option("--output", help="Check the output was FILE's bytes.")
        ] = None,
        home: HomeOpt = None,
    ) -> None:
        """Verify a prediction proof offline; exit non-zero naming what failed."""
        from .._provenance.predictions import check_prediction_proof
        from .app import _open, _out, _read_input

        text = _read_input(proof)
        if verifier_key is None:
            try:
                with _open(home) as ws:
                    verifier_key = ws.verifier_key
            except Error as e:
                raise InputError(f"{e}; or pass --verifier-key") from e
        inp = _read_input(str(input_file)) if input_file is not None else None
        outp = _read_input(str(output_file)) if output_file is not None else None
        res = check_prediction_proof(text, verifier_key=verifier_key, input=inp, output=outp)
        _out(
            f"OK: prediction {res.position} of batch entry {res.batch_index} is in"
            f" {res.origin} at tree size {res.tree_size}"
        )
        _out(f"model: {res.model.get('name')} sha256:{res.model.get('digest', {}).get('sha256')}")
        _out(f"input sha256:  {res.leaf['input_sha256']}" + (" (matches)" if inp else ""))
        _out(f"output sha256: {res.leaf['output_sha256']}" + (" (matches)" if outp else ""))
        _out(f"time: {res.leaf['time']}")


def _code_args(command: list[str], skip: list[str]) -> list[str]:
    """The command's arguments that are existing regular files (the program, a script,
    a config), in order, without duplicates and without the declared inputs/outputs:
    they are the code the command ran, recorded as ``code`` dependencies."""
    import os

    seen = {os.path.realpath(s) for s in skip}
    out: list[str] = []
    for arg in command:
        if not arg:
            continue
        try:
            if not os.path.isfile(arg):
                continue
        except (OSError, ValueError):  # e.g. an embedded NUL: not a path
            continue
        real = os.path.realpath(arg)
        if real not in seen:
            seen.add(real)
            out.append(arg)
    return out


def _stat_key(p: Path) -> tuple[int, int, int, int] | None:
    """(size, mtime_ns, inode, ctime_ns) of an existing file, else None. Any write to the
    file or replacement of it changes this key."""
    try:
        st = p.stat()
    except OSError:
        return None
    if not p.is_file():
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)


def _run_child(command: list[str]) -> tuple[int, dict[str, Any] | None]:
    """Run the command with inherited stdio; (exit code, error or None)."""
    try:
        proc = subprocess.Popen(command)
    except FileNotFoundError:
        return 127, {"type": "CommandNotFound", "message": f"command not found: {command[0]}"}
    except PermissionError:
        return 126, {"type": "CommandNotFound", "message": f"cannot execute: {command[0]}"}
    except OSError as e:
        return 126, {"type": "OSError", "message": f"cannot run {command[0]}: {e.strerror}"}
    while True:
        try:
            rc = proc.wait()
            break
        except KeyboardInterrupt:
            continue  # the child got the same SIGINT; record how it ends
    if rc < 0:  # killed by a signal: the shell's convention
        sig = -rc
        return 128 + sig, {"type": "Signal", "message": f"command killed by signal {sig}"}
    return rc, None
