"""`desra finetune`: DeSRA fine-tuning of a GAN-SR model on a curated set's pseudo-GT."""

from __future__ import annotations

from pathlib import Path

from desra.train.losses import GAN_KINDS


def _run(args) -> int:
    import warnings

    from tqdm import tqdm

    from desra.repair.finetune import FinetuneConfig, finetune
    from desra.train.distributed import launch_rank

    config = FinetuneConfig.from_flags(vars(args))  # flags left out keep the type's defaults
    main = launch_rank() == 0  # under torchrun only rank 0 reports; the others train silently
    bar = tqdm(total=config.iters, desc="fine-tune", unit="it", disable=not main)

    def on_event(event: dict) -> None:
        if "losses" in event:
            bar.n = event["iter"]
            bar.set_postfix({k: f"{v:.4f}" for k, v in event["losses"].items()}, refresh=False)
            bar.refresh()
        elif event.get("event") == "checkpoint":
            bar.write(f"checkpoint {event['path']}")
        elif event.get("event") == "warning":
            bar.write(f"warning: {event['message']}")

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = lambda message, *a, **k: bar.write(f"warning: {message}")
        result = finetune(config, resume=args.resume, on_event=on_event)
    bar.close()
    if not main:
        return 0
    print(f"fine-tuned {result.iterations} iterations on {result.device} in {result.wall_s:.0f} s")
    print(f"model: {result.model}\nbasicsr weights (params_ema): {result.basicsr_model}\nbasicsr options: {result.options}")
    print(f"evaluate it: desra evaluate-run {result.out}")
    return 0


def register(subparsers) -> None:
    """Add `desra finetune` to the `desra` parser."""
    # Flags left out are None: FinetuneConfig.from_flags fills in the one set of defaults, the type's.
    p = subparsers.add_parser(
        "finetune", help="DeSRA fine-tune of a GAN-SR model on a curated set (Sec. 3.3)",
        description="DeSRA fine-tune of a GAN-SR model on a curated set's pseudo-GT (Sec. 3.3). "
                    "Multi-GPU: torchrun --nproc_per_node N -m desra finetune <same flags> (DDP; --batch is per process).",
    )
    p.add_argument("--set", type=Path, required=True, help="curated set folder (desra set create/add/split)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--pair", default=None, help="registered pair; its GAN side is fine-tuned")
    source.add_argument("--model", default=None, metavar="GAN_CKPT", help="GAN-SR checkpoint to fine-tune")
    p.add_argument("--disc", default=None, metavar="D_CKPT", help="discriminator checkpoint (default: the pair's, else a fresh one, with a warning)")
    p.add_argument("--iters", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--patch", type=int, default=None, help="HR crop size (LR crop = patch / scale)")
    p.add_argument("--batch", type=int, default=None,
                   help="crops per iteration PER PROCESS: under torchrun the global batch is N x this (as basicsr's batch_size_per_gpu)")
    p.add_argument("--save-every", type=int, default=None, help="checkpoint + preview interval")
    p.add_argument("--device", default=None, help="cpu | cuda | cuda:N | auto")
    p.add_argument("--out", type=Path, required=True, help="run folder")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its newest good checkpoint")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--l1-weight", type=float, default=None)
    p.add_argument("--percep-weight", type=float, default=None, help="discriminator feature matching (download-free perceptual term)")
    p.add_argument("--gan-weight", type=float, default=None)
    p.add_argument("--gan-kind", default=None, choices=GAN_KINDS)
    p.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")
    p.set_defaults(func=_run)
