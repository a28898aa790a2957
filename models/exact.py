"""Entropy parameters computed exactly: an integer hyper-synthesis transform.

A bitstream only decodes if the decoder picks, for every latent, the same probability
table and the same mean as the encoder did. Floating-point networks do not give that:
the same ``h_s`` on AVX-512 and on AVX2 kernels sums in another order and, for some
latents, lands on the other side of a table boundary (measured: 14-15% of files; the
first release's float model lives with that through ``codec/repair.py``).

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

from .gaussian import ACT_BITS, index_thresholds, table_indices
from .layers import derived

# Fixed-point grids (value = integer * 2**-bits); ACT_BITS, the grid of the hidden
# activations and of the outputs (means and scales), is the Gaussian model's.
INPUT_BITS = 8  # z_hat = z symbol + median; medians are kept on this grid
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
    """x rounded to the 2**-bits grid and clamped to +-limit units (straight-through).
    Ties round up, as the integer networks' ``round_shift`` does, so that training and
    refinement compute the coder's numbers at ties too."""
    units = x * float(1 << bits)
    rounded = units + (torch.floor(units + 0.5) - units).detach()
    return torch.clamp(rounded, -limit, limit) / float(1 << bits)


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
        return quantised_forward(self, _fake_quant(z_hat, INPUT_BITS), INPUT_BITS)


def _grid_weights(net: nn.Sequential, i: int, layer: nn.Module, in_bits: int):
    """Layer ``i``'s weights and bias rounded to their grids (straight-through). Frozen
    weights (encode-time refinement runs hundreds of passes through fixed networks) are
    rounded once and kept until they change (the ~2 M weights' rounding was about 7% of
    an effort-1 encode of a small photo on one thread)."""
    p = int(net.weight_exponents[i])

    def rounded() -> tuple[Tensor, Tensor]:
        w = torch.clamp(ste_round(layer.weight * 2.0**p), -WEIGHT_LIMIT, WEIGHT_LIMIT)
        return w / 2.0**p, ste_round(layer.bias * 2.0 ** (in_bits + p)) / 2.0 ** (in_bits + p)

    if layer.weight.requires_grad or layer.bias.requires_grad:
        return rounded()  # training: the gradient must reach the weights
    return derived(net, ("grid", i, in_bits, p), (layer.weight, layer.bias), rounded)


def quantised_forward(net: nn.Sequential, x: Tensor, in_bits: int) -> Tensor:
    """The fixed-point forward pass of ``net`` (convolutions with leaky ReLUs between
    them, a ``weight_exponents`` buffer) on ``x``, which is on the 2**-in_bits grid:
    weights and biases rounded to their grids, every output to the 2**-ACT_BITS grid,
    straight-through gradients. :class:`ExactNetwork` computes the same integers."""
    layers = net.layers()
    for i, layer in enumerate(layers):
        w, b = _grid_weights(net, i, layer, in_bits)
        if isinstance(layer, nn.ConvTranspose2d):
            x = F.conv_transpose2d(x, w, b, layer.stride, layer.padding, layer.output_padding)
        else:
            x = F.conv2d(x, w, b, layer.stride, layer.padding)
        x = _fake_quant(x, ACT_BITS)
        if i < len(layers) - 1:
            x = _fake_quant(F.leaky_relu(x, leaky_slope()), ACT_BITS)
        in_bits = ACT_BITS
    return x


class QuantisedSliceContext(nn.Sequential):
    """The channel context of one slice of y (Minnen & Singh 2020), on fixed-point
    grids like :class:`QuantisedHyperSynthesis`: from the decoded y of the slices
    before it and the slice's hyperprior means and scales (all on the 2**-ACT_BITS
    grid) to corrections of those means and scales. Three 3x3 convolutions; the last
    starts at zero, so a new context changes nothing until training moves it."""

    def __init__(self, in_channels: int, hidden: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, hidden, 3, padding=1),
            nn.LeakyReLU(leaky_slope()),
            nn.Conv2d(hidden, hidden, 3, padding=1),
            nn.LeakyReLU(leaky_slope()),
            nn.Conv2d(hidden, 2 * out_channels, 3, padding=1),
        )
        with torch.no_grad():
            self[-1].weight.zero_()
            self[-1].bias.zero_()
        self.register_buffer("weight_exponents", torch.zeros(3, dtype=torch.int64))
        self.calibrate()

    def layers(self) -> list[nn.Module]:
        return [m for m in self if isinstance(m, nn.Conv2d)]

    @torch.no_grad()
    def calibrate(self) -> None:
        """Fix each layer's weight grid with room to grow: new layers' weights will move
        far from their initial values, so the grid holds 4x the largest initial weight
        (13 bits of precision for it), and a layer that is still zero weights up to 1."""
        for i, layer in enumerate(self.layers()):
            peak = float(layer.weight.abs().max())
            self.weight_exponents[i] = weight_exponent(layer.weight) - 2 if peak else 15

    def forward(self, context: Tensor) -> Tensor:
        """Inputs on the 2**-ACT_BITS grid (clamped here) -> corrections (B, 2C, H, W)."""
        return quantised_forward(self, _fake_quant(context, ACT_BITS), ACT_BITS)


# Rows of output per band of an exact network's pass (float64 convolutions unfold
# their input nine- or 25-fold, so a band of h_s's 2M output channels costs about
# 5 MB per output row of a 6000 px wide photo).
BAND_ROWS = 32


class ExactNetwork:
    """Integer convolutions with exact leaky ReLUs between them: ``weights[i]`` are
    integer kernels on the 2**-exponents[i] grid, ``biases[i]`` integers on the
    accumulator's grid; inputs on the 2**-IN_BITS grid, every output on 2**-ACT_BITS.
    The integer face of :func:`quantised_forward`."""

    KINDS: tuple[str, ...] = ()  # "deconv" (5x5, stride 2) or "conv" (3x3, stride 1)
    IN_BITS = ACT_BITS

    def __init__(
        self, weights: Sequence[np.ndarray], biases: Sequence[np.ndarray], exponents: Sequence[int]
    ) -> None:
        self.weights = [torch.from_numpy(np.asarray(w, dtype=np.float64)) for w in weights]
        self.biases = [torch.from_numpy(np.asarray(b, dtype=np.float64)) for b in biases]
        self.exponents = [int(p) for p in exponents]
        for w in self.weights:
            if not torch.equal(w, w.round()) or float(w.abs().max()) > WEIGHT_LIMIT:
                raise ValueError("integer weights out of range")
        if any(not 0 <= p <= 40 for p in self.exponents):
            raise ValueError(f"weight grid exponents {self.exponents} out of range")
        if accumulator_bound(self) >= EXACT_LIMIT:
            raise ValueError("accumulators could exceed 2**53: the integer network is not exact")

    @classmethod
    def integers_of(cls, module: nn.Sequential) -> dict:
        """The integer weights, biases and exponents of a (trained) quantised module."""
        weights, biases, in_bits = [], [], cls.IN_BITS
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
        return {"weights": weights, "biases": biases, "exponents": module.weight_exponents.tolist()}

    def float_weights(self, prefix: str) -> dict[str, Tensor]:
        """The integers as the float state of the training face (the same numbers):
        ``prefix`` + the convolutions' indices in the nn.Sequential (0, 2, 4)."""
        out, in_bits = {}, self.IN_BITS
        for i, p in enumerate(self.exponents):
            out[f"{prefix}{2 * i}.weight"] = (self.weights[i] / 2.0**p).float()
            out[f"{prefix}{2 * i}.bias"] = (self.biases[i] / 2.0 ** (in_bits + p)).float()
            in_bits = ACT_BITS
        out[f"{prefix}weight_exponents"] = torch.tensor(self.exponents, dtype=torch.int64)
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        """The integers as arrays, for a weight file (kernels fit int16)."""
        out: dict[str, np.ndarray] = {"exponents": np.array(self.exponents, dtype=np.int64)}
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            out[f"weight{i}"] = w.numpy().astype(np.int16)
            out[f"bias{i}"] = b.numpy().astype(np.int64)
        return out

    @classmethod
    def layer_arrays(cls, arrays: dict[str, np.ndarray]) -> dict:
        n = len(cls.KINDS)
        return {
            "weights": [arrays[f"weight{i}"] for i in range(n)],
            "biases": [arrays[f"bias{i}"] for i in range(n)],
            "exponents": [int(p) for p in arrays["exponents"]],
        }

    def forward_units(self, x: Tensor) -> Tensor:
        """Integer-valued float64 inputs (clamped to +-ACT_LIMIT) -> integer outputs.

        Large inputs run in bands of BAND_ROWS output rows with a halo that covers the
        layers' reach, so a 24 MP photo's float64 activations are never all in memory.
        Every accumulator is an exact integer (``accumulator_bound``), so the bands give
        the same integers as one pass, on any machine."""
        rows, scale = x.shape[2], 2 ** self.KINDS.count("deconv")
        step, halo = max(1, BAND_ROWS // scale), self.halo()
        if rows <= 2 * step:
            return self._layers(x)
        out = None
        for r0 in range(0, rows, step):
            r1 = min(r0 + step, rows)
            a0, a1 = max(0, r0 - halo), min(rows, r1 + halo)
            band = self._layers(x[:, :, a0:a1])
            if out is None:  # filled band by band: no list of bands to concatenate
                out = band.new_empty((*band.shape[:2], rows * scale, band.shape[3]))
            out[:, :, r0 * scale : r1 * scale] = band[:, :, (r0 - a0) * scale : (r1 - a0) * scale]
        return out

    def halo(self) -> int:
        """Rows of input a band must read beyond its own for exact outputs: each layer
        reaches one row of its own input (3x3 convolutions; the 5x5 stride-2
        transposed ones reach +-1 input row), which is 2**-k input rows of the network
        after k transposed layers."""
        reach, scale = 0.0, 1
        for kind in self.KINDS:
            reach += 1 / scale
            scale *= 2 if kind == "deconv" else 1
        return math.ceil(reach)

    def _layers(self, x: Tensor) -> Tensor:
        in_bits = self.IN_BITS
        last = len(self.KINDS) - 1
        for i, (kind, w, b) in enumerate(zip(self.KINDS, self.weights, self.biases, strict=True)):
            if kind == "deconv":
                acc = F.conv_transpose2d(x, w, None, stride=2, padding=2, output_padding=1)
            else:
                acc = F.conv2d(x, w, None, stride=1, padding=1)
            # In place on the fresh accumulator: a 24 MP photo's bands are large.
            acc += b[None, :, None, None]
            x = round_shift(acc, in_bits + self.exponents[i] - ACT_BITS, inplace=True)
            if i < last:
                # The leaky ReLU: round(a x) for x < 0, x otherwise, with 0 < a < 1, is
                # max(x, round(a x)) for integers x (round(a x) <= x exactly when x >= 0).
                neg = round_shift(x * LEAKY_NUM, LEAKY_SHIFT, inplace=True)
                x = torch.maximum(x, neg, out=neg)
            x.clamp_(-ACT_LIMIT, ACT_LIMIT)
            in_bits = ACT_BITS
        return x


class ExactHyperSynthesis(ExactNetwork):
    """The integer ``h_s``: z symbols -> exact means and table indices.

    ``thresholds`` are the table boundaries (see :func:`index_thresholds`), ``medians``
    the z offsets in units of 2**-INPUT_BITS.
    """

    KINDS = ("deconv", "deconv", "conv")
    IN_BITS = INPUT_BITS

    def __init__(
        self,
        weights: Sequence[np.ndarray],
        biases: Sequence[np.ndarray],
        exponents: Sequence[int],
        medians: np.ndarray,
        thresholds: np.ndarray,
    ) -> None:
        super().__init__(weights, biases, exponents)
        self.medians = torch.from_numpy(np.asarray(medians, dtype=np.float64))
        self.thresholds = torch.from_numpy(np.asarray(thresholds, dtype=np.float64))

    @classmethod
    def from_module(
        cls, module: QuantisedHyperSynthesis, medians: Tensor, scales: Sequence[float]
    ) -> ExactHyperSynthesis:
        """The integers of a (trained) quantised module; ``medians`` in float units."""
        med = torch.round(medians.double() * (1 << INPUT_BITS)).numpy().astype(np.int64)
        return cls(**cls.integers_of(module), medians=med, thresholds=index_thresholds(scales))

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            **super().arrays(),
            "medians": self.medians.numpy().astype(np.int64),
            "thresholds": self.thresholds.numpy().astype(np.int64),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> ExactHyperSynthesis:
        return cls(
            **cls.layer_arrays(arrays), medians=arrays["medians"], thresholds=arrays["thresholds"]
        )

    def z_hat_units(self, z_symbols: np.ndarray) -> Tensor:
        """z_hat = symbol + median in units of 2**-INPUT_BITS, clamped (float64)."""
        x = torch.from_numpy(np.asarray(z_symbols, dtype=np.float64)) * (1 << INPUT_BITS)
        x += self.medians[None, :, None, None]
        return x.clamp_(-ACT_LIMIT, ACT_LIMIT)

    def forward_units(self, z_symbols: np.ndarray) -> Tensor:
        """The integer outputs (1, 2M, H, W) on the 2**-ACT_BITS grid (float64)."""
        return super().forward_units(self.z_hat_units(z_symbols))

    def indices(self, scales_units: Tensor) -> np.ndarray:
        """Table index (uint8) of each scale given in units of 2**-ACT_BITS."""
        return table_indices(self.thresholds, scales_units)

    def __call__(self, z_symbols: np.ndarray) -> tuple[Tensor, Tensor, np.ndarray]:
        """(means, scales, table indices) of y: means and scales as float64 values that
        are exact multiples of 2**-ACT_BITS, indices uint8."""
        out = self.forward_units(z_symbols)
        means, scales = out.chunk(2, dim=1)
        return means / (1 << ACT_BITS), scales / (1 << ACT_BITS), self.indices(scales)


class ExactSliceContext(ExactNetwork):
    """The integer channel context of one slice of y (see :class:`QuantisedSliceContext`)."""

    KINDS = ("conv", "conv", "conv")

    @classmethod
    def from_module(cls, module: QuantisedSliceContext) -> ExactSliceContext:
        return cls(**cls.integers_of(module))

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> ExactSliceContext:
        return cls(**cls.layer_arrays(arrays))

    def corrected(
        self, y_hat_before: Tensor, means: Tensor, scales: Tensor
    ) -> tuple[Tensor, Tensor]:
        """The slice's means and scales (float64, exact multiples of 2**-ACT_BITS) from
        the decoded y of the slices before it and its hyperprior means and scales."""
        unit = float(1 << ACT_BITS)
        x = torch.cat([y_hat_before, means, scales], dim=1) * unit
        out = self.forward_units(x.clamp_(-ACT_LIMIT, ACT_LIMIT))
        d_means, d_scales = out.chunk(2, dim=1)
        means = (means * unit + d_means).clamp_(-ACT_LIMIT, ACT_LIMIT)
        scales = (scales * unit + d_scales).clamp_(-ACT_LIMIT, ACT_LIMIT)
        return means / unit, scales / unit


def round_shift(x: Tensor, shift: int, inplace: bool = False) -> Tensor:
    """floor(x / 2**shift + 1/2) for integer-valued float64 x: exact (a power-of-two
    scaling and a floor), round half up; ``inplace`` overwrites x."""
    if shift <= 0:
        return x.mul_(float(1 << -shift)) if inplace else x * float(1 << -shift)
    if not inplace:
        x = x.clone()
    return x.add_(float(1 << (shift - 1))).mul_(2.0**-shift).floor_()


def accumulator_bound(exact: ExactNetwork) -> int:
    """The largest |accumulator| any input can produce (inputs and activations are
    clamped to ACT_LIMIT): per output channel, sum |w| * ACT_LIMIT + |b|."""
    worst = 0
    for kind, w, b in zip(exact.KINDS, exact.weights, exact.biases, strict=True):
        # conv kernels are (out, in, k, k), transposed ones (in, out, k, k); an output of
        # a transposed conv sums over a subset of all taps, so the full sum bounds it.
        per_out = w.abs().sum(dim=(0, 2, 3) if kind == "deconv" else (1, 2, 3))
        worst = max(worst, int(float((per_out * ACT_LIMIT + b.abs()).max())))
    return worst
