"""Why Quan's verifier cannot pass issue 7's done-when on the CPU attribution zoo (docs/attribution.md).

Three measurements on the cross-checked zoo, printed and written to runs/attribution/sensitivity.json:

1. margins: per model, its largest attacked distance against its nearest independent model, both
   from the cross-check rows. Where the attack is farther, no eta can verify the attack without
   also calling that independent model derived; the same comparison over the whole zoo bounds a
   single eta.
2. own_task: the fine-tune attack rerun on the models where it failed, on each model's own training
   degradation (its zoo config) instead of clean average-pooled LR: does the failure come from
   the change of task?
3. init_seeds: critical images of srvgg-x4-s3-gan and of its fine-tuned copy from three initial-noise
   seeds: is the attacked distance extraction noise or a real change?

    OMP_NUM_THREADS=1 .venv/bin/python scripts/fingerprint_sensitivity.py   # ~15 min on one CPU thread
    .venv/bin/python scripts/fingerprint_sensitivity.py --relations runs/attribution*/crosscheck.rows.jsonl   # seconds
    (the relation table is desra.fingerprint.relations, the one `desra fingerprint crosscheck` prints)
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
ZOO = ROOT / "runs/attribution/zoo"
ROWS = ROOT / "runs/attribution/crosscheck.rows.jsonl"
OUT = ROOT / "runs/attribution/sensitivity.json"
FAILED_FINETUNES = ("rrdbnet-x4-s1-mse", "rrdbnet-x4-s1-gan", "srvgg-x2-s3-mse", "srvgg-x2-s2-gan", "srvgg-x4-s3-gan")
SEED_MODEL = "srvgg-x4-s3-gan"


def config_of(name: str) -> str:
    """'attr-srvgg-x4-s3-gan' -> 'attr-srvgg-x4-s3': models of one zoo config are derived from each other."""
    return name.rsplit("-", 1)[0]


def read_rows(path: Path) -> tuple[dict[str, np.ndarray], dict[str, dict[str, float]]]:
    """A cross-check rows file as model -> fingerprint features and model -> attack -> distance."""
    features, attacked = {}, {}
    for r in (json.loads(line) for line in path.read_text().splitlines() if line.strip()):
        if r["row"] == "fingerprint":
            features[r["name"]] = np.asarray(r["features"])
        else:
            attacked.setdefault(r["name"], {})[r["row"]] = r["distance"]
    return features, attacked


def margins(features: dict[str, np.ndarray], attacked: dict[str, dict[str, float]]) -> list[dict]:
    from desra.fingerprint.verify import feature_distance

    table = []
    for name, own in features.items():
        nearest = min((feature_distance(own, other), o) for o, other in features.items() if config_of(o) != config_of(name))
        worst = max(attacked[name], key=attacked[name].get)
        table.append({"model": name, "worst_attack": worst, "attack_d": attacked[name][worst], "nearest_independent": nearest[1],
                      "independent_d": nearest[0], "separable": attacked[name][worst] < nearest[0]})
    return table


def load(name: str):
    from desra.models.checkpoint import load_model

    return load_model(ZOO / config_of(name) / f"{name}.safetensors")


def features_of(module, scale: int, seed: int = 0) -> np.ndarray:
    from desra.fingerprint.critical import CriticalConfig, critical_image
    from desra.fingerprint.features import fingerprint_features

    return fingerprint_features(critical_image(module, scale, CriticalConfig(seed=seed)))


def output_psnr(a, b, scale: int) -> float:
    """PSNR (dB) between two models' outputs on astronaut's bicubic LR: how far an attack moved the function."""
    import skimage.data
    import torch

    from desra.detect.metrics import masked_psnr
    from desra.train.degradations import bicubic_lr

    hr = torch.from_numpy(skimage.data.astronaut()[:256, :256].astype(np.float32) / 255).permute(2, 0, 1)[None]
    lr = bicubic_lr(hr, scale)
    with torch.no_grad():
        outputs = [m.eval()(lr).clamp(0, 1)[0].permute(1, 2, 0).numpy() for m in (a, b)]
    return masked_psnr(*outputs, np.ones(outputs[0].shape[:2], bool))


def own_task(features: dict[str, np.ndarray], attacked: dict[str, dict[str, float]], photos: list[np.ndarray]) -> list[dict]:
    from desra.fingerprint.attacks import finetune
    from desra.fingerprint.verify import feature_distance
    from desra.train.degradations import degrade
    from desra.train.zoo_config import load_zoo_config

    table = []
    for short in FAILED_FINETUNES:
        name = f"attr-{short}"
        model, zoo = load(name), load_zoo_config(ROOT / "configs/attribution" / f"{config_of(name)}.yaml")
        scale = int(model.descriptor.scale)

        def training_lr(hr, iteration, zoo=zoo):
            return degrade(hr, zoo.scale, iteration, zoo.degradation)

        start = time.perf_counter()
        # 96 px crops, as the zoo trains on: smaller ones shrink below the 21-tap degradation kernels at x4.
        tuned = finetune(model.module, scale, photos, patch=96, make_lr=training_lr)
        d = feature_distance(features[name], features_of(tuned, scale))
        table.append({"model": name, "clean_lr_d": attacked[name]["finetune"], "own_task_d": d, "output_psnr_db": output_psnr(model.module, tuned, scale),
                      "seconds": time.perf_counter() - start})
        print(json.dumps(table[-1]), flush=True)
    return table


def init_seeds(photos: list[np.ndarray]) -> dict:
    from desra.fingerprint.pipeline import attacked_copy
    from desra.fingerprint.verify import feature_distance

    model = load(f"attr-{SEED_MODEL}")
    scale = int(model.descriptor.scale)
    tuned = attacked_copy("finetune", model.module, scale, photos)
    labels, features = [], []
    for kind, module in (("source", model.module), ("finetuned", tuned)):
        for seed in range(3):
            labels.append(f"{kind} seed {seed}")
            features.append(features_of(module, scale, seed))
    matrix = [[feature_distance(a, b) for b in features] for a in features]
    mean = [np.mean(features[i : i + 3], axis=0) for i in (0, 3)]
    return {"model": f"attr-{SEED_MODEL}", "labels": labels, "distances": matrix, "mean_of_3_d": feature_distance(*mean)}


def relations(path: Path) -> tuple[list, float]:
    """The cross-check of one rows file by relation (desra.fingerprint.relations, the rule `crosscheck` uses) and eta.

    The models are read from the zoo next to the rows file (``ROOT/zoo/<config>/<name>.safetensors``,
    as `desra attribute build-zoo --root ROOT` writes it) for their facts: architecture, scale,
    training data, seed and lineage.
    """
    from desra.fingerprint.features import FEATURE_DIMS
    from desra.fingerprint.relations import model_facts, relation_table
    from desra.fingerprint.verify import P_LEVEL, SIGMA, eta_threshold, feature_distance
    from desra.models.checkpoint import load_model

    features, attacked = read_rows(path)
    names = sorted(features)
    facts = [model_facts(load_model(path.parent / "zoo" / config_of(name) / f"{name}.safetensors")) for name in names]
    distances = np.array([[feature_distance(features[a], features[b]) for b in names] for a in names])
    eta = eta_threshold(SIGMA, P_LEVEL, FEATURE_DIMS)
    return relation_table(facts, distances, eta, attacked), eta


def print_relations(paths: list[Path]) -> None:
    from desra.fingerprint.relations import format_table

    for path in paths:
        table, eta = relations(path)
        _, attacked = read_rows(path)
        d, name, attack = max((d, name, attack) for name, rows in attacked.items() for attack, d in rows.items())
        print(f"{path}: largest attack {d:.2e} ({name} {attack}); the paper's eta {eta:.3e}")
        for line in format_table(table, eta):
            print(f"  {line}")


def main() -> None:
    import argparse

    from desra.fingerprint.pipeline import attack_photos

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--relations", nargs="+", type=Path, metavar="ROWS",
                        help="only print these rows files by relation (other data / architecture / scale, seed sibling, ...), "
                             "as `desra fingerprint crosscheck` does; the models are read from ROWS' folder/zoo")
    args = parser.parse_args()
    if args.relations:
        print_relations(args.relations)
        return

    features, attacked = read_rows(ROWS)
    report = {"margins": margins(features, attacked)}
    for m in report["margins"]:
        print(f"{m['model']:24s} worst attack {m['worst_attack']:8s} d={m['attack_d']:.2e}  nearest independent "
              f"{m['nearest_independent']} d={m['independent_d']:.2e}  {'separable' if m['separable'] else 'NO eta separates'}")
    largest_attack = max(m["attack_d"] for m in report["margins"])
    smallest_independent = min(m["independent_d"] for m in report["margins"])
    print(f"one eta for the whole zoo must exceed {largest_attack:.2e} (every attack verifies) and stay below "
          f"{smallest_independent:.2e} (no independent pair confused): {'possible' if largest_attack < smallest_independent else 'impossible'}")
    photos = attack_photos()
    report["own_task"] = own_task(features, attacked, photos)
    report["init_seeds"] = init_seeds(photos)
    for label, row in zip(report["init_seeds"]["labels"], report["init_seeds"]["distances"]):
        print(f"{label:20s}", " ".join(f"{d:.1e}" for d in row))
    print(f"mean of 3 seeds: d={report['init_seeds']['mean_of_3_d']:.2e}")
    OUT.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
