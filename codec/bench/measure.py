"""Measuring RD points: every image of a folder coded by a codec at a quality point,
encoded to bytes, decoded, and measured on the decoded 8-bit RGB image (file size as bpp,
PSNR-RGB, MS-SSIM, encode and decode seconds); a codec's curve is the mean over images
at each quality point (``average_curve``).

Every measured point is cached as one small JSON file keyed by the image's sha256, the
codec, the codec's settings (``settings_id``) and the quality, so an interrupted run
picks up where it stopped.

Timing rules, the same for every codec: one untimed warm-up encode + decode per codec
and process, then each point timed once with ``time.perf_counter``; one torch thread per
process and single-threaded classical encoders.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ... import atomic
from ...errors import CodecError, ImageError
from .. import image_io
from ..metrics import bpp as bits_per_pixel
from ..metrics import ms_ssim, psnr
from .bdrate import Curve
from .codecs import make_codec
from .names import cache_stem
from .report import json_safe


# ---- images ------------------------------------------------------------------------
@dataclass(frozen=True)
class BenchImage:
    """One readable image of the folder."""

    path: Path
    sha256: str
    width: int
    height: int


def read_pixels(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an image file; ``ImageError`` if it cannot be read."""
    loaded = image_io.read_image(path)
    # read_image returns a LoadedImage (pixels plus notices); older versions the array.
    return getattr(loaded, "pixels", loaded)


def find_images(folder: Path, warn: Callable[[str], None]) -> list[BenchImage]:
    """The readable images directly in ``folder`` (not its subfolders), by name.

    Unreadable files are reported through ``warn`` and skipped.
    """
    folder = Path(folder)
    if not folder.exists():
        raise CodecError(f"{folder}: no such directory")
    if not folder.is_dir():
        raise CodecError(f"{folder}: not a directory")
    candidates = image_io.list_images(folder)
    if not candidates:
        what = "is empty" if not any(folder.iterdir()) else "has no image files"
        suffixes = ", ".join(sorted(image_io.IMAGE_SUFFIXES))
        raise CodecError(f"{folder}: {what} (looked for {suffixes})")
    images = []
    for path in candidates:
        try:
            array = read_pixels(path)
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        except ImageError as exc:
            warn(f"skipping {exc}")
            continue
        except OSError as exc:
            warn(f"skipping {path}: {exc.strerror}")
            continue
        images.append(BenchImage(path, digest, array.shape[1], array.shape[0]))
    if not images:
        raise CodecError(f"{folder}: none of its {len(candidates)} image files could be read")
    return images


# ---- measuring ---------------------------------------------------------------------
@dataclass(frozen=True)
class Measurement:
    """One image coded by one codec at one quality point."""

    image: str
    sha256: str
    width: int
    height: int
    codec: str
    quality: float
    num_bytes: int
    bpp: float
    psnr: float
    ms_ssim: float | None  # None for images with a side of 160 px or less
    encode_seconds: float
    decode_seconds: float

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Measurement:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class MeasureTask:
    """What a worker needs to measure one image with one codec (picklable)."""

    image: BenchImage
    codec: str
    qualities: tuple[float, ...]
    cache_dir: Path
    settings_id: str


def cache_path(
    cache_dir: Path, sha256: str, codec: str, settings_id: str, quality: float, kind: str = "q"
) -> Path:
    """Where the point of one image, codec, codec settings and quality is cached
    (``kind`` "t": the ``--target-bpp`` row of that image at the target ``quality``)."""
    stem = cache_stem(codec)
    # Targets are any float: repr keeps two close ones apart (a point's :g cannot change,
    # or every cache entry written so far would be lost).
    value = f"{quality:g}" if kind == "q" else repr(float(quality))
    return Path(cache_dir) / sha256[:16] / f"{stem}-{settings_id}-{kind}{value}.json"


def read_cached(path: Path, image: BenchImage, codec: str) -> Measurement | None:
    """The cached point at ``path`` as measured for ``image`` under the name ``codec``;
    None when there is none (or it cannot be read)."""
    try:
        m = Measurement.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None  # missing or damaged (e.g. an interrupted write): measure again
    # The same pixels may have been measured under another file name, the same model
    # under another codec name (rdcodec, rdcodec@MODEL); JSON stored an infinite PSNR
    # (a lossless point) as null.
    psnr_value = math.inf if m.psnr is None else m.psnr
    return Measurement(
        **{**m.to_dict(), "image": image.path.name, "codec": codec, "psnr": psnr_value}
    )


def write_cached(path: Path, row: dict) -> None:
    """Cache one measured row (a point's or a target's fields) at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Never a half-written cache entry (workers may write the same one: last wins).
    atomic.write_file(path, lambda tmp: tmp.write_text(json.dumps(json_safe(row))))


_CODECS: dict[str, object] = {}  # per process: codec objects (rdcodec's model loaded once)
_WARMED: set[str] = set()  # per process: codecs that had their untimed warm-up


def codec_for(name: str):
    """This process's codec object of a ``--codecs`` name (made once, so that rdcodec's
    model is loaded once per process)."""
    if name not in _CODECS:
        _CODECS[name] = make_codec(name)
    return _CODECS[name]


def measure_task(task: MeasureTask) -> list[Measurement]:
    """Encode, decode and measure every quality point of a task; cache each point."""
    codec = codec_for(task.codec)
    image = task.image
    array = read_pixels(image.path)
    if task.codec not in _WARMED:
        middle = task.qualities[len(task.qualities) // 2]
        codec.warm_up(array, middle)  # loads models, libraries, caches
        _WARMED.add(task.codec)
    results = []
    for quality in task.qualities:
        m, _ = measure_point(codec, image, array, quality)
        path = cache_path(task.cache_dir, image.sha256, task.codec, task.settings_id, quality)
        write_cached(path, m.to_dict())
        results.append(m)
    return results


def measure_point(
    codec, image: BenchImage, array: np.ndarray, quality: float
) -> tuple[Measurement, np.ndarray]:
    """Encode and decode ``array`` once, each timed, and measure the decoded pixels
    (returned too)."""
    start = time.perf_counter()
    data = codec.encode(array, quality)
    encoded = time.perf_counter()
    decoded = codec.decode(data)
    done = time.perf_counter()
    if decoded.shape != array.shape:
        raise CodecError(
            f"{codec.name} decoded {image.path.name} at quality {quality:g} to shape "
            f"{decoded.shape}, expected {array.shape}"
        )
    m = Measurement(
        image=image.path.name,
        sha256=image.sha256,
        width=image.width,
        height=image.height,
        codec=codec.name,
        quality=quality,
        num_bytes=len(data),
        bpp=bits_per_pixel(len(data), image.width * image.height),
        psnr=psnr(array, decoded),
        ms_ssim=ms_ssim(array, decoded),
        encode_seconds=encoded - start,
        decode_seconds=done - encoded,
    )
    return m, decoded


def average_curve(codec, measurements: list[Measurement], qualities: Sequence[float]) -> Curve:
    """Mean over images at each quality point (MS-SSIM only if every image has it)."""
    by_quality = {q: [m for m in measurements if m.quality == q] for q in qualities}
    points = [q for q in qualities if by_quality[q]]

    def mean(attr: str) -> tuple[float, ...]:
        return tuple(float(np.mean([getattr(m, attr) for m in by_quality[q]])) for q in points)

    has_ms_ssim = all(m.ms_ssim is not None for m in measurements)
    images = len({m.sha256 for m in measurements})
    return Curve(
        name=codec.name,
        label=codec.label,
        description=f"{codec.description(tuple(points))}; mean over {images} images; times are "
        "seconds per image, one thread, after an untimed warm-up",
        bpp=mean("bpp"),
        psnr=mean("psnr"),
        ms_ssim=mean("ms_ssim") if has_ms_ssim else (),
        encode_seconds=mean("encode_seconds"),
        decode_seconds=mean("decode_seconds"),
        qualities=tuple(points),
        images=images,
    )


def _init_worker() -> None:
    # Before torch is imported in this process: one thread, like every other codec.
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


@contextmanager
def one_torch_thread():
    """The in-process run (``workers=1``) follows the same one-thread rule."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_tasks(
    tasks: list, workers: int, progress: bool, work: Callable = None, size: Callable = None
) -> list:
    """Run ``work(task)`` (default: measure RD points) over tasks, in ``workers`` processes;
    ``size(task)`` is the task's number of progress-bar units."""
    from tqdm import tqdm

    work = work or measure_task
    size = size or (lambda t: len(t.qualities))
    results: list = []
    total = sum(size(t) for t in tasks)
    with tqdm(total=total, unit="point", desc="bench", disable=not progress or not tasks) as bar:
        if workers <= 1:
            with one_torch_thread():
                for task in tasks:
                    bar.set_postfix_str(f"{task.codec} {task.image.path.name}", refresh=False)
                    results += work(task)
                    bar.update(size(task))
            return results
        import multiprocessing

        # spawn, not fork: forking a process that has torch's thread pools can hang.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker) as pool:
            futures = {pool.submit(work, t): t for t in tasks}
            try:
                for future in as_completed(futures):
                    results += future.result()
                    bar.update(size(futures[future]))
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    return results
