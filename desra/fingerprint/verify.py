"""Verdict of Quan et al.: squared feature distance against a chi-squared threshold, and the registry.

If a suspect is NOT derived from the source, each of the L feature differences is modelled as
N(0, sigma^2), so ``T = ||h_src - h_sus||^2 / sigma^2 ~ chi2(L)``. A distance in the lower
``p`` tail of that law rejects "independent model": the suspect is declared derived ("match").
Hence ``eta = sigma^2 * chi2_L^-1(p) / L`` (1.387e-4 at sigma 0.015, p 0.05, L 30) and the
p-value is ``P(chi2_L <= T)``; ``match`` is ``d < eta``, equivalently ``p_value < p``.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from desra.core.db import connect
from desra.core.errors import (
    ConfigError,
    DuplicateNameError,
    FingerprintError,
    UnknownNameError,
)

SIGMA = 0.015
"""Paper's standard deviation of one feature difference between independent models."""
P_LEVEL = 0.05
"""Paper's significance level."""
REGISTRY_FILENAME = "fingerprints.sqlite"
"""File name of the fingerprint registry inside the workspace."""


def eta_threshold(sigma: float = SIGMA, p: float = P_LEVEL, dims: int = 30) -> float:
    """Distance threshold eta = sigma^2 * chi2_dims^-1(p) / dims (float; 1.387e-4 at the defaults)."""
    from scipy.stats import chi2

    if sigma <= 0 or not 0 < p < 1 or dims < 1:
        raise ConfigError(f"need sigma > 0, 0 < p < 1, dims >= 1; got sigma={sigma}, p={p}, dims={dims}")
    return float(sigma**2 * chi2.ppf(p, dims) / dims)


def feature_distance(h_src: np.ndarray, h_sus: np.ndarray) -> float:
    """d = ||h_src - h_sus||^2 / L for two (L,) feature vectors (float >= 0)."""
    h_src, h_sus = np.asarray(h_src, np.float64), np.asarray(h_sus, np.float64)
    if h_src.shape != h_sus.shape or h_src.ndim != 1:
        raise FingerprintError(f"feature vectors must be 1-D and equal in length, got {h_src.shape} and {h_sus.shape}")
    return float(np.sum((h_src - h_sus) ** 2) / h_src.size)


def p_value(distance: float, sigma: float = SIGMA, dims: int = 30) -> float:
    """P(chi2_dims <= dims * distance / sigma^2): small means the suspect is unlikely independent."""
    from scipy.stats import chi2

    return float(chi2.cdf(dims * distance / sigma**2, dims))


@dataclass(frozen=True)
class Verdict:
    """Outcome of comparing a suspect's features with a source's."""

    match: bool
    """True when distance < eta: the suspect is judged derived from the source."""
    distance: float
    """d = ||h_src - h_sus||^2 / L."""
    eta: float
    """Threshold the distance was compared with."""
    p_value: float
    """P(chi2_L <= L d / sigma^2) under "independent model"."""

    def to_json(self) -> dict:
        """The four keys the CLI prints: match, distance, eta, p_value."""
        return {"match": self.match, "distance": self.distance, "eta": self.eta, "p_value": self.p_value}


def verdict_from_distance(distance: float, *, sigma: float = SIGMA, p: float = P_LEVEL, dims: int = 30) -> Verdict:
    """Verdict for a feature distance d between two ``dims``-long features at noise level ``sigma`` and significance ``p``."""
    eta = eta_threshold(sigma, p, dims)
    return Verdict(match=distance < eta, distance=float(distance), eta=eta, p_value=p_value(distance, sigma, dims))


def compare(h_src: np.ndarray, h_sus: np.ndarray, *, sigma: float = SIGMA, p: float = P_LEVEL) -> Verdict:
    """Verdict for two (L,) feature vectors at noise level ``sigma`` and significance ``p``."""
    return verdict_from_distance(feature_distance(h_src, h_sus), sigma=sigma, p=p, dims=np.asarray(h_src).size)


@dataclass(frozen=True)
class FingerprintRecord:
    """A registered source model's fingerprint."""

    name: str
    """Registry name."""
    features: np.ndarray
    """(L,) float64 feature vector of the critical image."""
    critical: np.ndarray
    """(S, S, 3) float32 critical image in [0, 1]."""
    scale: int
    """Upscaling factor of the source model."""
    config: dict
    """CriticalConfig fields used (the suspect must be extracted with the same)."""
    source: str
    """Where the model came from (path or registry id)."""
    created: float
    """Unix time of registration."""
    weights_sha256: str = ""
    """sha256 of the source model's weights (desra.models.lineage.weights_sha256); '' for records registered before it was kept."""


def registry_path(workspace: Path) -> Path:
    """Path of the SQLite fingerprint registry inside ``workspace``."""
    return Path(workspace) / REGISTRY_FILENAME


@contextlib.contextmanager
def _connect(path: Path) -> Iterator[sqlite3.Connection]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with connect(path, write=True) as connection:
        _ensure_schema(connection)
        yield connection


def _ensure_schema(connection: sqlite3.Connection) -> None:
    connection.execute(
        "CREATE TABLE IF NOT EXISTS fingerprints (name TEXT PRIMARY KEY, features TEXT NOT NULL, "
        "critical BLOB NOT NULL, side INTEGER NOT NULL, scale INTEGER NOT NULL, config TEXT NOT NULL, "
        "source TEXT NOT NULL, created REAL NOT NULL)"
    )
    columns = {row[1] for row in connection.execute("PRAGMA table_info(fingerprints)")}
    if "weights_sha256" not in columns:
        # Registries written before lineage checks lack the column; their records read back with ''.
        connection.execute("ALTER TABLE fingerprints ADD COLUMN weights_sha256 TEXT NOT NULL DEFAULT ''")


def register_fingerprint(path: Path, record: FingerprintRecord, *, replace: bool = False) -> None:
    """Store ``record`` in the registry at ``path``; an existing name needs ``replace=True``."""
    critical = np.ascontiguousarray(record.critical, dtype=np.float32)
    row = (
        record.name,
        json.dumps([float(v) for v in record.features]),
        critical.tobytes(),
        critical.shape[0],
        int(record.scale),
        json.dumps(record.config, sort_keys=True),
        record.source,
        record.created,
        record.weights_sha256,
    )
    with _connect(Path(path)) as connection:
        exists = connection.execute("SELECT 1 FROM fingerprints WHERE name = ?", (record.name,)).fetchone()
        if exists and not replace:
            raise DuplicateNameError(
                f"a fingerprint named {record.name!r} is already registered in {path}; "
                "choose another --name or pass --replace"
            )
        connection.execute(
            "INSERT OR REPLACE INTO fingerprints (name, features, critical, side, scale, config, source, created, weights_sha256) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", row,
        )


def list_fingerprints(path: Path) -> list[str]:
    """Names registered at ``path``, sorted (empty when the registry does not exist yet)."""
    if not Path(path).exists():
        return []
    with _connect(Path(path)) as connection:
        return [name for (name,) in connection.execute("SELECT name FROM fingerprints ORDER BY name")]


def get_fingerprint(path: Path, name: str) -> FingerprintRecord:
    """The record registered as ``name`` at ``path``; :class:`UnknownNameError` lists the known names."""
    row = None
    if Path(path).exists():
        with _connect(Path(path)) as connection:
            row = connection.execute(
                "SELECT name, features, critical, side, scale, config, source, created, weights_sha256 FROM fingerprints WHERE name = ?",
                (name,),
            ).fetchone()
    if row is None:
        known = ", ".join(list_fingerprints(path)) or "none"
        raise UnknownNameError(
            f"no fingerprint named {name!r} in {path}; registered: {known}. "
            "Register one with `desra fingerprint register MODEL --name NAME`"
        )
    name, features, critical, side, scale, config, source, created, weights = row
    return FingerprintRecord(
        name=name,
        features=np.asarray(json.loads(features), dtype=np.float64),
        critical=np.frombuffer(critical, dtype=np.float32).reshape(side, side, 3).copy(),
        scale=scale,
        config=json.loads(config),
        source=source,
        created=created,
        weights_sha256=weights,
    )


def make_record(name: str, critical: np.ndarray, scale: int, config: dict, source: str, weights_sha256: str = "") -> FingerprintRecord:
    """A :class:`FingerprintRecord` for a freshly extracted (S, S, 3) critical image."""
    from desra.fingerprint.features import fingerprint_features

    return FingerprintRecord(
        name=name,
        features=fingerprint_features(critical),
        critical=np.asarray(critical, np.float32),
        scale=int(scale),
        config=dict(config),
        source=source,
        created=time.time(),
        weights_sha256=weights_sha256,
    )
