"""What every dashboard tab receives: the workspace and the shared services built on it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class AppContext:
    """Shared state handed to each tab's ``build(ctx)``; tabs keep per-user state in ``gr.State``."""

    workspace: Path
