"""The HTTP node (``ailedger serve``): tlog-tiles, receipts, blobs, the data gateway."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import InputError


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free port, chosen by the OS)."""
    if not 0 <= port <= 65535:
        raise InputError(f"--port must be 0..65535, got {port}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, _, _, _, addr = infos[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family in (socket.AF_INET, socket.AF_INET6):
            # Inherited by accepted connections: without it a response written as
            # headers then body waits ~40 ms for a delayed ACK (Nagle).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(addr)
        sock.listen(2048)
    except OSError as e:
        raise InputError(f"cannot listen on {host}:{port}: {e.strerror or e}") from e
    return sock


def serve(
    home: Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    announce: Callable[[str], None] = print,
) -> None:
    """Run the node for the workspace at ``home`` until interrupted."""
    import uvicorn

    from .._workspace import Workspace
    from .app import create_app

    Workspace.open(home).close()  # fail now, with one clear line, if it is not a workspace
    sock = bind(host, port)
    h, p = sock.getsockname()[:2]
    shown = f"[{h}]" if ":" in h else h
    url = f"http://{shown}:{p}"
    config = uvicorn.Config(create_app(home), log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    announce(f"listening on {url}")
    announce(f"OpenAPI: {url}/openapi.json (docs: {url}/docs)")
    server.run(sockets=[sock])


@contextmanager
def serving(app: Any, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve an ASGI ``app`` on a free port of ``host`` in a background thread.

    Yields the base URL; stops the server (bounded) on exit. For tests, the demo and
    in-process peers; ``serve`` is the long-running form.
    """
    import threading
    import time

    import uvicorn

    sock = bind(host, 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise InputError(f"the node did not start on {host}")
        time.sleep(0.01)
    try:
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()
