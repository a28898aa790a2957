"""The training objective, R + lmbda * 255^2 * MSE, and its measurement on crops.

The rate R is -log2 of the latents' likelihoods in bits per pixel (the KL term of
the ELBO); the distortion is the MSE of the reconstruction on [0, 1] pixels, scaled
to 8-bit by 255^2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..trainable import GainedHyperprior

# A y channel is counted active above this many bits per latent location.
ACTIVE_BITS_PER_LOCATION = 1e-3


def rd_parameters(network: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    """The (name, parameter) pairs R + lmbda D trains: all but the entropy bottleneck's
    tail quantiles, which only the aux loss fits."""
    return [(n, p) for n, p in network.named_parameters() if not n.endswith("quantiles")]


def rate_distortion(
    out: dict[str, Tensor],
    x: Tensor,
    lmbda: Tensor,
    weights: Tensor | None = None,
    channel_rate: Tensor | None = None,
) -> dict[str, Tensor]:
    """Per-sample rate (bits per pixel), distortion (MSE) and loss, and their mean
    ``loss`` (weighted per sample by ``weights`` when given). ``channel_rate`` (M,):
    how much of each y channel's bits the loss charges (a rate warm-up; the reported
    rate is always the whole)."""
    pixels = x.shape[2] * x.shape[3]
    bits_y_map = -torch.log2(out["y_likelihoods"])
    bits_y = bits_y_map.flatten(1).sum(1)
    bits_z = -torch.log2(out["z_likelihoods"]).flatten(1).sum(1)
    mse = ((out["x_hat"] - x) ** 2).flatten(1).mean(1)
    bpp = (bits_y + bits_z) / pixels
    sample_loss = lmbda * 255**2 * mse + bpp
    if channel_rate is not None:
        charged = (bits_y_map * channel_rate.to(bits_y_map)[None, :, None, None]).flatten(1)
        sample_loss = sample_loss - (bits_y - charged.sum(1)) / pixels
    weighted = sample_loss if weights is None else weights * sample_loss
    return {
        "loss": weighted.mean(),
        "sample_loss": sample_loss,
        "bpp": bpp,
        "bpp_y": bits_y / pixels,
        "bpp_z": bits_z / pixels,
        "mse": mse,
    }


def psnr_from_mse(mse: float) -> float:
    """PSNR in dB of an MSE on [0, 1] pixels."""
    return 10 * math.log10(1 / max(mse, 1e-12))


class LevelBalance:
    """Per-level loss weights that give every quality level the same say in a step.

    The lambda ladder spans ~100x, so with plain R + lmbda D the samples of the top
    levels carry most of every batch's gradient. Dividing each sample's loss by a
    running mean of its level's loss makes the step follow the sum of the levels'
    *relative* improvements (the gradient of sum log L_l), which is what a BD-rate,
    an average over log rates, rewards. The weights average 1 over the levels.

    The running mean is a plain mean over a level's first 1/(1 - decay) samples and an
    exponential one after that, so one unusual first crop does not set a level's weight.
    """

    def __init__(self, levels: int, decay: float = 0.99, state: dict | None = None):
        self.decay = decay
        self.mean_loss = torch.full((levels,), math.nan)
        self.count = torch.zeros(levels, dtype=torch.int64)
        if state is not None:
            self.mean_loss = state["mean_loss"].clone()
            self.count = state["count"].clone()

    def weights(self, levels: Tensor) -> Tensor:
        """The weight of each sample of 0-based ``levels`` (1 until a level is seen)."""
        seen = self.count > 0
        if not seen.any():
            return torch.ones(len(levels))
        filled = torch.where(seen, self.mean_loss, self.mean_loss[seen].mean())
        inverse = 1 / filled
        return (inverse / inverse.mean())[levels]

    def update(self, levels: Tensor, sample_loss: Tensor) -> None:
        """Fold a step's per-sample losses into the running means."""
        losses = sample_loss.detach().float().cpu().tolist()
        horizon = 1 / (1 - self.decay)
        for level, loss in zip(levels.tolist(), losses, strict=True):
            self.count[level] += 1
            old = 0.0 if self.count[level] == 1 else float(self.mean_loss[level])
            rate = max(1 / int(self.count[level]), 1 / horizon)
            self.mean_loss[level] = old + rate * (loss - old)

    def state_dict(self) -> dict:
        return {"mean_loss": self.mean_loss.clone(), "count": self.count.clone()}


@dataclass(frozen=True)
class LevelStats:
    """One quality level on a set of crops (means over crops)."""

    bpp: float  # model estimate for the rounded latents
    psnr: float  # after rounding
    psnr_unquantised: float  # g_s(g_a(x)) without rounding: what the transforms allow
    loss: float  # bpp + lmbda * 255^2 * MSE
    channel_bits: np.ndarray  # (M,) bits per latent location of each y channel (its KL)

    @property
    def active_channels(self) -> int:
        return int((self.channel_bits >= ACTIVE_BITS_PER_LOCATION).sum())


@torch.no_grad()
def measure_level(network: GainedHyperprior, crops: list[np.ndarray], quality: int) -> LevelStats:
    """Rate, distortion, loss and the unquantised ceiling of integer level ``quality``."""
    device = next(network.parameters()).device
    q = torch.tensor([float(quality)], device=device)
    lmbda = torch.tensor([network.config.lambdas[quality - 1]], device=device)
    bpps, psnrs, raw, losses, bits, locations = [], [], [], [], 0.0, 0
    for crop in crops:
        x = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1)[None].to(device)
        x = x.float() / 255
        out = network(x, q)
        rd = rate_distortion({**out, "x_hat": out["x_hat"].clamp(0, 1)}, x, lmbda)
        raw_mse = ((network.synthesis(out["y"], q).clamp(0, 1) - x) ** 2).mean().item()
        bpps.append(rd["bpp"].item())
        psnrs.append(psnr_from_mse(rd["mse"].item()))
        raw.append(psnr_from_mse(raw_mse))
        losses.append(rd["loss"].item())
        bits = bits + (-torch.log2(out["y_likelihoods"])).sum(dim=(0, 2, 3)).cpu().numpy()
        locations += out["y_likelihoods"].shape[2] * out["y_likelihoods"].shape[3]
    return LevelStats(
        float(np.mean(bpps)),
        float(np.mean(psnrs)),
        float(np.mean(raw)),
        float(np.mean(losses)),
        np.asarray(bits) / max(locations, 1),
    )


@dataclass(frozen=True)
class NoiseScale:
    """The gradient noise scale of the training loss (McCandlish et al. 2018, "An
    empirical model of large-batch training", appendix A) from per-sample gradients.

    ``b_simple`` = tr(Sigma) / |G|^2 is the batch size below which a step's gradient is
    mostly noise: there, doubling the batch nearly halves the steps needed, so samples
    (pixels), not steps, are what training costs; far above it, extra samples are wasted.
    """

    samples: int
    grad_sq: float  # |G|^2, the squared norm of the true gradient (unbiased estimate)
    trace_sigma: float  # tr(Sigma), the per-sample gradient variance

    @property
    def b_simple(self) -> float:
        return self.trace_sigma / self.grad_sq if self.grad_sq > 0 else math.inf

    def batch_grad_norm(self, batch_size: int) -> float:
        """Expected norm of a ``batch_size`` gradient (what gradient clipping sees)."""
        return math.sqrt(max(self.grad_sq + self.trace_sigma / batch_size, 0.0))


def gradient_noise_scale(network: GainedHyperprior, batch: Tensor, levels: Tensor) -> NoiseScale:
    """Per-sample gradients of R + lmbda D (training mode: noisy latents for the rate)
    for a float [0, 1] ``batch`` with 0-based quality ``levels``, one per sample."""
    n = batch.shape[0]
    if n < 2:
        raise ValueError("the noise scale needs at least 2 samples")
    params = [p for _, p in rd_parameters(network)]
    was_training = network.training
    network.train()
    lambdas = torch.tensor(network.config.lambdas, device=batch.device)
    total = [torch.zeros_like(p) for p in params]
    sum_sq = 0.0
    try:
        for i in range(n):
            x, level = batch[i : i + 1], levels[i : i + 1]
            out = network(x, (level + 1).float())
            loss = rate_distortion(out, x, lambdas[level])["loss"]
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            grads = [
                torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)
            ]
            sum_sq += sum(float((g**2).sum()) for g in grads)
            for t, g in zip(total, grads, strict=True):
                t += g
    finally:
        network.train(was_training)
    small = sum_sq / n  # E|g_1|^2 = |G|^2 + tr(Sigma)
    big = sum(float(((t / n) ** 2).sum()) for t in total)  # E|g_n|^2 = |G|^2 + tr(Sigma)/n
    return NoiseScale(n, (n * big - small) / (n - 1), n * (small - big) / (n - 1))
