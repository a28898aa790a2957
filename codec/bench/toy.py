"""The toy Gaussian codec through the real coder, measured against Shannon's bound.

For x ~ N(0, sigma^2 I) the rate-distortion function is R(D) = 1/2 log2(sigma^2 / D)
bits per dimension (D <= sigma^2, mean squared error per dimension). How the codec's
training objective maps onto it:

* Rate. With additive uniform noise as the posterior, q(y~ | x) = U(y - 1/2, y + 1/2),
  the ELBO's KL term is E[-log2 p(y~)] - h(q), and h(q) = 0 for a unit-width uniform:
  the KL term *is* the rate term of the loss. At test time the latents are rounded
  instead, and the coder spends -log2 P(round(y)) under the integer tables, plus a
  few bytes to flush its state.
* The gap. Entropy-coded uniform scalar quantisation at high rate spends
  h(y) - log2(step) bits for a distortion of step^2 / 12, while R(D) is what a
  Gaussian-shaped (spherical) cell would achieve: a cube fills space worse than a
  sphere in high dimension by 2*pi*e / 12 in second moment, so
  rate - R(D) -> 1/2 log2(2*pi*e / 12) ~ 0.254 bit per dimension (1.53 dB).
  Coding each latent separately, as the codec does, cannot beat it at high rate;
  only vector quantisation (or a lower rate, where the gap shrinks) can.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ...models import gaussian
from ...models.training.toy import ToyConfig, ToyGaussianCodec, sample_source
from .. import entropy

# High-rate loss of entropy-coded scalar uniform quantisation against R(D).
HIGH_RATE_GAP = 0.5 * math.log2(2 * math.pi * math.e / 12)


@dataclass(frozen=True)
class ToyResult:
    """Rate and distortion of the toy codec on test vectors, per dimension."""

    rate: float  # bits per dimension of the coded bytes
    table_rate: float  # -log2 p of the symbols under their integer tables, per dimension
    distortion: float  # mean squared error per dimension
    shannon_rate: float  # R(D) = 1/2 log2(sigma^2 / D) at the achieved distortion
    gap: float  # rate - shannon_rate
    quantization_gap: float  # 1/2 log2(2 pi e / 12), the high-rate scalar-quantiser gap
    num_bytes: int
    samples: int
    dim: int
    exact: bool  # the decoder got back every symbol the encoder coded


@torch.no_grad()
def evaluate_toy(
    model: ToyGaussianCodec, config: ToyConfig, samples: int = 4096, seed: int = 1
) -> ToyResult:
    """Code ``samples`` fresh source vectors with the real coder and measure them."""
    generator = torch.Generator().manual_seed(seed)
    x = sample_source(samples, config, generator)
    y = model.g_a(x)
    indexes = gaussian.scale_indices(model.scales().expand_as(y))
    y_sym = y.double().round().long().numpy()
    tables = entropy.TableSet.from_arrays(gaussian.tables())
    data = entropy.encode(y_sym, indexes, tables)
    decoded = entropy.decode(data, indexes, tables)
    x_hat = model.g_s(torch.from_numpy(decoded).float())

    n = x.numel()
    rate = 8 * len(data) / n
    distortion = torch.mean((x - x_hat).double() ** 2).item()
    # The source's true variance, not the test sample's: R(D) is a property of the
    # source, and the sample's variance would only add noise (~0.006 bit here).
    shannon_rate = max(0.0, 0.5 * math.log2(config.sigma**2 / distortion))
    return ToyResult(
        rate=rate,
        table_rate=float(tables.bits(y_sym, indexes).sum() / n),
        distortion=distortion,
        shannon_rate=shannon_rate,
        gap=rate - shannon_rate,
        quantization_gap=HIGH_RATE_GAP,
        num_bytes=len(data),
        samples=samples,
        dim=config.dim,
        exact=bool(np.array_equal(decoded, y_sym)),
    )
