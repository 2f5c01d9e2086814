"""in-toto Statement v1 (https://github.com/in-toto/attestation/blob/main/spec/v1/statement.md)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import rfc8785

from ..errors import InputError

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
_HEX = {"sha256": re.compile(r"[0-9a-f]{64}"), "sha512": re.compile(r"[0-9a-f]{128}")}


def statement(
    subjects: Iterable[Mapping[str, Any]],
    predicate_type: str,
    predicate: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Build and validate an in-toto Statement v1."""
    st: dict[str, Any] = {
        "_type": STATEMENT_TYPE,
        "subject": [dict(s) for s in subjects],
        "predicateType": predicate_type,
    }
    if predicate is not None:
        st["predicate"] = dict(predicate)
    validate(st)
    return st


def subject_for_file(path: Path, name: str | None = None) -> dict[str, Any]:
    """A subject ``{name, digest: {sha256}}`` for a file, hashed in 1 MiB chunks."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    except IsADirectoryError as e:
        raise InputError(f"{path} is a directory; pass files") from e
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror}") from e
    return {"name": name or Path(path).name, "digest": {"sha256": h.hexdigest()}}


def validate(st: object) -> None:
    """Raise :class:`InputError` unless ``st`` is a well-formed Statement v1."""
    if not isinstance(st, dict):
        raise InputError("statement must be a JSON object")
    if st.get("_type") != STATEMENT_TYPE:
        raise InputError(f"statement _type must be {STATEMENT_TYPE}")
    subjects = st.get("subject")
    if not isinstance(subjects, list) or not subjects:
        raise InputError("statement needs at least one subject")
    for i, s in enumerate(subjects):
        if not isinstance(s, dict) or not isinstance(s.get("digest"), dict) or not s["digest"]:
            raise InputError(f"subject {i} needs a digest object")
        if "name" in s and not isinstance(s["name"], str):
            raise InputError(f"subject {i}: name must be a string")
        for alg, value in s["digest"].items():
            if not isinstance(value, str):
                raise InputError(f"subject {i}: digest {alg} must be a string")
            pat = _HEX.get(alg)
            if pat is not None and not pat.fullmatch(value):
                raise InputError(
                    f"subject {i}: {alg} digest must be lowercase hex of the right length"
                )
    pt = st.get("predicateType")
    if not isinstance(pt, str) or "://" not in pt:
        raise InputError("statement predicateType must be a URI")
    if "predicate" in st and not isinstance(st["predicate"], dict):
        raise InputError("statement predicate must be a JSON object")
    extra = set(st) - {"_type", "subject", "predicateType", "predicate"}
    if extra:
        raise InputError(f"statement has unknown fields: {', '.join(sorted(extra))}")


def canonical(st: Mapping[str, Any]) -> bytes:
    try:
        return rfc8785.dumps(st)
    except (rfc8785.CanonicalizationError, ValueError, TypeError) as e:
        raise InputError(f"statement cannot be canonicalised (RFC 8785): {e}") from e
