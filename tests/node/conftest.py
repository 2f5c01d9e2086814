"""Shared fixtures: a real uvicorn server on 127.0.0.1 in a background thread."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from ailedger._node import serving


def running(app: Any) -> AbstractContextManager[str]:
    """Serve ``app`` on a free loopback port; yields its URL; stops it (bounded) after."""
    return serving(app)
