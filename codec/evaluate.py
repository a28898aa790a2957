"""Validation on real files, for training: RD points of a model and its BD-rate vs JPEG.

Training only ever estimates rates; this module writes real bitstreams, decodes them
and measures, so a model is kept (exported) only when its *file* BD-rate improved.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..models.registry import CodecModel
from . import pipeline
from .bench import bd_rate
from .image_io import read_image
from .metrics import jpeg_decode, jpeg_encode, psnr

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
    from ..models.data import list_images

    images = []
    for path in list_images(Path(folder))[:count]:
        pixels = read_image(path).pixels
        if max_side:
            h, w = pixels.shape[:2]
            top, left = max(0, (h - max_side) // 2), max(0, (w - max_side) // 2)
            pixels = pixels[top : top + max_side, left : left + max_side]
        images.append(np.ascontiguousarray(pixels))
    return images


def _mean_points(qualities, measure) -> RdPoints:
    bpps, psnrs = [], []
    for q in qualities:
        rows = measure(q)
        bpps.append(float(np.mean([r[0] for r in rows])))
        psnrs.append(float(np.mean([r[1] for r in rows])))
    return RdPoints(tuple(qualities), tuple(bpps), tuple(psnrs))


def rdcodec_points(
    model: CodecModel, images: list[np.ndarray], qualities=(1, 2, 3, 4, 5, 6, 7, 8)
) -> RdPoints:
    def measure(q):
        rows = []
        for im in images:
            data = pipeline.encode(im, q, model)
            rows.append(
                (
                    8 * len(data) / (im.shape[0] * im.shape[1]),
                    psnr(im, pipeline.decode_array(data, model)),
                )
            )
        return rows

    return _mean_points(qualities, measure)


def jpeg_points(images: list[np.ndarray], qualities=JPEG_QUALITIES) -> RdPoints:
    def measure(q):
        rows = []
        for im in images:
            data = jpeg_encode(im, q)
            rows.append((8 * len(data) / (im.shape[0] * im.shape[1]), psnr(im, jpeg_decode(data))))
        return rows

    return _mean_points(qualities, measure)


def bd_rate_vs(anchor: RdPoints, test: RdPoints) -> float:
    """BD-rate (PSNR) of ``test`` against ``anchor`` in percent; NaN without overlap."""
    return bd_rate(anchor.bpp, anchor.psnr, test.bpp, test.psnr)


def improved(new: float, best: float | None) -> bool:
    """Whether a BD-rate is better than the best so far (NaN never is)."""
    return not math.isnan(new) and (best is None or math.isnan(best) or new < best)
