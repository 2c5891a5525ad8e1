"""`desra attribute build-zoo|train|predict`: which SR model made this image (Vonderfecht & Liu)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ZOOS = {
    "large": (Path("configs/attribution-large"), Path("runs/attribution-large")),
    "tiny": (Path("configs/attribution"), Path("runs/attribution")),
}
"""--zoo choices -> (folder of zoo configs, output root). 'large' (issue 16: with data-disjoint halves) is the default."""
DEFAULT_ZOO = "large"
DEFAULT_CONFIGS, DEFAULT_ROOT = ZOOS[DEFAULT_ZOO]


def zoo_paths(args) -> tuple[Path, Path]:
    """(configs folder, root) of parsed ``args``: --configs / --root where given, else those of --zoo."""
    configs, root = ZOOS[args.zoo]
    return (getattr(args, "configs", None) or configs), (args.root or root)


def _add_zoo(parser) -> None:
    parser.add_argument("--zoo", choices=sorted(ZOOS), default=DEFAULT_ZOO,
                        help="which zoo: large = configs/attribution-large -> runs/attribution-large (default), "
                             "tiny = configs/attribution -> runs/attribution")


def register(subparsers) -> None:
    """Add `desra attribute build-zoo|train|predict` to the `desra` parser."""
    group = subparsers.add_parser("attribute", help="attribute SR images to the SR model that made them; parse scale and loss")
    sub = group.add_subparsers(dest="attribute_command", metavar="SUBCOMMAND", required=True)

    build = sub.add_parser("build-zoo", help="train the attribution zoo (desra zoo train per config and stage) and render its SR dataset")
    _add_zoo(build)
    build.add_argument("--configs", type=Path, default=None, help=f"folder of zoo YAML files (default: the --zoo's, {DEFAULT_CONFIGS})")
    build.add_argument("--root", type=Path, default=None, help=f"output root: zoo/ and dataset/ go here (default: the --zoo's, {DEFAULT_ROOT})")
    build.add_argument("--device", default="cpu", help="device for rendering the dataset (default cpu)")
    build.add_argument("--published", default=None, metavar="MODELS",
                       help="comma-separated published models (registry ids or checkpoint files) added as classes, or 'none' "
                            "(default: RealESRGAN_x4plus,RealESRGAN_x4plus_anime_6B,realesr-animevideov3 for --zoo large, none for tiny)")
    build.set_defaults(func=_build_zoo)

    train = sub.add_parser("train", help="fit PRNU fingerprints + train the classifier; write the report, R(A,B) plot and t-SNE")
    _add_zoo(train)
    train.add_argument("--root", type=Path, default=None, help=f"root holding dataset/; results go to ROOT/experiment (default: the --zoo's, {DEFAULT_ROOT})")
    train.add_argument("--iterations", type=int, default=2000, help="classifier training steps (default 2000, ~15 min on one CPU core)")
    train.add_argument("--seed", type=int, default=0, help="classifier seed (default 0)")
    train.add_argument("--device", default="cpu", help="torch device (default cpu)")
    train.set_defaults(func=_train)

    predict = sub.add_parser("predict", help="rank the zoo models for an SR image; parse its scale and loss")
    predict.add_argument("image", type=Path, help="SR image (PNG/JPEG), at least 64x64")
    _add_zoo(predict)
    predict.add_argument("--root", type=Path, default=None, help=argparse.SUPPRESS)
    predict.add_argument("--experiment", type=Path, default=None, help=f"folder written by `desra attribute train` (default: the --zoo's ROOT/experiment, {DEFAULT_ROOT / 'experiment'})")
    predict.add_argument("--top", type=int, default=5, help="models to show (default 5)")
    predict.add_argument("--json", action="store_true", help="print the full result as JSON")
    predict.add_argument("--device", default="cpu", help="torch device (default cpu)")
    predict.set_defaults(func=_predict)


def _bar_progress():
    from tqdm import tqdm

    bars: dict = {}

    def update(stage: str, done: int, total: int, *_):
        bar = bars.get(stage)
        if bar is None:
            bar = bars[stage] = tqdm(total=total, desc=stage, leave=False)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return update


def published_models(args) -> list[str]:
    """The models ``--published`` names: its list, 'none' = [], unset = the large zoo's PUBLISHED_CLASSES."""
    from desra.attribution.dataset import PUBLISHED_CLASSES

    if args.published is None:
        return list(PUBLISHED_CLASSES) if args.zoo == "large" else []
    names = [name.strip() for name in args.published.split(",") if name.strip()]
    return [] if names == ["none"] else names


def _build_zoo(args) -> int:
    import subprocess
    import sys

    from desra.attribution.dataset import published_member, render_dataset, zoo_members
    from desra.core.errors import ConfigError, DesraError
    from desra.train.zoo import exported_path
    from desra.train.zoo_config import load_zoo_config

    configs_dir, root = zoo_paths(args)
    configs = sorted(Path(configs_dir).glob("*.yaml"))
    if not configs:
        raise ConfigError(f"no zoo configs (*.yaml) in {configs_dir}; pass --configs FOLDER or --zoo tiny|large")
    zoo_dir = root / "zoo"
    for path in configs:
        config = load_zoo_config(path)
        out = zoo_dir / config.name
        for stage in config.stages:
            if exported_path(out, config, stage).is_file():
                continue
            command = [sys.executable, "-m", "desra", "zoo", "train", "--stage", stage, "--config", str(path), "--out", str(out)]
            if (out / stage / "ckpt").is_dir():
                command.append("--resume")
            print(f"training {config.name} {stage}: {' '.join(command[2:])}", flush=True)
            if subprocess.run(command).returncode != 0:
                raise DesraError(f"`desra zoo train --stage {stage} --config {path}` failed; see its output above, fix and rerun build-zoo (finished models are kept)")
    members = zoo_members(configs, zoo_dir)
    members += [published_member(model) for model in published_models(args)]
    update = _bar_progress()
    manifest = render_dataset(members, root / "dataset", device=args.device, progress=lambda d, t: update("rendering SR outputs", d, t))
    published = sum(m.published for m in members)
    print(f"{len(members) - published} zoo models + {published} published; dataset manifest {manifest}")
    return 0


def _train(args) -> int:
    import dataclasses

    from desra.attribution.classifier import ClassifierConfig
    from desra.attribution.pipeline import (
        ExperimentConfig,
        report_markdown,
        run_experiment,
    )

    config = ExperimentConfig(classifier=dataclasses.replace(ClassifierConfig(), iterations=args.iterations, seed=args.seed))
    root = zoo_paths(args)[1]
    out = root / "experiment"
    result = run_experiment(root / "dataset", out, config, device=args.device, progress=_bar_progress())
    print(report_markdown(result))
    print(f"wrote {out}/report.json, report.md, attribution-r-matrix.png, attribution-tsne.png, classifier.safetensors, prnu.npz")
    return 0


def _predict(args) -> int:
    import dataclasses

    from desra.attribution.pipeline import attribute_image
    from desra.core.imageio import read_image

    image = read_image(args.image).rgb
    result = attribute_image(image, args.experiment or zoo_paths(args)[1] / "experiment", device=args.device)
    if args.json:
        print(json.dumps(dataclasses.asdict(result)))
        return 0
    print(f"{args.image}: voted over {result.crops} crops")
    for rank, (name, p) in enumerate(result.ranking[: args.top], 1):
        print(f"{rank:2d}. {name:28s} {100 * p:5.1f} %")
    print("scale: " + ", ".join(f"{k} {100 * v:.1f} %" for k, v in result.scale.items()))
    print("loss:  " + ", ".join(f"{k} {100 * v:.1f} %" for k, v in result.loss.items()))
    if result.prnu_ranking:
        print(f"PRNU nearest fingerprint: {result.prnu_ranking[0][0]}")
    return 0
