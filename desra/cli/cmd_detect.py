"""`desra detect`: not built yet (see the open issues)."""

from __future__ import annotations


def register(subparsers) -> None:
    """Add this command group to the `desra` parser (nothing yet)."""
