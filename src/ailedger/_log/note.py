"""C2SP signed notes and tlog checkpoints.

Implements https://c2sp.org/signed-note (Ed25519 only, algorithm byte 0x01) and
https://c2sp.org/tlog-checkpoint, byte-compatible with Go's
``golang.org/x/mod/sumdb/note``:

- key ID = first 4 bytes of SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key);
- verifier key = ``name+<8 hex key ID>+base64(0x01 ‖ public key)``;
- a signature line is ``— <name> base64(key ID ‖ signature)`` and the signature
  covers the note text, which ends in a newline, not the blank separator line.

Opening a note fails closed: at least one signature by a known key MUST verify,
a bad signature by a known key is an error, and unknown signers are ignored.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from ..errors import InputError, VerificationError
from ..merkle import HASH_SIZE

ALG_ED25519 = 0x01
SIG_PREFIX = "— "  # U+2014 EM DASH, then a space
_MAX_SIGS = 100  # Go's note.Open refuses more


def key_id(name: str, public: bytes) -> bytes:
    """The 4-byte key ID of an Ed25519 key (C2SP signed-note)."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([ALG_ED25519]) + public).digest()[:4]


def is_valid_name(name: str) -> bool:
    """A key name is non-empty and has no whitespace and no '+' (signed-note)."""
    return bool(name) and "+" not in name and not any(c.isspace() for c in name)


def verifier_key(name: str, public: bytes) -> str:
    if not is_valid_name(name):
        raise InputError(f"invalid key name {name!r}: no spaces or '+' allowed")
    vk = base64.b64encode(bytes([ALG_ED25519]) + public).decode()
    return f"{name}+{key_id(name, public).hex()}+{vk}"


@dataclass(frozen=True)
class Verifier:
    """A parsed verifier key: who may sign, and with which Ed25519 key."""

    name: str
    key_id: bytes
    public: bytes

    @classmethod
    def parse(cls, text: str) -> Verifier:
        """Parse ``name+hex8+base64``, exactly as Go's ``note.NewVerifier`` does.

        Surrounding whitespace is an error; newlines inside the base64 are
        ignored (Go's decoder skips them); the base64 must be canonical.
        """
        if not isinstance(text, str):
            raise InputError("a verifier key is a string: name+keyid+base64key")
        parts = text.split("+", 2)  # base64 may contain "+"
        if len(parts) != 3:
            raise InputError("malformed verifier key: want name+keyid+base64key")
        name, hexid, b64 = parts
        if not is_valid_name(name) or not _HEX8.fullmatch(hexid):
            raise InputError("malformed verifier key: bad name or key ID")
        b64 = b64.replace("\r", "").replace("\n", "")
        try:
            key = base64.b64decode(b64, validate=True)
        except (ValueError, binascii.Error) as e:
            raise InputError("malformed verifier key: bad base64 key") from e
        if base64.b64encode(key).decode() != b64:
            raise InputError("malformed verifier key: non-canonical base64 key")
        if len(key) != 33 or key[0] != ALG_ED25519:
            raise InputError("unsupported verifier key: only Ed25519 (algorithm 1) keys")
        kid = bytes.fromhex(hexid)
        if key_id(name, key[1:]) != kid:
            raise InputError("malformed verifier key: key ID does not match name and key")
        return cls(name, kid, key[1:])

    def __str__(self) -> str:
        return verifier_key(self.name, self.public)

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            ed25519.Ed25519PublicKey.from_public_bytes(self.public).verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True


def sign_note(text: str, name: str, private: ed25519.Ed25519PrivateKey) -> str:
    """Sign ``text`` (which must end in a newline) and return the signed note."""
    _check_text(text)
    if not is_valid_name(name):
        raise InputError(f"invalid signer name {name!r}")
    pub = private.public_key().public_bytes_raw()
    sig = private.sign(text.encode())
    b64 = base64.b64encode(key_id(name, pub) + sig).decode()
    return f"{text}\n{SIG_PREFIX}{name} {b64}\n"


def _check_text(text: str) -> None:
    if not text.endswith("\n"):
        raise InputError("note text must end with a newline")
    for ch in text:
        if ord(ch) < 0x20 and ch != "\n":
            raise InputError("note text must not contain control characters")


def open_note(msg: str | bytes, verifiers: Sequence[Verifier]) -> tuple[str, list[str]]:
    """Verify a signed note; return its text and the names whose signatures verified.

    Raises :class:`VerificationError` unless at least one signature by one of
    ``verifiers`` is valid, or if any signature by a known key is invalid.
    """
    if not verifiers:
        raise VerificationError("no verifier key given: refusing to trust an unsigned note")
    if isinstance(msg, bytes):
        try:
            msg = msg.decode("utf-8")
        except UnicodeDecodeError as e:
            raise VerificationError("note is not valid UTF-8") from e
    for ch in msg:
        if ord(ch) < 0x20 and ch != "\n":
            raise VerificationError("malformed note: control character")
    split = msg.rfind("\n\n")
    if split < 0:
        raise VerificationError("malformed note: no signature block")
    text, sigs = msg[: split + 1], msg[split + 2 :]
    if not sigs or not sigs.endswith("\n"):
        raise VerificationError("malformed note: signature block must end with a newline")
    known = {(v.name, v.key_id): v for v in verifiers}
    verified: list[str] = []
    lines = sigs[:-1].split("\n")
    if len(lines) > _MAX_SIGS:
        raise VerificationError("malformed note: too many signatures")
    for line in lines:
        if not line.startswith(SIG_PREFIX):
            raise VerificationError("malformed note: bad signature line")
        name, _, b64 = line[len(SIG_PREFIX) :].partition(" ")
        try:
            raw = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError) as e:
            raise VerificationError("malformed note: signature is not base64") from e
        if not is_valid_name(name) or not b64 or len(raw) < 5:
            raise VerificationError("malformed note: bad signature line")
        v = known.get((name, raw[:4]))
        if v is None:
            continue  # a cosigner we were not asked to trust
        if name in verified:
            continue  # Go's note.Open checks only the first signature per key
        if not v.verify(text.encode(), raw[4:]):
            raise VerificationError(f"invalid signature by {name} on the note")
        if name not in verified:
            verified.append(name)
    if not verified:
        raise VerificationError("note has no valid signature by the given verifier key")
    return text, verified


_HEX8 = re.compile(r"[0-9a-fA-F]{8}")
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,19}")


@dataclass(frozen=True)
class Checkpoint:
    """A C2SP tlog checkpoint body: origin, tree size, root hash, extension lines."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = field(default=())

    def text(self) -> str:
        root = base64.b64encode(self.root).decode()
        ext = "".join(e + "\n" for e in self.extensions)
        return f"{self.origin}\n{self.size}\n{root}\n{ext}"

    @classmethod
    def from_note(cls, note: str) -> Checkpoint:
        """The checkpoint body of a signed note, WITHOUT checking its signature.

        For notes this log signed itself; anything received goes through
        :func:`open_checkpoint`.
        """
        return cls.parse(note[: note.rfind("\n\n") + 1])

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        if not text.endswith("\n"):
            raise VerificationError("malformed checkpoint: must end with a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise VerificationError("malformed checkpoint: want origin, size and root lines")
        origin, size, root, *ext = lines
        if not origin or not _DECIMAL.fullmatch(size):
            raise VerificationError("malformed checkpoint: bad origin or size line")
        try:
            r = base64.b64decode(root, validate=True)
        except (binascii.Error, ValueError) as e:
            raise VerificationError("malformed checkpoint: root is not base64") from e
        if len(r) != HASH_SIZE or base64.b64encode(r).decode() != root:
            raise VerificationError("malformed checkpoint: root is not a 32-byte hash")
        if any(not e for e in ext):
            raise VerificationError("malformed checkpoint: empty extension line")
        n = int(size)
        if n >= 2**63:
            raise VerificationError("malformed checkpoint: size out of range")
        return cls(origin, n, r, tuple(ext))


def open_checkpoint(note: str | bytes, verifier: Verifier) -> Checkpoint:
    """Verify a signed checkpoint against the log's verifier key and parse it.

    The checkpoint's origin MUST equal the key name (DESIGN §3), so one log's key
    cannot vouch for another log's tree.
    """
    text, _ = open_note(note, [verifier])
    cp = Checkpoint.parse(text)
    if cp.origin != verifier.name:
        raise VerificationError(
            f"checkpoint origin {cp.origin!r} does not match"
            f" the verifier key name {verifier.name!r}"
        )
    return cp
