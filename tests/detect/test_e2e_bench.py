"""detect-e2e's yardstick: the naive float64 script finds what desra detect finds on the benchmark pair."""

from __future__ import annotations

import numpy as np

from desra.benchmarks.detect import e2e_pair
from desra.benchmarks.naive_detect import naive_detect
from desra.cli import main
from desra.core.imageio import read_mask


def test_naive_script_and_cli_write_the_same_mask_on_the_benchmark_pair(tmp_path):
    mse, gan = e2e_pair(tmp_path, side=512)
    flagged = naive_detect(str(mse), str(gan), str(tmp_path / "naive.png"))
    assert main(["detect", "--mse", str(mse), "--gan", str(gan), "--segmenter", "none", "--out", str(tmp_path / "cli")]) == 0
    ours = read_mask(tmp_path / "cli" / "gan_mask.png")
    theirs = read_mask(tmp_path / "naive.png")
    assert ours.shape == (512, 512) and 0.03 < ours.mean() < 0.5  # the noisy box is found, not the whole image
    assert flagged == int(theirs.sum())
    np.testing.assert_array_equal(ours, theirs)
    (tmp_path / "again").mkdir()
    again = e2e_pair(tmp_path / "again", side=512)
    assert again[1].read_bytes() == gan.read_bytes()  # seeded: the same files on every run
