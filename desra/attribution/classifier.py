"""A small ConvNeXt-style CNN trained from scratch to attribute SR images and parse scale and loss.

Vonderfecht & Liu fine-tuned ImageNet ConvNeXt-Base (224 px crops, Adamax lr 5e-4, batch 16,
random crops only). No pretrained weights are reachable here, so desra trains a ConvNeXt-style
network of ~0.37 M parameters from scratch: a 2x2 stride-2 patchify stem (fine enough to keep the
pixel-phase patterns of x2/x4 upsamplers), three stages of ConvNeXt blocks (7x7 depthwise conv,
LayerNorm, 4x inverted bottleneck, GELU, layer scale) with 2x2 stride-2 downsampling between them,
global average pooling and three linear heads: model (attribution), scale and loss (parsing).

From scratch, the network does not learn on raw pixels: every model renders the same photos, so
image content is the same across classes and ~10x stronger than the upsampler's artifacts, and the
2x2 stem + LayerNorm bury the few-grey-level differences under it (700 steps left it at chance,
and it could not even separate two models in 80 steps). It therefore sees a high-pass residual,
image minus a 5x5 box blur times 20 (about unit scale), and trains with AdamW lr 2e-3 with cosine
decay, which separated the same two models in 80 steps.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from desra.core.errors import CheckpointError, ConfigError


@dataclass(frozen=True)
class ClassifierConfig:
    """Architecture and training settings of the attribution CNN."""

    crop: int = 64
    """Side of the random square crops the network sees (pixels)."""
    dims: tuple[int, ...] = (32, 64, 128)
    """Channels of the three stages."""
    depths: tuple[int, ...] = (1, 1, 2)
    """ConvNeXt blocks per stage."""
    highpass: int = 5
    """Side of the box blur subtracted from the input (odd pixels); 0 feeds raw pixels minus the crop mean."""
    lr: float = 2e-3
    """Peak AdamW learning rate (cosine decay to 0 over ``iterations``)."""
    weight_decay: float = 0.05
    """AdamW weight decay."""
    batch: int = 32
    """Crops per step."""
    iterations: int = 2000
    """Training steps."""
    seed: int = 0
    """Seed of initialisation and crop sampling."""

    def to_dict(self) -> dict:
        """JSON-ready dict of the fields."""
        return asdict(self)


@dataclass(frozen=True)
class LabelSpace:
    """Names of the classes of the three heads."""

    models: tuple[str, ...]
    """Attribution classes (zoo model names)."""
    scales: tuple[str, ...]
    """Scale classes, e.g. ('x2', 'x4')."""
    losses: tuple[str, ...]
    """Loss classes, e.g. ('gan', 'l1')."""


RESIDUAL_GAIN = 20.0
"""Factor on the high-pass residual: its std on SR outputs is 0.02-0.07, this brings it near 1."""


def highpass_residual(x, window: int):
    """(N, 3, H, W) float tensor in [0, 1] -> x minus its ``window`` box blur (reflect padded), times RESIDUAL_GAIN; window 0 -> x minus its per-crop mean."""
    import torch.nn.functional as F

    if window == 0:
        # Subtracting each crop's mean removes brightness, leaving texture for the fingerprint.
        return x - x.mean(dim=(2, 3), keepdim=True)
    pad = window // 2
    blurred = F.avg_pool2d(F.pad(x, (pad, pad, pad, pad), mode="reflect"), window, stride=1)
    return (x - blurred) * RESIDUAL_GAIN


def _network(labels: LabelSpace, config: ClassifierConfig):
    import torch
    from torch import nn

    class LayerNorm2d(nn.LayerNorm):
        def forward(self, x):
            return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

    class Block(nn.Module):
        def __init__(self, dim: int) -> None:
            super().__init__()
            self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
            self.norm = nn.LayerNorm(dim)
            self.pw1 = nn.Linear(dim, 4 * dim)
            self.pw2 = nn.Linear(4 * dim, dim)
            self.gamma = nn.Parameter(torch.full((dim,), 1e-2))

        def forward(self, x):
            y = self.dwconv(x).permute(0, 2, 3, 1)
            y = self.pw2(nn.functional.gelu(self.pw1(self.norm(y))))
            return x + (self.gamma * y).permute(0, 3, 1, 2)

    class AttributionNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            layers: list = [nn.Conv2d(3, config.dims[0], 2, stride=2), LayerNorm2d(config.dims[0])]
            for i, (dim, depth) in enumerate(zip(config.dims, config.depths)):
                if i > 0:
                    layers += [LayerNorm2d(config.dims[i - 1]), nn.Conv2d(config.dims[i - 1], dim, 2, stride=2)]
                layers += [Block(dim) for _ in range(depth)]
            self.features = nn.Sequential(*layers)
            self.norm = nn.LayerNorm(config.dims[-1])
            self.head_model = nn.Linear(config.dims[-1], len(labels.models))
            self.head_scale = nn.Linear(config.dims[-1], len(labels.scales))
            self.head_loss = nn.Linear(config.dims[-1], len(labels.losses))

        def embed(self, x):
            return self.norm(self.features(highpass_residual(x, config.highpass)).mean(dim=(2, 3)))

        def forward(self, x):
            e = self.embed(x)
            return self.head_model(e), self.head_scale(e), self.head_loss(e)

    return AttributionNet()


@dataclass(frozen=True)
class Classifier:
    """A trained attribution network with its label space and settings."""

    module: object
    """The ``torch.nn.Module`` (eval mode): (N, 3, c, c) in [0, 1] -> (model, scale, loss) logits."""
    labels: LabelSpace
    """Class names of the three heads."""
    config: ClassifierConfig
    """Settings it was built and trained with."""


def build_classifier(labels: LabelSpace, config: ClassifierConfig = ClassifierConfig()) -> Classifier:
    """A freshly initialised (seeded) :class:`Classifier` for ``labels``."""
    import torch

    if len(config.dims) != len(config.depths) or config.crop % (2 ** len(config.dims)):
        raise ConfigError(
            f"dims {config.dims} and depths {config.depths} must have equal length and crop {config.crop} "
            f"must be divisible by {2 ** len(config.dims)}"
        )
    if config.highpass < 0 or (config.highpass and (config.highpass % 2 == 0 or config.highpass >= config.crop)):
        raise ConfigError(f"highpass must be 0 or an odd window smaller than the crop ({config.crop}), got {config.highpass}")
    torch.manual_seed(config.seed)
    return Classifier(module=_network(labels, config).eval(), labels=labels, config=config)


def random_crops(images: Sequence[np.ndarray], count: int, crop: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``count`` random (crop, crop, 3) crops of the (H, W, 3) ``images``: (count, crop, crop, 3) float32 and (count,) source indices."""
    picks = rng.integers(len(images), size=count)
    crops = np.empty((count, crop, crop, 3), np.float32)
    for i, k in enumerate(picks):
        image = images[k]
        y = rng.integers(image.shape[0] - crop + 1)
        x = rng.integers(image.shape[1] - crop + 1)
        crops[i] = image[y : y + crop, x : x + crop]
    return crops, picks


def train_classifier(
    classifier: Classifier,
    images: Sequence[np.ndarray],
    targets: np.ndarray,
    *,
    device: str = "cpu",
    progress: Callable[[int, int, float], None] | None = None,
) -> Classifier:
    """Train on random crops of (H, W, 3) float32 ``images`` with (N, 3) int ``targets`` (model, scale, loss); returns the trained classifier.

    ``progress(done, total, loss)`` is called every step.
    """
    import torch
    import torch.nn.functional as F

    config = classifier.config
    small = [i for i, img in enumerate(images) if min(img.shape[:2]) < config.crop]
    if small or len(images) == 0:
        raise ConfigError(f"training needs images of at least {config.crop} px; {len(small)} of {len(images)} are smaller")
    targets_t = torch.as_tensor(np.asarray(targets), dtype=torch.long)
    module = classifier.module.to(device).train()
    optimizer = torch.optim.AdamW(module.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(config.iterations, 1))
    rng = np.random.default_rng(config.seed)
    for step in range(config.iterations):
        crops, picks = random_crops(images, config.batch, config.crop, rng)
        x = torch.from_numpy(crops).permute(0, 3, 1, 2).to(device)
        y = targets_t[picks].to(device)
        logits = module(x)
        loss = sum(F.cross_entropy(out, y[:, j]) for j, out in enumerate(logits))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if progress is not None:
            progress(step + 1, config.iterations, loss.item())
    module.eval()
    return classifier


@dataclass(frozen=True)
class Prediction:
    """Softmax outputs and embeddings of a batch of crops."""

    model: np.ndarray
    """(N, K) float32 probabilities over models."""
    scale: np.ndarray
    """(N, S) float32 probabilities over scales."""
    loss: np.ndarray
    """(N, L) float32 probabilities over losses."""
    embedding: np.ndarray
    """(N, D) float32 penultimate features (for R(A, B) and t-SNE)."""


def predict(classifier: Classifier, crops: np.ndarray, *, batch: int = 64, device: str = "cpu") -> Prediction:
    """Run the network on (N, c, c, 3) float32 crops in [0, 1]; returns a :class:`Prediction`."""
    import torch

    module = classifier.module.to(device).eval()
    parts: list[list[np.ndarray]] = [[], [], [], []]
    with torch.no_grad():
        for start in range(0, len(crops), batch):
            x = torch.from_numpy(np.ascontiguousarray(crops[start : start + batch], np.float32)).permute(0, 3, 1, 2).to(device)
            e = module.embed(x)
            outs = (module.head_model(e), module.head_scale(e), module.head_loss(e))
            for j, out in enumerate(outs):
                parts[j].append(torch.softmax(out, dim=1).cpu().numpy())
            parts[3].append(e.cpu().numpy())
    return Prediction(*(np.concatenate(p).astype(np.float32) for p in parts))


def vote(probabilities: np.ndarray) -> np.ndarray:
    """Soft vote over several crops of one image: mean of (T, K) probabilities -> (K,) float32."""
    return np.asarray(probabilities, np.float32).mean(axis=0)


def save_classifier(path: Path, classifier: Classifier) -> Path:
    """Write the classifier to a .safetensors file (labels and settings in the metadata), atomically."""
    from safetensors.torch import save_file

    from desra.core.atomic import atomic_path

    path = Path(path)
    meta = {"labels": asdict(classifier.labels), "config": classifier.config.to_dict()}
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in classifier.module.state_dict().items()}
    with atomic_path(path) as temp:
        save_file(tensors, str(temp), metadata={"desra_attribution": json.dumps(meta)})
    return path


def load_classifier(path: Path) -> Classifier:
    """Read a classifier written by :func:`save_classifier`."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"attribution classifier {path} does not exist; train one with `desra attribute train`")
    with safe_open(str(path), framework="pt") as handle:
        raw = (handle.metadata() or {}).get("desra_attribution")
    if raw is None:
        raise CheckpointError(f"{path} has no desra_attribution metadata; it was not written by `desra attribute train`")
    meta = json.loads(raw)
    # Classifiers saved before the high-pass input existed were trained on raw pixels.
    meta["config"].setdefault("highpass", 0)
    labels = LabelSpace(**{k: tuple(v) for k, v in meta["labels"].items()})
    config = ClassifierConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in meta["config"].items()})
    classifier = build_classifier(labels, config)
    classifier.module.load_state_dict(load_file(str(path)), strict=True)
    classifier.module.eval()
    return classifier
