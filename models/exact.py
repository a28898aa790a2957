"""Entropy parameters computed exactly: an integer hyper-synthesis transform.

A bitstream only decodes if the decoder picks, for every latent, the same probability
table and the same mean as the encoder did. Floating-point networks do not give that:
the same ``h_s`` on AVX-512 and on AVX2 kernels sums in another order and, for some
latents, lands on the other side of a table boundary (measured: 14-15% of files).

This module follows Ballé, Johnston & Minnen (2019), "Integer networks for data
compression with latent-variable models": every weight, bias and activation of ``h_s``
is an integer (a fixed-point number on a power-of-two grid), each layer accumulates
exactly and rescales by a deterministic rounding shift, and the last layer's output is
turned into the table index by integer comparisons with thresholds stored with the
weights. The integers are held in float64 tensors: a product of two integers and any
sum of them is exact, in any summation order, while magnitudes stay below 2**53, and
:func:`accumulator_bound` proves they do for every possible input (activations are
clamped). So the result is the same on every CPU, instruction set, thread count and
torch version, and torch's ordinary convolutions compute it.

Two faces of the same function:

- :class:`QuantisedHyperSynthesis` is the training module: float weights, rounded to
  their grid in the forward pass with straight-through gradients (quantisation-aware
  fine-tuning), activations likewise.
- :class:`ExactHyperSynthesis` is the coding path: the integers themselves, built from
  a trained module (:meth:`ExactHyperSynthesis.from_module`) or read from a weight
  file, producing means on the output grid and table indices.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

# Fixed-point grids (value = integer * 2**-bits).
INPUT_BITS = 8  # z_hat = z symbol + median; medians are kept on this grid
ACT_BITS = 12  # hidden activations and the outputs (means and scales)
# Largest |integer| of a weight: each layer's weights get the power-of-two grid that
# puts its largest weight just below this (15 bits of precision for the largest).
WEIGHT_LIMIT = (1 << 15) - 1
# Activations (and the z input) are clamped to this magnitude in grid units (+-256.0
# on the 2**-12 grid), which bounds every accumulator for every possible input.
ACT_LIMIT = (1 << 20) - 1
# LeakyReLU's negative slope as an exact dyadic fraction: 1311 / 2**17 = 0.0100021.
LEAKY_NUM, LEAKY_SHIFT = 1311, 17
EXACT_LIMIT = 1 << 53  # float64 holds every integer below this exactly


def ste_round(x: Tensor) -> Tensor:
    """Round in the forward pass, identity gradient in the backward pass."""
    return x + (torch.round(x) - x).detach()


def _fake_quant(x: Tensor, bits: int, limit: int = ACT_LIMIT) -> Tensor:
    """x rounded to the 2**-bits grid and clamped to +-limit units (straight-through)."""
    scale = float(1 << bits)
    return torch.clamp(ste_round(x * scale), -limit, limit) / scale


def weight_exponent(weight: Tensor) -> int:
    """The power-of-two grid 2**-p of a layer's weights: the largest p with
    max|w| * 2**p <= WEIGHT_LIMIT."""
    peak = float(weight.detach().abs().max())
    if peak == 0:
        return 0
    return int(math.floor(math.log2(WEIGHT_LIMIT / peak)))


def leaky_slope() -> float:
    return LEAKY_NUM / (1 << LEAKY_SHIFT)


class QuantisedHyperSynthesis(nn.Sequential):
    """``h_s`` of the mean-scale hyperprior with every number on a fixed-point grid.

    Same layers (and state-dict names) as the float ``h_s``: deconv 5x5/2, leaky ReLU,
    deconv 5x5/2, leaky ReLU, conv 3x3/1 to 2M channels (means, then scales). The
    weights' grid exponents are buffers, fixed by :meth:`calibrate` when the module
    is first made from float weights, so that training never moves the grid.
    """

    def __init__(self, N: int, M: int) -> None:
        super().__init__(
            nn.ConvTranspose2d(N, M, 5, stride=2, padding=2, output_padding=1),
            nn.LeakyReLU(leaky_slope()),
            nn.ConvTranspose2d(M, M * 3 // 2, 5, stride=2, padding=2, output_padding=1),
            nn.LeakyReLU(leaky_slope()),
            nn.Conv2d(M * 3 // 2, M * 2, 3, stride=1, padding=1),
        )
        self.register_buffer("weight_exponents", torch.zeros(3, dtype=torch.int64))
        self.calibrate()

    def layers(self) -> list[nn.Module]:
        return [m for m in self if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]

    @torch.no_grad()
    def calibrate(self) -> None:
        """Fix each layer's weight grid from its current weights (after loading float
        weights that were not trained on a grid)."""
        for i, layer in enumerate(self.layers()):
            self.weight_exponents[i] = weight_exponent(layer.weight)

    def forward(self, z_hat: Tensor) -> Tensor:
        """z_hat (on any grid) -> means and scales (B, 2M, H, W) on the output grid."""
        x = _fake_quant(z_hat, INPUT_BITS)
        in_bits = INPUT_BITS
        for i, layer in enumerate(self.layers()):
            p = int(self.weight_exponents[i])
            w = torch.clamp(ste_round(layer.weight * 2.0**p), -WEIGHT_LIMIT, WEIGHT_LIMIT) / 2.0**p
            b = ste_round(layer.bias * 2.0 ** (in_bits + p)) / 2.0 ** (in_bits + p)
            if isinstance(layer, nn.ConvTranspose2d):
                x = F.conv_transpose2d(x, w, b, layer.stride, layer.padding, layer.output_padding)
            else:
                x = F.conv2d(x, w, b, layer.stride, layer.padding)
            x = _fake_quant(x, ACT_BITS)
            if i < 2:
                x = _fake_quant(F.leaky_relu(x, leaky_slope()), ACT_BITS)
            in_bits = ACT_BITS
        return x


def index_thresholds(scales: Sequence[float]) -> np.ndarray:
    """Integer thresholds on the output grid: a scale's table index is the number of
    thresholds at or below it (nearest table scale in the log domain, as the float
    path picks it). Computed once, at export, and stored with the weights."""
    logs = [math.log(s) for s in scales]
    bounds = [math.exp((a + b) / 2) for a, b in zip(logs, logs[1:], strict=False)]
    return np.array([math.ceil(b * (1 << ACT_BITS)) for b in bounds], dtype=np.int64)


class ExactHyperSynthesis:
    """The integer ``h_s``: z symbols -> exact means and table indices.

    ``weights[i]`` are integer kernels on the 2**-exponents[i] grid, ``biases[i]``
    integers on the accumulator's grid, ``thresholds`` the table boundaries (see
    :func:`index_thresholds`); ``medians`` the z offsets in units of 2**-INPUT_BITS.
    """

    KINDS = ("deconv", "deconv", "conv")

    def __init__(
        self,
        weights: Sequence[np.ndarray],
        biases: Sequence[np.ndarray],
        exponents: Sequence[int],
        medians: np.ndarray,
        thresholds: np.ndarray,
    ) -> None:
        self.weights = [torch.from_numpy(np.asarray(w, dtype=np.float64)) for w in weights]
        self.biases = [torch.from_numpy(np.asarray(b, dtype=np.float64)) for b in biases]
        self.exponents = [int(p) for p in exponents]
        self.medians = torch.from_numpy(np.asarray(medians, dtype=np.float64))
        self.thresholds = torch.from_numpy(np.asarray(thresholds, dtype=np.float64))
        for w in self.weights:
            if not torch.equal(w, w.round()) or float(w.abs().max()) > WEIGHT_LIMIT:
                raise ValueError("integer weights out of range")
        if accumulator_bound(self) >= EXACT_LIMIT:
            raise ValueError("accumulators could exceed 2**53: the integer h_s is not exact")

    @classmethod
    def from_module(
        cls, module: QuantisedHyperSynthesis, medians: Tensor, scales: Sequence[float]
    ) -> ExactHyperSynthesis:
        """The integers of a (trained) quantised module; ``medians`` in float units."""
        weights, biases, in_bits = [], [], INPUT_BITS
        with torch.no_grad():
            for i, layer in enumerate(module.layers()):
                p = int(module.weight_exponents[i])
                w = torch.clamp(
                    torch.round(layer.weight.double() * 2.0**p), -WEIGHT_LIMIT, WEIGHT_LIMIT
                )
                weights.append(w.numpy().astype(np.int64))
                biases.append(
                    torch.round(layer.bias.double() * 2.0 ** (in_bits + p)).numpy().astype(np.int64)
                )
                in_bits = ACT_BITS
            med = torch.round(medians.double() * (1 << INPUT_BITS)).numpy().astype(np.int64)
        return cls(weights, biases, module.weight_exponents.tolist(), med, index_thresholds(scales))

    def arrays(self) -> dict[str, np.ndarray]:
        """The integers as arrays, for a weight file (kernels fit int16)."""
        out: dict[str, np.ndarray] = {
            "exponents": np.array(self.exponents, dtype=np.int64),
            "medians": self.medians.numpy().astype(np.int64),
            "thresholds": self.thresholds.numpy().astype(np.int64),
        }
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            out[f"weight{i}"] = w.numpy().astype(np.int16)
            out[f"bias{i}"] = b.numpy().astype(np.int64)
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> ExactHyperSynthesis:
        n = len(cls.KINDS)
        return cls(
            [arrays[f"weight{i}"] for i in range(n)],
            [arrays[f"bias{i}"] for i in range(n)],
            [int(p) for p in arrays["exponents"]],
            arrays["medians"],
            arrays["thresholds"],
        )

    def z_hat_units(self, z_symbols: np.ndarray) -> Tensor:
        """z_hat = symbol + median in units of 2**-INPUT_BITS, clamped (float64)."""
        x = torch.from_numpy(np.asarray(z_symbols, dtype=np.float64)) * (1 << INPUT_BITS)
        x += self.medians[None, :, None, None]
        return x.clamp_(-ACT_LIMIT, ACT_LIMIT)

    def forward_units(self, z_symbols: np.ndarray) -> Tensor:
        """The integer outputs (1, 2M, H, W) on the 2**-ACT_BITS grid (float64)."""
        x = self.z_hat_units(z_symbols)
        in_bits = INPUT_BITS
        for i, (kind, w, b) in enumerate(zip(self.KINDS, self.weights, self.biases, strict=True)):
            if kind == "deconv":
                acc = F.conv_transpose2d(x, w, None, stride=2, padding=2, output_padding=1)
            else:
                acc = F.conv2d(x, w, None, stride=1, padding=1)
            acc += b[None, :, None, None]
            x = round_shift(acc, in_bits + self.exponents[i] - ACT_BITS)
            if i < len(self.KINDS) - 1:
                neg = round_shift(x * LEAKY_NUM, LEAKY_SHIFT)
                x = torch.where(x < 0, neg, x)
            x.clamp_(-ACT_LIMIT, ACT_LIMIT)
            in_bits = ACT_BITS
        return x

    def __call__(self, z_symbols: np.ndarray) -> tuple[Tensor, Tensor, np.ndarray]:
        """(means, scales, table indices) of y: means and scales as float64 values that
        are exact multiples of 2**-ACT_BITS, indices uint8."""
        out = self.forward_units(z_symbols)
        means, scales = out.chunk(2, dim=1)
        indices = torch.searchsorted(self.thresholds, scales.contiguous(), right=True)
        return means / (1 << ACT_BITS), scales / (1 << ACT_BITS), indices.numpy().astype(np.uint8)


def round_shift(x: Tensor, shift: int) -> Tensor:
    """floor(x / 2**shift + 1/2) for integer-valued float64 x: exact (a power-of-two
    scaling and a floor), round half up."""
    if shift <= 0:
        return x * float(1 << -shift)
    return torch.floor((x + float(1 << (shift - 1))) * 2.0**-shift)


def accumulator_bound(exact: ExactHyperSynthesis) -> int:
    """The largest |accumulator| any input can produce (inputs and activations are
    clamped to ACT_LIMIT): per output channel, sum |w| * ACT_LIMIT + |b|."""
    worst = 0
    for kind, w, b in zip(exact.KINDS, exact.weights, exact.biases, strict=True):
        # conv kernels are (out, in, k, k), transposed ones (in, out, k, k); an output of
        # a transposed conv sums over a subset of all taps, so the full sum bounds it.
        per_out = w.abs().sum(dim=(0, 2, 3) if kind == "deconv" else (1, 2, 3))
        worst = max(worst, int(float((per_out * ACT_LIMIT + b.abs()).max())))
    return worst
