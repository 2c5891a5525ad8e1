"""The attribution dataset: SR outputs of held-out real photos, one folder per zoo model.

Zoo members come from the zoo configs in ``configs/attribution/`` (each config's ``mse`` stage is
the L1 model, its ``gan`` stage the GAN model). Every member upscales the same held-out photos,
each downscaled by the member's own scale (antialiased bicubic) so all outputs show the same
content at the photo's size; outputs are written as 8-bit PNG like images found in the wild.
Photos are split by content: the classifier and PRNU fingerprints learn from ``TRAIN_PHOTOS``,
every reported number is measured on ``TEST_PHOTOS``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from desra.core.errors import DatasetError

TRAIN_PHOTOS = (
    "sklearn:datasets/images/china.jpg",
    "sklearn:datasets/images/flower.jpg",
    "gradio:media_assets/images/tower.jpg",
    "gradio:media_assets/images/cheetah.jpg",
    "matplotlib:mpl-data/sample_data/grace_hopper.jpg",
    "skimage:data/rocket.jpg",
)
"""Held-out photos (never in a zoo training set) the attribution methods learn from."""
TEST_PHOTOS = ("skimage:data/astronaut.png", "skimage:data/chelsea.png", "skimage:data/coffee.png")
"""Held-out photos every attribution number is measured on."""
LOSS_OF_STAGE = {"mse": "l1", "gan": "gan"}
"""Zoo stage -> loss label of the model it exports."""
MANIFEST = "manifest.json"
"""File name of the dataset manifest inside the dataset folder."""
PUBLISHED_CLASSES = ("RealESRGAN_x4plus", "RealESRGAN_x4plus_anime_6B", "realesr-animevideov3")
"""Published models the large zoo's dataset adds as classes (Vonderfecht & Liu attribute published models too)."""
PUBLISHED = "published:"
"""``config`` prefix of a member that is a published model, not a zoo config's stage."""


@dataclass(frozen=True)
class ZooMember:
    """One model of the attribution zoo and the attributes the classifier parses."""

    name: str
    """Model name (``<config name>-<stage>``)."""
    checkpoint: str
    """Path of its exported .safetensors."""
    architecture: str
    """Generator architecture ('srvgg', 'rrdbnet')."""
    scale: int
    """Upscaling factor."""
    loss: str
    """'l1' (mse stage) or 'gan'."""
    seed: int
    """Training seed."""
    config: str
    """The zoo YAML it was trained from."""
    data: str = ""
    """'' for the usual training data of its architecture and scale in this zoo, else a short tag of its own (a data-disjoint half)."""

    @property
    def published(self) -> bool:
        """Whether this class is a published model (its config is ``published:<model>``)."""
        return self.config.startswith(PUBLISHED)

    @property
    def triplet(self) -> str:
        """Key of the models differing from this one only by seed: 'arch-xS-loss', plus '-data<tag>' on other training data."""
        return f"{self.architecture}-x{self.scale}-{self.loss}" + (f"-data{self.data}" if self.data else "")


def zoo_members(configs: Sequence[Path], zoo_dir: Path) -> list[ZooMember]:
    """Members (mse and gan stage of each config) whose weights live in ``zoo_dir/<config name>/``, sorted by name."""
    import hashlib
    from collections import Counter

    from desra.train.zoo import exported_path
    from desra.train.zoo_config import load_zoo_config
    from desra.train.zoo_data import training_sources

    loaded = [(path, load_zoo_config(path)) for path in configs]
    sources = {str(path): tuple(sorted(training_sources(config.data))) for path, config in loaded}
    # Per architecture and scale, the data most configs share is the usual one; other data (e.g. the
    # data-disjoint halves) gets a tag, so seed-only comparisons never mix in a model trained on other photos.
    usual = {}
    for path, config in loaded:
        usual.setdefault((config.architecture, config.scale), Counter())[sources[str(path)]] += 1
    members = []
    for path, config in loaded:
        counts = usual[(config.architecture, config.scale)].most_common(2)
        common = counts[0][0] if len(counts) == 1 or counts[0][1] > counts[1][1] else None  # a tie has no usual data
        data = "" if sources[str(path)] == common else hashlib.sha256("\n".join(sources[str(path)]).encode()).hexdigest()[:6]
        for stage in config.stages:
            members.append(
                ZooMember(
                    name=f"{config.name}-{stage}",
                    checkpoint=str(exported_path(Path(zoo_dir) / config.name, config, stage)),
                    architecture=config.architecture,
                    scale=config.scale,
                    loss=LOSS_OF_STAGE[stage],
                    seed=config.seed,
                    config=str(path),
                    data=data,
                )
            )
    return sorted(members, key=lambda m: m.name)


def published_member(model: str) -> ZooMember:
    """A published model (registry id or checkpoint file) as one more attribution class.

    Its architecture, scale and role come from the loaded model (ncnn-converted registry models are
    converted on first use). Its data tag is its own name: its authors' training data is not any
    zoo member's, so it has no seed siblings.
    """
    from desra.models.checkpoint import load_model

    descriptor = load_model(model).descriptor
    if descriptor.role not in LOSS_OF_STAGE:
        raise DatasetError(
            f"{model}: its role (L1/MSE or GAN) is not recorded, and the classifier parses the loss; "
            "use a registered model or a checkpoint desra wrote"
        )
    return ZooMember(
        name=descriptor.name,
        checkpoint=descriptor.source,
        architecture=descriptor.architecture,
        scale=descriptor.scale,
        loss=LOSS_OF_STAGE[descriptor.role],
        seed=0,
        config=PUBLISHED + str(model),
        data=descriptor.name,
    )


def photo_stem(spec: str) -> str:
    """Short file-name-safe name of a 'package:path' photo, e.g. 'astronaut'."""
    return Path(spec.partition(":")[2]).stem


def downscale(image: np.ndarray, scale: int) -> np.ndarray:
    """Antialiased bicubic downscale of an (H, W, 3) float32 image by ``scale`` (H, W cropped to multiples): (H/s, W/s, 3) float32."""
    from PIL import Image

    h, w = image.shape[0] // scale * scale, image.shape[1] // scale * scale
    channels = [
        np.asarray(Image.fromarray(np.ascontiguousarray(image[:h, :w, c]), mode="F").resize((w // scale, h // scale), Image.Resampling.BICUBIC))
        for c in range(3)
    ]
    return np.clip(np.stack(channels, axis=-1), 0.0, 1.0).astype(np.float32)


def render_dataset(
    members: Sequence[ZooMember],
    out_dir: Path,
    *,
    train_photos: Sequence[str] = TRAIN_PHOTOS,
    test_photos: Sequence[str] = TEST_PHOTOS,
    device: str = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Upscale every photo with every member into ``out_dir/<member>/<photo>.png`` (existing files kept) and write the manifest; returns its path."""
    from desra.core.imageio import write_image
    from desra.models.checkpoint import load_model
    from desra.models.inference import upscale
    from desra.train.zoo_data import package_file, read_rgb

    names = [m.name for m in members]
    if len(set(names)) != len(names):  # one folder per class: a repeated name would mix two models' images
        raise DatasetError(f"two classes share a name ({sorted({n for n in names if names.count(n) > 1})}); pass each model once")
    missing = [m.checkpoint for m in members if not Path(m.checkpoint).is_file()]
    if missing:
        raise DatasetError(f"zoo weights missing: {missing[:3]}{' ...' if len(missing) > 3 else ''}; run `desra attribute build-zoo` to train them")
    photos = {spec: read_rgb(package_file(spec)) for spec in (*train_photos, *test_photos)}
    out_dir = Path(out_dir)
    total, done = len(members) * len(photos), 0
    for member in members:
        folder = out_dir / member.name
        model = None
        for spec, image in photos.items():
            target = folder / f"{photo_stem(spec)}.png"
            if not target.is_file():
                model = model or load_model(member.checkpoint, device=device)
                folder.mkdir(parents=True, exist_ok=True)
                write_image(target, upscale(model, downscale(image, member.scale), device=device))
            done += 1
            if progress is not None:
                progress(done, total)
    manifest = {
        "members": [asdict(m) for m in members],
        "train_photos": [photo_stem(s) for s in train_photos],
        "test_photos": [photo_stem(s) for s in test_photos],
    }
    from desra.core.atomic import atomic_write_text

    path = out_dir / MANIFEST
    atomic_write_text(path, json.dumps(manifest, indent=1))
    return path


@dataclass(frozen=True)
class AttributionData:
    """SR images of one split with the labels of their models."""

    members: tuple[ZooMember, ...]
    """All zoo members; index k is class k."""
    images: tuple[np.ndarray, ...]
    """(H, W, 3) float32 SR outputs in [0, 1]."""
    member_index: np.ndarray
    """(N,) int class index of each image's model."""
    photo: tuple[str, ...]
    """Photo name of each image."""


def load_split(dataset_dir: Path, split: str) -> AttributionData:
    """Read the 'train' or 'test' split of a rendered dataset."""
    from desra.core.imageio import read_image

    path = Path(dataset_dir) / MANIFEST
    if not path.is_file():
        raise DatasetError(f"{path} does not exist; build the dataset with `desra attribute build-zoo` first")
    if split not in ("train", "test"):
        raise DatasetError(f"split must be 'train' or 'test', got {split!r}")
    manifest = json.loads(path.read_text(encoding="utf-8"))
    members = tuple(ZooMember(**m) for m in manifest["members"])
    images, index, photos = [], [], []
    for k, member in enumerate(members):
        for stem in manifest[f"{split}_photos"]:
            images.append(read_image(Path(dataset_dir) / member.name / f"{stem}.png").rgb)
            index.append(k)
            photos.append(stem)
    return AttributionData(members=members, images=tuple(images), member_index=np.asarray(index), photo=tuple(photos))
