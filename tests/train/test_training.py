"""The shared training loop: it learns, it resumes exactly, it checkpoints safely."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from desra.core.errors import ConfigError
from desra.models import basicsr_adapter as ba
from desra.train.loop import (
    TrainConfig,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    train,
)


def _tiny_generator():
    torch.manual_seed(0)
    return ba.srvgg(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=2, act_type="prelu")


def _tiny_discriminator():
    torch.manual_seed(1)
    return ba.unet_discriminator_sn(num_in_ch=3, num_feat=8, skip_connection=True)


@pytest.fixture
def batch_fn(photo):
    """Deterministic (lr, hr) batches of 32 px HR crops of a real photo, chosen by the iteration."""
    image = torch.from_numpy(photo("coffee")).permute(2, 0, 1)

    def make(iteration: int):
        rng = np.random.default_rng(iteration)
        crops = []
        for _ in range(2):
            y, x = rng.integers(0, image.shape[1] - 32), rng.integers(0, image.shape[2] - 32)
            crops.append(image[:, y : y + 32, x : x + 32])
        hr = torch.stack(crops)
        return torch.nn.functional.avg_pool2d(hr, 2), hr

    return make


def _weights(module):
    return torch.cat([p.detach().flatten().cpu() for p in module.parameters()])


def test_l1_training_changes_weights_and_lowers_loss(batch_fn, tmp_path):
    generator = _tiny_generator()
    before = _weights(generator).clone()
    config = TrainConfig(iters=30, lr_g=2e-3, ema=0.9, save_every=10, log_every=5, device="cpu")
    result = train(config, generator, None, batch_fn, tmp_path)
    assert not torch.equal(before, _weights(result.generator))
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    progress = [e for e in events if "losses" in e]
    assert progress[-1]["iter"] == 30 and progress[-1]["iters"] == 30
    assert progress[-1]["losses"]["l1"] < progress[0]["losses"]["l1"]
    assert {"it_per_s", "eta_s", "time"} <= set(progress[0])
    assert result.checkpoint == latest_checkpoint(tmp_path)
    assert [i for i, _ in list_checkpoints(tmp_path)] == [10, 20, 30]


def test_gan_training_runs_on_every_device_with_amp_on_cuda(batch_fn, tmp_path, device):
    # The same short GAN run on each device (AMP on CUDA, the fine-tune default there): it trains,
    # every logged loss is finite, and its checkpoint resumes on the CPU.
    generator, discriminator = _tiny_generator(), _tiny_discriminator()
    g0 = _weights(generator).clone()
    config = TrainConfig(iters=4, lr_g=1e-3, lr_d=1e-3, gan_weight=0.1, percep_weight=1.0, save_every=2,
                         device=device, amp=device == "cuda")
    result = train(config, generator, discriminator, batch_fn, tmp_path)
    assert not torch.equal(g0, _weights(result.generator))
    losses = [json.loads(line)["losses"] for line in (tmp_path / "events.jsonl").read_text().splitlines() if "losses" in line]
    assert losses and all(np.isfinite(v) for row in losses for v in row.values())
    state = load_checkpoint(result.checkpoint, map_location="cpu")
    assert state["iteration"] == 4 and all(t.device.type == "cpu" for t in state["generator"].values())


def test_gan_training_updates_generator_and_discriminator(batch_fn, tmp_path):
    generator, discriminator = _tiny_generator(), _tiny_discriminator()
    g0, d0 = _weights(generator).clone(), _weights(discriminator).clone()
    config = TrainConfig(iters=6, lr_g=1e-3, lr_d=1e-3, gan_weight=0.1, percep_weight=1.0, gan_kind="ragan",
                         d_warmup=2, save_every=3, device="cpu")
    result = train(config, generator, discriminator, batch_fn, tmp_path)
    assert not torch.equal(g0, _weights(result.generator))
    assert not torch.equal(d0, _weights(discriminator))
    state = load_checkpoint(result.checkpoint)  # weights_only=True inside
    assert state["iteration"] == 6
    assert {"generator", "ema", "discriminator", "opt_g", "opt_d"} <= set(state)
    losses = [json.loads(line)["losses"] for line in (tmp_path / "events.jsonl").read_text().splitlines() if "losses" in line]
    assert {"l1", "gan_g", "percep", "d"} <= set(losses[-1])


def test_resume_matches_uninterrupted_run(batch_fn, tmp_path):
    config = TrainConfig(iters=8, lr_g=1e-3, lr_d=1e-3, gan_weight=0.1, gan_kind="vanilla", ema=0.5, save_every=4, device="cpu")
    full = train(config, _tiny_generator(), _tiny_discriminator(), batch_fn, tmp_path / "full")

    half = TrainConfig(**{**config.__dict__, "iters": 4})
    train(half, _tiny_generator(), _tiny_discriminator(), batch_fn, tmp_path / "split")
    # A fresh process would rebuild the networks from scratch: different init, restored by resume.
    torch.manual_seed(123)
    fresh_g = ba.srvgg(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=2, act_type="prelu")
    fresh_d = ba.unet_discriminator_sn(num_in_ch=3, num_feat=8, skip_connection=True)
    resumed = train(config, fresh_g, fresh_d, batch_fn, tmp_path / "split", resume=True)
    torch.testing.assert_close(_weights(resumed.generator), _weights(full.generator), rtol=0, atol=1e-6)
    torch.testing.assert_close(_weights(resumed.ema), _weights(full.ema), rtol=0, atol=1e-6)


def test_existing_run_is_not_overwritten_without_resume(batch_fn, tmp_path):
    config = TrainConfig(iters=2, save_every=1, device="cpu")
    train(config, _tiny_generator(), None, batch_fn, tmp_path)
    with pytest.raises(ConfigError, match="--resume"):
        train(config, _tiny_generator(), None, batch_fn, tmp_path)


def test_partial_checkpoint_is_never_picked(batch_fn, tmp_path):
    config = TrainConfig(iters=2, save_every=1, device="cpu")
    train(config, _tiny_generator(), None, batch_fn, tmp_path)
    # What an interrupted atomic write leaves behind: a hidden temporary beside the real ones.
    (tmp_path / "ckpt" / ".iter_000003.pt.tmp-999").write_bytes(b"half a file")
    assert latest_checkpoint(tmp_path).name == "iter_000002.pt"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"iters": 0}, "iters"),
        ({"gan_kind": "wasserstein"}, "gan_kind"),
        ({"ema": 1.0}, "ema"),
        ({"l1_weight": 0.0}, "at least one"),
    ],
)
def test_bad_train_config_is_refused(options, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**options)


def test_unknown_option_is_named():
    with pytest.raises(ConfigError, match="lr_gen"):
        TrainConfig.from_dict({"lr_gen": 1e-4})


def test_gan_weight_without_discriminator_is_refused(batch_fn, tmp_path):
    with pytest.raises(ConfigError, match="discriminator"):
        train(TrainConfig(iters=2, gan_weight=0.1, device="cpu"), _tiny_generator(), None, batch_fn, tmp_path)


def test_plain_discriminator_loads_its_own_checkpoint():
    # zoo --resume with `spectral_norm: false` rebuilds the plain U-Net and loads its saved state dict;
    # remove_spectral_norm's leftover load hook used to make that fail.
    torch.manual_seed(0)
    saved = ba.unet_discriminator_sn(num_in_ch=3, num_feat=8, skip_connection=True, spectral_norm=False).eval()
    assert not any(key.endswith("weight_orig") for key in saved.state_dict())
    rebuilt = ba.unet_discriminator_sn(num_in_ch=3, num_feat=8, skip_connection=True, spectral_norm=False)
    rebuilt.load_state_dict(saved.state_dict(), strict=True)
    x = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(rebuilt.eval()(x), saved(x))


def test_zoo_cli_trains_both_stages_and_exports_a_discriminator_file(tmp_path):
    import yaml

    from desra.cli import main
    from desra.core.errors import CheckpointError
    from desra.core.paths import project_root
    from desra.models.checkpoint import load_model, read_state_dict
    from desra.models.discriminator import load_discriminator

    raw = yaml.safe_load((project_root() / "configs" / "zoo" / "desra-demo-x4.yaml").read_text())
    raw["name"] = "tiny"
    raw["arch_params"].update(num_feat=8, num_conv=2)
    raw["data"] = {"photos": ["skimage:data/retina.jpg"], "dead_leaves": 1, "dead_leaves_size": 64, "patch": 48, "batch": 2}
    raw["mse"] = {"iters": 2, "save_every": 2}
    raw["gan"] = {**raw["gan"], "iters": 3, "d_warmup": 1, "save_every": 3, "patch": 48, "batch": 2}
    raw["discriminator"] = {"num_feat": 8, "skip_connection": True}
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(raw))
    out = tmp_path / "run"
    for stage in ("mse", "gan"):
        assert main(["zoo", "train", "--stage", stage, "--config", str(config), "--out", str(out)]) == 0

    card = (out / "tiny-gan.md").read_text()
    assert "--stage gan" in card and "discriminator warm-up 1 it" in card
    assert "Output vs nearest-neighbour upsampling" in card and "collapsed" not in card
    assert read_state_dict(out / "tiny-gan.safetensors")[1]["extra"]["iterations"] == 3
    disc_path = out / "tiny-disc.safetensors"
    assert read_state_dict(disc_path)[1]["architecture"] == "unet_discriminator_sn"
    disc, info = load_discriminator(disc_path)
    assert info["arch_params"]["num_feat"] == 8
    with pytest.raises(CheckpointError, match="discriminator"):
        load_model(disc_path)


def test_wall_time_counts_iterations_redone_after_a_kill(batch_fn, tmp_path):
    from desra.core.events import read_events, total_wall_seconds

    killed = TrainConfig(iters=7, save_every=4, log_every=3, device="cpu")
    train(killed, _tiny_generator(), None, batch_fn, tmp_path)
    # Killed after logging iteration 7 but before its checkpoint: the resumed call restarts at 4.
    list_checkpoints(tmp_path)[-1][1].unlink()
    train(TrainConfig(**{**killed.__dict__, "iters": 12}), _tiny_generator(), None, batch_fn, tmp_path, resume=True)
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [e["iter"] for e in events if e.get("event") == "start"] == [0, 4]
    # At one iteration per second the wall time is the number of iterations run: 7, then 5..12.
    (tmp_path / "events.jsonl").write_text("".join(json.dumps({**e, "it_per_s": 1.0} if "losses" in e else e) + "\n" for e in events))
    assert total_wall_seconds(read_events(tmp_path)) == 7 + 8


def test_a_gpu_asked_for_where_there_is_none_is_a_device_error():
    from desra.core.errors import DeviceError
    from desra.train.distributed import resolve_device

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU: the missing-GPU message cannot be provoked here")
    with pytest.raises(DeviceError, match=r"'cuda:1' was asked for but no CUDA GPU is available; use device 'auto' or 'cpu'"):
        resolve_device("cuda:1")
    with pytest.raises(DeviceError, match="no CUDA GPU"):
        train(TrainConfig(iters=1, device="cuda"), _tiny_generator(), None, lambda i: None, "unused")
