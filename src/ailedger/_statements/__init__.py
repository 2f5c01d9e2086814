"""Internal: not a stable API."""
