from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

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
