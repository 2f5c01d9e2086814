"""Committed artifacts match the shipped sources; the runtime needs no compiler."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ailedger._chain import CONTRACT_NAMES, load_artifact

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", CONTRACT_NAMES)
def test_artifact_source_hash_is_current(name: str) -> None:
    art = load_artifact(name)
    assert art.source_is_current(), (
        f"{name} artifact is stale: run `python scripts/build_contracts.py`"
    )
    assert art.bytecode and art.runtime_bytecode and art.abi


def test_artifacts_match_a_fresh_compile() -> None:
    import vyper  # noqa: F401  (the compiler is a dev dependency; never skip)

    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts/build_contracts.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def test_runtime_does_not_import_vyper() -> None:
    code = (
        "import sys, ailedger._chain as c\n"
        "[c.load_artifact(n) for n in c.CONTRACT_NAMES]\n"
        "assert 'vyper' not in sys.modules, 'vyper imported at runtime'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={"PYTHONPATH": str(ROOT / "src")})
