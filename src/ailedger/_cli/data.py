"""CLI commands for AI provenance (data). Registered on the root app by `register`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from .._workspace import Workspace

data_app = typer.Typer(
    help="Datasets: fingerprint, register, verify, prove membership.", no_args_is_help=True
)

_HomeOpt = typer.Option("--home", help="Workspace folder (default: $AILEDGER_HOME or ./.ailedger).")


def _ws(home: Path | None) -> Workspace:
    from .app import _open

    return _open(home)


def _say(text: str) -> None:
    from .app import _out

    _out(text)


@data_app.command("add")
def data_add(
    path: Annotated[Path, typer.Argument(help="A file or folder.")],
    name: Annotated[str | None, typer.Option(help="Dataset name (default: base name).")] = None,
    license: Annotated[str | None, typer.Option(help="License (e.g. an SPDX id).")] = None,
    origin: Annotated[str | None, typer.Option(help="Where the data came from.")] = None,
    prep: Annotated[
        list[str] | None, typer.Option("--prep", help="A preparation step (repeatable).")
    ] = None,
    consent: Annotated[
        list[str] | None, typer.Option(help="A consent/agreement reference (repeatable).")
    ] = None,
    records: Annotated[
        bool, typer.Option("--records", help="One leaf per CSV/TSV/JSONL record, not per file.")
    ] = False,
    encrypt: Annotated[
        bool,
        typer.Option(
            "--encrypt",
            help="Store the files encrypted (AES-256-GCM, fresh key wrapped to this workspace).",
        ),
    ] = False,
    chunk_size: Annotated[
        int | None,
        typer.Option("--chunk-size", help="Encrypted chunk size in bytes (default 1 MiB)."),
    ] = None,
    home: Annotated[Path | None, _HomeOpt] = None,
) -> None:
    """Fingerprint PATH, store its manifest and record a dataset statement."""
    from .._provenance.datasets import add_dataset
    from .._provenance.encrypted import encryption_of

    with _ws(home) as ws:
        r = add_dataset(
            ws,
            path,
            name=name,
            license=license,
            origin=origin,
            preparation=prep or (),
            consent=consent or (),
            records=records,
            encrypt=encrypt,
            chunk_size=chunk_size,
        )
        enc = encryption_of(ws, r.name, r.version) if encrypt else None
    rate = r.files / r.seconds if r.seconds > 0 else float("inf")
    if r.created:
        _say(f"registered {r.name} version {r.version}")
    else:
        _say(f"unchanged: {r.name} version {r.version} has the same data and metadata")
    _say(f"name:      {r.name}")
    _say(f"statement: {r.index}")
    _say(f"root:      {r.root}")
    _say(f"manifest:  sha256:{r.manifest_digest}")
    _say(f"mode:      {r.mode}")
    _say(f"leaves:    {r.leaves}")
    _say(f"files:     {r.files} ({r.bytes} bytes)")
    _say(f"speed:     {rate:,.0f} files/s in {r.seconds:.3f} s, cache hits {r.cache_hits}")
    if enc is not None:
        sealed_bytes = sum(f.sealed_size for f in enc.files)
        _say(
            f"encrypted: ailedger-sealed/v1 AES-256-GCM, {enc.chunk}-byte chunks,"
            f" {len(enc.files)} sealed blobs ({sealed_bytes} bytes)"
        )
        _say(f"index:     sha256:{enc.index_digest}")


@data_app.command("decrypt")
def data_decrypt(
    name: Annotated[str, typer.Argument(help="Registered encrypted dataset name.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (new or empty).")],
    version: Annotated[
        int | None, typer.Option("--version", help="Dataset version (default: latest).")
    ] = None,
    home: Annotated[Path | None, _HomeOpt] = None,
) -> None:
    """Decrypt an encrypted dataset into OUT and check it re-fingerprints to its root."""
    from .._provenance.encrypted import decrypt_dataset

    with _ws(home) as ws:
        r = decrypt_dataset(ws, name, out, version=version)
    _say(f"decrypted {r.files} file(s), {r.bytes} bytes, into {r.out_dir}")
    _say(f"ok: root {r.root} matches the registered dataset {name}")


@data_app.command("wrap-key")
def data_wrap_key(
    name: Annotated[str, typer.Argument(help="Registered encrypted dataset name.")],
    recipient: Annotated[
        str, typer.Argument(help="The recipient's X25519 public key, 64 hex digits.")
    ],
    version: Annotated[
        int | None, typer.Option("--version", help="Dataset version (default: latest).")
    ] = None,
    home: Annotated[Path | None, _HomeOpt] = None,
) -> None:
    """Wrap the dataset's key to RECIPIENT (HPKE) and print the wrapped-key document."""
    import sys

    from .._provenance.encrypted import wrap_dataset_key
    from ..errors import InputError

    try:
        pub = bytes.fromhex(recipient.strip())
    except ValueError as e:
        raise InputError("the recipient X25519 public key must be 64 hex digits") from e
    if len(pub) != 32:
        raise InputError("the recipient X25519 public key must be 64 hex digits")
    with _ws(home) as ws:
        doc = wrap_dataset_key(ws, name, pub, version=version)
    sys.stdout.write(doc + "\n")


@data_app.command("verify")
def data_verify(
    name: Annotated[str, typer.Argument(help="Registered dataset name.")],
    path: Annotated[Path, typer.Argument(help="The data to compare with it.")],
    home: Annotated[Path | None, _HomeOpt] = None,
) -> None:
    """Re-fingerprint PATH and list files changed, added and removed; exit 1 on any."""
    from .._provenance.datasets import verify_dataset

    with _ws(home) as ws:
        d = verify_dataset(ws, name, path)
    for p in d.changed:
        _say(f"changed: {p}")
    for p in d.added:
        _say(f"added:   {p}")
    for p in d.removed:
        _say(f"removed: {p}")
    if d.records_added is not None and (d.records_added or d.records_removed):
        _say(f"records: {d.records_added} added, {d.records_removed} removed")
    if d.ok:
        _say(f"ok: {path} matches dataset {name} (root {d.root})")
        return
    n = len(d.changed) + len(d.added) + len(d.removed)
    _say(f"FAIL: {n} file(s) differ; root {d.current_root} != registered {d.root}")
    raise typer.Exit(1)


@data_app.command("prove")
def data_prove(
    name: Annotated[str, typer.Argument(help="Registered dataset name.")],
    file: Annotated[
        str | None, typer.Argument(help="The file's path in the dataset (files mode).")
    ] = None,
    record: Annotated[
        int | None, typer.Option("--record", help="Record number, from 0 (records mode).")
    ] = None,
    home: Annotated[Path | None, _HomeOpt] = None,
) -> None:
    """Print a JSON proof that FILE (or record N) is in the registered dataset."""
    import sys

    from .._provenance.datasets import prove_member
    from ..errors import InputError

    if (file is None) == (record is None):
        raise InputError("pass either FILE or --record N")
    with _ws(home) as ws:
        sys.stdout.write(prove_member(ws, name, file=file, record=record))


@data_app.command("check-proof")
def data_check_proof(
    proof: Annotated[str, typer.Argument(help="A proof from `data prove`, or -.")],
    file: Annotated[
        Path | None, typer.Option("--file", help="Check the leaf describes this file (record).")
    ] = None,
    verifier_key: Annotated[
        str | None, typer.Option(help="The log's verifier key (default: this workspace's).")
    ] = None,
    home: Annotated[Path | None, _HomeOpt] = None,
) -> None:
    """Verify a membership proof: leaf in root, root in a signed logged statement."""
    from .._provenance.datasets import check_member_proof
    from .app import _read_input

    doc = _read_input(proof)
    fb = _read_input(str(file)) if file is not None else None
    if verifier_key is None:
        with _ws(home) as ws:
            verifier_key = ws.verifier_key
    r = check_member_proof(doc, verifier_key=verifier_key.strip(), file_bytes=fb)
    what = f"record {r.leaf_index}" if r.mode == "records" else f"file {r.path}"
    _say(f"OK: {what} is leaf {r.leaf_index} of {r.leaves} in dataset {r.dataset}")
    _say(f"root: {r.root}")
    _say(f"statement {r.index} is in the log at tree size {r.tree_size}")
    if file is not None:
        _say(f"bytes of {file} match the leaf")


@data_app.command("list")
def data_list(
    all_versions: Annotated[
        bool, typer.Option("--all", help="Every version, not only the latest.")
    ] = False,
    home: Annotated[Path | None, _HomeOpt] = None,
) -> None:
    """List registered datasets (latest version of each name)."""
    from .._provenance.datasets import list_datasets

    with _ws(home) as ws:
        rows = list_datasets(ws)
    if not all_versions:
        latest = {r.name: r for r in rows}
        rows = list(latest.values())
    if not rows:
        _say("no datasets registered")
        return
    for r in rows:
        _say(
            f"{r.name}\tv{r.version}\tstatement {r.index}\t{r.mode}\t{r.leaves} leaves"
            f"\t{r.files} files\t{r.bytes} bytes\t{r.root}\t{r.registered_at}"
        )


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.add_typer(data_app, name="data")
