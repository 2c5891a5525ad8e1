"""What a fine-tune exports for basicsr / Real-ESRGAN: an options YAML and the train split in
PairedImageDataset's layout, so the run can be continued there from the exported weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from desra.repair.finetune import FinetuneConfig

_BASICSR_ARCH = {"rrdbnet": "RRDBNet", "srvgg": "SRVGGNetCompact", "swinir": "SwinIR"}


def basicsr_options(config: FinetuneConfig, descriptor, disc_info: dict[str, Any], out: Path, scale: int) -> str:
    """A basicsr options YAML (SRGANModel on the exported pairs) that continues this fine-tune from the exported files."""
    import yaml

    network_g = {"type": _BASICSR_ARCH.get(descriptor.architecture, descriptor.architecture), **descriptor.arch_params}
    d_params = dict(disc_info.get("arch_params", {}))
    plain_d = d_params.pop("spectral_norm", True) is False  # basicsr's class always has SN
    network_d = {"type": "UNetDiscriminatorSN", **d_params}
    options = {
        "name": f"desra_finetune_{out.name}",
        # basicsr's SRGANModel trains (LR, GT) pairs with L1 + perceptual + GAN and EMA; ESRGANModel
        # is its relativistic-GAN sibling.
        "model_type": "ESRGANModel" if config.gan_kind == "ragan" else "SRGANModel",
        "scale": scale,
        "num_gpu": "auto",
        "manual_seed": config.seed,
        "datasets": {"train": {
            "name": "desra_curated_set", "type": "PairedImageDataset",
            "dataroot_gt": str(out / "basicsr_data" / "gt"), "dataroot_lq": str(out / "basicsr_data" / "lq"),
            "io_backend": {"type": "disk"}, "gt_size": config.patch, "use_hflip": True, "use_rot": True,
            "num_worker_per_gpu": 4, "batch_size_per_gpu": config.batch, "dataset_enlarge_ratio": 1,
        }},
        "network_g": network_g,
        "network_d": network_d,
        "path": {
            "pretrain_network_g": str(out / "model_basicsr.pth"), "param_key_g": "params_ema", "strict_load_g": True,
            "pretrain_network_d": str(out / "discriminator_basicsr.pth"), "param_key_d": "params", "strict_load_d": True,
            "resume_state": None,
        },
        "train": {
            "ema_decay": config.ema,
            "optim_g": {"type": "Adam", "lr": config.lr, "weight_decay": 0, "betas": [0.9, 0.99]},
            "optim_d": {"type": "Adam", "lr": config.lr, "weight_decay": 0, "betas": [0.9, 0.99]},
            "scheduler": {"type": "MultiStepLR", "milestones": [400000], "gamma": 0.5},
            "total_iter": config.iters, "warmup_iter": -1,
            "pixel_opt": {"type": "L1Loss", "loss_weight": config.l1_weight, "reduction": "mean"},
            "perceptual_opt": {"type": "PerceptualLoss", "layer_weights": {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1, "conv4_4": 1, "conv5_4": 1},
                               "vgg_type": "vgg19", "use_input_norm": True, "perceptual_weight": config.percep_weight,
                               "style_weight": 0, "range_norm": False, "criterion": "l1"},
            "gan_opt": {"type": "GANLoss", "gan_type": "hinge" if config.gan_kind == "hinge" else "vanilla", "real_label_val": 1.0, "fake_label_val": 0.0,
                        "loss_weight": config.gan_weight},
            "net_d_iters": 1, "net_d_init_iters": 0,
        },
        "logger": {"print_freq": 10, "save_checkpoint_freq": config.save_every, "use_tb_logger": False},
    }
    header = ("# basicsr options written by `desra finetune` to continue this run on its (LR, pseudo-GT) pairs:\n"
              "#   python basicsr/train.py -opt options.yml\n"
              "# desra's perceptual term is discriminator feature matching; basicsr's is VGG19 (downloads weights).\n")
    if plain_d:
        header += ("# NOTE: the discriminator was trained WITHOUT spectral norm; basicsr's UNetDiscriminatorSN always\n"
                   "# has it, so its weights only load after removing spectral norm from the network (strict_load_d).\n")
    return header + yaml.safe_dump(options, sort_keys=False)


def write_basicsr_data(curated, folder: Path) -> None:
    """Copy the train split as ``lq/<id>.png`` and ``gt/<id>.png`` (pseudo-GT), the layout of basicsr's PairedImageDataset."""
    import shutil

    for sub in ("lq", "gt"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for item in curated.items("train"):
        shutil.copyfile(item.path("lr"), folder / "lq" / f"{item.id}.png")
        shutil.copyfile(item.path("pseudo_gt"), folder / "gt" / f"{item.id}.png")
