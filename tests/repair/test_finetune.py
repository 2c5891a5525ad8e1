"""DeSRA fine-tuning on CPU with a tiny model made here: outputs change, exports load, kill -9 +
--resume ends at the same iteration, a corrupt checkpoint is never resumed from, evaluate-run reports."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from desra.repair.finetune import (
    FinetuneConfig,
    finetune,
    load_train_data,
    make_batch_fn,
)
from desra.train.loop import latest_checkpoint, list_checkpoints


@pytest.fixture(scope="module")
def finished_run(shared_set, tiny_models, tmp_path_factory):
    """A 4-iteration CPU fine-tune of the tiny model on the shared set -> (config, result)."""
    config = _config(shared_set, tiny_models, tmp_path_factory.mktemp("finished") / "run")
    return config, finetune(config)


def _config(curated_set, tiny_models, out, **overrides):
    gan, disc = tiny_models
    values = dict(set_dir=str(curated_set.root), out=str(out), model=str(gan), disc=str(disc), iters=4,
                  patch=64, batch=2, save_every=2, device="cpu", previews=1,
                  ema=0.5)  # the default 0.999 would hide 4 iterations' change in the exported EMA weights
    values.update(overrides)
    return FinetuneConfig(**values)


def _sr(module, lr):
    import torch

    with torch.no_grad():
        return module(torch.from_numpy(lr.transpose(2, 0, 1).copy())[None]).numpy()


def test_batches_are_aligned_flipped_crops_and_repeatable(shared_set):
    data = load_train_data(shared_set.root, patch=64)
    batch_fn = make_batch_fn(data, batch=3, seed=7)
    lr, hr = batch_fn(5)
    assert tuple(lr.shape) == (3, 3, 16, 16) and tuple(hr.shape) == (3, 3, 64, 64)
    again_lr, again_hr = batch_fn(5)
    assert np.array_equal(lr.numpy(), again_lr.numpy()) and np.array_equal(hr.numpy(), again_hr.numpy())
    assert not np.array_equal(lr.numpy(), batch_fn(6)[0].numpy())
    # Aligned: outside the artifact box the pseudo-GT is the GAN image, whose 4x4 means are the LR
    # (make_item builds LR as the box average of the HR), so crops agree after average pooling.
    pooled = hr.numpy().reshape(3, 3, 16, 4, 16, 4).mean(axis=(3, 5))
    assert np.median(np.abs(pooled - lr.numpy())) < 0.02


def test_short_finetune_changes_the_model_and_exports_it(finished_run, shared_set, tiny_models, photo):
    import torch
    import yaml

    from desra.models.checkpoint import load_model

    config, result = finished_run
    out = result.out
    assert result.iterations == 4 and latest_checkpoint(out).name == "iter_000004.pt"
    start = load_model(tiny_models[0])
    tuned = load_model(result.model)
    assert tuned.descriptor.architecture == "srvgg" and tuned.descriptor.name.endswith("-desra")
    lr = photo("astronaut")[:32, :32]
    assert np.abs(_sr(tuned.module, lr) - _sr(start.module, lr)).max() > 1e-4
    basicsr = torch.load(result.basicsr_model, weights_only=True)
    assert set(basicsr) == {"params_ema"}
    assert all(torch.equal(basicsr["params_ema"][k], v) for k, v in tuned.module.state_dict().items())
    options = yaml.safe_load(result.options.read_text())
    assert options["network_g"]["type"] == "SRVGGNetCompact" and options["path"]["param_key_g"] == "params_ema"
    assert sorted(os.listdir(options["datasets"]["train"]["dataroot_gt"])) == sorted(
        os.listdir(options["datasets"]["train"]["dataroot_lq"]))
    val_id = shared_set.items("val")[0].id
    assert (out / "previews" / "iter_000002" / f"{val_id}.png").is_file()
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert any(e.get("iter") == 4 and "losses" in e and "eta_s" in e for e in events)
    assert any(e.get("event") == "preview" and "val_l1_pseudo_gt" in e["metrics"] for e in events)


def test_the_repair_moves_toward_the_pseudo_gt_inside_the_mask_only(tiny_models, tmp_path, photo):
    # A set made from the GAN model's own outputs: outside the mask the pseudo-GT is what the model
    # already produces; inside it is the MSE image (here the HR photo, made flat in the box so the
    # network can tell the box from the rest). A fine-tune toward the right target moves inside
    # 0.80 of the way to the MSE image and outside 0.52-0.55 (a conv net cannot change one region
    # alone); toward the GAN images the inside moved 0.33, with the mask swapped 0.54 (measured).
    # A target that ignores the mask (the MSE image everywhere) is not told apart in 20 iterations.
    from desra.models.checkpoint import load_model
    from desra.repair.curated import create_set

    gan, disc = tiny_models
    start = load_model(gan).module
    curated = create_set(tmp_path / "set")
    items = []
    for name in ("astronaut", "coffee"):
        hr = photo(name)[:128, :128].copy()
        mask = np.zeros((128, 128), bool)
        mask[32:96, 32:96] = True
        hr[mask] = hr[mask].mean(axis=0)
        lr = hr.reshape(32, 4, 32, 4, 3).mean(axis=(1, 3)).astype(np.float32)
        own = np.clip(_sr(start, lr)[0].transpose(1, 2, 0), 0, 1).astype(np.float32)
        curated.add(name, lr, hr, own, mask, mask_source="file", provenance={"by": "test"}, split="train")
        items.append((lr, hr, own, mask))
    # The L1 pull toward the pseudo-GT alone: in 20 iterations the adversarial and feature-matching
    # terms of a discriminator that has not learnt anything yet only add noise whose size depends on
    # its initialisation (measured 0.35 to 0.75 of the way inside, by seed).
    config = FinetuneConfig(set_dir=str(curated.root), out=str(tmp_path / "run"), model=str(gan), disc=str(disc),
                            iters=20, lr=1e-3, patch=64, batch=2, save_every=20, device="cpu", previews=0, ema=0.0,
                            percep_weight=0.0, gan_weight=0.0)
    tuned = load_model(finetune(config).model).module
    for lr, mse, own, mask in items:
        after = np.clip(_sr(tuned, lr)[0].transpose(1, 2, 0), 0, 1)
        # Fraction of the way from the GAN output to the MSE image covered, inside and outside the mask.
        inside, outside = (1 - np.abs(after - mse)[r].mean() / np.abs(own - mse)[r].mean() for r in (mask, ~mask))
        assert inside > 0.7, f"inside the mask the output moved only {inside:.2f} of the way to the pseudo-GT"
        assert inside - outside > 0.15, f"outside the mask it moved {outside:.2f}, as much as inside ({inside:.2f})"


def test_a_run_with_a_fresh_discriminator_is_repeatable_from_its_seed(shared_set, tiny_models, tmp_path):
    # Without --disc the discriminator is initialised fresh: from the run's seed, not from whatever
    # the process's global torch RNG holds (it was, so one command gave different runs).
    import torch

    from desra.models.checkpoint import read_state_dict

    gan, _ = tiny_models
    weights = []
    for i, noise in enumerate((1, 2)):
        torch.manual_seed(noise)  # other work done in the process before the fine-tune
        config = FinetuneConfig(set_dir=str(shared_set.root), out=str(tmp_path / f"run{i}"), model=str(gan), iters=2,
                                patch=32, batch=1, save_every=2, device="cpu", previews=0, ema=0.0)
        with pytest.warns(UserWarning, match="FRESH U-Net SN"):
            weights.append(read_state_dict(finetune(config).model)[0])
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_corrupt_or_half_written_checkpoints_are_never_resumed_from(finished_run, shared_set, tiny_models, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(finished_run[1].out, out)
    newest = out / "ckpt" / "iter_000004.pt"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # torn by a disk fault
    (out / "ckpt" / ".iter_000006.pt.tmp-4242").write_bytes(b"half a checkpoint")  # an interrupted save
    finetune(_config(shared_set, tiny_models, out, iters=6), resume=True)
    assert [i for i, _ in list_checkpoints(out)] == [2, 4, 6]  # 4 rewritten from the good 2
    assert (out / "ckpt" / "iter_000004.pt.corrupt").exists()
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert any(e.get("event") == "warning" and "iter_000004.pt" in e["message"] for e in events)
    # It resumed from iteration 2 (the last good one): checkpoints 4 and 6 were written again.
    warning = next(i for i, e in enumerate(events) if e.get("event") == "warning")
    assert [e["iter"] for e in events[warning:] if e.get("event") == "checkpoint"] == [4, 6]


@pytest.mark.slow
def test_kill_9_then_resume_ends_at_the_same_iteration(shared_set, tiny_models, tmp_path):
    gan, disc = tiny_models
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "desra", "finetune", "--set", str(shared_set.root), "--model", str(gan),
            "--disc", str(disc), "--iters", "60", "--patch", "32", "--batch", "2", "--save-every", "5",
            "--device", "cpu", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # tiny networks: threads only add contention
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 120
    while latest_checkpoint(out) is None and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.02)
    assert process.poll() is None, "the run finished before it could be killed; make it longer"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    killed_at = [i for i, _ in list_checkpoints(out)][-1]
    assert killed_at < 60 and not (out / "model.safetensors").exists()
    done = subprocess.run([*argv, "--resume"], capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert [i for i, _ in list_checkpoints(out)][-1] == 60
    assert (out / "model.safetensors").is_file()
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert events[-1]["event"] == "done" and events[-1]["iter"] == 60
    # The resumed process continued after the last checkpoint instead of starting again.
    logged = [e["iter"] for e in events if "losses" in e]
    assert logged.count(5) == 1 and logged[-1] == 60
    # And it ended where an uninterrupted run of the same command ends: same weights, EMA and
    # discriminator (the data order, optimiser state and RNG were all restored).
    import torch

    from desra.train.loop import load_checkpoint

    straight = tmp_path / "straight"
    whole = subprocess.run([*argv[:-1], str(straight)], capture_output=True, text=True, timeout=600, env=env, check=False)
    assert whole.returncode == 0, whole.stderr[-2000:]
    resumed, uninterrupted = (load_checkpoint(d / "ckpt" / "iter_000060.pt") for d in (out, straight))
    for key in ("generator", "ema", "discriminator"):
        assert resumed[key].keys() == uninterrupted[key].keys()
        for name, tensor in resumed[key].items():
            torch.testing.assert_close(tensor, uninterrupted[key][name], rtol=0, atol=1e-6, msg=f"{key}.{name}")
    # Without --resume the finished run refuses to be overwritten.
    again = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)
    assert again.returncode == 2 and "--resume" in again.stderr


def test_evaluate_run_writes_reports_and_gallery(finished_run):
    from desra.repair.evaluate_run import evaluate_run

    out = finished_run[1].out
    report = evaluate_run(out)
    assert report["items"] == 2 and report["labelled_items"] == 1
    for key in ("iou_before", "iou_after", "iou_drop", "removal_rate", "addition_rate"):
        assert key in report
    assert 0.0 <= report["addition_rate"] <= 1.0
    labelled = next(r for r in report["per_item"] if r["reference"] == "label")
    assert labelled["labelled"] >= 1  # the labelled box is scored
    assert json.loads((out / "evaluation" / "report.json").read_text()) == report
    assert "removal rate" in (out / "evaluation" / "report.md").read_text()
    assert "Selectivity" in (out / "evaluation" / "report.md").read_text()
    for row in report["per_item"]:
        values = row["selectivity"]
        assert set(values) >= {"repaired_to_mse_inside", "repaired_to_gan_outside", "gan_to_mse_outside"}
        assert all(v is None or 0 < v <= 100 for v in values.values())
    for row in report["per_item"]:
        assert (out / "evaluation" / row["gallery"]).is_file()
        assert (out / "evaluation" / "after" / f"{row['id']}.png").is_file()


def test_finetune_job_runs_through_the_runner(shared_set, tiny_models, tmp_path):
    from desra.jobs.runner import run_worker
    from desra.jobs.store import JobStore

    gan, disc = tiny_models
    store = JobStore(tmp_path / "ws")
    job = store.submit("finetune", {"set": str(shared_set.root), "model": str(gan), "disc": str(disc),
                                    "iters": 2, "patch": 64, "batch": 2, "save_every": 1}, device="cpu")
    run_worker(store.workspace, "cpu", drain=True)
    done = store.status(job.id)
    assert done.state == "done", store.log(job.id)
    assert (done.out / "model.safetensors").is_file()
    assert any(e.get("iter") == 2 and "losses" in e for e in store.events(job.id))


def test_discriminator_loads_from_the_zoo_layout_and_refuses_others(tmp_path):
    import torch

    from desra.core.errors import CheckpointError
    from desra.models import basicsr_adapter
    from desra.models.checkpoint import describe, load_model, save_model
    from desra.models.discriminator import load_discriminator, save_discriminator

    params = {"num_in_ch": 3, "num_feat": 8, "skip_connection": True}
    torch.manual_seed(0)
    disc = basicsr_adapter.unet_discriminator_sn(**params).eval()
    x = torch.rand(1, 3, 32, 32)
    path = save_discriminator(tmp_path / "disc.safetensors", disc, params, name="d")
    loaded, info = load_discriminator(path)
    assert info["arch_params"] == {**params, "spectral_norm": True} and torch.allclose(loaded.eval()(x), disc(x))
    # A discriminator is no SR model: loading it as one says what it is and where it goes.
    with pytest.raises(CheckpointError, match="--disc"):
        load_model(path)
    # Session-1 zoo files carried the generator's descriptor with the D options as extra metadata.
    generator_params = {"num_in_ch": 3, "num_out_ch": 3, "num_feat": 8, "num_conv": 2, "upscale": 4, "act_type": "prelu"}
    legacy = save_model(tmp_path / "legacy.safetensors", disc, describe("srvgg", generator_params, name="d"),
                        extra_metadata={"discriminator": "UNetDiscriminatorSN", "discriminator_params": {**params, "num_feat": 8}})
    loaded, info = load_discriminator(legacy)
    assert torch.allclose(loaded.eval()(x), disc(x))
    # The zoo's plain-convolution variant (spectral norm removed) loads too.
    for layer in disc.modules():
        if hasattr(layer, "weight_orig"):
            torch.nn.utils.remove_spectral_norm(layer)
    plain = save_discriminator(tmp_path / "plain.safetensors", disc, {**params, "spectral_norm": False}, name="d")
    loaded, info = load_discriminator(plain)
    assert info["arch_params"]["spectral_norm"] is False and torch.allclose(loaded.eval()(x), disc(x))
    generator = save_model(tmp_path / "gen.safetensors", basicsr_adapter.srvgg(**generator_params),
                           describe("srvgg", generator_params, name="g"))
    with pytest.raises(CheckpointError, match="UNetDiscriminatorSN"):
        load_discriminator(generator)


def test_the_flags_the_dashboard_and_a_job_build_one_settings_type():
    # desra finetune's flags, the dashboard's form and a stored finetune job all end as one FinetuneConfig.
    from desra.cli import build_parser
    from desra.jobs.job_settings import job_params, parse_settings, to_argv

    flags = ["--set", "s", "--pair", "desra-demo-x4", "--iters", "7", "--gan-kind", "hinge", "--no-amp", "--out", "o"]
    from_cli = FinetuneConfig.from_flags(vars(build_parser().parse_args(["finetune", *flags])))
    built = FinetuneConfig(set_dir="s", pair="desra-demo-x4", iters=7, gan_kind="hinge", amp=False, out="o")
    assert from_cli == built
    assert FinetuneConfig.from_flags(vars(build_parser().parse_args(["finetune", "--set", "s", "--model", "m", "--out", "o"]))) == \
        FinetuneConfig(set_dir="s", model="m", out="o")  # flags left out: the type's defaults
    # The job a dashboard submits runs exactly these settings: its parameters become the command's flags again.
    job = parse_settings("finetune", job_params(built))
    argv = ["finetune", *to_argv(job)]
    assert "--no-amp" in argv and not any(a.startswith("--device") for a in argv)  # the device is the runner's
    assert FinetuneConfig.from_flags(vars(build_parser().parse_args(argv))) == built


def test_job_rows_stored_before_the_one_settings_type_still_parse():
    from desra.jobs.job_settings import parse_settings, to_argv

    stored = {"set": "/ws/curated", "pair": "desra-demo-x4", "iters": 1000, "save_every": 100, "lr": 0.0001,
              "patch": 256, "batch": 4}  # what the Repair tab stored
    assert to_argv(parse_settings("finetune", stored)) == [
        "--set=/ws/curated", "--pair=desra-demo-x4", "--iters=1000", "--lr=0.0001", "--patch=256", "--batch=4",
        "--save-every=100"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"batch": 0}, "fine-tune setting --batch 0 must be at least 1"),
        ({"gan_kind": "wgan"}, "fine-tune setting --gan-kind 'wgan' must be one of vanilla, ragan, hinge"),
        ({"previews": -1}, "fine-tune setting previews -1 must be at least 0"),
        ({"model": "m"}, "give exactly one of --pair NAME or --model GAN_CKPT"),
        ({"pair": None}, "give exactly one of --pair NAME or --model GAN_CKPT"),
    ],
)
def test_fine_tune_settings_are_checked_once_on_construction(values, message):
    from desra.core.errors import ConfigError

    with pytest.raises(ConfigError, match=re.escape(message)):
        FinetuneConfig(**{"set_dir": "s", "pair": "desra-demo-x4", **values})


def test_finetune_needs_a_run_folder(shared_set, tiny_models):
    from desra.core.errors import ConfigError

    with pytest.raises(ConfigError, match="needs a run folder: pass --out DIR"):
        finetune(FinetuneConfig(set_dir=str(shared_set.root), model=str(tiny_models[0]), device="cpu"))


def test_the_repair_service_runs_a_job_in_its_workspace_and_evaluates_it(shared_set, tiny_models, tmp_path):
    # The dashboard's path: settings -> a confined job -> its run as a watcher sees it -> evaluation -> before/after.
    from desra.core.errors import JobError
    from desra.jobs.runner import run_worker
    from desra.service import repair

    workspace = tmp_path / "ws"
    shutil.copytree(shared_set.root, workspace / "curated")
    for model in tiny_models:
        shutil.copy(model, workspace / model.name)
    gan, disc = (workspace / model.name for model in tiny_models)
    outside = FinetuneConfig(set_dir=str(shared_set.root), model=str(gan), device="cpu")
    with pytest.raises(JobError, match="outside the workspace"):
        repair.start_finetune(workspace, outside)
    config = FinetuneConfig(set_dir="curated", model=str(gan), disc=str(disc), iters=2, patch=64, batch=2, save_every=1,
                            device="cpu")
    job = repair.start_finetune(workspace, config)
    assert job["device"] == "cpu" and job["params"]["set"] == str((workspace / "curated").resolve())
    assert repair.finetune_jobs(workspace) == [job["id"]]
    with pytest.raises(JobError, match="evaluate it once it is done"):
        repair.evaluate_job(workspace, job["id"])
    run_worker(workspace, "cpu", drain=True)
    view = repair.run_view(workspace, job["id"])
    assert view.done and view.job["progress"]["iter"] == 2, view.job["log_tail"]
    assert {row["term"] for row in view.losses} >= {"l1", "d"} and view.previews
    assert [Path(p).name for p in view.model_files] == ["model.safetensors", "model_basicsr.pth"]
    assert view.report_rows is None and view.val_items == [item.id for item in shared_set.items("val")]
    rows = repair.evaluate_job(workspace, job["id"])
    assert [row[0] for row in rows] == ["val items (with artifacts)", "IoU before → after", "IoU drop",
                                        "flagged area before → after", "removal rate", "addition rate"]
    assert repair.run_view(workspace, job["id"]).report_rows == rows
    before, after = repair.before_after(workspace, job["id"], view.val_items[0])
    assert Path(before).is_file() and Path(after).is_file() and Path(after).parent.name == "after"
