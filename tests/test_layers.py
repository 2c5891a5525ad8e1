"""The package layout of docs/DESIGN.md, held against the code: imports point down the layers only.

Every ``import``/``from`` statement in desra/ and ui/ is read (the lazy ones inside functions too,
since a lazy import is still a dependency), and each must go to its own package or a lower layer.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Lower number = lower layer. Packages of one layer do not import each other.
LAYERS = {
    "core": 0,
    "models": 1,
    "detect": 2,
    "train": 3,
    "fingerprint": 4,
    "repair": 5,
    "attribution": 5,
    "jobs": 6,
    "service": 7,
    "benchmarks": 8,
    "cli": 9,
    "ui": 9,
}

# The few arrows that point up or sideways, each with its reason.
ALLOWED = {
    ("cli", "ui"): "`desra serve` launches the dashboard",
    ("detect", "train"): "calibration degrades HR photos with the training degradations (detect.calibrate)",
}


def _package(path: Path) -> str:
    rel = path.relative_to(ROOT).parts
    if rel[0] == "ui":
        return "ui"
    return rel[1] if len(rel) > 2 else "desra"


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            found += [(node.lineno, name) for name in names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
    return found


def _target(name: str) -> str | None:
    parts = name.split(".")
    if parts[0] == "ui":
        return "ui"
    if parts[0] == "desra" and len(parts) > 1 and parts[1] in LAYERS:
        return parts[1]
    return None


def _sources() -> list[Path]:
    return sorted(p for folder in ("desra", "ui") for p in (ROOT / folder).rglob("*.py"))


def test_every_package_has_a_layer():
    packages = {p.name for p in (ROOT / "desra").iterdir() if (p / "__init__.py").is_file()} - {"data"}
    assert packages <= set(LAYERS), f"packages without a layer in DESIGN.md / this test: {sorted(packages - set(LAYERS))}"


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_down(path):
    source = _package(path)
    if source not in LAYERS:
        return  # desra/__init__.py and __main__.py sit above everything
    wrong = []
    for line, name in _imports(path):
        target = _target(name)
        if target is None or target == source or (source, target) in ALLOWED:
            continue
        if LAYERS[target] >= LAYERS[source]:
            wrong.append(f"line {line}: {source} imports {name} ({target} is not below {source})")
    assert not wrong, "\n".join(sorted(set(wrong)))
