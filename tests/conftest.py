from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

# Key generation with scrypt is slow by design; tests that do not test encryption
# run without a passphrase.
os.environ.pop("AILEDGER_PASSPHRASE", None)

ROOT = Path(__file__).resolve().parents[1]
VECTORS = ROOT.parent / "shared" / "testvectors" / "rfc6962" / "testdata"


@pytest.fixture
def ws(tmp_path: Path):  # type: ignore[no-untyped-def]
    import ailedger

    w = ailedger.Workspace.init(tmp_path / "ws", name="alice")
    yield w
    w.close()


def cli_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "AILEDGER_PASSPHRASE"}
    env["AILEDGER_HOME"] = str(home)
    return env


PYTHON = sys.executable


# -- a real anvil node, for everything that talks JSON-RPC -----------------------

ANVIL = ROOT / ".tools/anvil/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"
# anvil's first default dev account (public, well-known test key).
ANVIL_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
ANVIL_CHAIN_ID = 31337


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class AnvilNode:
    def __init__(self, *extra: str) -> None:
        if not ANVIL.is_file():
            pytest.fail(
                f"anvil is not installed at {ANVIL}; run `bash scripts/install_anvil.sh` first",
                pytrace=False,
            )
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            # Plenty of dev ether: the session-wide node funds hundreds of test accounts.
            [str(ANVIL), "--host", "127.0.0.1", "--port", str(self.port), "--silent",
             "--balance", "100000000", *extra],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                requests.post(
                    self.url,
                    json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []},
                    timeout=1,
                )
                break
            except requests.exceptions.RequestException:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    pytest.fail(f"anvil did not start on {self.url}", pytrace=False)
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="session")
def anvil() -> Iterator[AnvilNode]:
    node = AnvilNode()
    yield node
    node.stop()


@pytest.fixture
def anvil_factory() -> Iterator[type[AnvilNode]]:
    started: list[AnvilNode] = []

    class Factory(AnvilNode):
        def __init__(self, *extra: str) -> None:
            super().__init__(*extra)
            started.append(self)

    yield Factory
    for node in started:
        node.stop()


