"""Load an MSE/GAN model pair, with every check: the one loader of the CLI, the dashboard, the job runner and fine-tuning.

A pair is a GAN model and the MSE (L1) model it was fine-tuned from (DeSRA compares the two). It
is named either as a registered pair (``desra models list``) or one side at a time (registry ids
or checkpoint files). Either way each side is loaded with its role, and the two must have the
same scale (``desra.models.checkpoint.check_same_scale``: ``PairMismatchError`` otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from desra.core.errors import ConfigError

if TYPE_CHECKING:  # torch stays out of import time
    from desra.models.checkpoint import SRModel


@dataclass(frozen=True)
class ModelPair:
    """A loaded pair and where it came from."""

    mse: SRModel
    """The MSE (L1) side, role 'mse', eval mode on the requested device."""
    gan: SRModel
    """The GAN side, role 'gan', same scale as ``mse``."""
    name: str | None
    """Registered pair name; None when the two models were named one by one."""
    class_weights: str
    """The pair's A_k table (TSV path); '' = the bundled ADE20K bins."""

    @property
    def scale(self) -> int:
        """SR size / LR size of both models."""
        return self.mse.descriptor.scale


def load_models(
    mse_model: str, gan_model: str, *, device: str = "cpu", what: str = "model pair"
) -> tuple[SRModel, SRModel]:
    """Load two models (registry ids or checkpoint files) as the MSE and GAN sides of a pair -> (mse, gan)."""
    from desra.models.checkpoint import check_same_scale, load_model

    mse = load_model(mse_model, role="mse", device=device)
    gan = load_model(gan_model, role="gan", device=device)
    check_same_scale(mse, gan, what)
    return mse, gan


def load_pair(name: str, *, device: str = "cpu") -> tuple[SRModel, SRModel]:
    """Load the registered pair ``name`` -> (mse, gan); ``UnknownNameError`` lists the registered pairs."""
    pair = choose_pair(name, device=device)
    return pair.mse, pair.gan


def choose_pair(
    pair: str | None = None, mse_model: str | None = None, gan_model: str | None = None, *, device: str = "cpu"
) -> ModelPair:
    """The pair a user named: a registered ``pair``, or both ``mse_model`` and ``gan_model`` (never both forms)."""
    if pair and (mse_model or gan_model):
        raise ConfigError(
            f"both a registered pair ({pair!r}) and single models were given; name either the pair "
            "(--pair NAME) or its two models (--mse-model M --gan-model G), not both"
        )
    if pair:
        from desra.models.registry import get_pair

        entry = get_pair(pair)
        mse, gan = load_models(entry.mse, entry.gan, device=device, what=f"pair {pair!r}")
        return ModelPair(mse=mse, gan=gan, name=pair, class_weights=entry.class_weights)
    if not (mse_model and gan_model):
        given = "only the MSE model" if mse_model else "only the GAN model" if gan_model else "no model"
        raise ConfigError(
            f"{given} given; name a registered pair (--pair NAME, see `desra models list`) or both the MSE "
            "model and the GAN model fine-tuned from it (--mse-model M --gan-model G)"
        )
    mse, gan = load_models(mse_model, gan_model, device=device)
    return ModelPair(mse=mse, gan=gan, name=None, class_weights="")
