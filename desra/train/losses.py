"""Training losses: L1 reconstruction, the download-free perceptual term, GAN losses.

Perceptual term. Real-ESRGAN uses a VGG19 feature loss, but no pretrained VGG can be downloaded
here and a randomly initialised VGG measures little. desra uses *discriminator feature matching*
(pix2pixHD, Wang et al. 2018): the L1 distance between the discriminator's intermediate features
of the SR output and of the HR target. Those features are learned on the very data being trained
to tell real texture from generated texture, so the term pushes the generator towards real
texture statistics the way a VGG loss does, at no download and little extra cost (the
discriminator runs on both images for the adversarial loss anyway).

GAN losses take the discriminator's raw logits (any shape; basicsr's U-Net discriminator gives one
per pixel). ``vanilla`` is Real-ESRGAN's BCE loss; ``ragan`` is the relativistic average loss of
ESRGAN (Wang et al. 2018), which compares each image with the mean of the other kind and keeps a
gradient flowing to the generator even when the discriminator is sure; ``hinge`` is the
spectral-norm GAN loss of Miyato et al. 2018.
"""

from __future__ import annotations

from desra.core.errors import ConfigError

GAN_KINDS = ("vanilla", "ragan", "hinge")


def l1(sr, hr):
    """Mean absolute error between ``(N, C, H, W)`` tensors; scalar tensor."""
    return (sr - hr).abs().mean()


def _bce(logits, target: float):
    import torch.nn.functional as F

    return F.binary_cross_entropy_with_logits(logits, logits.new_full(logits.shape, target))


def gan_generator_loss(fake_logits, real_logits, kind: str):
    """Adversarial loss of the generator from D logits on SR (``fake``) and HR (``real``, detached); scalar."""
    if kind == "vanilla":
        return _bce(fake_logits, 1.0)
    if kind == "ragan":
        real = real_logits.detach()
        return (_bce(real - fake_logits.mean(), 0.0) + _bce(fake_logits - real.mean(), 1.0)) / 2
    if kind == "hinge":
        return -fake_logits.mean()
    raise ConfigError(f"unknown GAN loss {kind!r}; expected one of {GAN_KINDS}")


def gan_discriminator_loss(real_logits, fake_logits, kind: str):
    """Adversarial loss of the discriminator from logits on HR (``real``) and detached SR (``fake``); scalar."""
    import torch.nn.functional as F

    if kind == "vanilla":
        return _bce(real_logits, 1.0) + _bce(fake_logits, 0.0)
    if kind == "ragan":
        return _bce(real_logits - fake_logits.mean(), 1.0) + _bce(fake_logits - real_logits.mean(), 0.0)
    if kind == "hinge":
        return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()
    raise ConfigError(f"unknown GAN loss {kind!r}; expected one of {GAN_KINDS}")


def feature_matching(fake_features, real_features):
    """Mean over layers of the L1 distance between D features of SR and (detached) HR; scalar."""
    total = 0.0
    for fake, real in zip(fake_features, real_features, strict=True):
        total = total + (fake - real.detach()).abs().mean()
    return total / max(1, len(fake_features))


def run_with_features(discriminator, x):
    """Run ``discriminator`` on ``x``; return ``(logits, features)`` where features are the outputs
    of every convolution except the last (collected with forward hooks, so any conv D works)."""
    import torch.nn as nn

    convs = [m for m in discriminator.modules() if isinstance(m, nn.Conv2d)][:-1]
    features: list = []
    handles = [conv.register_forward_hook(lambda _m, _i, out: features.append(out)) for conv in convs]
    try:
        logits = discriminator(x)
    finally:
        for handle in handles:
            handle.remove()
    return logits, features
