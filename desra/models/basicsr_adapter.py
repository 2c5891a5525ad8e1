"""The one module that imports basicsr.

desra depends on ``basicsr-fixed==1.4.2``: the official basicsr 1.4.2 code with its single stale
``torchvision.transforms.functional_tensor`` import corrected, so nothing is patched at runtime.
basicsr imports all of its sub-packages on first use (several seconds), so every import here
happens inside a function: ``import desra`` and the CLI's ``--help`` never pay for it, and a broken
basicsr breaks only the features that build networks or degrade images.

Builders return freshly initialised ``torch.nn.Module`` objects with basicsr's own parameter names,
so state dicts saved by basicsr, Real-ESRGAN and SwinIR load into them unchanged.
"""

from __future__ import annotations

from typing import Any

from desra.core.errors import ArchitectureError, DependencyError


def _import(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise DependencyError(
            f"could not import {module} ({error}); desra needs basicsr-fixed==1.4.2: "
            "run `pip install basicsr-fixed==1.4.2`"
        ) from error


def _build(module: str, cls: str, params: dict[str, Any]):
    factory = getattr(_import(module), cls)
    try:
        return factory(**params)
    except (TypeError, ValueError, AssertionError) as error:
        raise ArchitectureError(f"cannot build {cls} with parameters {params}: {error}") from error


def rrdbnet(**params: Any):
    """basicsr ``RRDBNet`` (ESRGAN/Real-ESRGAN generator): num_in_ch, num_out_ch, scale, num_feat, num_block, num_grow_ch."""
    return _build("basicsr.archs.rrdbnet_arch", "RRDBNet", params)


def srvgg(**params: Any):
    """basicsr ``SRVGGNetCompact``: num_in_ch, num_out_ch, num_feat, num_conv, upscale, act_type."""
    return _build("basicsr.archs.srvgg_arch", "SRVGGNetCompact", params)


def swinir(**params: Any):
    """basicsr ``SwinIR``: img_size, in_chans, embed_dim, depths, num_heads, window_size, mlp_ratio, upscale, upsampler, resi_connection, ..."""
    return _build("basicsr.archs.swinir_arch", "SwinIR", params)


def unet_discriminator_sn(*, spectral_norm: bool = True, **params: Any):
    """basicsr ``UNetDiscriminatorSN`` (Real-ESRGAN's U-Net discriminator): num_in_ch, num_feat, skip_connection.

    ``spectral_norm=False`` gives the same U-Net with plain convolutions (at CPU scale spectral norm
    can keep it at chance, docs/zoo.md); its state dict then has plain ``weight`` keys.
    """
    module = _build("basicsr.archs.discriminator_arch", "UNetDiscriminatorSN", params)
    if not spectral_norm:
        import torch

        for layer in module.modules():
            if hasattr(layer, "weight_orig"):
                torch.nn.utils.remove_spectral_norm(layer)
            # remove_spectral_norm leaves its load_state_dict pre-hook behind, which then demands the
            # weight_orig/weight_u keys a plain convolution does not have (torch 2.x): without this,
            # a plain discriminator could not load its own checkpoint (zoo --resume, fine-tune --disc).
            for key, hook in list(layer._load_state_dict_pre_hooks.items()):
                if type(getattr(hook, "hook", hook)).__name__ == "SpectralNormLoadStateDictPreHook":
                    del layer._load_state_dict_pre_hooks[key]
    return module


def __getattr__(name: str) -> Any:
    """Re-export basicsr's degradation helpers lazily (Real-ESRGAN's second-order degradation)."""
    if name in _DEGRADATION_EXPORTS:
        module, attr = _DEGRADATION_EXPORTS[name]
        return getattr(_import(module), attr)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Where each re-exported helper lives in basicsr 1.4.2 (written out so a rename fails loudly here).
_DEGRADATION_EXPORTS = {
    "circular_lowpass_kernel": ("basicsr.data.degradations", "circular_lowpass_kernel"),
    "random_mixed_kernels": ("basicsr.data.degradations", "random_mixed_kernels"),
    "random_add_gaussian_noise_pt": ("basicsr.data.degradations", "random_add_gaussian_noise_pt"),
    "random_add_poisson_noise_pt": ("basicsr.data.degradations", "random_add_poisson_noise_pt"),
    "DiffJPEG": ("basicsr.utils.diffjpeg", "DiffJPEG"),
    "filter2D": ("basicsr.utils.img_process_util", "filter2D"),
    "USMSharp": ("basicsr.utils.img_process_util", "USMSharp"),
}

__all__ = [
    "rrdbnet",
    "srvgg",
    "swinir",
    "unet_discriminator_sn",
    *_DEGRADATION_EXPORTS,
]
