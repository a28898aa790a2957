"""Quality metrics on 8-bit RGB images, and the JPEG reference at a given size."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# MS-SSIM's five scales with an 11-tap window need more than 160 px on each side.
MS_SSIM_MIN_SIDE = 161


def mse(a: np.ndarray, b: np.ndarray) -> float:
    """Mean squared error of two uint8 images on the 8-bit scale, over all channels."""
    return float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))


def psnr_of_mse_8bit(value: float) -> float:
    """PSNR in dB of an 8-bit-scale MSE (inf for 0)."""
    return math.inf if value == 0 else 10 * math.log10(255.0**2 / value)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 images over all channels (inf when identical)."""
    return psnr_of_mse_8bit(mse(a, b))


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float | None:
    """MS-SSIM (pytorch-msssim, data range 255); None for images too small for it."""
    if min(a.shape[:2]) < MS_SSIM_MIN_SIDE:
        return None
    import torch
    from pytorch_msssim import ms_ssim as _ms_ssim

    def t(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(x).permute(2, 0, 1)[None].double()

    return float(_ms_ssim(t(a), t(b), data_range=255, size_average=True))


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
