"""GPU figures of the ``gpu`` suite (``desra bench --suite gpu --json OUT``) that no CPU benchmark covers.

Each needs CUDA and says so in one row when there is none. Sized for one H100/H200: the whole suite
(these plus ``finetune-throughput`` and ``fingerprint-extract``) is planned to finish in a few minutes.
Random weights: speed does not depend on them.
"""

from __future__ import annotations

from desra.benchmarks.registry import (
    BenchContext,
    BenchResult,
    cuda_skip,
    embedded_network,
    median_seconds,
    register_benchmark,
)

_SRVGG_64x32 = {"num_in_ch": 3, "num_out_ch": 3, "num_feat": 64, "num_conv": 32, "upscale": 4, "act_type": "prelu"}
_RRDB_23 = {"num_in_ch": 3, "num_out_ch": 3, "scale": 4, "num_feat": 64, "num_block": 23, "num_grow_ch": 32}


def _device_seconds(fn, repeats: int, warmup: int = 3) -> float:
    """Median seconds of ``fn()`` on CUDA (:func:`median_seconds`), synchronised after each call so its kernels are timed."""
    import torch

    def synced():
        fn()
        torch.cuda.synchronize()

    return median_seconds(synced, repeats, warmup)


def _photo(width: int, height: int):
    """scikit-image's astronaut resized to width x height: (H, W, 3) float32 in [0, 1]."""
    import cv2
    import numpy as np
    import skimage.data

    image = cv2.resize(skimage.data.astronaut(), (width, height), interpolation=cv2.INTER_AREA)
    return image.astype(np.float32) / 255.0


@register_benchmark("gpu-sr", "CUDA SR speed: SRVGG 64/32 x4 at 720p input (fps; goal >= 60) and RRDBNet-23 x4 "
                    "at 512x512 fp16 (ms; goal <= 40)")
def gpu_sr(ctx: BenchContext) -> list[BenchResult]:
    """Network forward on device tensors (fp16 and fp32), and desra.models.inference.upscale from numpy to numpy."""
    skipped = cuda_skip(ctx, "gpu-sr")
    if skipped:
        return skipped
    import torch

    from desra.models.archs import get_arch
    from desra.models.checkpoint import SRModel, describe
    from desra.models.inference import upscale

    torch.backends.cudnn.benchmark = True
    device = torch.device(ctx.device)
    name = torch.cuda.get_device_name(device)
    frames = 10 if ctx.quick else 30
    results = []
    plans = [("srvgg-64x32", "srvgg", _SRVGG_64x32, (1280, 720), "realesr-general-x4v3 / animevideov3 size"),
             ("rrdbnet-23x64", "rrdbnet", _RRDB_23, (512, 512), "RealESRGAN_x4plus size")]
    for label, arch, params, (width, height), published in plans:
        torch.manual_seed(0)
        module = get_arch(arch).build(params).eval().to(device)
        photo = _photo(width, height)
        lr = torch.from_numpy(photo).permute(2, 0, 1)[None].to(device)
        for half in (True, False):
            net = module.half() if half else module.float()
            x = lr.half() if half else lr

            def forward(net=net, x=x):
                with torch.inference_mode():
                    net(x)

            seconds = _device_seconds(forward, frames)
            params_row = {"input": f"{width}x{height}", "precision": "fp16" if half else "fp32", "device": ctx.device,
                          "io": "device tensors"}
            if label.startswith("srvgg"):
                results.append(BenchResult(f"{label} fps", 1.0 / seconds, "fps", params_row,
                                           f"{name}; {published}; {seconds * 1000:.2f} ms per frame; goal >= 60 fps (fp16)"))
            else:
                results.append(BenchResult(f"{label} ms", seconds * 1000, "ms", params_row,
                                           f"{name}; {published}; goal <= 40 ms (fp16)"))
        model = SRModel(describe(arch, params, name=label), module.float())
        seconds = _device_seconds(lambda m=model, p=photo: upscale(m, p, device=ctx.device, half=True), max(3, frames // 5), 1)
        results.append(BenchResult(f"{label} upscale", seconds * 1000, "ms",
                                   {"input": f"{width}x{height}", "precision": "fp16", "device": ctx.device,
                                    "io": "numpy float32 in and out"},
                                   f"{name}; desra.models.inference.upscale incl. host<->device copies"))
        del module, model
        torch.cuda.empty_cache()
    return results


@register_benchmark("gpu-dmap", "CUDA D map (d_map_torch) of a 1920x1080 pair: ms (goal <= 2) and error against the float64 reference")
def gpu_dmap(ctx: BenchContext) -> list[BenchResult]:
    """d_map_torch with the pair already on the device (numpy D map out), and from numpy to numpy."""
    skipped = cuda_skip(ctx, "gpu-dmap")
    if skipped:
        return skipped
    import numpy as np
    import torch

    from desra.detect.dmap import d_map_reference, d_map_torch

    mse = _photo(1920, 1080)
    rng = np.random.default_rng(0)
    gan = mse.copy()
    h, w = mse.shape[:2]
    y0, y1, x0, x1 = h // 10, h // 2, 3 * w // 8, 2 * w // 3  # a textured box, as GAN artifacts are
    gan[y0:y1, x0:x1] += 0.08 * rng.standard_normal((y1 - y0, x1 - x0, 1)).astype(np.float32)
    gan = np.clip(gan, 0.0, 1.0)
    x = torch.from_numpy(mse).permute(2, 0, 1).to(ctx.device)
    y = torch.from_numpy(gan).permute(2, 0, 1).to(ctx.device)
    repeats = 20 if ctx.quick else 100
    on_device = _device_seconds(lambda: d_map_torch(x, y, device=ctx.device), repeats)
    round_trip = _device_seconds(lambda: d_map_torch(mse, gan, device=ctx.device), repeats // 4)
    error = float(np.abs(d_map_torch(x, y, device=ctx.device) - d_map_reference(mse, gan)).max())
    name = torch.cuda.get_device_name(torch.device(ctx.device))
    params = {"size": "1920x1080", "window": "gaussian 11 / 1.5", "device": ctx.device}
    return [
        BenchResult("d_map_torch on device", on_device * 1000, "ms", {**params, "io": "device tensors in, numpy out"},
                    f"{name}; float64 moments; goal <= 2 ms"),
        BenchResult("d_map_torch numpy", round_trip * 1000, "ms", {**params, "io": "numpy in and out"},
                    f"{name}; incl. host->device copies of both images"),
        BenchResult("max_abs_d_error", error, "", params, "against d_map_reference (float64, CPU)"),
    ]


def _ddp_set(root) -> None:
    """A curated x4 set of 4 real-photo items (256 px) for the DDP run."""
    import numpy as np
    import skimage.data

    from desra.repair.curated import create_set

    curated = create_set(root)
    for i, name in enumerate(("astronaut", "coffee", "chelsea", "rocket")):
        hr = np.asarray(getattr(skimage.data, name)())[:256, :256, :3].astype(np.float32) / 255.0
        lr = hr.reshape(64, 4, 64, 4, 3).mean(axis=(1, 3)).astype(np.float32)
        mask = np.zeros((256, 256), dtype=bool)
        mask[64:128, 64:192] = True
        gan = hr.copy()
        gan[mask] = np.clip(gan[mask] + np.random.default_rng(i).normal(0, 0.2, gan[mask].shape), 0, 1)
        curated.add(name, lr, hr, gan.astype(np.float32), mask, mask_source="file", provenance={"by": "desra bench gpu-ddp"},
                    split="train" if i < 2 else "val")


@register_benchmark("gpu-ddp", "short torchrun DDP fine-tune on all visible GPUs (the embedded pair, 60 iterations): it/s")
def gpu_ddp(ctx: BenchContext) -> list[BenchResult]:
    """`torchrun --standalone --nproc_per_node N -m desra finetune` on a set of real photos; it/s from its events."""
    skipped = cuda_skip(ctx, "gpu-ddp")
    if skipped:
        return skipped
    import statistics
    import subprocess
    import sys
    import tempfile
    import time
    from pathlib import Path

    import torch

    from desra.core.events import read_events

    gpus = torch.cuda.device_count()
    iters, batch, patch = (20, 4, 128) if ctx.quick else (60, 8, 128)
    arch, _ = embedded_network()
    with tempfile.TemporaryDirectory() as tmp:
        root, run = Path(tmp) / "set", Path(tmp) / "run"
        _ddp_set(root)
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(gpus),
                   "-m", "desra", "finetune", "--set", str(root), "--pair", "desra-demo-x4", "--iters", str(iters),
                   "--patch", str(patch), "--batch", str(batch), "--save-every", str(iters), "--device", "cuda",
                   "--out", str(run)]
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"torchrun exited {done.returncode}: {done.stderr[-800:]}")
        events = read_events(run)
    rates = [e["it_per_s"] for e in events if "it_per_s" in e][1:]  # the first window holds the warm-up
    rate = statistics.median(rates) if rates else float("nan")
    params = {"gpus": gpus, "batch_per_gpu": batch, "patch": patch, "iterations": iters, "model": f"desra-demo-x4 ({arch})"}
    return [
        BenchResult("ddp it/s", rate, "it/s", params, f"{torch.cuda.get_device_name()} x {gpus}; median over 10-iteration windows"),
        BenchResult("ddp images/s", rate * gpus * batch, "crops/s", params, "global batch = gpus x batch_per_gpu"),
        BenchResult("ddp wall", wall, "s", params, "torchrun start to exit, incl. process-group start-up"),
    ]
