"""The transforms and entropy parameters of the codec.

A mean-scale hyperprior (Ballé et al. 2018; Minnen et al. 2018 without the
autoregressive context) made variable-rate with learned per-channel gain vectors
on the latents, one pair per quality level (Cui et al. 2021). Fractional quality
levels interpolate the gains geometrically.

Names follow the papers: ``g_a``/``g_s`` analysis and synthesis transforms,
``h_a``/``h_s`` the hyper transforms, ``y``/``z`` the latents and hyper-latents.

:class:`Hyperprior` is the coding network (no compressai: see ``models/layers.py``);
``models/trainable.py`` makes it trainable with compressai's modules.
"""

from __future__ import annotations

import contextlib
import math
import threading
import warnings
from copy import deepcopy
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor, nn

from .exact import (
    ACT_BITS,
    ACT_LIMIT,
    INPUT_BITS,
    ExactHyperSynthesis,
    ExactSliceContext,
    QuantisedHyperSynthesis,
    QuantisedSliceContext,
    ste_round,
)
from .gaussian import (
    boundary_margins,
    default_thresholds,
    likelihood,
    scale_indices,
    scale_table,
    table_indices,
)
from .layers import GDN, FactorizedDensity, derived

# lambda ladder of the eight quality levels, for the loss lmbda * 255^2 * MSE + bpp.
LAMBDAS: tuple[float, ...] = (0.0018, 0.0035, 0.0067, 0.013, 0.025, 0.0483, 0.0932, 0.18)
# Three more levels below them (the same ~1.93x steps), which reach down to 0.1-0.15 bpp
# where learned codecs win most: the ladder of the models that have 11 levels.
LOW_LAMBDAS: tuple[float, ...] = (0.00025, 0.00048, 0.00093)


@dataclass(frozen=True)
class ModelConfig:
    """Shape of a network: N channels in the transforms, M latent channels, the number
    of quality levels, whether its entropy parameters are computed exactly (integer
    ``h_s``, see ``models/exact.py``), the number of channel slices of y coded one
    after another, each conditioned on those before it (1: the plain hyperprior), and
    G, the channels of the image transforms g_a and g_s where they differ from the
    hyper transforms' N (None: N; a model grown for capacity at high rates widens the
    image transforms, which set the picture's quality, and keeps the hyperprior), and
    whether each slice is coded in two checkerboard halves, the second conditioned on
    the decoded first (a spatial context, He et al. 2021)."""

    N: int = 128
    M: int = 192
    levels: int = len(LAMBDAS)
    exact: bool = False
    slices: int = 1
    G: int | None = None
    checkerboard: bool = False

    def __post_init__(self) -> None:
        if self.slices < 1 or self.M % self.slices:
            raise ValueError(f"{self.slices} slices do not divide M = {self.M}")
        if self.slices > 1 and not self.exact:
            raise ValueError("a channel context needs exact entropy parameters")
        if self.checkerboard and not self.exact:
            raise ValueError("a checkerboard context needs exact entropy parameters")
        if self.G is not None and self.G < 1:
            raise ValueError(f"G = {self.G}: the transforms need at least one channel")
        if self.G == self.N:  # the same network as without G, so the same config
            object.__setattr__(self, "G", None)

    @property
    def transform_channels(self) -> int:
        """Hidden channels of g_a and g_s."""
        return self.G or self.N

    @property
    def context_hidden(self) -> int:
        """Hidden channels of each slice's context network."""
        return 3 * self.M // self.slices

    @property
    def lambdas(self) -> tuple[float, ...]:
        """The lambda of each quality level: LAMBDAS, with LOW_LAMBDAS in front of them
        for a model of more than eight levels."""
        ladder = LOW_LAMBDAS + LAMBDAS if self.levels > len(LAMBDAS) else LAMBDAS
        if self.levels > len(ladder):
            raise ValueError(f"at most {len(ladder)} quality levels, got {self.levels}")
        return ladder[-self.levels :] if self.levels > len(LAMBDAS) else ladder[: self.levels]

    def quality_of(self, lmbda: float) -> float:
        """The quality level trained at ``lmbda`` (models with different ladders number
        the same operating point differently: level 4 of an 8-level model is level 7 of
        an 11-level one)."""
        for i, own in enumerate(self.lambdas):
            if math.isclose(own, lmbda, rel_tol=1e-9):
                return float(i + 1)
        raise ValueError(f"no quality level of this model was trained at lambda {lmbda}")

    def lambda_of(self, quality: float) -> float:
        """The lambda of an integer quality level."""
        if quality != int(quality) or not 1 <= quality <= self.levels:
            raise ValueError(f"quality {quality} is not one of the levels 1..{self.levels}")
        return self.lambdas[int(quality) - 1]

    def to_dict(self) -> dict:
        # Without a context the dict stays what it was before ``slices`` existed, so
        # weight files and manifests of one-slice models read as they always did.
        d = asdict(self)
        if d["slices"] == 1:
            del d["slices"]
        if d["G"] is None:  # and those of models whose transforms are N wide
            del d["G"]
        if not d["checkerboard"]:  # and those without a spatial context
            del d["checkerboard"]
        return d


def _conv(cin: int, cout: int, kernel: int = 5, stride: int = 2) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2)


def _deconv(cin: int, cout: int, kernel: int = 5, stride: int = 2) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(
        cin, cout, kernel, stride=stride, padding=kernel // 2, output_padding=stride - 1
    )


class Hyperprior(nn.Module):
    """Variable-rate mean-scale hyperprior: the coding interface.

    The codec pipeline calls only these methods, in the same order on the encoder and
    the decoder side: ``analysis_transform`` (g_a, on tiles) and ``hyper_analysis``
    (gain, h_a); ``z_residual`` / ``z_hat`` (z to and from its symbols);
    ``coding_parameters`` (z symbols -> means, scales, table indices) and, slice by
    slice, ``slice_parameters`` (and ``anchor_parameters`` between a slice's two
    checkerboard halves); ``synthesis`` (inverse gain, g_s, on tiles); the rate
    estimates; ``coding_kernels`` and ``index_margins`` (how its table choice is
    computed and repaired). ``multiple``, ``stride`` and ``margin`` tell it how to pad
    and tile. Encode-time refinement (``codec/refine.py``) uses the training faces.
    """

    # The analysis transform downsamples by 16, the hyper analysis by 4 more.
    multiple = 64
    stride = 16  # pixels per y position
    # Receptive fields in y positions each side (g_a: 61 px, i.e. +-30 px; g_s: +-2):
    # a tile with this margin computes exactly what the whole image would.
    margin = 2

    def __init__(self, config: ModelConfig, gdn: type[nn.Module] = GDN) -> None:
        super().__init__()
        self.config = config
        N, M, G = config.N, config.M, config.transform_channels
        self.g_a = nn.Sequential(
            _conv(3, G), gdn(G), _conv(G, G), gdn(G), _conv(G, G), gdn(G), _conv(G, M)
        )
        self.g_s = nn.Sequential(
            _deconv(M, G),
            gdn(G, inverse=True),
            _deconv(G, G),
            gdn(G, inverse=True),
            _deconv(G, G),
            gdn(G, inverse=True),
            _deconv(G, 3),
        )
        self.h_a = nn.Sequential(
            _conv(M, N, 3, 1),
            nn.LeakyReLU(inplace=True),
            _conv(N, N),
            nn.LeakyReLU(inplace=True),
            _conv(N, N),
        )
        if config.exact:
            self.h_s = QuantisedHyperSynthesis(N, M)
        else:
            self.h_s = nn.Sequential(
                _deconv(N, M),
                nn.LeakyReLU(inplace=True),
                _deconv(M, M * 3 // 2),
                nn.LeakyReLU(inplace=True),
                _conv(M * 3 // 2, M * 2, 3, 1),
            )
        # The integers of the exact h_s as shipped (set by the registry from the weight
        # file); None: computed from ``h_s``'s current weights when coding.
        self.exact_h_s: ExactHyperSynthesis | None = None
        # Channel context (Minnen & Singh 2020): slice k of y (k >= 1) gets its means and
        # scales corrected from the decoded slices before it; ``context[k - 1]`` does it.
        width = M // config.slices
        self.context = nn.ModuleList(
            QuantisedSliceContext(k * width + 2 * width, config.context_hidden, width)
            for k in range(1, config.slices)
        )
        self.exact_context: list[ExactSliceContext] | None = None
        # Checkerboard context (He et al. 2021): inside each slice, the anchors (even
        # row + column) are coded first; ``spatial[k]`` corrects the means and scales of
        # the other half from the decoded anchors around them.
        self.spatial = nn.ModuleList(
            QuantisedSliceContext(3 * width, config.context_hidden, width)
            for _ in range(config.slices if config.checkerboard else 0)
        )
        self.exact_spatial: list[ExactSliceContext] | None = None
        self.entropy_bottleneck = FactorizedDensity(N)
        # Gains start at sqrt(lambda / lambda_mid): the MSE-optimal quantisation step
        # shrinks as 1/sqrt(lambda), so this puts each level near its rate from step 0.
        mid = math.sqrt(LAMBDAS[0] * LAMBDAS[-1])
        init = torch.tensor([0.5 * math.log(lm / mid) for lm in config.lambdas])
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
    def coding_kernels(self) -> contextlib.AbstractContextManager:
        """The convolution backend every coding step of this network runs under.

        The float model of wire id 1 chooses tables from float scales, so its files
        decode only where ``h_s`` computes the floats its encoder did: the first release
        ran all four transforms on PyTorch's native kernels (oneDNN off), and so does
        this path for it, for ever (oneDNN's floats differ by up to 22 ulp and move
        some indices across a table boundary). Exact models choose tables with integers
        on any backend, so they keep torch's choice (oneDNN is 1.4-1.8x faster here).
        """
        if self.config.exact:
            return contextlib.nullcontext()
        return _native_kernels()

    def index_margins(self, scales: Tensor) -> tuple[np.ndarray, np.ndarray] | None:
        """Where table choice is not exact: each float scale's relative distance to a
        table boundary and the index across it (see ``codec/repair.py``); None for an
        exact model, whose indices are the same on every machine."""
        return None if self.config.exact else boundary_margins(scales)

    def z_medians(self) -> Tensor:
        """Per-channel offsets z is quantised around (C,); on the exact model's input
        grid when its entropy parameters are exact."""
        medians = self.entropy_bottleneck.quantiles[:, 0, 1].detach()
        if self.config.exact:
            medians = torch.round(medians * (1 << INPUT_BITS)) / (1 << INPUT_BITS)
        return medians

    def analysis(self, x: Tensor, quality: Tensor) -> tuple[Tensor, Tensor]:
        """x in [0, 1] -> (gained y, z) (the training face; coding runs the two halves
        below, so that g_a can run on tiles)."""
        return self.hyper_analysis(self.analysis_transform(x), quality)

    def analysis_transform(self, x: Tensor) -> Tensor:
        """g_a: x in [0, 1] -> y before the quality's gain (quality-independent, and
        exact on a tile with ``margin`` y positions of context on each side)."""
        return self.g_a(x)

    def hyper_analysis(self, y_ungained: Tensor, quality: Tensor) -> tuple[Tensor, Tensor]:
        """y before the gain -> (gained y, z) at ``quality``."""
        gain, _ = self.gains(quality)
        y = y_ungained * gain
        return y, self.h_a(y)

    def z_residual(self, z: Tensor) -> Tensor:
        """z minus the offsets it is quantised around: what is rounded to z symbols."""
        return z - self.z_medians()[None, :, None, None]

    def z_hat(self, z_symbols: np.ndarray) -> Tensor:
        """Decoded hyper-latents from z symbols."""
        return torch.from_numpy(z_symbols).float() + self.z_medians()[None, :, None, None]

    def entropy_parameters(self, z_hat: Tensor) -> tuple[Tensor, Tensor]:
        """Means and scales of y given the decoded hyper-latents."""
        means, scales = self.h_s(z_hat).chunk(2, dim=1)
        return means, scales

    def coding_parameters(self, z_symbols: np.ndarray) -> tuple[Tensor, Tensor, np.ndarray]:
        """Means, scales and table indices of y from the decoded z symbols: what both
        the encoder and the decoder run, and all that chooses a table or a y value.

        Exact models compute them with the integer ``h_s`` (identical on every machine).
        The float model of wire id 1 keeps its float path under ``coding_kernels`` (the
        kernels its files were written with); on other CPUs a few indices can differ,
        which the index CRC in the header detects and ``codec/repair.py`` repairs.
        """
        if self.config.exact:
            exact = self.exact_h_s or ExactHyperSynthesis.from_module(
                self.h_s, self.z_medians(), scale_table()
            )
            return exact(z_symbols)
        means, scales = self.entropy_parameters(self.z_hat(z_symbols))
        return means, scales, scale_indices(scales)

    def slice_channels(self) -> list[slice]:
        """The channels of y in each slice, in coding order."""
        width = self.config.M // self.config.slices
        return [slice(k * width, (k + 1) * width) for k in range(self.config.slices)]

    def slice_parameters(
        self, hyper: tuple[Tensor, Tensor, np.ndarray], k: int, y_hat_before: Tensor | None
    ) -> tuple[Tensor, Tensor, np.ndarray]:
        """Means, scales and table indices of slice ``k`` of y, from ``hyper`` (what
        ``coding_parameters`` returned) and the decoded y of slices 0..k-1 (exact, as
        float64): the encoder and the decoder call it slice by slice, in order."""
        means, scales, indices = hyper
        ch = self.slice_channels()[k]
        means, scales, indices = means[:, ch], scales[:, ch], indices[:, ch]
        if k == 0:
            return means, scales, indices
        # As h_s: the integers as shipped, else computed from the current weights.
        context = (
            self.exact_context[k - 1]
            if self.exact_context is not None
            else ExactSliceContext.from_module(self.context[k - 1])
        )
        means, scales = context.corrected(y_hat_before, means, scales)
        return means, scales, self._table_indices(scales)

    def _table_indices(self, scales: Tensor) -> np.ndarray:
        # The thresholds stored with the weights (libm's exp may differ in the last bit
        # between machines; stored integers do not); a live network's from the code.
        thresholds = (
            self.exact_h_s.thresholds if self.exact_h_s is not None else default_thresholds()
        )
        return table_indices(thresholds, scales * (1 << ACT_BITS))

    @staticmethod
    def anchors(height: int, width: int) -> Tensor:
        """The checkerboard's first half, (1, 1, H, W) bool: positions whose row and
        column add up to an even number."""
        rows, cols = torch.arange(height)[:, None], torch.arange(width)[None, :]
        return ((rows + cols) % 2 == 0)[None, None]

    def anchor_parameters(
        self, k: int, y_hat: Tensor, params: tuple[Tensor, Tensor, np.ndarray]
    ) -> tuple[Tensor, Tensor, np.ndarray]:
        """Means, scales and table indices of slice ``k``'s second checkerboard half,
        from ``params`` (``slice_parameters``'s, which code the anchors) and the slice's
        decoded y at the anchors (exact, as float64; other positions are ignored): what
        the encoder and the decoder call between the two halves. Anchors keep theirs."""
        means, scales, indices = params
        anchor = self.anchors(*means.shape[2:])
        context = (
            self.exact_spatial[k]
            if self.exact_spatial is not None
            else ExactSliceContext.from_module(self.spatial[k])
        )
        new_means, new_scales = context.corrected(y_hat * anchor, means, scales)
        new_indices = self._table_indices(new_scales)
        return (
            torch.where(anchor, means, new_means),
            torch.where(anchor, scales, new_scales),
            np.where(anchor.numpy(), indices, new_indices),
        )

    def context_parameters(self, y: Tensor, means: Tensor, scales: Tensor, rounder=ste_round):
        """Training face of the slice loop: the means and scales of every slice (with
        the rounded y of the slices before it as context) and y_hat = rounder(y - means)
        + means (straight-through rounding in training; encode-time refinement passes
        its annealed soft rounding)."""
        if self.config.slices == 1 and not self.config.checkerboard:
            return means, scales, rounder(y - means) + means
        out_means, out_scales, y_hats = [], [], []
        bound = ACT_LIMIT / (1 << ACT_BITS)  # the exact face's clamp, in float units
        anchor = self.anchors(*y.shape[2:]).to(y.device)
        for k, ch in enumerate(self.slice_channels()):
            m, s = means[:, ch], scales[:, ch]
            if k:
                d_m, d_s = self.context[k - 1](torch.cat([*y_hats, m, s], dim=1)).chunk(2, dim=1)
                m = torch.clamp(m + d_m, -bound, bound)
                s = torch.clamp(s + d_s, -bound, bound)
            y_hat = rounder(y[:, ch] - m) + m
            if self.config.checkerboard:
                # The second half sees the rounded anchors (zeros elsewhere), as coded.
                ctx = torch.cat([y_hat * anchor, m, s], dim=1)
                d_m, d_s = self.spatial[k](ctx).chunk(2, dim=1)
                m = torch.where(anchor, m, torch.clamp(m + d_m, -bound, bound))
                s = torch.where(anchor, s, torch.clamp(s + d_s, -bound, bound))
                y_hat = torch.where(anchor, y_hat, rounder(y[:, ch] - m) + m)
            out_means.append(m)
            out_scales.append(s)
            y_hats.append(y_hat)
        return torch.cat(out_means, 1), torch.cat(out_scales, 1), torch.cat(y_hats, 1)

    def synthesis(self, y_hat: Tensor, quality: Tensor) -> Tensor:
        """Decoded (gained) y -> image in [0, 1] (not clamped)."""
        _, inv_gain = self.gains(quality)
        return self.g_s(y_hat * inv_gain)

    def frozen_synthesis(self) -> nn.Module:
        """A copy of ``g_s`` with frozen weights in channels-last layout, where oneDNN's
        transposed convolutions run about 1.8x faster: what decoding and encode-time
        refinement run. It is the same function (pixels may differ by one level where
        a value sits on a rounding boundary, as they may across CPUs); the decoded
        symbols, all that a file fixes, do not depend on it. Rebuilt when ``g_s``'s
        weights change."""
        return derived(
            self,
            "frozen_g_s",
            self.g_s.parameters(),
            lambda: deepcopy(self.g_s).requires_grad_(False).to(memory_format=torch.channels_last),
        )

    def decoding_synthesis(self, y_hat: Tensor, quality: Tensor) -> Tensor:
        """``synthesis`` for decoding (no gradients to the weights): on the frozen,
        channels-last copy of ``g_s``; the image comes back in the usual layout."""
        _, inv_gain = self.gains(quality)
        y_in = (y_hat * inv_gain).contiguous(memory_format=torch.channels_last)
        return self.frozen_synthesis()(y_in).contiguous()

    # ---- rate estimates (the model's -log2 p, beside the file's real bits) ----------
    def z_likelihood(self, values: Tensor) -> Tensor:
        """P of quantised z values laid out (C, 1, n)."""
        return self.entropy_bottleneck.likelihood(values)

    def estimate_z_bits(self, z_hat: Tensor) -> float:
        per_channel = z_hat.permute(1, 0, 2, 3).reshape(z_hat.shape[1], 1, -1)
        return float(-torch.log2(self.z_likelihood(per_channel)).sum())

    def estimate_y_bits(self, y_hat: Tensor, scales: Tensor, means: Tensor, block=16) -> float:
        """-log2 p of y_hat, a few channels at a time (bounded memory)."""
        total = 0.0
        for c in range(0, y_hat.shape[1], block):
            part = slice(c, c + block)
            lik = likelihood(y_hat[:, part], scales[:, part], means[:, part])
            total += float(-torch.log2(lik).sum())
        return total


def bf16_is_native(device: str = "cpu") -> bool:
    """Whether bfloat16 autocast runs in hardware here (GPUs; CPUs with AVX512-BF16 or AMX).

    Elsewhere PyTorch emulates it: on an AVX2-only EPYC a training step took 5 s
    instead of 0.5 s.
    """
    if device != "cpu":
        return True
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


# The oneDNN switch is process-wide: threads that code with the float model take turns
# (re-entrant, so nested coding steps are fine).
_NATIVE_LOCK = threading.RLock()


@contextlib.contextmanager
def _native_kernels():
    """PyTorch's native convolutions (oneDNN off) for the duration, restored after."""
    with _NATIVE_LOCK, _backend_off():
        yield


@contextlib.contextmanager
def _backend_off():
    with warnings.catch_warnings():
        # flags() also sets oneDNN's TF32 switch, which warns on CPU-only builds.
        warnings.simplefilter("ignore", UserWarning)
        backend = torch.backends.mkldnn.flags(enabled=False)
        backend.__enter__()
    try:
        yield
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            backend.__exit__(None, None, None)
