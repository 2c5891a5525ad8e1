"""What every dashboard tab receives: the workspace and the shared services built on it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class AppContext:
    """Shared state handed to each tab's ``build(ctx)``; tabs keep per-user state in ``gr.State``."""

    workspace: Path
    """Absolute folder that holds everything the dashboard writes and the only folder it serves files from."""
    current: Any = None
    """``gr.State`` with the per-user current detection (a dict of paths, see ``ui.tabs.detect``), shared by Detect and Correct."""

    @property
    def detections_dir(self) -> Path:
        """Folder of detection results written by the Detect tab (one sub-folder per image)."""
        return self.workspace / "detections"

    @property
    def curated_dir(self) -> Path:
        """Folder of the curated fine-tune set the Correct and Curate tabs share."""
        return self.workspace / "curated"

    @property
    def uploads_dir(self) -> Path:
        """Folder for checkpoints and label files users upload (kept, unlike Gradio's temp cache)."""
        return self.workspace / "uploads"
