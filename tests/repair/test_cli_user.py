"""The README's commands run as a user runs them, each a `python -m desra ...` process: `desra set
create|add|split`, `desra finetune`, `desra evaluate-run`, `desra jobs submit|status|cancel|resume`
on a running fine-tune, and `desra bench NAME --quick`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import wait_until

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # small networks: threads only add contention here


def desra(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``desra ARGS`` in a new process; the result with stdout/stderr as text."""
    return subprocess.run([sys.executable, "-m", "desra", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=ENV, check=False)


def ok(*args: str, timeout: float = 300) -> str:
    """Run ``desra ARGS``, require exit 0, return stdout."""
    done = desra(*args, timeout=timeout)
    assert done.returncode == 0, f"desra {' '.join(map(str, args))} -> {done.returncode}\n{done.stderr[-3000:]}"
    return done.stdout




@pytest.fixture(scope="module")
def user_set(tmp_path_factory):
    """A workspace with a curated x4 set made by `desra set create/add/split` from 4 real LR photos."""
    from desra.core.imageio import write_image
    from tests.conftest import load_photo

    ws = tmp_path_factory.mktemp("user")
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        write_image(ws / "photos" / f"{name}.png", load_photo(name)[100:132, 100:148])  # 32x48 LR
    ok("set", "create", ws / "set")
    ok("set", "add", ws / "set", "--lr", ws / "photos", "--pair", "desra-demo-x4", "--min-area", "50")
    ok("set", "split", ws / "set", "--val", "0.5")
    return ws


def test_set_create_add_split_builds_the_pseudo_gt_of_each_photo(user_set):
    from desra.core.imageio import read_image
    from desra.models.inference import upscale
    from desra.models.pairs import load_pair
    from desra.repair.curated import open_set

    items = json.loads(ok("set", "list", user_set / "set", "--json"))["items"]
    assert sorted(i["name"] for i in items) == ["astronaut", "chelsea", "coffee", "rocket"]
    assert sorted(i["split"] for i in items) == ["train", "train", "val", "val"]
    curated = open_set(user_set / "set")
    assert curated.scale == 4
    mse_model, gan_model = load_pair("desra-demo-x4")
    for item in curated.items():
        arrays = curated.load(item.id)
        lr = read_image(user_set / "photos" / f"{item.name}.png").rgb
        np.testing.assert_allclose(arrays.lr, lr, atol=0.5 / 255)
        # The stored SR outputs are the pair's outputs on that LR photo, and the pseudo-GT is
        # DeSRA Eq. 10 of them under the stored mask (all up to 8-bit PNG rounding).
        np.testing.assert_allclose(arrays.mse, upscale(mse_model, lr), atol=1 / 255)
        np.testing.assert_allclose(arrays.gan, upscale(gan_model, lr), atol=1 / 255)
        m = arrays.mask[..., None]
        np.testing.assert_allclose(arrays.pseudo_gt, np.where(m, arrays.mse, arrays.gan), atol=1 / 255)
    # A second split with the same seed is the same split; a bad fraction is one line, exit 2.
    ok("set", "split", user_set / "set", "--val", "0.5")
    assert json.loads(ok("set", "list", user_set / "set", "--json"))["items"] == items
    bad = desra("set", "split", user_set / "set", "--val", "1.5")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1


def test_finetune_then_evaluate_run_reports_on_the_val_split(user_set, tmp_path):
    run = tmp_path / "run"
    ok("finetune", "--set", user_set / "set", "--pair", "desra-demo-x4", "--iters", "2", "--patch", "32",
       "--batch", "1", "--save-every", "2", "--device", "cpu", "--out", run)
    printed = ok("evaluate-run", run)
    report = json.loads((run / "evaluation" / "report.json").read_text())
    assert report["items"] == 2 and sorted(r["id"] for r in report["per_item"]) == sorted(
        i["id"] for i in json.loads(ok("set", "list", user_set / "set", "--json"))["items"] if i["split"] == "val")
    assert 0.0 <= report["addition_rate"] <= 1.0
    assert "report.md" in printed or "removal" in printed
    for row in report["per_item"]:
        assert (run / "evaluation" / row["gallery"]).is_file()


@pytest.mark.slow
def test_jobs_cancel_and_resume_a_running_finetune(user_set):
    ws = user_set / "ws-jobs"
    iters = 40
    job = json.loads(ok("jobs", "submit", "finetune", "--workspace", ws, "--param", f"set={user_set / 'set'}",
                        "--param", "pair=desra-demo-x4", "--param", f"iters={iters}", "--param", "patch=32",
                        "--param", "batch=1", "--param", "save_every=2", "--device", "cpu", "--start-workers", "--json"))
    assert job["state"] == "queued" and job["kind"] == "finetune"

    def status():
        return json.loads(ok("jobs", "status", job["id"], "--workspace", ws, "--json"))

    def checkpoints():
        from desra.train.loop import list_checkpoints

        return [i for i, _ in list_checkpoints(job["out"])] if os.path.isdir(job["out"]) else []

    try:
        wait_until(lambda: status()["state"] == "running" and checkpoints(), 180, "a running fine-tune's first checkpoint")
        ok("jobs", "cancel", job["id"], "--workspace", ws)
        cancelled = wait_until(lambda: (s := status())["state"] == "cancelled" and s, 60, "the cancel to take")
        stopped_at = checkpoints()[-1]
        assert stopped_at < iters and cancelled["finished"] is not None
        ok("jobs", "resume", job["id"], "--workspace", ws, "--start-workers")
        done = wait_until(lambda: (s := status())["state"] in ("done", "failed") and s, 300, "the resumed job to end")
        assert done["state"] == "done", ok("jobs", "log", job["id"], "--workspace", ws)
        assert checkpoints()[-1] == iters
        events = [json.loads(line) for line in (Path(job["out"]) / "events.jsonl").read_text().splitlines()]
        starts = [e["iter"] for e in events if e.get("event") == "start"]
        # The resumed attempt continued from the last checkpoint the cancelled one wrote.
        assert starts == [0, stopped_at]
        assert [e["iter"] for e in events if "losses" in e][-1] == iters
    finally:
        from desra.jobs.store import JobStore

        for worker in JobStore(ws).workers():  # the detached workers this test started
            if worker.alive:
                os.kill(worker.pid, signal.SIGTERM)


def test_bench_quick_runs_and_reports_json():
    name = "detect-full"  # the quickest of the registered benchmarks (about 4 s with --quick)
    report = json.loads(ok("bench", name, "--quick", "--repeats", "1", "--json", "--device", "cpu"))
    assert list(report["benchmarks"]) == [name] and report["environment"]["device"] == "cpu"
    rows = report["benchmarks"][name]
    assert rows and all(np.isfinite(r["value"]) and r["value"] > 0 and r["unit"] for r in rows)
    listed = ok("bench", "--list")
    assert name in listed
    unknown = desra("bench", "no-such-bench", "--quick")
    assert unknown.returncode == 2 and name in unknown.stderr  # the error lists what is known
