"""CLI commands for the HTTP node (`serve`) and fetching shared data. Registered by `register`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

_HomeOpt = typer.Option("--home", help="Workspace folder (default: $AILEDGER_HOME or ./.ailedger).")


def register(app: typer.Typer) -> None:
    """Add ``serve`` to the root app and ``fetch`` to the ``data`` group."""
    from .app import _open, _out
    from .data import data_app

    @app.command("serve")
    def serve_cmd(
        host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
        port: Annotated[int, typer.Option(help="Port (0: a free one, printed).")] = 8000,
        home: Annotated[Path | None, _HomeOpt] = None,
    ) -> None:
        """Serve the log (C2SP tlog-tiles), receipts, blobs and the data gateway over HTTP."""
        import sys

        from .._node import serve
        from .._workspace import resolve_home

        def announce(line: str) -> None:
            _out(line)
            sys.stdout.flush()

        serve(resolve_home(home), host, port, announce=announce)

    @data_app.command("fetch")
    def fetch_cmd(
        target: Annotated[
            str, typer.Argument(help="Offer (N or offer:N) or request (request:N) granted to you.")
        ],
        url: Annotated[str, typer.Option("--from", help="The owner's node URL.")],
        out: Annotated[Path, typer.Option("-o", "--out", help="New or empty output folder.")],
        purpose: Annotated[
            str | None, typer.Option(help="The purpose of the grant (default: the grant's).")
        ] = None,
        home: Annotated[Path | None, _HomeOpt] = None,
    ) -> None:
        """Download a granted dataset, decrypt it, verify its fingerprint, log the access."""
        from .._node.client import fetch

        with _open(home) as ws:
            r = fetch(ws, url, target, out, purpose=purpose)
        _out(f"fetched {r.files} file(s), {r.bytes} bytes, into {r.out_dir}")
        _out(f"ok: root {r.root} matches the owner's signed dataset statement")
        _out(f"grant: request {r.request_id} (offer {r.offer_id}) for {r.purpose!r}")
        _out(f"access recorded at index {r.access_index} of this log"
             + (f" (owner's log: {r.provider_access_index})" if r.provider_access_index is not None
                else ""))  # fmt: skip
