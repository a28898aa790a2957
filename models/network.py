"""The transforms and entropy parameters of the codec.

A mean-scale hyperprior (Ballé et al. 2018; Minnen et al. 2018 without the
autoregressive context) made variable-rate with learned per-channel gain vectors
on the latents, one pair per quality level (Cui et al. 2021). Fractional quality
levels interpolate the gains geometrically.

Names follow the papers: ``g_a``/``g_s`` analysis and synthesis transforms,
``h_a``/``h_s`` the hyper transforms, ``y``/``z`` the latents and hyper-latents.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from compressai.layers import GDN
from torch import Tensor, nn

# lambda ladder of the eight quality levels, for the loss lmbda * 255^2 * MSE + bpp.
LAMBDAS: tuple[float, ...] = (0.0018, 0.0035, 0.0067, 0.013, 0.025, 0.0483, 0.0932, 0.18)

# Scales of the Gaussian tables the y symbols are coded with (CompressAI's default
# ladder); the coder picks a table by integer index into this list.
SCALE_MIN, SCALE_MAX, SCALE_LEVELS = 0.11, 256.0, 64


def scale_table() -> list[float]:
    """Log-spaced scales of the y probability tables."""
    step = (math.log(SCALE_MAX) - math.log(SCALE_MIN)) / (SCALE_LEVELS - 1)
    return [math.exp(math.log(SCALE_MIN) + i * step) for i in range(SCALE_LEVELS)]


@dataclass(frozen=True)
class ModelConfig:
    """Shape of a network: N channels in the transforms, M latent channels."""

    N: int = 128
    M: int = 192
    levels: int = len(LAMBDAS)

    def to_dict(self) -> dict:
        return asdict(self)


def _conv(cin: int, cout: int, kernel: int = 5, stride: int = 2) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2)


def _deconv(cin: int, cout: int, kernel: int = 5, stride: int = 2) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(
        cin, cout, kernel, stride=stride, padding=kernel // 2, output_padding=stride - 1
    )


def ste_round(x: Tensor) -> Tensor:
    """Round in the forward pass, identity gradient in the backward pass."""
    return x + (torch.round(x) - x).detach()


class GainedHyperprior(nn.Module):
    """Variable-rate mean-scale hyperprior.

    ``forward`` is the training path (noisy latents for the rate, straight-through
    rounded latents for the synthesis, as in Minnen & Singh 2020); the coding path
    uses the small methods below, which the codec pipeline calls in the same order
    on the encoder and the decoder side.
    """

    # The analysis transform downsamples by 16, the hyper analysis by 4 more.
    multiple = 64

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        N, M = config.N, config.M
        self.g_a = nn.Sequential(
            _conv(3, N), GDN(N), _conv(N, N), GDN(N), _conv(N, N), GDN(N), _conv(N, M)
        )
        self.g_s = nn.Sequential(
            _deconv(M, N),
            GDN(N, inverse=True),
            _deconv(N, N),
            GDN(N, inverse=True),
            _deconv(N, N),
            GDN(N, inverse=True),
            _deconv(N, 3),
        )
        self.h_a = nn.Sequential(
            _conv(M, N, 3, 1),
            nn.LeakyReLU(inplace=True),
            _conv(N, N),
            nn.LeakyReLU(inplace=True),
            _conv(N, N),
        )
        self.h_s = nn.Sequential(
            _deconv(N, M),
            nn.LeakyReLU(inplace=True),
            _deconv(M, M * 3 // 2),
            nn.LeakyReLU(inplace=True),
            _conv(M * 3 // 2, M * 2, 3, 1),
        )
        self.entropy_bottleneck = EntropyBottleneck(N)
        self.gaussian_conditional = GaussianConditional(None, scale_bound=SCALE_MIN)
        # Gains start at sqrt(lambda / lambda_mid): the MSE-optimal quantisation step
        # shrinks as 1/sqrt(lambda), so this puts each level near its rate from step 0.
        mid = math.sqrt(LAMBDAS[0] * LAMBDAS[-1])
        init = torch.tensor([0.5 * math.log(lm / mid) for lm in LAMBDAS[: config.levels]])
        self.log_gain = nn.Parameter(init[:, None].repeat(1, M).clone())
        self.log_inv_gain = nn.Parameter(-init[:, None].repeat(1, M).clone())

    # ---- gains -------------------------------------------------------------
    def gains(self, quality: Tensor) -> tuple[Tensor, Tensor]:
        """Gain and inverse gain (B, M, 1, 1) for qualities in [1, levels] (float)."""
        q = quality.to(self.log_gain.dtype).clamp(1, self.config.levels) - 1
        lo = q.floor().long().clamp(max=self.config.levels - 2)
        t = (q - lo)[:, None]
        log_g = (1 - t) * self.log_gain[lo] + t * self.log_gain[lo + 1]
        log_ig = (1 - t) * self.log_inv_gain[lo] + t * self.log_inv_gain[lo + 1]
        return log_g.exp()[:, :, None, None], log_ig.exp()[:, :, None, None]

    # ---- coding path ---------------------------------------------------------
    def z_medians(self) -> Tensor:
        """Per-channel offsets z is quantised around (C,)."""
        return self.entropy_bottleneck.quantiles[:, 0, 1].detach()

    def analysis(self, x: Tensor, quality: Tensor) -> tuple[Tensor, Tensor]:
        """x in [0, 1] -> (gained y, z)."""
        gain, _ = self.gains(quality)
        y = self.g_a(x) * gain
        z = self.h_a(y)
        return y, z

    def entropy_parameters(self, z_hat: Tensor) -> tuple[Tensor, Tensor]:
        """Means and scales of y given the decoded hyper-latents."""
        means, scales = self.h_s(z_hat).chunk(2, dim=1)
        return means, scales

    def synthesis(self, y_hat: Tensor, quality: Tensor) -> Tensor:
        """Decoded (gained) y -> image in [0, 1] (not clamped)."""
        _, inv_gain = self.gains(quality)
        return self.g_s(y_hat * inv_gain)

    # ---- training path -------------------------------------------------------
    def forward(self, x: Tensor, quality: Tensor) -> dict[str, Tensor]:
        """Training/evaluation pass: reconstruction and per-element likelihoods."""
        # Under mixed precision (``torch.autocast``) the transforms may run in bfloat16;
        # the latents are brought back to float32 and the likelihoods (the rate) are
        # always computed in float32, as the coder's tables are.
        y, z = (t.float() for t in self.analysis(x, quality))
        with torch.autocast(x.device.type, enabled=False):
            _, z_likelihoods = self.entropy_bottleneck(z)
            medians = self.z_medians()[None, :, None, None]
            z_hat = ste_round(z - medians) + medians
        means, scales = (t.float() for t in self.entropy_parameters(z_hat))
        with torch.autocast(x.device.type, enabled=False):
            _, y_likelihoods = self.gaussian_conditional(y, scales, means=means)
            y_hat = ste_round(y - means) + means
        x_hat = self.synthesis(y_hat, quality).float()
        return {
            "x_hat": x_hat,
            "y": y,  # gained, before rounding (diagnostics decode it unquantised)
            "y_likelihoods": y_likelihoods,
            "z_likelihoods": z_likelihoods,
        }

    def aux_loss(self) -> Tensor:
        """Loss that fits the entropy bottleneck's tail quantiles (not part of R + lmbda D)."""
        return self.entropy_bottleneck.loss()


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
