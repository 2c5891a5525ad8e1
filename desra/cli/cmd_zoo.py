"""`desra zoo`: train desra's own SR models from a config file; make the README showcase crops."""

from __future__ import annotations

import shlex
import sys


def register(subparsers) -> None:
    """Add `desra zoo train` and `desra zoo showcase` to the `desra` parser."""
    zoo = subparsers.add_parser("zoo", help="train desra's own MSE/GAN SR models (configs/zoo/*.yaml)")
    commands = zoo.add_subparsers(dest="zoo_command", metavar="SUBCOMMAND")

    train = commands.add_parser("train", help="train one stage (mse, then gan) of a zoo model")
    train.add_argument("--stage", required=True, choices=["mse", "gan"], help="mse: L1 parent; gan: fine-tune it with GAN losses")
    train.add_argument("--config", required=True, help="zoo YAML, e.g. configs/zoo/desra-demo-x4.yaml")
    train.add_argument("--out", required=True, help="run folder (stage checkpoints, exported .safetensors, model cards)")
    train.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in OUT/<stage>")
    train.set_defaults(func=_train)

    showcase = commands.add_parser("showcase", help="README crops: MSE | GAN | DeSRA mask overlay on datasets/demo")
    showcase.add_argument("--out", default="docs/images", help="folder for the PNG crops (default docs/images)")
    showcase.add_argument("--pair", default="desra-demo-x4", help="model pair (default desra-demo-x4)")
    showcase.add_argument("--lr", default=None, help="folder of LR photos (default datasets/demo)")
    showcase.add_argument("--count", type=int, default=4, help="number of crops (default 4)")
    showcase.set_defaults(func=_showcase)

    parent = commands.add_parser(
        "derive-parent", help="derive an L1 parent of a published GAN model (configs/parent/*.yaml): a delta file + card",
    )
    parent.add_argument("--config", required=True, help="parent YAML, e.g. configs/parent/realesrgan-x4-derived.yaml")
    parent.add_argument("--out", required=True, help="run folder (checkpoints, the delta file, its card, evaluation.json)")
    parent.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    parent.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in OUT/run")
    parent.set_defaults(func=_derive_parent)

    zoo.set_defaults(func=lambda args: zoo.print_help() or 2)


def _train(args) -> int:
    from tqdm import tqdm

    from desra.train.zoo import train_zoo_model
    from desra.train.zoo_config import load_zoo_config
    from desra.train.zoo_eval import COLLAPSED_DB

    config = load_zoo_config(args.config)
    total = config.stages[args.stage].iters if args.stage in config.stages else 0
    bar = tqdm(total=total, desc=f"{config.name} {args.stage}", unit="it", dynamic_ncols=True)

    def on_event(event: dict) -> None:
        if "losses" in event:
            bar.n = event["iter"]
            bar.set_postfix({k: f"{v:.3g}" for k, v in event["losses"].items()}, refresh=True)

    command = " ".join(["desra zoo train --stage", args.stage, "--config", shlex.quote(args.config), "--out", shlex.quote(args.out)])
    try:
        summary = train_zoo_model(config, args.out, args.stage, resume=args.resume, on_event=on_event, command=command)
    finally:
        bar.close()
    print(f"wrote {summary['weights']}" + (f" and {summary['discriminator']}" if "discriminator" in summary else ""))
    print(f"held-out PSNR (bicubic x{config.scale}): " + ", ".join(f"{k} {v:.2f}" for k, v in summary["heldout_psnr_bicubic"].items()))
    if summary["nearest_upsampling_psnr"] > COLLAPSED_DB:
        print(
            f"warning: the output is {summary['nearest_upsampling_psnr']:.1f} dB from nearest-neighbour upsampling of its input: "
            "the network collapsed to copying it. 16-conv SRVGGs did this at lr_g 5e-4 and 8-conv ones did not (docs/zoo.md).",
            file=sys.stderr,
        )
    return 0


def _derive_parent(args) -> int:
    from tqdm import tqdm

    from desra.train.parent import derive_and_evaluate, load_parent_config

    config = load_parent_config(args.config)
    bar = tqdm(total=config.iters, desc=config.name, unit="it", dynamic_ncols=True)

    def on_event(event: dict) -> None:
        if "losses" in event:
            bar.n = event["iter"]
            bar.set_postfix({k: f"{v:.4f}" for k, v in event["losses"].items()}, refresh=True)

    command = " ".join(["desra zoo derive-parent --config", shlex.quote(args.config), "--out", shlex.quote(args.out)])
    try:
        summary, evaluation, card = derive_and_evaluate(config, args.out, resume=args.resume, device=args.device,
                                                        on_event=on_event, command=command)
    finally:
        bar.close()
    print(f"wrote {summary['delta']} and {card}")
    print("held-out PSNR: " + ", ".join(f"{k} {v:.2f} dB" for k, v in evaluation.psnr.items()))
    print("HF energy on smooth areas: " + ", ".join(f"{k} {v:.2e}" for k, v in evaluation.smooth_hf_energy.items()))
    print(f"{evaluation.nearest_upsampling_psnr:.1f} dB from nearest upsampling")
    return 0


def _showcase(args) -> int:
    from desra.service.showcase import showcase

    paths = showcase(args.out, pair=args.pair, lr_dir=args.lr, count=args.count)
    for path in paths:
        print(f"wrote {path}")
    return 0
