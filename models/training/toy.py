"""A toy model of the codec's code path, small enough to check against theory.

The source is i.i.d. Gaussian vectors x ~ N(0, sigma^2 I_d), for which Shannon's
rate-distortion function is known in closed form. The model has the same parts as
``GainedHyperprior`` minus the hyperprior: a linear analysis transform ``g_a``, the
latents ``y`` quantised (uniform noise in training, rounding when coding), a
Gaussian entropy model of ``y`` (compressai's ``GaussianConditional`` with a learned
per-channel scale and zero mean, since the source is symmetric) and a linear
synthesis transform ``g_s``. Linear transforms suffice: for a Gaussian source the
optimal transform is linear (any rotation, scaled), so a nonlinear one would only
add parameters to fit. ``codec/bench/toy.py`` codes the latents with the real coder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from compressai.entropy_models import GaussianConditional
from torch import Tensor, nn

from ..gaussian import SCALE_MIN


@dataclass(frozen=True)
class ToyConfig:
    """Source, model and training loop of one toy run."""

    dim: int = 8
    sigma: float = 1.0  # standard deviation of each source component
    lmbda: float = 40.0  # loss = lmbda * MSE per dimension + bits per dimension
    steps: int = 2000
    batch_size: int = 1024
    lr: float = 1e-2
    seed: int = 0


def sample_source(n: int, config: ToyConfig, generator: torch.Generator) -> Tensor:
    """n vectors (n, dim) drawn from N(0, sigma^2 I)."""
    return config.sigma * torch.randn(n, config.dim, generator=generator)


class ToyGaussianCodec(nn.Module):
    """Linear transforms around a learned per-channel Gaussian entropy model.

    ``forward`` is the training path (additive uniform noise stands in for rounding,
    as in Ballé et al. 2017); the coder rounds ``y`` and picks a probability table
    per channel from ``scales()``.
    """

    def __init__(self, dim: int, sigma: float) -> None:
        super().__init__()
        self.g_a = nn.Linear(dim, dim, bias=False)
        self.g_s = nn.Linear(dim, dim, bias=False)
        # Start as identities scaled to latent std ~2 (about 3 bits per dimension),
        # so that the loop only has to refine, not search.
        gain = 2.0 / sigma
        with torch.no_grad():
            self.g_a.weight.copy_(gain * torch.eye(dim))
            self.g_s.weight.copy_(torch.eye(dim) / gain)
        self.log_scale = nn.Parameter(torch.full((dim,), math.log(2.0)))
        self.gaussian_conditional = GaussianConditional(None, scale_bound=SCALE_MIN)

    def scales(self) -> Tensor:
        """Per-channel scales (dim,) of the latents' Gaussian model."""
        return self.log_scale.exp()

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """Reconstruction and per-element likelihoods of the (noisy) latents."""
        y = self.g_a(x)
        scales = self.scales().expand_as(y)
        y_tilde, likelihoods = self.gaussian_conditional(y, scales)
        return {"x_hat": self.g_s(y_tilde), "likelihoods": likelihoods}


def toy_loss(x: Tensor, out: dict[str, Tensor], lmbda: float) -> tuple[Tensor, Tensor, Tensor]:
    """(loss, bits per dimension, MSE per dimension) of one batch."""
    bits = -torch.log2(out["likelihoods"]).sum() / x.numel()
    mse = torch.mean((x - out["x_hat"]) ** 2)
    return lmbda * mse + bits, bits, mse


def train_toy(config: ToyConfig) -> ToyGaussianCodec:
    """Train a toy codec with Adam on fresh source batches; deterministic per seed."""
    generator = torch.Generator().manual_seed(config.seed)
    # The entropy model draws its training noise from the global generator: seed it
    # here, and give the caller's state back afterwards.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = ToyGaussianCodec(config.dim, config.sigma)
        model.train()
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
        # Decay to 1% of the rate: the last steps average out the batch noise.
        decay = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, config.steps, eta_min=config.lr / 100
        )
        for _ in range(config.steps):
            x = sample_source(config.batch_size, config, generator)
            loss, _, _ = toy_loss(x, model(x), config.lmbda)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            decay.step()
    return model.eval()
