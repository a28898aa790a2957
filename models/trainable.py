"""The trainable network: the coding network with compressai's training modules.

compressai provides what training needs beyond the forward formulas: GDN whose
reparametrised lower bounds pass gradients, the entropy bottleneck's noisy
likelihoods and the aux loss that fits its tail quantiles, and the Gaussian
conditional's likelihoods. Parameter names are those of the coding network, so a
checkpoint exports straight into a weight file (``models/registry.py``).
"""

from __future__ import annotations

from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from compressai.layers import GDN
from torch import Tensor

from .exact import ste_round
from .gaussian import SCALE_MIN
from .network import Hyperprior, ModelConfig


class GainedHyperprior(Hyperprior):
    """``forward`` is the training path: noisy latents for the rate, straight-through
    rounded latents for the synthesis (as in Minnen & Singh 2020)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config, gdn=GDN)
        self.entropy_bottleneck = EntropyBottleneck(config.N)
        self.gaussian_conditional = GaussianConditional(None, scale_bound=SCALE_MIN)

    def z_likelihood(self, values: Tensor) -> Tensor:
        return self.entropy_bottleneck._likelihood(values)[0].clamp(min=1e-9)

    def forward(self, x: Tensor, quality: Tensor) -> dict[str, Tensor]:
        """Training/evaluation pass: reconstruction and per-element likelihoods."""
        import torch

        # Under mixed precision (``torch.autocast``) the transforms may run in bfloat16;
        # the latents are brought back to float32 and the likelihoods (the rate) are
        # always computed in float32, as the coder's tables are.
        y, z = (t.float() for t in self.analysis(x, quality))
        with torch.autocast(x.device.type, enabled=False):
            _, z_likelihoods = self.entropy_bottleneck(z)
            medians = self.z_medians()[None, :, None, None]
            z_hat = ste_round(z - medians) + medians
            # h_s runs in float32 too: the exact model's fixed-point grids need it.
            means, scales = self.entropy_parameters(z_hat)
            # With a channel context, each slice's means and scales also see the
            # decoded slices before it (its y_hat: straight-through rounded).
            means, scales, y_hat = self.context_parameters(y, means, scales)
            _, y_likelihoods = self.gaussian_conditional(y, scales, means=means)
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
