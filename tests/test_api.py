"""The public API is pinned: changing it is a deliberate, reviewed act."""

from __future__ import annotations

import ailedger


def test_all_is_pinned() -> None:
    assert sorted(ailedger.__all__) == sorted([
        "ChainError", "Checkpoint", "Error", "FsckReport", "InputError", "KeyStoreError",
        "LocalBlobStore", "Log", "LogError", "MemoryBlobStore", "NotFoundError", "Receipt",
        "ReceiptResult", "VerificationError", "Verifier", "Workspace", "WorkspaceError",
        "__version__", "merkle", "pae", "statement", "verify_envelope", "verify_receipt",
        # AI provenance (issue 4)
        "DatasetRecord", "LineageGraph", "PredictionLogger", "Run", "VerifyReport",
        "add_dataset", "export_bundle", "find_dataset", "lineage", "load_bundle", "track",
        "verify_artifact", "verify_dataset",
    ])
    for name in ailedger.__all__:
        assert hasattr(ailedger, name)


def test_stable_merkle_names() -> None:
    for name in ("leaf_hash", "node_hash", "root", "verify_inclusion", "verify_consistency"):
        assert callable(getattr(ailedger.merkle, name))


def test_every_error_is_an_ailedger_error() -> None:
    for name in (
        "VerificationError",
        "InputError",
        "WorkspaceError",
        "KeyStoreError",
        "LogError",
        "NotFoundError",
        "ChainError",
    ):
        assert issubclass(getattr(ailedger, name), ailedger.Error)
