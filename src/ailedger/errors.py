"""The exception hierarchy.

Every error ailedger raises derives from :class:`Error`, so callers can catch one
type. Messages are written for the person at the terminal: they say what was
wrong and, where there is one, what to do about it.
"""

from __future__ import annotations

__all__ = [
    "ChainError",
    "Error",
    "InputError",
    "KeyStoreError",
    "LogError",
    "NotFoundError",
    "VerificationError",
    "WorkspaceError",
]


class Error(Exception):
    """Root of every ailedger error."""


class InputError(Error):
    """Input is malformed: bad JSON, a bad envelope, an oversized entry, a bad number."""


class VerificationError(Error):
    """A signature, proof, checkpoint or receipt did not verify. Fail closed."""


class WorkspaceError(Error):
    """The workspace is missing, already exists, or is not usable."""


class KeyStoreError(Error):
    """A key could not be loaded (wrong passphrase, bad permissions, corrupt file)."""


class LogError(Error):
    """The log's storage is inconsistent or could not be written."""


class NotFoundError(Error):
    """An index, size or blob that does not exist was asked for."""


class ChainError(Error):
    """The chain could not be reached, refused a transaction, or disagrees with us."""
