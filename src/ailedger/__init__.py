"""ailedger: a verifiable ledger for AI.

The public API is what this module exports (``__all__``, pinned by a test) plus
the stable :mod:`ailedger.merkle` module. Everything in a module whose name
starts with an underscore is internal and may change without notice.
"""

from __future__ import annotations

from . import merkle
from ._cas.blobs import LocalBlobStore, MemoryBlobStore
from ._log.note import Checkpoint, Verifier
from ._log.receipt import Receipt
from ._log.store import FsckReport, Log
from ._provenance.bundle import export_bundle, load_bundle
from ._provenance.datasets import DatasetRecord, add_dataset, find_dataset, verify_dataset
from ._provenance.lineage import LineageGraph, lineage
from ._provenance.predictions import PredictionLogger
from ._provenance.tracking import Run, track
from ._provenance.verify import VerifyReport, verify_artifact
from ._statements.dsse import pae
from ._statements.intoto import statement
from ._verify import ReceiptResult, verify_envelope, verify_receipt
from ._workspace import Workspace
from .errors import (
    ChainError,
    Error,
    InputError,
    KeyStoreError,
    LogError,
    NotFoundError,
    VerificationError,
    WorkspaceError,
)

__version__ = "0.1.0"

__all__ = [
    "ChainError",
    "Checkpoint",
    "DatasetRecord",
    "Error",
    "FsckReport",
    "InputError",
    "KeyStoreError",
    "LineageGraph",
    "LocalBlobStore",
    "Log",
    "LogError",
    "MemoryBlobStore",
    "NotFoundError",
    "PredictionLogger",
    "Receipt",
    "ReceiptResult",
    "Run",
    "VerificationError",
    "Verifier",
    "VerifyReport",
    "Workspace",
    "WorkspaceError",
    "__version__",
    "add_dataset",
    "export_bundle",
    "find_dataset",
    "lineage",
    "load_bundle",
    "merkle",
    "pae",
    "statement",
    "track",
    "verify_artifact",
    "verify_dataset",
    "verify_envelope",
    "verify_receipt",
]
