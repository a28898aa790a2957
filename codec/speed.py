"""Speed and memory benchmark: encode + decode seconds and peak RSS per image size.

Each size runs in a fresh Python process, so its peak resident set size (the
kernel's ``ru_maxrss`` of that child) is its own and not the high-water mark of an
earlier, larger run. Test images are smooth synthetic photos (low-frequency colour
fields plus texture), upsampled from a seed, so no data set is needed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SpeedRow:
    megapixels: float
    width: int
    height: int
    bytes: int
    bpp: float
    encode_seconds: float
    decode_seconds: float
    peak_rss_mib: float


def synthetic_photo(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A deterministic photo-like RGB image: smooth colour regions plus fine texture."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    coarse = rng.integers(
        0, 256, size=(max(2, height // 64), max(2, width // 64), 3), dtype=np.uint8
    )
    base = np.asarray(
        Image.fromarray(coarse).resize((width, height), Image.BICUBIC), dtype=np.int16
    )
    texture = rng.integers(-12, 13, size=(height, width, 1), dtype=np.int16)
    return np.clip(base + texture, 0, 255).astype(np.uint8)


def _dimensions(megapixels: float) -> tuple[int, int]:
    # 3:2 landscape, like most camera sensors.
    height = int(round((megapixels * 1e6 / 1.5) ** 0.5))
    return int(round(height * 1.5)), height


def _worker(megapixels: float, quality: float, threads: int | None) -> dict:
    import resource
    import time

    import torch

    from ..models.registry import load_model
    from . import pipeline

    if threads:
        torch.set_num_threads(threads)
    width, height = _dimensions(megapixels)
    image = synthetic_photo(width, height)
    model = load_model()
    start = time.perf_counter()
    data = pipeline.encode(image, quality, model)
    encoded = time.perf_counter()
    decoded = pipeline.decode_array(data, model)
    done = time.perf_counter()
    assert decoded.shape == image.shape
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {
        "megapixels": width * height / 1e6,
        "width": width,
        "height": height,
        "bytes": len(data),
        "bpp": 8 * len(data) / (width * height),
        "encode_seconds": encoded - start,
        "decode_seconds": done - encoded,
        "peak_rss_mib": peak_kib / 1024,
    }


def run(sizes: list[float], quality: float = 4.0, threads: int | None = None) -> list[SpeedRow]:
    """Measure each size in its own process."""
    rows = []
    for mp in sizes:
        cmd = [
            sys.executable,
            "-m",
            "rdcodec.codec.speed",
            str(mp),
            str(quality),
            str(threads or 0),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{mp} MP run failed: {proc.stderr.strip().splitlines()[-1:]}")
        rows.append(SpeedRow(**json.loads(proc.stdout.strip().splitlines()[-1])))
    return rows


if __name__ == "__main__":
    mp_arg, q_arg, t_arg = sys.argv[1:4]
    print(json.dumps(_worker(float(mp_arg), float(q_arg), int(t_arg) or None)))
