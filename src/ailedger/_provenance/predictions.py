"""Prediction logging: cheap per call, one signed statement per batch (DESIGN §5).

``log(input, output)`` hashes the input and output and keeps a leaf in memory;
every ``batch_size`` leaves (and on ``flush``/``close``) the batch becomes one
:data:`types.PREDICTIONS` statement: the leaves as a JSON-lines blob in the blob
store, and their RFC 9162 root in the signed predicate. Any single prediction
can later get its own proof (:func:`prediction_proof`): its leaf, the inclusion
proof of the leaf in the batch root, the signed batch statement, and the log
receipt of that statement. :func:`check_prediction_proof` verifies all of it.

How values are hashed (``value_sha256``):

- ``bytes``/``bytearray``/``memoryview``: the bytes as they are;
- ``str``: its UTF-8 encoding;
- a numpy array (anything with ``dtype``, ``shape`` and ``tobytes``):
  ``b"ndarray:" + dtype.str + ":" + ",".join(shape) + "\\n" + tobytes(order="C")``,
  so the same numbers with another dtype or shape hash differently;
- anything else: its RFC 8785 canonical JSON.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import sqlite3
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import rfc8785

from .. import merkle
from ..errors import Error, InputError, NotFoundError, VerificationError
from . import types as ty
from .tracking import file_digest, rfc3339

if TYPE_CHECKING:
    from .._workspace import Workspace

__all__ = [
    "PROOF_FORMAT",
    "PredictionLogger",
    "PredictionRef",
    "check_prediction_proof",
    "find_prediction",
    "leaf_bytes",
    "prediction_proof",
    "value_sha256",
]

PROOF_FORMAT = "ailedger-prediction-proof/v1"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_LEAF_KEYS = ("input_sha256", "output_sha256", "time")
_sha256 = hashlib.sha256


def value_sha256(v: Any) -> str:
    """Hex SHA-256 of a prediction input or output (encoding in the module docstring)."""
    if isinstance(v, (bytes, bytearray, memoryview)):
        return _sha256(v).hexdigest()
    if isinstance(v, str):
        return _sha256(v.encode("utf-8")).hexdigest()
    if hasattr(v, "dtype") and hasattr(v, "shape") and hasattr(v, "tobytes"):
        head = f"ndarray:{v.dtype.str}:{','.join(str(int(n)) for n in v.shape)}\n".encode()
        return _sha256(head + v.tobytes(order="C")).hexdigest()
    try:
        return _sha256(rfc8785.dumps(v)).hexdigest()
    except (rfc8785.CanonicalizationError, ValueError, TypeError) as e:
        raise InputError(
            f"cannot hash a {type(v).__name__} prediction value: pass bytes, str, a numpy"
            f" array or JSON-serialisable data ({e})"
        ) from e


def leaf_bytes(input_sha256: str, output_sha256: str, time_: str) -> bytes:
    """RFC 8785 JSON of ``{"input_sha256", "output_sha256", "time"}`` (a prediction leaf)."""
    # Keys are ASCII and already in RFC 8785 order; the values need no escaping.
    return (
        f'{{"input_sha256":"{input_sha256}","output_sha256":"{output_sha256}",'
        f'"time":"{time_}"}}'
    ).encode()


@dataclass(frozen=True, slots=True)
class PredictionRef:
    """Where a logged prediction is: batch number and position, and after the batch is
    flushed the log index of its statement (``index``)."""

    logger: PredictionLogger
    batch: int
    position: int
    input_sha256: str
    output_sha256: str

    @property
    def index(self) -> int | None:
        """Log index of the batch statement, or None until the batch is flushed."""
        return self.logger.batch_index(self.batch)

    def proof(self) -> str:
        """The prediction's proof document (flushes its batch first if needed)."""
        if self.index is None:
            self.logger.flush()
        i = self.index
        if i is None:
            raise InputError("this prediction's batch has not been recorded")
        return prediction_proof(self.logger.workspace, i, self.position)


class PredictionLogger:
    """Batch predictions of one model into signed, provable statements.

    :param ws: the workspace to record into (stays open; not closed by the logger).
    :param model: the model file, or its digest as ``sha256:<hex>`` / 64 hex.
    :param batch_size: leaves per statement (flushes automatically when full).
    :param name: the model's name in the statements (default: the file name).
    """

    def __init__(
        self,
        ws: Workspace,
        model: str | os.PathLike[str],
        *,
        batch_size: int = 10_000,
        name: str | None = None,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InputError("batch_size must be a positive integer")
        s = os.fspath(model)
        hexd = s[7:] if s.startswith("sha256:") else s
        if _HEX64.fullmatch(hexd) and not Path(s).exists():
            sha, default = hexd, f"sha256:{hexd}"
        else:
            sha, default = file_digest(s), Path(s).name
        self.workspace = ws
        self.model: dict[str, Any] = {"name": name or default, "digest": ty.digest(sha)}
        self.batch_size = batch_size
        self._session = uuid.uuid4().hex[:16]
        self._leaves: list[bytes] = []
        self._t0: float | None = None
        self._batch = 0
        self._indexes: list[int] = []
        self._sec = -1
        self._sec_text = ""
        self._closed = False

    # -- logging ------------------------------------------------------------------

    def _now(self) -> str:
        t = time.time()
        sec = int(t)
        if sec != self._sec:  # format the date part once a second, not once a call
            self._sec = sec
            self._sec_text = rfc3339(sec)[:19]
        return f"{self._sec_text}.{int((t - sec) * 1e6):06d}Z"

    def log(self, input: Any, output: Any) -> PredictionRef:
        """Log one prediction (cheap: two hashes and a string); returns its reference."""
        if self._closed:
            raise InputError("this prediction logger is closed")
        i = value_sha256(input)
        o = value_sha256(output)
        leaves = self._leaves
        if not leaves:
            self._t0 = time.time()
        leaves.append(leaf_bytes(i, o, self._now()))
        ref = PredictionRef(self, self._batch, len(leaves) - 1, i, o)
        if len(leaves) >= self.batch_size:
            self.flush()
        return ref

    def log_hashes(self, input_sha256: str, output_sha256: str) -> PredictionRef:
        """Log a prediction whose input and output the caller already hashed (hex)."""
        for what, h in (("input_sha256", input_sha256), ("output_sha256", output_sha256)):
            if not isinstance(h, str) or not _HEX64.fullmatch(h):
                raise InputError(f"{what} must be 64 lowercase hex characters")
        if self._closed:
            raise InputError("this prediction logger is closed")
        if not self._leaves:
            self._t0 = time.time()
        self._leaves.append(leaf_bytes(input_sha256, output_sha256, self._now()))
        ref = PredictionRef(self, self._batch, len(self._leaves) - 1, input_sha256, output_sha256)
        if len(self._leaves) >= self.batch_size:
            self.flush()
        return ref

    def batch_index(self, batch: int) -> int | None:
        """Log index of batch number ``batch``'s statement, or None if not flushed yet."""
        return self._indexes[batch] if 0 <= batch < len(self._indexes) else None

    @property
    def pending(self) -> int:
        """Predictions logged but not yet recorded."""
        return len(self._leaves)

    @property
    def batches(self) -> list[int]:
        """Log indexes of the batch statements recorded so far."""
        return list(self._indexes)

    def flush(self) -> int | None:
        """Record the pending predictions as one statement; returns its index (None if
        nothing was pending). On a ledger error the batch stays pending and it raises."""
        leaves = self._leaves
        if not leaves:
            return None
        from .._statements.intoto import statement

        blob = b"\n".join(leaves) + b"\n"
        root = merkle.root_from_leaf_hashes([merkle.leaf_hash(x) for x in leaves])
        ws = self.workspace
        digest = ws.blobs.put(blob)
        t1 = time.time()
        pred = {
            "model": self.model,
            "count": len(leaves),
            "root": root.hex(),
            "leaves": {
                "digest": ty.digest(digest),
                "size": len(blob),
                "mediaType": "application/jsonl",
            },
            "from": rfc3339(self._t0 if self._t0 is not None else t1),
            "to": rfc3339(t1),
        }
        subject = {
            "name": f"predictions:{self._session}-{self._batch}",
            "digest": ty.digest(digest),
        }
        index = ws.record(statement([subject], ty.PREDICTIONS, pred))
        _index_batch(ws, index, self.model["digest"]["sha256"], digest, len(leaves))
        self._indexes.append(index)
        self._batch += 1
        self._leaves = []
        self._t0 = None
        return index

    def close(self) -> None:
        """Flush what is pending; further ``log`` calls are refused."""
        if not self._closed:
            self.flush()
            self._closed = True

    def __enter__(self) -> PredictionLogger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# -- a small index: which batches belong to which model ------------------------------


def _db(ws: Workspace) -> sqlite3.Connection:
    db = sqlite3.connect(ws.path / "provenance.sqlite", timeout=30, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(
        "CREATE TABLE IF NOT EXISTS predictions_batches (log_index INTEGER PRIMARY KEY,"
        " model_sha256 TEXT NOT NULL, leaves_sha256 TEXT NOT NULL, count INTEGER NOT NULL)"
    )
    db.execute(
        "CREATE INDEX IF NOT EXISTS predictions_batches_model"
        " ON predictions_batches (model_sha256, log_index)"
    )
    return db


def _index_batch(ws: Workspace, index: int, model: str, leaves: str, count: int) -> None:
    db = _db(ws)
    try:
        db.execute(
            "INSERT OR REPLACE INTO predictions_batches VALUES (?, ?, ?, ?)",
            (index, model, leaves, count),
        )
    finally:
        db.close()


def find_prediction(
    ws: Workspace, model_sha256: str, *, input_sha256: str, output_sha256: str | None = None
) -> tuple[int, int]:
    """The (batch statement index, position) of the latest prediction of a model with
    this input (and output, if given).

    :raises NotFoundError: no such prediction was logged in this workspace.
    """
    db = _db(ws)
    try:
        rows = db.execute(
            "SELECT log_index, leaves_sha256 FROM predictions_batches WHERE model_sha256 = ?"
            " ORDER BY log_index DESC",
            (model_sha256,),
        ).fetchall()
    finally:
        db.close()
    if not rows:
        raise NotFoundError(f"no predictions of model sha256:{model_sha256} in this workspace")
    needle = f'"input_sha256":"{input_sha256}"'.encode()
    out = f'"output_sha256":"{output_sha256}"'.encode() if output_sha256 else b""
    for index, leaves_digest in rows:
        lines = ws.blobs.get(leaves_digest).split(b"\n")
        for pos in range(len(lines) - 1, -1, -1):
            line = lines[pos]
            if needle in line and out in line:
                return int(index), pos
    raise NotFoundError(
        f"model sha256:{model_sha256} has no logged prediction with input sha256:{input_sha256}"
        + (f" and output sha256:{output_sha256}" if output_sha256 else "")
    )


# -- proofs ---------------------------------------------------------------------------


def _batch(ws: Workspace, index: int) -> tuple[bytes, dict[str, Any]]:
    from .._verify import verify_envelope

    entry = ws.log.get(index)
    st, _ = verify_envelope(entry, ws.trusted_keys())
    if st.get("predicateType") != ty.PREDICTIONS:
        raise InputError(
            f"log entry {index} is not a predictions batch ({st.get('predicateType')})"
        )
    return entry, st


def prediction_proof(ws: Workspace, batch_statement_index: int, position: int) -> str:
    """The JSON proof document of prediction ``position`` in the batch at log index
    ``batch_statement_index``: leaf, inclusion proof in the batch root, the signed
    batch statement (the log entry), and its ``tlog-proof@v1`` receipt.

    :raises InputError: the entry is not a predictions batch, or no such position.
    """
    entry, st = _batch(ws, batch_statement_index)
    pred = st["predicate"]
    blob = ws.blobs.get(pred["leaves"]["digest"]["sha256"])
    leaves = blob.split(b"\n")[:-1]
    if not 0 <= position < len(leaves):
        raise InputError(
            f"position {position} is outside batch {batch_statement_index}"
            f" of {len(leaves)} predictions"
        )
    hashes = [merkle.leaf_hash(x) for x in leaves]
    proof = merkle.inclusion_proof(position, hashes)
    doc = {
        "format": PROOF_FORMAT,
        "leaf": leaves[position].decode(),
        "position": position,
        "count": len(leaves),
        "inclusion": [base64.b64encode(h).decode() for h in proof],
        "batch": {"index": batch_statement_index, "entry": entry.decode()},
        "receipt": ws.receipt(batch_statement_index),
    }
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


@dataclass(frozen=True)
class PredictionProofResult:
    """What a verified prediction proof shows."""

    batch_index: int
    position: int
    leaf: dict[str, str]
    model: dict[str, Any]
    tree_size: int
    origin: str


def _field(doc: Mapping[str, Any], key: str, typ: type | tuple[type, ...]) -> Any:
    v = doc.get(key)
    if not isinstance(v, typ) or isinstance(v, bool):
        raise VerificationError(f"prediction proof: field {key!r} is missing or malformed")
    return v


def check_prediction_proof(
    doc: str | bytes | Mapping[str, Any],
    *,
    verifier_key: str,
    input: Any = None,
    output: Any = None,
) -> PredictionProofResult:
    """Verify a prediction proof: the receipt of the batch statement against the log's
    ``verifier_key``, the statement's signature (by that log's key), the leaf's inclusion
    in the signed root, and, if given, that ``input``/``output`` hash to the leaf.

    Fails closed: raises :class:`VerificationError` naming what failed.
    """
    from .._crypto.keys import keyid_of
    from .._log.note import Verifier
    from .._verify import verify_receipt

    if isinstance(doc, (str, bytes)):
        try:
            doc = json.loads(doc)
        except (ValueError, UnicodeDecodeError) as e:
            raise VerificationError(f"prediction proof is not valid JSON ({e})") from e
    if not isinstance(doc, Mapping) or doc.get("format") != PROOF_FORMAT:
        raise VerificationError(f"not a prediction proof (format {PROOF_FORMAT})")
    leaf_text = _field(doc, "leaf", str)
    position = _field(doc, "position", int)
    count = _field(doc, "count", int)
    inclusion = _field(doc, "inclusion", list)
    batch = _field(doc, "batch", dict)
    receipt = _field(doc, "receipt", str)
    entry_text = _field(batch, "entry", str)
    index = _field(batch, "index", int)
    try:
        v = Verifier.parse(verifier_key.strip())
    except Error as e:
        raise VerificationError(f"bad verifier key: {e}") from e
    entry = entry_text.encode()
    try:
        res = verify_receipt(receipt, entry, v, {keyid_of(v.public): v.public})
    except Error as e:
        raise VerificationError(f"batch statement receipt: {e}") from e
    if res.index != index:
        raise VerificationError(f"receipt is for entry {res.index}, not batch {index}")
    st = res.statement
    if st is None or st.get("predicateType") != ty.PREDICTIONS:
        raise VerificationError("the signed statement is not a predictions batch")
    pred = st.get("predicate") or {}
    root_hex = pred.get("root")
    if not isinstance(root_hex, str) or not _HEX64.fullmatch(root_hex):
        raise VerificationError("the batch statement has no valid root")
    if pred.get("count") != count:
        raise VerificationError(
            f"proof claims {count} predictions, the signed batch has {pred.get('count')}"
        )
    try:
        proof = [base64.b64decode(h, validate=True) for h in inclusion]
    except (ValueError, TypeError) as e:
        raise VerificationError("inclusion proof hashes are not valid base64") from e
    leaf = leaf_text.encode()
    try:
        merkle.verify_inclusion(
            merkle.leaf_hash(leaf), position, count, proof, bytes.fromhex(root_hex)
        )
    except VerificationError as e:
        raise VerificationError(f"prediction leaf is not in the signed batch root: {e}") from e
    try:
        fields = json.loads(leaf)
    except ValueError as e:
        raise VerificationError("prediction leaf is not JSON") from e
    if (
        not isinstance(fields, dict)
        or tuple(sorted(fields)) != _LEAF_KEYS
        or not all(isinstance(fields[k], str) for k in _LEAF_KEYS)
    ):
        raise VerificationError("prediction leaf does not have the leaf shape")
    for what, value in (("input", input), ("output", output)):
        if value is None:
            continue
        got = value_sha256(value)
        if not hmac.compare_digest(got, fields[f"{what}_sha256"]):
            raise VerificationError(
                f"the given {what} does not match the prediction (sha256 {got},"
                f" logged {fields[f'{what}_sha256']})"
            )
    return PredictionProofResult(
        index, position, fields, dict(pred.get("model") or {}), res.checkpoint.size, v.name
    )
