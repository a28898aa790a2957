"""Training throughput: seconds per step and pixels per second of one configuration.

Used to choose what a CPU-hour buys (``rdcodec train-speed``): channel counts, crop
size, threads, channels-last memory format, ``torch.compile`` and bfloat16 autocast.
Each configuration runs in a fresh process, so thread settings and compile caches do
not leak between rows. The steps are the real training step (``train.train_step``) on crops drawn by
the real sampler from synthetic photos, so the sampler's cost is in the numbers and
is also reported on its own, next to the cost of decoding a JPEG per crop instead.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np

MODES = ("eager", "channels_last", "compile", "compile+channels_last", "bf16")


@dataclass(frozen=True)
class ThroughputRow:
    N: int
    M: int
    crop: int
    batch_size: int
    threads: int
    mode: str
    seconds_per_step: float
    pixels_per_second: float
    warmup_seconds: float  # first steps, including compilation
    sampler_ms_per_batch: float  # in-memory crops (what training uses)
    jpeg_decode_ms_per_batch: float  # decoding a training-size JPEG per crop instead
    slices: int = 1  # > 1: the exact model with a channel context of this many slices


def _jpeg_decode_ms(images: list[np.ndarray], batch_size: int) -> float:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(images[0]).save(buf, "JPEG", quality=95)
    data = buf.getvalue()
    start = time.perf_counter()
    for _ in range(batch_size):
        with Image.open(io.BytesIO(data)) as im:
            np.asarray(im.convert("RGB"))
    return 1000 * (time.perf_counter() - start)


def _worker(
    N: int, M: int, crop: int, batch_size: int, threads: int, mode: str, steps: int, slices: int
):
    import torch

    from ...codec import allocator
    from ...codec.bench.speed import synthetic_photo
    from ..registry import build_network
    from .data import CropSampler
    from .train import TrainConfig, build_optimizers, to_batch, train_step

    allocator.keep_large_blocks()  # as train() does
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    channels_last, compiled, bf16 = "channels_last" in mode, "compile" in mode, "bf16" in mode
    # Training photos are ~0.15 MP; a few synthetic ones of that size.
    images = [synthetic_photo(480, 320, seed) for seed in range(8)]
    sampler = CropSampler(images, crop, seed=0)
    arch = {"N": N, "M": M, **({"exact": True, "slices": slices} if slices > 1 else {})}
    model = build_network(arch, trainable=True)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    opt, aux_opt = build_optimizers(model, TrainConfig())
    step_model = torch.compile(model) if compiled else model
    lambdas = torch.tensor(model.config.lambdas)
    device = torch.device("cpu")

    def run(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            batch = to_batch(sampler.batch(batch_size), device, channels_last)
            levels = torch.randint(0, len(lambdas), (batch_size,))
            train_step(step_model, model, opt, aux_opt, batch, levels, lambdas, 1.0, bf16)
        return time.perf_counter() - start

    warmup = run(3)
    seconds = run(steps) / steps
    start = time.perf_counter()
    for _ in range(20):
        sampler.batch(batch_size)
    sampler_ms = 1000 * (time.perf_counter() - start) / 20
    return ThroughputRow(
        N,
        M,
        crop,
        batch_size,
        threads,
        mode,
        seconds,
        batch_size * crop * crop / seconds,
        warmup,
        sampler_ms,
        _jpeg_decode_ms(images, batch_size),
        slices,
    )


def measure(
    N: int,
    M: int,
    crop: int,
    batch_size: int,
    threads: int,
    mode: str,
    steps: int = 20,
    slices: int = 1,
) -> ThroughputRow:
    """Measure one configuration in a fresh process (``slices`` > 1: the exact model with
    a channel context, as the shipped default trains)."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")
    if slices < 1 or M % slices:
        raise ValueError(f"{slices} slices do not divide M = {M}")
    args = [str(v) for v in (N, M, crop, batch_size, threads, mode, steps, slices)]
    proc = subprocess.run(
        [sys.executable, "-m", "rdcodec.models.training.throughput", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        # The exception's own line, not a trailing hint (torch.compile prints those).
        lines = [ln for ln in proc.stderr.strip().splitlines() if "Error" in ln] or ["no output"]
        raise RuntimeError(
            f"{mode} N={N} M={M} slices={slices} crop={crop} failed: {lines[-1].strip()}"
        )
    return ThroughputRow(**json.loads(proc.stdout.strip().splitlines()[-1]))


if __name__ == "__main__":
    n, m, c, b, t, mode_arg, s, k = sys.argv[1:9]
    row = _worker(int(n), int(m), int(c), int(b), int(t), mode_arg, int(s), int(k))
    print(json.dumps(asdict(row)))
