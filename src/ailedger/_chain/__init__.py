"""Chain layer (private)."""
