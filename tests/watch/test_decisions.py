"""Promotion rules, the held-out share, the lineage check and the settings' limits (pure functions)."""

from __future__ import annotations

import pytest

from desra.core.errors import ConfigError
from desra.models.lineage import Lineage
from desra.repair.watch_state import WatchSettings
from desra.service.watch_rounds import (
    Derivation,
    holdout_shas,
    lineage_confirms,
    promotion_decision,
)

DERIVED = Derivation(True, "lineage", "desra fine-tune of the parent version")


def test_holdout_is_a_share_of_the_sorted_hashes_never_none_and_never_all():
    shas = [f"{i:02x}" * 32 for i in (9, 3, 7, 1)]
    assert holdout_shas(shas, 0.25) == {shas[3]}
    assert holdout_shas(list(reversed(shas)), 0.25) == {shas[3]}, "the order of arrival does not matter"
    assert holdout_shas(shas[:2], 0.01) == holdout_shas(shas[:2], 0.99) == {shas[1]}, "one of two, whatever the share"
    assert len(holdout_shas(shas, 0.5)) == 2


@pytest.mark.parametrize(
    ("removal", "addition", "derivation", "promoted", "says"),
    [
        (0.9, 0.0, DERIVED, True, "derived by the lineage"),
        (0.9, 0.25, DERIVED, False, "addition rate 25.0 % > 0"),
        (0.5, 0.0, DERIVED, False, "removal rate 50.0 % < the threshold 75.0 %"),
        (0.9, 0.0, Derivation(False, "fingerprint", "d = 3 eta"), False, "not shown to derive from the original (d = 3 eta)"),
        (None, 0.0, DERIVED, False, "removal rate undefined"),
    ],
)
def test_promotion_needs_removal_no_addition_and_derivation(removal, addition, derivation, promoted, says):
    decided, reason = promotion_decision(removal, addition, 0.75, derivation)
    assert decided is promoted
    assert says in reason


def test_lineage_confirms_only_desra_repairs_of_the_parent_that_reach_the_original():
    original, parent, weights = "0" * 64, "1" * 64, "2" * 64
    first = Lineage("finetune", parent, source_sha256=original)
    second = Lineage("finetune", weights, source_sha256=parent, source_lineage=first)
    assert lineage_confirms(second, weights, parent, original)[0]
    assert lineage_confirms(Lineage("finetune", weights, source_sha256=original), weights, original, original)[0]
    assert lineage_confirms(None, weights, parent, original) == (False, "the model file records no lineage")
    assert "other weights" in lineage_confirms(second, "3" * 64, parent, original)[1]
    assert "another source" in lineage_confirms(second, weights, "4" * 64, original)[1]
    assert "does not reach the original" in lineage_confirms(Lineage("finetune", weights, source_sha256=parent), weights, parent, original)[1]
    assert "not a desra fine-tune" in lineage_confirms(Lineage("attack", weights, source_sha256=parent), weights, parent, original)[1]


@pytest.mark.parametrize(("field", "value", "message"), [
    ("repair_after", 1, "--repair-after must be >= 2"),
    ("holdout", 1.0, "--holdout must be a fraction strictly between 0 and 1"),
    ("min_removal", 1.5, "--min-removal must be a fraction in [0, 1]"),
    ("iters", 0, "--iters must be >= 1"),
])
def test_settings_out_of_range_are_refused(field, value, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        WatchSettings(folder="/x", pair="desra-demo-x4", **{field: value})
