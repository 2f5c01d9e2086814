"""Fixtures shared by the provenance tests."""

from __future__ import annotations

from typing import Any

import pytest

from ailedger._provenance import fingerprint as fpmod


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The relative paths of every file actually read (hashed) by the fingerprinter."""
    real = fpmod._hash_file
    seen: list[str] = []

    def spy(it: Any, fmt: Any) -> Any:
        seen.append(it[0])
        return real(it, fmt)

    monkeypatch.setattr(fpmod, "_hash_file", spy)
    return seen
