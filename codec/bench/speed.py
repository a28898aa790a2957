"""Speed and memory benchmark: encode + decode seconds and peak RSS per image size.

Each size runs in a fresh Python process, so its peak resident set size (the
kernel's ``ru_maxrss`` of that child) is its own and not the high-water mark of an
earlier, larger run. Test images are smooth synthetic photos (low-frequency colour
fields plus texture), upsampled from a seed, so no data set is needed.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import dataclass

import numpy as np

from ...errors import CodecError


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


def dimensions(megapixels: float) -> tuple[int, int]:
    """(width, height) of the synthetic photo of a size."""
    # 3:2 landscape, like most camera sensors.
    height = int(round((megapixels * 1e6 / 1.5) ** 0.5))
    return int(round(height * 1.5)), height


def check_sizes(sizes: list[float]) -> None:
    """A ``CodecError`` for a size that is no photo: not a positive finite number, under
    one pixel, or above the pixel limit images are read with (no one times larger)."""
    from ..image_io import DEFAULT_MAX_PIXELS

    limit = DEFAULT_MAX_PIXELS / 1e6
    for mp in sizes:
        if not (math.isfinite(mp) and mp > 0):
            raise CodecError(f"--sizes: give positive megapixel counts, got {mp:g}")
        if mp > limit:
            raise CodecError(f"--sizes: {mp:g} MP is above the {limit:g} MP image limit")
        if min(dimensions(mp)) < 1:
            raise CodecError(f"--sizes: {mp:g} MP is less than one pixel")


def _worker(megapixels: float, quality: float, threads: int | None, effort: int = 0) -> dict:
    import resource
    import time

    import torch

    from ...models.registry import load_scale
    from .. import pipeline

    if threads:
        torch.set_num_threads(threads)
    width, height = dimensions(megapixels)
    image = synthetic_photo(width, height)
    model = load_scale()
    start = time.perf_counter()
    data = pipeline.encode(image, quality, model, effort=effort)
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


def run(
    sizes: list[float], quality: float = 4.0, threads: int | None = None, effort: int = 0
) -> list[SpeedRow]:
    """Measure each size in its own process (encoding at ``effort``)."""
    rows = []
    for mp in sizes:
        cmd = [
            sys.executable,
            "-m",
            "rdcodec.codec.bench.speed",
            str(mp),
            str(quality),
            str(threads or 0),
            str(effort),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{mp} MP run failed: {proc.stderr.strip().splitlines()[-1:]}")
        rows.append(SpeedRow(**json.loads(proc.stdout.strip().splitlines()[-1])))
    return rows


@dataclass(frozen=True)
class VersusRow:
    """One implementation's best-of-n seconds on one photo, in one process."""

    name: str
    bytes: int
    encode_seconds: float
    decode_seconds: float


def _best(fn, repeats: int) -> tuple[float, object]:
    import time

    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def compressai_twin(model, quality: float):
    """compressai's ``MeanScaleHyperprior`` running the same transforms as a (float,
    wire id 1) rdcodec model at one quality: the gain vectors folded into g_a's last
    and g_s's first convolution. Its coder is compressai's rANS with float CDFs."""
    import torch
    from compressai.models import MeanScaleHyperprior

    net = model.network
    cfg = net.config
    if cfg.G is not None:  # compressai's transforms are N wide
        raise CodecError(f"no compressai twin of a model with g_a/g_s {cfg.G} wide (N {cfg.N})")
    twin = MeanScaleHyperprior(cfg.N, cfg.M)
    state = {k: v for k, v in net.state_dict().items() if not k.startswith(("log_", "h_s.weight_"))}
    gain, inv_gain = (g.flatten() for g in net.gains(torch.tensor([float(quality)])))
    last = f"g_a.{len(net.g_a) - 1}"
    state[f"{last}.weight"] = state[f"{last}.weight"] * gain[:, None, None, None]
    state[f"{last}.bias"] = state[f"{last}.bias"] * gain
    state["g_s.0.weight"] = state["g_s.0.weight"] * inv_gain[:, None, None, None]
    # Our h_s puts the means first, compressai's the scales.
    last = f"h_s.{len(net.h_s) - 1}"
    for key in (f"{last}.weight", f"{last}.bias"):
        means, scales = state[key].chunk(2, dim=0)
        state[key] = torch.cat([scales, means])
    # nn.Module's loader: compressai's own wants its CDF buffers, which update() makes.
    result = torch.nn.Module.load_state_dict(twin, state, strict=False)
    skipped = ("gaussian", "_cdf", "_offset", "reparam", "likelihood_lower", "target")
    assert not [k for k in result.missing_keys if not any(w in k for w in skipped)], result
    twin.eval()
    twin.update(force=True)
    return twin


def versus_compressai(
    image: np.ndarray, model_names: list[str], quality: float, repeats: int = 3
) -> list[VersusRow]:
    """Encode and decode seconds of rdcodec's models and of compressai on the same
    transforms (the first model's), all in this process, best of ``repeats``."""
    import torch

    from ...models.registry import load_model
    from .. import pipeline

    rows = []
    models = [load_model(name) for name in model_names]
    # The same operating point (lambda) in every model: ``quality`` is the first model's.
    lmbda = models[0].network.config.lambda_of(quality)
    for model in models:
        q = model.network.config.quality_of(lmbda)
        low, high = model.quality_range
        if not low <= q <= high:  # left out: a high-rate model below its qualities
            continue
        enc, data = _best(lambda m=model, q=q: pipeline.encode(image, q, m), repeats)
        dec, _ = _best(lambda m=model, d=data: pipeline.decode_array(d, m), repeats)
        rows.append(VersusRow(f"rdcodec {model.name} (q{q:g})", len(data), enc, dec))
    twin = compressai_twin(models[0], quality)
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    # compressai's transforms need sides that are multiples of 64 (its own evaluation pads
    # the same way); rdcodec codes any size.
    pad_h, pad_w = (-x.shape[2]) % 64, (-x.shape[3]) % 64
    x = torch.nn.functional.pad(x, (0, pad_w, 0, pad_h), mode="replicate")

    def compress():
        with torch.no_grad():
            return twin.compress(x)

    enc, out = _best(compress, repeats)

    def decompress():
        with torch.no_grad():
            return twin.decompress(out["strings"], out["shape"])

    dec, _ = _best(decompress, repeats)
    size = sum(len(s[0]) for s in out["strings"])
    rows.append(
        VersusRow(f"compressai MeanScaleHyperprior, {models[0].name}'s transforms", size, enc, dec)
    )
    return rows


if __name__ == "__main__":
    mp_arg, q_arg, t_arg, e_arg = sys.argv[1:5]
    print(json.dumps(_worker(float(mp_arg), float(q_arg), int(t_arg) or None, int(e_arg))))
