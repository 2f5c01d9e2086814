"""C2SP ``tlog-proof@v1`` receipts (https://c2sp.org/tlog-proof).

A receipt is: the header line, an optional ``extra`` line (base64, opaque and
unauthenticated: ailedger puts the anchor reference there and verifiers MUST
re-check it on chain), ``index N``, the inclusion proof hashes one per line,
an empty line, then the signed checkpoint verbatim.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from .. import merkle
from ..errors import VerificationError
from .note import Checkpoint, Verifier, open_checkpoint

HEADER = "c2sp.org/tlog-proof@v1"
_INDEX = re.compile(r"index (0|[1-9][0-9]{0,19})")
_MAX_PROOF = 63  # a tree of up to 2^63 entries


@dataclass(frozen=True)
class Receipt:
    index: int
    proof: tuple[bytes, ...]
    checkpoint: str  # the signed note, verbatim
    extra: bytes | None = None

    def text(self) -> str:
        lines = [HEADER]
        if self.extra is not None:
            lines.append("extra " + base64.b64encode(self.extra).decode())
        lines.append(f"index {self.index}")
        lines.extend(base64.b64encode(h).decode() for h in self.proof)
        return "\n".join(lines) + "\n\n" + self.checkpoint

    @classmethod
    def parse(cls, text: str | bytes) -> Receipt:
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError as e:
                raise VerificationError("receipt is not UTF-8 text") from e
        head, sep, checkpoint = text.partition("\n\n")
        if not sep or not checkpoint:
            raise VerificationError("malformed receipt: no checkpoint after the proof")
        lines = head.split("\n")
        if lines[0] != HEADER:
            raise VerificationError(f"not a receipt: the first line must be {HEADER}")
        i = 1
        extra = None
        if i < len(lines) and lines[i].startswith("extra "):
            extra = _b64(lines[i][6:], "extra data", any_length=True)
            i += 1
        if i >= len(lines):
            raise VerificationError("malformed receipt: missing index line")
        m = _INDEX.fullmatch(lines[i])
        if not m:
            raise VerificationError("malformed receipt: bad index line")
        proof = tuple(_b64(x, "proof hash") for x in lines[i + 1 :])
        if len(proof) > _MAX_PROOF:
            raise VerificationError("malformed receipt: proof too long")
        return cls(int(m.group(1)), proof, checkpoint, extra)

    def verify(self, entry: bytes, verifier: Verifier) -> Checkpoint:
        """Check the checkpoint signature, then that ``entry`` is at ``index`` in it."""
        cp = open_checkpoint(self.checkpoint, verifier)
        merkle.verify_inclusion(merkle.leaf_hash(entry), self.index, cp.size, self.proof, cp.root)
        return cp


def _b64(s: str, what: str, any_length: bool = False) -> bytes:
    try:
        b = base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError) as e:
        raise VerificationError(f"malformed receipt: {what} is not base64") from e
    if not any_length and len(b) != merkle.HASH_SIZE:
        raise VerificationError(f"malformed receipt: {what} is not a 32-byte hash")
    if base64.b64encode(b).decode() != s:
        # One hash, one encoding: unused bits set or stray padding are refused.
        raise VerificationError(f"malformed receipt: {what} is not canonical base64")
    return b
