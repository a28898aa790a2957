"""Where the loss goes: the measurements behind "capacity, data, optimisation or compute".

For each quality level, on training crops and on validation crops of the same size:
the model's rate and distortion, their Lagrangian (the training loss), and the PSNR of
the *unquantised* autoencoder g_s(g_a(x)) beside the PSNR after rounding.

- A training loss well below the validation loss: the model fits its training photos
  better than new ones (data-limited).
- Equal losses and an unquantised PSNR close to the quantised one: the transforms, not
  the entropy model or the rate, limit quality (optimisation or capacity).

And, on random training crops like the training loop's, the gradient noise scale: whether
a bigger batch would buy progress per step (optimisation) or only cost compute; and how
far the transforms go when a copy of the network is trained on one fixed batch (a
network that cannot fit 8 crops is capacity-limited; one that fits them fast is not).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...codec.image_io import list_images, read_rgb
from .. import registry
from ..trainable import GainedHyperprior
from .data import CropSampler, centre_crops, centre_crops_of
from .objective import (
    NoiseScale,
    gradient_noise_scale,
    measure_level,
    rate_distortion,
    rd_parameters,
)
from .train import load_initial_weights


@dataclass(frozen=True)
class ProbeRow:
    split: str  # "train" or "val"
    quality: int
    crops: int
    bpp: float
    psnr: float
    psnr_unquantised: float
    loss: float
    active_channels: int


def load_network(path: str | Path) -> GainedHyperprior:
    """A network from a shipped weight file or a training checkpoint."""
    network = registry.build_network(registry.config_of(path), trainable=True)
    load_initial_weights(network, str(path))
    return network.eval()


def train_crops(folder: Path, size: int, count: int, seed: int = 0) -> list[np.ndarray]:
    """Centre crops of up to ``count`` randomly chosen photos large enough for them (the
    same kind of crop as the validation split's, so only the photos differ)."""
    paths = list_images(folder)
    crops = []
    for i in np.random.default_rng(seed).permutation(len(paths)):
        crops += centre_crops_of([read_rgb(paths[i])], size)
        if len(crops) == count:
            break
    return crops


def probe(
    network: GainedHyperprior, splits: dict[str, list[np.ndarray]], qualities=(1, 4, 8)
) -> list[ProbeRow]:
    """Measure every split at every quality."""
    rows = []
    for split, crops in splits.items():
        for q in qualities:
            s = measure_level(network, crops, q)
            rows.append(
                ProbeRow(
                    split, q, len(crops), s.bpp, s.psnr, s.psnr_unquantised, s.loss,
                    s.active_channels,
                )
            )  # fmt: skip
    return rows


def default_splits(train: Path, val: Path, size: int = 256, count: int = 24) -> dict:
    return {"train": train_crops(train, size, count), "val": centre_crops(val, size, count)}


def noise_scale(
    network: GainedHyperprior, folder: Path, samples: int, size: int = 128, seed: int = 0
) -> NoiseScale:
    """The gradient noise scale on ``samples`` random ``size`` crops of as many training
    photos, each at a uniformly drawn quality level (as in training)."""
    import torch

    crops = random_crops(folder, samples, size, seed)
    rng = np.random.default_rng(seed)
    levels = torch.from_numpy(rng.integers(0, network.config.levels, samples))
    torch.manual_seed(seed)
    return gradient_noise_scale(network, torch.from_numpy(crops).float() / 255, levels)


@dataclass(frozen=True)
class OverfitPoint:
    step: int
    bpp: float  # as in ``measure_level``: model estimate, means over the crops
    psnr: float
    psnr_unquantised: float
    loss: float


def overfit(
    network: GainedHyperprior,
    crops: np.ndarray,
    quality: int = 8,
    steps: int = 200,
    lr: float = 1e-4,
    every: int = 50,
) -> list[OverfitPoint]:
    """Train a copy of ``network`` on one fixed (B, 3, H, W) uint8 batch at integer level
    ``quality`` (the training loop's loss, Adam, clipping) and measure it every ``every``
    steps; the network itself is left as it was."""
    import copy

    import torch

    net = copy.deepcopy(network).train()
    x = torch.from_numpy(crops).float() / 255
    q = torch.full((len(x),), float(quality))
    lmbda = torch.full((len(x),), network.config.lambdas[quality - 1])
    params = [p for _, p in rd_parameters(net)]
    opt = torch.optim.Adam(params, lr=lr)

    crops_hwc = [crop.transpose(1, 2, 0) for crop in crops]

    def measure(step: int) -> OverfitPoint:
        net.eval()
        s = measure_level(net, crops_hwc, quality)
        net.train()
        return OverfitPoint(step, s.bpp, s.psnr, s.psnr_unquantised, s.loss)

    points = [measure(0)]
    for step in range(1, steps + 1):
        rd = rate_distortion(net(x, q), x, lmbda)
        opt.zero_grad(set_to_none=True)
        rd["loss"].backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if step % every == 0 or step == steps:
            points.append(measure(step))
    return points


def random_crops(folder: Path, count: int, size: int = 128, seed: int = 0) -> np.ndarray:
    """(count, 3, size, size) uint8 random crops, one from each of ``count`` random photos."""
    paths = list_images(folder)
    rng = np.random.default_rng(seed)
    photos = [read_rgb(paths[i]) for i in rng.permutation(len(paths))[:count]]
    return CropSampler(photos, size, seed).batch(count)
