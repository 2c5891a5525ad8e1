"""Fine-tuning throughput: DeSRA fine-tune iterations per second through the shared training loop."""

from __future__ import annotations

from desra.benchmarks.registry import (
    BenchContext,
    BenchResult,
    embedded_network,
    register_benchmark,
)

_RRDB = dict(num_in_ch=3, num_out_ch=3, scale=4, num_feat=64, num_block=23, num_grow_ch=32)


def _plan(ctx: BenchContext) -> list[tuple[str, str, dict, int, int, int]]:
    """(label, architecture, params, discriminator features, HR patch, batch) per measured setting."""
    demo = ("desra-demo-x4", *embedded_network())
    if ctx.device.startswith("cuda"):
        # The goal: 1000 iterations of RRDBNet (23 blocks) at batch 12, 256 px, in < 10 min on one H100.
        return [("rrdbnet-23x64", "rrdbnet", _RRDB, 64, 256, 12), (*demo, 16, 256, 12)]
    if ctx.quick:
        return [(*demo, 16, 64, 2)]
    return [(*demo, 16, 128, 4)]


@register_benchmark("finetune-throughput", "DeSRA fine-tune iterations/s (L1 + feature matching + GAN, U-Net SN D, EMA)")
def finetune_throughput(ctx: BenchContext) -> list[BenchResult]:
    """Time the shared training loop on random batches: it/s over a window after warm-up iterations."""
    import tempfile

    import torch

    from desra.models.archs import get_arch
    from desra.models.discriminator import load_discriminator
    from desra.train.loop import TrainConfig, train

    results = []
    for label, arch, params, d_feat, patch, batch in _plan(ctx):
        window = 3 if ctx.quick else (20 if ctx.device.startswith("cuda") else 5)
        torch.manual_seed(0)
        generator = get_arch(arch).build(params)
        discriminator = load_discriminator(params={"num_in_ch": 3, "num_feat": d_feat, "skip_connection": True}).module
        lr_side = patch // 4
        batches = (torch.rand(batch, 3, lr_side, lr_side), torch.rand(batch, 3, patch, patch))
        config = TrainConfig(iters=2 * window, lr_g=1e-4, lr_d=1e-4, l1_weight=1.0, percep_weight=1.0, gan_weight=0.1,
                             batch=batch, patch=patch, save_every=10 * window, log_every=window, device=ctx.device)
        rates = []
        with tempfile.TemporaryDirectory() as out:
            # The first window includes warm-up (allocations, cuDNN autotuning); the second is measured.
            train(config, generator, discriminator, lambda i: batches, out,
                  on_event=lambda e: rates.append(e["it_per_s"]) if "it_per_s" in e else None)
        rate = rates[-1]
        device_name = torch.cuda.get_device_name() if ctx.device.startswith("cuda") else "cpu"
        results.append(BenchResult(
            metric=label, value=rate, unit="it/s",
            params={"patch": patch, "batch": batch, "disc_feat": d_feat, "device": ctx.device,
                    "amp": ctx.device.startswith("cuda")},
            note=f"{device_name}; 1000 iterations take {1000 / rate / 60:.1f} min",
        ))
    return results
