"""Fingerprint and attribution benchmarks: critical-image extraction time per model, attribution images/s."""

from __future__ import annotations

from desra.benchmarks.registry import (
    BenchContext,
    BenchResult,
    embedded_network,
    median_seconds,
    register_benchmark,
)

# name -> (architecture, params). Random weights: speed does not depend on them.
MODELS = {
    "attr-zoo-srvgg-16x4-x4": ("srvgg", dict(num_in_ch=3, num_out_ch=3, num_feat=16, num_conv=4, upscale=4, act_type="prelu")),
    "attr-zoo-srvgg-16x4-x2": ("srvgg", dict(num_in_ch=3, num_out_ch=3, num_feat=16, num_conv=4, upscale=2, act_type="prelu")),
    "attr-zoo-rrdbnet-1x16-x4": ("rrdbnet", dict(num_in_ch=3, num_out_ch=3, scale=4, num_feat=16, num_block=1, num_grow_ch=8)),
    "attr-zoo-rrdbnet-1x16-x2": ("rrdbnet", dict(num_in_ch=3, num_out_ch=3, scale=2, num_feat=16, num_block=1, num_grow_ch=8)),
    "rrdbnet-23x64-x4": ("rrdbnet", dict(num_in_ch=3, num_out_ch=3, scale=4, num_feat=64, num_block=23, num_grow_ch=32)),
}


@register_benchmark("fingerprint-extract", "critical-image extraction time per model (Quan Eq. 1, 128 px) and attribution images/s")
def fingerprint_extract(ctx: BenchContext) -> list[BenchResult]:
    """Time a short run of the critical-image optimisation per model (extrapolated to 5000 iterations) and the attribution classifier."""
    import numpy as np
    import skimage.data
    import torch

    from desra.attribution.classifier import (
        ClassifierConfig,
        LabelSpace,
        build_classifier,
        predict,
    )
    from desra.attribution.pipeline import grid_tiles
    from desra.fingerprint.critical import CriticalConfig, critical_image
    from desra.models.archs import get_arch

    iterations = 5 if ctx.quick else 40
    results = []
    models = {**MODELS, "desra-demo-x4": embedded_network()}
    for label, (arch, params) in models.items():
        if ctx.quick and "23x64" in label and not ctx.device.startswith("cuda"):
            continue
        torch.manual_seed(0)
        module = get_arch(arch).build(params).eval()
        scale = int(params.get("upscale", params.get("scale", 4)))
        config = CriticalConfig(size=128, iterations=iterations)

        def run(module=module, scale=scale, config=config):
            critical_image(module, scale, config, device=ctx.device)
            if ctx.device.startswith("cuda"):
                torch.cuda.synchronize()

        seconds = median_seconds(run, max(1, ctx.repeats // 2), warmup=1)
        results.append(
            BenchResult(
                metric=f"critical-image {label}",
                value=seconds / iterations * 5000,
                unit="s per 5000 iterations",
                params={"architecture": arch, "scale": scale, "size": 128, "downsample": config.downsample, "timed_iterations": iterations},
                note=f"extrapolated from {iterations} timed iterations ({1000 * seconds / iterations:.1f} ms/it)",
            )
        )
    # Attribution: the default classifier on 64 px crops of a real photo, 32 crops voted per image.
    labels = LabelSpace(models=tuple(f"m{i}" for i in range(16)), scales=("x2", "x4"), losses=("gan", "l1"))
    classifier = build_classifier(labels, ClassifierConfig())
    photo = skimage.data.astronaut().astype(np.float32) / 255.0
    crops = grid_tiles(photo, 64, 32)
    seconds = median_seconds(lambda: predict(classifier, crops, device=ctx.device), ctx.repeats)
    results.append(
        BenchResult(
            metric="attribution images/s",
            value=1.0 / seconds,
            unit="images/s",
            params={"crops_per_image": len(crops), "crop": 64},
            note=f"{len(crops) / seconds:.0f} crops/s; PRNU residuals not included",
        )
    )
    return results
