"""Compile the Vyper contracts of ailedger's chain layer into committed artifacts.

    python scripts/build_contracts.py          # (re)write src/ailedger/_chain/artifacts/*.json
    python scripts/build_contracts.py --check  # exit 1 if any artifact is stale

The runtime loads these artifacts and never needs the compiler; only this script
and the staleness test import ``vyper``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CHAIN = ROOT / "src" / "ailedger" / "_chain"
CONTRACTS = CHAIN / "contracts"
ARTIFACTS = CHAIN / "artifacts"


def compile_contract(source_path: Path) -> dict[str, Any]:
    import vyper

    source = source_path.read_text(encoding="utf-8")
    formats = ["abi", "bytecode", "bytecode_runtime"]
    out = vyper.compile_code(source, contract_path=source_path.name, output_formats=formats)
    return {
        "contract_name": source_path.stem,
        "source_path": f"contracts/{source_path.name}",
        "source_sha256": hashlib.sha256(source_path.read_bytes()).hexdigest(),
        "vyper_version": vyper.__version__,
        "abi": out["abi"],
        "bytecode": out["bytecode"],
        "bytecode_runtime": out["bytecode_runtime"],
    }


def render(artifact: dict[str, Any]) -> str:
    return json.dumps(artifact, indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if artifacts are stale")
    args = parser.parse_args(argv)
    stale: list[str] = []
    sources = sorted(CONTRACTS.glob("*.vy"))
    if not sources:
        print(f"no contracts under {CONTRACTS}", file=sys.stderr)
        return 1
    for src in sources:
        target = ARTIFACTS / f"{src.stem}.json"
        text = render(compile_contract(src))
        current = target.read_text(encoding="utf-8") if target.exists() else None
        if current == text:
            continue
        if args.check:
            stale.append(target.name)
        else:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
            print(f"wrote {target.relative_to(ROOT)}")
    if stale:
        print(
            "stale contract artifacts: "
            + ", ".join(stale)
            + " (run: python scripts/build_contracts.py)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
