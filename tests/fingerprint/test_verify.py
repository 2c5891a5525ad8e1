"""The chi-squared threshold, the verdict and the SQLite registry of Quan et al.'s verifier."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chi2

from desra.core.errors import ConfigError, DuplicateNameError, UnknownNameError
from desra.fingerprint.verify import (
    FingerprintRecord,
    compare,
    eta_threshold,
    feature_distance,
    get_fingerprint,
    list_fingerprints,
    p_value,
    register_fingerprint,
    registry_path,
)


def test_eta_at_paper_values_is_1_387e_4():
    # 0.015^2 * chi2_30^-1(0.05) / 30 with chi2_30^-1(0.05) = 18.49
    assert chi2.ppf(0.05, 30) == pytest.approx(18.4927, abs=1e-4)
    assert eta_threshold() == pytest.approx(1.387e-4, rel=1e-3)
    assert eta_threshold(0.015, 0.05, 30) == pytest.approx(0.015**2 * 18.4927 / 30, rel=1e-5)


def test_eta_grows_with_sigma_and_p():
    assert eta_threshold(sigma=0.03) == pytest.approx(4 * eta_threshold(sigma=0.015))
    assert eta_threshold(p=0.10) > eta_threshold(p=0.05) > eta_threshold(p=0.01)


def test_p_value_at_eta_equals_the_level():
    eta = eta_threshold(0.015, 0.05, 30)
    assert p_value(eta, 0.015, 30) == pytest.approx(0.05)
    assert p_value(eta / 2) < 0.05 < p_value(eta * 2)


def test_eta_rejects_nonsense_parameters():
    with pytest.raises(ConfigError, match="sigma"):
        eta_threshold(sigma=0)
    with pytest.raises(ConfigError, match="0 < p < 1"):
        eta_threshold(p=1.5)


def test_verdict_is_distance_against_eta():
    h = np.full(30, 1 / 30)
    near = h + 0.005 * np.where(np.arange(30) % 2, 1, -1)  # d = 2.5e-5 < eta
    far = h + 0.02 * np.where(np.arange(30) % 2, 1, -1)  # d = 4e-4 > eta
    assert feature_distance(h, near) == pytest.approx(2.5e-5)
    v_near, v_far = compare(h, near), compare(h, far)
    assert v_near.match and not v_far.match
    assert v_near.p_value < 0.05 < v_far.p_value
    assert set(v_near.to_json()) == {"match", "distance", "eta", "p_value"}


def _record(name: str, seed: int) -> FingerprintRecord:
    rng = np.random.default_rng(seed)
    return FingerprintRecord(
        name=name,
        features=rng.random(30),
        critical=rng.random((16, 16, 3)).astype(np.float32),
        scale=4,
        config={"size": 16, "iterations": 3, "lr": 0.1, "lam": 0.001, "beta": 1.0, "seed": 0},
        source="test",
        created=1.0,
    )


def test_registry_round_trip_and_names(tmp_path):
    path = registry_path(tmp_path)
    assert list_fingerprints(path) == []
    a, b = _record("b-model", 1), _record("a-model", 2)
    register_fingerprint(path, a)
    register_fingerprint(path, b)
    assert list_fingerprints(path) == ["a-model", "b-model"]
    back = get_fingerprint(path, "b-model")
    np.testing.assert_array_equal(back.features, a.features)
    np.testing.assert_array_equal(back.critical, a.critical)
    assert back.config == a.config and back.scale == 4


def test_registry_refuses_duplicates_unless_replacing(tmp_path):
    path = registry_path(tmp_path)
    register_fingerprint(path, _record("m", 1))
    with pytest.raises(DuplicateNameError, match="--replace"):
        register_fingerprint(path, _record("m", 2))
    register_fingerprint(path, _record("m", 2), replace=True)
    np.testing.assert_array_equal(get_fingerprint(path, "m").features, _record("m", 2).features)


def test_unknown_name_lists_the_registered(tmp_path):
    path = registry_path(tmp_path)
    register_fingerprint(path, _record("known-one", 1))
    with pytest.raises(UnknownNameError, match="known-one"):
        get_fingerprint(path, "missing")
