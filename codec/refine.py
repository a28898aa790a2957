"""Encode-time refinement of the latents: better files from the same decoder.

``g_a`` guesses the latents in one pass, for any photo (amortised inference). For the
photo at hand better latents exist; this module searches for them by gradient descent
on the codec's own objective, R + lambda * 255^2 * MSE, through the real decoder ``g_s``
(Yang, Bamler & Mandt 2020, "Improving Inference for Neural Image Compression"):

- y (gained) and z are the variables, started at ``g_a``'s and ``h_a``'s outputs.
- Rounding is relaxed by stochastic Gumbel annealing (SGA): each value is a random soft
  mix of its floor and ceiling, the nearer one likelier, and the temperature anneals
  toward hard rounding, which closes the gap between what is optimised and what is
  coded. y is rounded around its mean, as the coder rounds ``y - mu``.
- Rate gradients flow through the float twins of the integer entropy networks (the
  training faces of ``h_s`` and the slice contexts, the same numbers on the same
  grids); the file is then coded with the integer networks exactly as without
  refinement, so the decoder does not change and every file decodes as before.

Effort levels name step counts and schedules measured on the validation photos
(``EFFORTS``); effort 0 is the single pass.
"""

from __future__ import annotations

import contextlib
import math
import numbers
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass

import torch
from torch import Tensor

from ..models.gaussian import likelihood
from ..models.network import bf16_is_native
from . import tiles


@dataclass(frozen=True)
class Effort:
    """One refinement schedule: Adam steps, learning rate, and the temperature held
    at ``tau_max`` for ``hold`` of the steps, then decayed exponentially to ``tau_min``."""

    steps: int
    lr: float
    hold: float = 0.35
    tau_max: float = 0.5
    tau_min: float = 0.05

    def tau(self, step: int) -> float:
        start = int(self.hold * self.steps)
        if step < start:
            return self.tau_max
        frac = (step - start) / max(1, self.steps - start)
        return self.tau_max * (self.tau_min / self.tau_max) ** frac


# Effort 0 is the single pass; higher levels spend more steps (measured in the model
# card: BD-rate against effort 0 and seconds for a 768x512 photo).
EFFORTS: dict[int, Effort | None] = {
    0: None,
    1: Effort(steps=20, lr=1.5e-2),
    2: Effort(steps=60, lr=1e-2),
    3: Effort(steps=200, lr=5e-3),
    4: Effort(steps=600, lr=5e-3),
}
MAX_EFFORT = max(EFFORTS)
DEFAULT_EFFORT = 0


def effort_schedule(effort: int) -> Effort | None:
    """The schedule of an effort level (None: the single pass). ValueError for anything
    but an integer level: True and 2.0 equal levels but are not one."""
    integer = isinstance(effort, numbers.Integral) and not isinstance(effort, bool)
    if not integer or effort not in EFFORTS:
        raise ValueError(f"effort must be one of {sorted(EFFORTS)}, got {effort!r}")
    return EFFORTS[int(effort)]


# Who hears of each step (a progress bar); per context, so threads and workers that
# encode side by side do not report into each other's.
_ON_STEP: ContextVar[Callable[[int, int], None] | None] = ContextVar("on_step", default=None)


@contextlib.contextmanager
def reporting(on_step: Callable[[int, int], None]) -> Iterator[None]:
    """Within the block, every refinement calls ``on_step(done, steps)`` after each of
    its steps (a search for a target rate may refine several times)."""
    token = _ON_STEP.set(on_step)
    try:
        yield
    finally:
        _ON_STEP.reset(token)


def sga_round(x: Tensor, tau: float, generator: torch.Generator | None = None) -> Tensor:
    """Stochastic Gumbel annealing: a differentiable random soft rounding of ``x``
    (Yang et al. 2020, eq. 6); as tau -> 0 it becomes rounding to the nearest."""
    lo = torch.floor(x)
    frac = x - lo
    eps = 1e-5
    logits = torch.stack(
        [
            -torch.atanh(torch.clamp(frac, 0, 1 - eps)) / tau,
            -torch.atanh(torch.clamp(1 - frac, 0, 1 - eps)) / tau,
        ],
        dim=-1,
    )
    uniform = torch.rand(logits.shape, generator=generator, dtype=logits.dtype)
    gumbel = -torch.log(-torch.log(uniform.clamp_(1e-10, 1.0)))
    weights = torch.softmax((logits + gumbel) / tau, dim=-1)
    return lo + weights[..., 1]


def lambda_of_quality(lambdas: tuple[float, ...], quality: float) -> float:
    """lambda at a (fractional) quality: geometric interpolation between levels, as the
    gains interpolate."""
    q = min(max(quality, 1.0), float(len(lambdas))) - 1
    lo = min(int(math.floor(q)), len(lambdas) - 2) if len(lambdas) > 1 else 0
    t = q - lo
    if len(lambdas) == 1:
        return lambdas[0]
    return math.exp((1 - t) * math.log(lambdas[lo]) + t * math.log(lambdas[lo + 1]))


# Up to this many y positions (1 MP) g_s's backward pass runs over the whole image at
# once (peak RSS 1.1 GB at 0.4 MP against 0.8 GB for the single pass, growing with the
# pixels); beyond, over overlapping tiles of TILE_LATENTS positions, one at a time, so
# its memory stays bounded at any size. The objective and its gradient are the same
# (the tiles' margins cover g_s's receptive field); only the order of the floating-point
# sums differs. The rate term runs over the whole latent grid (about 0.17 GB a MP).
WHOLE_LATENTS = 1_000_000 // 256
TILE_LATENTS = 48  # 768 px


def _distortion_grad(
    net, g_s, y_tilde: Tensor, inv_gain: Tensor, x: Tensor, weight: float, bf16: bool
) -> Tensor:
    """The gradient of ``weight`` * MSE(g_s(y_tilde), x) with respect to ``y_tilde``,
    with g_s run (and differentiated) over overlapping tiles, one at a time."""
    leaf = y_tilde.detach().requires_grad_(True)
    height, width = x.shape[2:]
    weight = weight / x.numel()  # the mean over every pixel of every channel
    windows = tiles.synthesis_windows(
        *leaf.shape[2:], height, width, net.margin, net.stride, TILE_LATENTS, False
    )
    for (rows, cols), (out_rows, out_cols), (img_rows, img_cols) in windows:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            y_in = leaf[:, :, rows, cols] * inv_gain
            out = g_s(y_in.contiguous(memory_format=torch.channels_last))
        crop = out[:, :, out_rows, out_cols].float()
        sse = torch.sum((crop - x[:, :, img_rows, img_cols]) ** 2)
        (weight * sse).backward()
    return leaf.grad


def refine(
    net,
    x: Tensor,
    y: Tensor,
    z: Tensor,
    quality: float,
    schedule: Effort,
    seed: int = 0,
) -> tuple[Tensor, Tensor]:
    """Refined (gained y, z) for the photo ``x`` (1, 3, H, W) in [0, 1], from the single
    pass's ``y`` and ``z`` (of the photo padded to a multiple of 64); ``net`` is the
    coding network (its float faces are used, its weights are not changed)."""
    # A generator of its own: the same photo and effort give the same file, and the
    # global random state (other threads', the caller's) is not touched.
    generator = torch.Generator().manual_seed(seed)
    return _refine(net, x, y, z, quality, schedule, generator)


def _refine(net, x, y, z, quality, schedule, generator):
    q = torch.tensor([quality], dtype=torch.float32)
    lmbda = lambda_of_quality(net.config.lambdas, quality)
    _, inv_gain = net.gains(q)
    inv_gain = inv_gain.detach()
    medians = net.z_medians()[None, :, None, None]
    height, width = x.shape[2:]
    pixels = height * width
    # g_s's gradients in bfloat16 where the CPU computes it natively: only the search
    # direction is approximate, the file is coded in full precision.
    bf16 = bf16_is_native()
    # The frozen channels-last copy of g_s decoding uses: 2-2.3x faster backward
    # passes with oneDNN.
    g_s = net.frozen_synthesis()
    tiled = y.shape[2] * y.shape[3] > WHOLE_LATENTS
    y = y.detach().clone().requires_grad_(True)
    z = z.detach().clone().requires_grad_(True)
    optimiser = torch.optim.Adam([y, z], lr=schedule.lr)
    params = [p for p in net.parameters()]
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    on_step = _ON_STEP.get()
    try:
        for step in range(schedule.steps):
            tau = schedule.tau(step)
            optimiser.zero_grad(set_to_none=True)
            z_tilde = sga_round(z - medians, tau, generator) + medians
            means, scales = net.entropy_parameters(z_tilde)
            means, scales, y_tilde = net.context_parameters(
                y, means, scales, rounder=lambda v, t=tau: sga_round(v, t, generator)
            )
            bits_y = -torch.log2(likelihood(y_tilde, scales, means)).sum()
            per_channel = z_tilde.permute(1, 0, 2, 3).reshape(z_tilde.shape[1], 1, -1)
            bits_z = -torch.log2(net.z_likelihood(per_channel)).sum()
            rate = (bits_y + bits_z) / pixels
            if tiled:
                # g_s a tile at a time: the gradient its distortion sends to y_tilde,
                # then one backward pass through the rate and the rounding.
                grad = _distortion_grad(net, g_s, y_tilde, inv_gain, x, lmbda * 255**2, bf16)
                torch.autograd.backward([rate, y_tilde], [None, grad])
            else:
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    y_in = (y_tilde * inv_gain).contiguous(memory_format=torch.channels_last)
                    x_hat = g_s(y_in)[:, :, :height, :width]
                mse = torch.mean((x_hat.float() - x) ** 2)
                loss = rate + lmbda * 255**2 * mse
                loss.backward()
            optimiser.step()
            if on_step is not None:
                on_step(step + 1, schedule.steps)
    finally:
        for p, flag in zip(params, flags, strict=True):
            p.requires_grad_(flag)
    return y.detach(), z.detach()
