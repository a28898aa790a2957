"""Measurement sweeps on real files: every image at every quality, encoded to bytes,
decoded and measured (rdplane and training validation use them)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...models.registry import CodecModel
from .. import pipeline
from ..image_io import list_images, read_image
from ..metrics import mse, psnr_of_mse_8bit

JPEG_QUALITIES = (5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95)


@dataclass(frozen=True)
class RdPoints:
    """Mean bpp and PSNR over images, one point per quality."""

    qualities: tuple[float, ...]
    bpp: tuple[float, ...]
    psnr: tuple[float, ...]

    def to_dict(self) -> dict:
        return {"qualities": list(self.qualities), "bpp": list(self.bpp), "psnr": list(self.psnr)}


def load_images(
    folder: str | Path, count: int | None = None, max_side: int | None = None
) -> list[np.ndarray]:
    """The first ``count`` images of a folder, centre-cropped to ``max_side``."""
    images = []
    for path in list_images(Path(folder))[:count]:
        pixels = read_image(path).pixels
        if max_side:
            h, w = pixels.shape[:2]
            top, left = max(0, (h - max_side) // 2), max(0, (w - max_side) // 2)
            pixels = pixels[top : top + max_side, left : left + max_side]
        images.append(np.ascontiguousarray(pixels))
    return images


@dataclass(frozen=True)
class Sweep:
    """Measured rate and distortion of every image at every quality (real files)."""

    qualities: tuple[float, ...]
    bpp: np.ndarray  # (qualities, images)
    mse: np.ndarray  # (qualities, images), 8-bit scale

    def points(self) -> RdPoints:
        """Mean bpp and mean per-image PSNR per quality."""
        psnrs = [[psnr_of_mse_8bit(m) for m in row] for row in self.mse]
        return RdPoints(
            self.qualities,
            tuple(float(v) for v in self.bpp.mean(axis=1)),
            tuple(float(np.mean(row)) for row in psnrs),
        )


def sweep(
    encode: Callable[[np.ndarray, float], bytes],
    decode: Callable[[bytes], np.ndarray],
    images: list[np.ndarray],
    qualities,
) -> Sweep:
    """Encode every image at every quality, decode, and measure."""
    bpp = np.zeros((len(qualities), len(images)))
    err = np.zeros_like(bpp)
    for i, q in enumerate(qualities):
        for j, im in enumerate(images):
            data = encode(im, q)
            bpp[i, j] = 8 * len(data) / (im.shape[0] * im.shape[1])
            err[i, j] = mse(im, decode(data))
    return Sweep(tuple(qualities), bpp, err)


def rdcodec_sweep(model: CodecModel, images: list[np.ndarray], qualities=None) -> Sweep:
    """Every image at every quality (default: every level the model encodes)."""
    if qualities is None:
        low, high = model.quality_range
        qualities = tuple(range(math.ceil(low), int(high) + 1))
    return sweep(
        lambda im, q: pipeline.encode(im, q, model),
        lambda data: pipeline.decode_array(data, model),
        images,
        qualities,
    )
