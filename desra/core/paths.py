"""Where desra keeps things: the project tree, the download cache and the workspace."""

from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    """The repository root (holds ``weights/`` and ``datasets/``); desra is installed editable."""
    return Path(__file__).resolve().parents[2]


def weights_dir() -> Path:
    """Folder of the checkpoints desra trained itself and ships."""
    return project_root() / "weights"


def datasets_dir() -> Path:
    """Folder of the datasets shipped with the repository (``datasets/demo`` ...)."""
    return project_root() / "datasets"


def configs_dir() -> Path:
    """Folder of the shipped zoo and attribution model configs."""
    return project_root() / "configs"


def desra_home() -> Path:
    """Cache for downloaded checkpoints: ``$DESRA_HOME``, else ``$XDG_CACHE_HOME/desra``, else ``~/.cache/desra``."""
    if os.environ.get("DESRA_HOME"):
        return Path(os.environ["DESRA_HOME"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "desra"


def models_cache_dir() -> Path:
    """Folder ``desra models pull`` downloads into."""
    return desra_home() / "models"


def default_workspace() -> Path:
    """Workspace for jobs, curated sets and the dashboard: ``$DESRA_WORKSPACE`` or ``./desra-workspace``."""
    return Path(os.environ.get("DESRA_WORKSPACE", "desra-workspace")).expanduser().resolve()
