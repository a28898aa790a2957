"""Quality metrics on 8-bit RGB images, and the JPEG reference at a given size."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

# MS-SSIM's five scales with an 11-tap window need more than 160 px on each side.
MS_SSIM_MIN_SIDE = 161


# PSNR and the pooling of MS-SSIM's scales run over bands of rows of about this many
# values (a 24 MP photo would otherwise need float64 copies of several GiB).
BAND_VALUES = 1 << 21
# MS-SSIM filters tiles of this many output rows and columns: the tile's 15 float64 maps
# (about 1 MB) stay in the core's cache through the 22 passes of the Gaussian filter, where
# whole bands of rows went to memory and back on every pass (3x slower at 24 MP).
MS_SSIM_TILE = (32, 192)


def _row_step(width: int, channels: int = 3) -> int:
    return max(16, BAND_VALUES // max(1, width * channels))


def mse(a: np.ndarray, b: np.ndarray) -> float:
    """Mean squared error of two uint8 images on the 8-bit scale, over all channels,
    summed exactly in integers band by band (no float copy of the images)."""
    if a.shape != b.shape:
        raise ValueError(f"images of different shapes: {a.shape} and {b.shape}")
    if a.size == 0:
        raise ValueError("empty image")
    total, step = 0, _row_step(a.shape[1], a.shape[2] if a.ndim == 3 else 1)
    for r in range(0, a.shape[0], step):
        d = a[r : r + step].astype(np.int32) - b[r : r + step].astype(np.int32)
        total += int(np.square(d).sum(dtype=np.int64))
    return total / a.size


def psnr_of_mse_8bit(value: float) -> float:
    """PSNR in dB of an 8-bit-scale MSE (inf for 0)."""
    return math.inf if value == 0 else 10 * math.log10(255.0**2 / value)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 images over all channels (inf when identical)."""
    return psnr_of_mse_8bit(mse(a, b))


# pytorch-msssim's defaults: five scales, an 11-tap Gaussian window of sigma 1.5.
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
_WINDOW, _SIGMA, _K1, _K2 = 11, 1.5, 0.01, 0.03


def ms_ssim(a: np.ndarray, b: np.ndarray, tile: tuple[int, int] | None = None) -> float | None:
    """MS-SSIM of two (H, W, 3) uint8 images (data range 255), or None for images too
    small for it. pytorch-msssim's arithmetic (float64, valid Gaussian filtering, 2x2
    average pooling with zero padding of odd sides, five scales), computed tile by tile
    with the per-channel sums added up: equal to pytorch-msssim on the whole image (to
    1e-9 in the tests), 7x faster at 768x512, and in memory that does not grow with the
    image. Each coarser scale is kept whole in float32, which holds its values exactly
    (averages of 4^k uint8 values)."""
    if a.shape != b.shape:
        raise ValueError(f"images of different shapes: {a.shape} and {b.shape}")
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"expected (H, W, 3) images, got {a.shape}")
    if min(a.shape[:2]) < MS_SSIM_MIN_SIDE:
        return None
    import torch

    a, b = (x if all(s >= 0 for s in x.strides) else np.ascontiguousarray(x) for x in (a, b))

    tile_rows, tile_cols = tile or MS_SSIM_TILE
    coords = torch.arange(_WINDOW, dtype=torch.float) - _WINDOW // 2
    g = torch.exp(-(coords**2) / (2 * _SIGMA**2))
    taps = (g / g.sum()).double().tolist()
    c1, c2 = (_K1 * 255) ** 2, (_K2 * 255) ** 2
    halo = _WINDOW - 1

    def blur(t):
        """The valid Gaussian filter along rows, then columns, as shifted sums (the
        same products as a depthwise convolution, several times faster in float64)."""
        for dim in (2, 3):
            n = t.shape[dim] - halo
            out = t.narrow(dim, 0, n) * taps[0]
            for k in range(1, _WINDOW):
                out.add_(t.narrow(dim, k, n), alpha=taps[k])
            t = out
        return t

    def tile_sum(x, y, last: bool):
        """Per-channel sum of cs (at the last scale, of ssim) over one tile's outputs."""
        maps = torch.empty((1, 15, *x.shape[2:]), dtype=torch.float64)
        maps[:, 0:3], maps[:, 3:6] = x, y  # x, y, x^2, y^2, xy in one buffer
        torch.mul(maps[:, 0:3], maps[:, 0:3], out=maps[:, 6:9])
        torch.mul(maps[:, 3:6], maps[:, 3:6], out=maps[:, 9:12])
        torch.mul(maps[:, 0:3], maps[:, 3:6], out=maps[:, 12:15])
        mu1, mu2, xx, yy, xy = blur(maps).split(3, 1)
        # In place: cs = (2 s12 + C2) / (s1 + s2 + C2),
        # ssim = (2 mu1 mu2 + C1) / (mu1^2 + mu2^2 + C1) cs; only the last scale needs ssim.
        mu12, mu_sq = mu1 * mu2, mu1.square_().add_(mu2.square_())
        cs = xy.sub_(mu12).mul_(2).add_(c2).div_(xx.add_(yy).sub_(mu_sq).add_(c2))
        if last:
            cs = mu12.mul_(2).add_(c1).div_(mu_sq.add_(c1)).mul_(cs)
        return cs.sum((0, 2, 3))

    with warnings.catch_warnings():  # read-only arrays (decoded files) are only read here
        warnings.simplefilter("ignore", UserWarning)
        x = torch.from_numpy(a).permute(2, 0, 1)[None]  # uint8 views: no copy
        y = torch.from_numpy(b).permute(2, 0, 1)[None]
    factors = []
    for scale, _ in enumerate(MS_SSIM_WEIGHTS):
        height, width = x.shape[2:]
        last = scale == len(MS_SSIM_WEIGHTS) - 1
        total = torch.zeros(3, dtype=torch.float64)  # cs, or at the last scale ssim
        out_h, out_w = height - halo, width - halo
        for r0 in range(0, out_h, tile_rows):
            r1 = min(r0 + tile_rows, out_h) + halo
            for c0 in range(0, out_w, tile_cols):
                c1_ = min(c0 + tile_cols, out_w) + halo
                window = (slice(None), slice(None), slice(r0, r1), slice(c0, c1_))
                total += tile_sum(x[window], y[window], last)
        factors.append(torch.relu(total / (out_h * out_w)))
        if not last:
            x, y = (_pool_banded(t, _row_step(width)) for t in (x, y))
    weights = torch.tensor(MS_SSIM_WEIGHTS, dtype=torch.float64).view(-1, 1)
    return float(torch.prod(torch.stack(factors) ** weights, dim=0).mean())


def _pool_banded(level, step: int):
    """pytorch-msssim's ``avg_pool2d(X, 2, padding=[H % 2, W % 2])`` of a (1, 3, H, W)
    image, band by band, as float32 (exact: the values are multiples of 4^-k)."""
    import torch
    import torch.nn.functional as F

    height, width = level.shape[2:]
    ph, pw = height % 2, width % 2
    out_h = (height + 2 * ph - 2) // 2 + 1
    out = torch.empty(1, 3, out_h, (width + 2 * pw - 2) // 2 + 1, dtype=torch.float32)
    for i0 in range(0, out_h, step):
        i1 = min(i0 + step, out_h)
        lo, hi = 2 * i0 - ph, min(2 * i1 - ph, height)
        part = level[:, :, max(lo, 0) : hi].double()
        if lo < 0:  # the zero row of the top padding (counted in the average)
            part = F.pad(part, (0, 0, 1, 0))
        out[:, :, i0:i1] = F.avg_pool2d(part, 2, padding=(0, pw)).float()
    return out


def ms_ssim_db(value: float | None) -> float | None:
    """MS-SSIM as -10 log10(1 - value), the scale RD plots use."""
    if value is None:
        return None
    return math.inf if value >= 1 else -10 * math.log10(1 - value)


def bpp(num_bytes: int, pixels: int) -> float:
    return 8 * num_bytes / pixels


@dataclass(frozen=True)
class JpegPoint:
    """Pillow JPEG (default settings) at one quality, measured."""

    quality: int
    num_bytes: int
    bpp: float
    psnr: float


def jpeg_at_size(image: np.ndarray, max_bytes: int) -> JpegPoint | None:
    """The JPEG quality whose file is largest without exceeding ``max_bytes`` (see
    ``baselines.at_size``); None when even quality 1 is larger."""
    from .baselines import JPEG, at_size  # the comparison codecs load only when asked

    found = at_size(JPEG, image, max_bytes)
    if found is None:
        return None
    quality, data = found
    pixels = image.shape[0] * image.shape[1]
    return JpegPoint(quality, len(data), bpp(len(data), pixels), psnr(image, JPEG.decode(data)))
