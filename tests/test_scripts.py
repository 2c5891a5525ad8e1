"""The shell scripts under scripts/ parse, and the repair-length table lists the lengths measured so far."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("script", sorted(p.name for p in (ROOT / "scripts").glob("*.sh")))
def test_shell_script_parses(script):
    result = subprocess.run(["bash", "-n", str(ROOT / "scripts" / script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_repair_length_table_lists_only_the_lengths_done(tmp_path):
    # A lease that ran out of time leaves some lengths unmeasured: the table shows the others.
    verdicts = {0: (0.0, 0.0, True, "none"), 100: (1.42e-4, 0.0586, False, "contradicted")}
    for length, (distance, p, match, lineage) in verdicts.items():
        (tmp_path / f"verify-{length}.json").write_text(json.dumps(
            {"distance": distance, "eta": 1.387e-4, "p_value": p, "match": match, "lineage_check": {"status": lineage}}))
    env = dict(os.environ, TABLE_ONLY="1", PY=sys.executable, LENGTHS="100 250")
    result = subprocess.run(["bash", str(ROOT / "scripts" / "repair_length.sh"), "desra-demo-x4", "cpu", str(tmp_path)],
                            capture_output=True, text=True, env=env, check=True)
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert rows == ["| 0 | 0.000e+00 | 0.00 | 0 | derived | none |",
                    "| 100 | 1.420e-04 | 1.02 | 0.0586 | not derived | contradicted |"]
