"""``rdcodec bench``: rate-distortion curves of rdcodec and classical codecs.

For every image of a folder, every codec and every quality point: encode to bytes,
decode those bytes, and measure the file size (bpp = 8 * bytes / pixels), PSNR-RGB
and MS-SSIM on the decoded 8-bit RGB image, and the encode and decode seconds.
Results are averaged per quality point (mean over images, as CompressAI does) and
written in CompressAI's JSON schema, with per-image rows, an RD plot and a BD-rate
table. Each rdcodec model named (``rdcodec`` for the default, ``rdcodec@MODEL`` for any
shipped one) is a codec of its own, so releases can be compared on one plot.

Every measured point is cached as one small JSON file keyed by the image's sha256,
the codec, the codec's settings (encoder library version, or rdcodec's weights and
coding code) and the quality, so an interrupted run picks up where it stopped.

Timing rules, the same for every codec: one untimed warm-up encode + decode per
codec and process, then each point timed once with ``time.perf_counter``; one
torch thread per process and single-threaded classical encoders.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ...errors import CodecError, ImageError, ModelError
from .. import baselines, image_io
from ..metrics import bpp as bits_per_pixel
from ..metrics import ms_ssim, ms_ssim_db, psnr

CODEC_NAMES = ("rdcodec", *baselines.CLASSICAL)
DEFAULT_CODECS = CODEC_NAMES
ANCHORS = ("jpeg", "avif")
# Slowest codecs first, so that parallel workers finish together (rdcodec is slowest).
_COST_ORDER = ("rdcodec", *sorted(baselines.CLASSICAL, key=lambda n: -baselines.CLASSICAL[n].cost))


# ---- codecs ------------------------------------------------------------------------
class RdcodecCodec:
    """A shipped rdcodec model, at its quality levels.

    ``name`` is the ``--codecs`` name: ``rdcodec`` for the default model, or
    ``rdcodec@MODEL`` for any shipped model, each with ``+eN`` for encode effort N.
    """

    quality_meaning = "quality level"

    def __init__(self, model_name: str | None = None, name: str = "rdcodec", effort: int = 0):
        from ...models import registry

        self._entry = registry.find_entry(model_name or registry.default_model_name())
        self._model = None
        self.name = name
        self.effort = effort

    @property
    def model_name(self) -> str:
        return self._entry["name"]

    @property
    def label(self) -> str:
        effort = f", effort {self.effort}" if self.effort else ""
        return f"rdcodec ({self._entry['name']}{effort})"

    def quality_range(self) -> tuple[float, float]:
        """The model's levels, from its manifest entry (without loading the weights)."""
        low, high = self._entry["qualities"]
        return float(low), float(high)

    @property
    def default_qualities(self) -> tuple[int, ...]:
        """Every level of the model."""
        low, high = self.quality_range()
        return tuple(range(math.ceil(low), math.floor(high) + 1))

    def available(self) -> bool:
        return True

    def settings_id(self) -> str:
        # The weights and the code that turns them into bytes and back: different
        # models never share a cache entry.
        from ...models import exact, gaussian, layers, network, registry
        from .. import container, entropy, pipeline, refine

        digest = hashlib.sha256(self._entry["sha256"].encode())
        modules = (pipeline, container, entropy, network, exact, gaussian, layers, registry)
        for module in modules:
            digest.update(Path(module.__file__).read_bytes())
        if self.effort:
            digest.update(f"effort {self.effort}".encode())
            digest.update(Path(refine.__file__).read_bytes())
        return f"{self._entry['sha256'][:12]}-{digest.hexdigest()[:8]}"

    def description(self, qualities: Sequence[float]) -> str:
        points = ", ".join(f"{q:g}" for q in qualities)
        name, sha = self._entry["name"], self._entry["sha256"]
        return (
            f"rdcodec model {name} (weights sha256 {sha[:16]}...), real bitstreams; levels {points}"
        )

    def _loaded(self):
        if self._model is None:
            from ...models.registry import load_model

            self._model = load_model(self._entry["name"])
        return self._model

    def encode(self, image: np.ndarray, quality: float) -> bytes:
        from .. import pipeline

        return pipeline.encode(image, quality, self._loaded(), effort=self.effort)

    def decode(self, data: bytes) -> np.ndarray:
        from .. import pipeline

        return pipeline.decode_array(data, self._loaded())


def is_rdcodec(name: str) -> bool:
    """Whether a ``--codecs`` name is an rdcodec model (``rdcodec`` or ``rdcodec@MODEL``,
    either with ``+eN``)."""
    return name.partition("+")[0] == "rdcodec" or name.startswith("rdcodec@")


def file_stem(name: str) -> str:
    """A codec's name as a file name: ``rdcodec@hp-gain-n96m128`` -> ``rdcodec-hp-gain-n96m128``."""
    return "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "-" for c in name)


def _cache_stem(name: str) -> str:
    # Every rdcodec model caches under "rdcodec": the settings id holds the weights'
    # hash, so models stay apart while "rdcodec" and "rdcodec@<the default>" share.
    return "rdcodec" if is_rdcodec(name) else name


def make_codec(name: str):
    """The codec object of one ``--codecs`` name (``rdcodec@MODEL``: a shipped model;
    ``+eN``: at encode effort N)."""
    if is_rdcodec(name):
        base, _, effort = name.partition("+")
        model = base.partition("@")[2] or None
        return RdcodecCodec(model, name=name, effort=int(effort[1:]) if effort else 0)
    if name in baselines.CLASSICAL:
        return baselines.CLASSICAL[name]
    raise CodecError(f"unknown codec '{name}'; known: {', '.join(CODEC_NAMES)}, rdcodec@MODEL")


def _parse_codec(raw: str) -> str:
    """One ``--codecs`` name, checked; ``""`` for an empty item."""
    raw, plus, effort = raw.strip().partition("+")
    name = _parse_codec_name(raw)
    if not plus:
        return name
    from ..refine import EFFORTS

    if not is_rdcodec(name):
        raise CodecError(f"'{raw.strip()}+{effort}': only rdcodec takes +eN (encode effort)")
    level = effort.strip().lower().removeprefix("e")
    if not level.isdigit() or int(level) not in EFFORTS:
        raise CodecError(f"'{raw.strip()}+{effort}': effort must be e0..e{max(EFFORTS)}")
    return name if int(level) == 0 else f"{name}+e{int(level)}"


def _parse_codec_name(raw: str) -> str:
    base, at, model = raw.strip().partition("@")
    name = base.strip().lower().replace("-", "").replace(" ", "")
    name = baselines.ALIASES.get(name, name)
    if at:
        # Model names are kept as written: they are hyphenated and matched exactly.
        if name != "rdcodec":
            raise CodecError(f"unknown codec '{raw.strip()}': only rdcodec takes @MODEL")
        if not model.strip():
            raise CodecError(f"'{raw.strip()}': give a model name after @ (see rdcodec models)")
        name = f"rdcodec@{model.strip()}"
        try:
            make_codec(name)
        except ModelError as exc:  # a misspelt --codecs item, like 'heic': exit code 1
            raise CodecError(f"unknown codec '{raw.strip()}': {exc}") from None
        return name
    if name and name not in CODEC_NAMES:
        raise CodecError(
            f"unknown codec '{raw.strip()}'; known: {', '.join(CODEC_NAMES)}, rdcodec@MODEL"
        )
    return name


def parse_codecs(text: str) -> list[str]:
    """``"rdcodec,jpeg,rdcodec@hp-gain-n96m128"`` -> the same names (checked, duplicates
    dropped); ``rdcodec@MODEL`` names a shipped model."""
    names: list[str] = []
    items = text.split(",")
    # "all": rdcodec and every classical codec.
    items = [n for item in items for n in (DEFAULT_CODECS if item.strip() == "all" else [item])]
    for raw in items:
        name = _parse_codec(raw)
        if name and name not in names:
            names.append(name)
    if not names:
        raise CodecError("--codecs names no codec")
    return names


def parse_qualities(spec: str) -> tuple[str, tuple[float, ...]]:
    """``"jpeg=10,50,90"`` -> ``("jpeg", (10, 50, 90))``, checked against the codec's range
    (an rdcodec model's levels from its manifest entry)."""
    name, sep, values = spec.partition("=")
    if not sep:
        raise CodecError(f"--qualities '{spec}': expected CODEC=Q1,Q2,... (e.g. jpeg=10,50,90)")
    names = parse_codecs(name)
    if len(names) != 1:
        raise CodecError(f"--qualities '{spec}': one codec per item (CODEC=Q1,Q2,...)")
    (name,) = names
    try:
        points = tuple(sorted({float(v) for v in values.split(",") if v.strip()}))
    except ValueError:
        raise CodecError(f"--qualities '{spec}': quality points must be numbers") from None
    if not points:
        raise CodecError(f"--qualities '{spec}': no quality points")
    if is_rdcodec(name):
        low, high, integer = (*make_codec(name).quality_range(), False)
    else:
        low, high, step = baselines.CLASSICAL[name].search_grid
        integer = step == 1
    for q in points:
        if not low <= q <= high or (integer and q != int(q)):
            kind = "integers" if integer else "numbers"
            raise CodecError(f"--qualities '{spec}': {name} takes {kind} from {low:g} to {high:g}")
    return name, tuple(int(q) if q == int(q) else q for q in points)


# ---- images ------------------------------------------------------------------------
@dataclass(frozen=True)
class BenchImage:
    """One readable image of the folder."""

    path: Path
    sha256: str
    width: int
    height: int


def _read_pixels(path: Path) -> np.ndarray:
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
            array = _read_pixels(path)
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
class _Task:
    """What a worker needs to measure one image with one codec (picklable)."""

    image: BenchImage
    codec: str
    qualities: tuple[float, ...]
    cache_dir: Path
    settings_id: str


def _cache_path(cache_dir: Path, sha256: str, codec: str, settings_id: str, quality: float) -> Path:
    stem = _cache_stem(codec)
    return Path(cache_dir) / sha256[:16] / f"{stem}-{settings_id}-q{quality:g}.json"


def _read_cached(path: Path, image: BenchImage, codec: str) -> Measurement | None:
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


def _write_cached(path: Path, m: Measurement) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    tmp.write_text(json.dumps(_json_safe(m.to_dict())))
    os.replace(tmp, path)  # never a half-written cache entry


_CODECS: dict[str, object] = {}  # per process: codec objects (rdcodec's model loaded once)
_WARMED: set[str] = set()  # per process: codecs that had their untimed warm-up


def _measure(task: _Task) -> list[Measurement]:
    """Encode, decode and measure every quality point of a task; cache each point."""
    if task.codec not in _CODECS:
        _CODECS[task.codec] = make_codec(task.codec)
    codec = _CODECS[task.codec]
    image = task.image
    array = _read_pixels(image.path)
    if task.codec not in _WARMED:
        middle = task.qualities[len(task.qualities) // 2]
        codec.decode(codec.encode(array, middle))  # loads models, libraries, caches
        _WARMED.add(task.codec)
    results = []
    for quality in task.qualities:
        m, _ = measure_point(codec, image, array, quality)
        _write_cached(
            _cache_path(task.cache_dir, image.sha256, task.codec, task.settings_id, quality), m
        )
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


def _init_worker() -> None:
    # Before torch is imported in this process: one thread, like every other codec.
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


@contextmanager
def _one_torch_thread():
    """The in-process run (``workers=1``) follows the same one-thread rule."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _run_tasks(
    tasks: list, workers: int, progress: bool, work: Callable = None, size: Callable = None
) -> list:
    """Run ``work(task)`` (default: measure RD points) over tasks, in ``workers`` processes;
    ``size(task)`` is the task's number of progress-bar units."""
    from tqdm import tqdm

    work = work or _measure
    size = size or (lambda t: len(t.qualities))
    results: list = []
    total = sum(size(t) for t in tasks)
    with tqdm(total=total, unit="point", desc="bench", disable=not progress or not tasks) as bar:
        if workers <= 1:
            with _one_torch_thread():
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


# ---- rdcodec's own checks: monotonic qualities, --target-bpp -------------------------
@dataclass(frozen=True)
class MonotonicCheck:
    """Whether bpp and PSNR rise with the quality level on every image."""

    images: int
    monotonic: int
    failures: tuple[str, ...]  # "image: what went down between which levels"
    label: str = "rdcodec"  # the model's curve label

    def markdown(self) -> str:
        lines = [
            f"## {self.label}: quality levels",
            "",
            f"bpp and PSNR rise with the level on {self.monotonic} of {self.images} images.",
        ]
        if self.failures:
            lines += ["", *(f"- {f}" for f in self.failures)]
        return "\n".join(lines) + "\n"


def monotonic_check(measurements: Iterable[Measurement], label: str = "rdcodec") -> MonotonicCheck:
    """Whether bpp and PSNR rise with the level on every image, for one rdcodec model."""
    by_image: dict[str, list[Measurement]] = {}
    for m in measurements:
        by_image.setdefault(m.image, []).append(m)
    failures, bad = [], set()
    for name, rows in sorted(by_image.items()):
        rows.sort(key=lambda m: m.quality)
        for a, b in zip(rows, rows[1:], strict=False):
            for what in ("bpp", "psnr"):
                if not getattr(b, what) > getattr(a, what):
                    bad.add(name)
                    failures.append(
                        f"{name}: {what} does not rise from q{a.quality:g} to q{b.quality:g}"
                    )
    return MonotonicCheck(len(by_image), len(by_image) - len(bad), tuple(failures), label)


@dataclass(frozen=True)
class TargetRow:
    """``--target-bpp`` on one image: the quality it chose and the file it wrote."""

    image: str
    target: float
    quality: float | None  # None: the target is below the lowest quality's rate
    bpp: float | None
    seconds: float
    top_quality: float = 8.0  # the model's highest quality (a target above its rate gets it)


@dataclass(frozen=True)
class _TargetTask:
    image: BenchImage
    targets: tuple[float, ...]
    codec: str = "rdcodec"  # an rdcodec --codecs name


def _measure_targets(task: _TargetTask) -> list[TargetRow]:
    from .. import pipeline

    if task.codec not in _CODECS:
        _CODECS[task.codec] = make_codec(task.codec)
    model = _CODECS[task.codec]._loaded()
    array = _read_pixels(task.image.path)
    pixels = task.image.width * task.image.height
    rows = []
    for target in task.targets:
        start = time.perf_counter()
        try:
            quality, data = pipeline.encode_at_bpp(array, target, model)
        except CodecError:
            top = pipeline.quality_range(model)[1]
            rows.append(TargetRow(task.image.path.name, target, None, None, 0.0, top))
            continue
        seconds = time.perf_counter() - start
        rows.append(
            TargetRow(
                task.image.path.name,
                target,
                quality,
                bits_per_pixel(len(data), pixels),
                seconds,
                pipeline.quality_range(model)[1],
            )
        )
    return rows


@dataclass(frozen=True)
class TargetSummary:
    """How close ``--target-bpp`` lands, per target and over all feasible rows."""

    rows: tuple[TargetRow, ...]
    model: str = ""  # the rdcodec model's name

    def feasible(self, target: float | None = None) -> list[TargetRow]:
        """Rows whose target lies within the model's range (neither below its lowest
        rate nor above its highest, where the best answer is the top quality)."""
        return [
            r
            for r in self.rows
            if r.bpp is not None and not self._capped(r) and target in (None, r.target)
        ]

    @staticmethod
    def _capped(row: TargetRow) -> bool:
        return row.quality == row.top_quality and row.bpp < row.target

    def capped(self) -> int:
        """Targets above the top quality's rate (answered with the top quality)."""
        return sum(r.bpp is not None and self._capped(r) for r in self.rows)

    def undershoot_percent(self, target: float | None = None) -> float:
        """Mean of 100 * (target - bpp) / target; negative would mean overshooting."""
        rows = self.feasible(target)
        return (
            float(np.mean([100 * (r.target - r.bpp) / r.target for r in rows]))
            if rows
            else math.nan
        )

    def over_target(self) -> int:
        return sum(r.bpp > r.target for r in self.feasible())

    def infeasible(self, target: float | None = None) -> int:
        return sum(r.bpp is None and target in (None, r.target) for r in self.rows)

    def markdown(self) -> str:
        lines = [
            "## rdcodec --target-bpp" + (f": {self.model}" if self.model else ""),
            "",
            "Highest quality whose real file is at or below the target (bisection on the file "
            "size). Undershoot: mean of (target - bpp) / target over the images it could reach.",
            "",
            "| target bpp | images reached | mean bpp | mean undershoot | worst undershoot "
            "| mean s |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        for target in sorted({r.target for r in self.rows}):
            rows = self.feasible(target)
            n = len([r for r in self.rows if r.target == target])
            if not rows:
                lines.append(f"| {target:g} | 0 of {n} | - | - | - | - |")
                continue
            worst = max(100 * (r.target - r.bpp) / r.target for r in rows)
            lines.append(
                f"| {target:g} | {len(rows)} of {n} | {np.mean([r.bpp for r in rows]):.4f} | "
                f"{self.undershoot_percent(target):.2f}% | {worst:.2f}% | "
                f"{np.mean([r.seconds for r in rows]):.1f} |"
            )
        lines += [
            "",
            f"Over all reached rows: mean undershoot {self.undershoot_percent():.2f}%, "
            f"{self.over_target()} above the target; {self.infeasible()} targets below the "
            f"lowest quality's rate, {self.capped()} above the highest quality's rate "
            "(left out of the means).",
        ]
        return "\n".join(lines) + "\n"


# ---- curves ------------------------------------------------------------------------
@dataclass(frozen=True)
class Curve:
    """An RD curve: one point per quality, each the mean over images.

    ``ms_ssim`` is empty when it was not measured (or not published); the timing
    lists are empty for published curves that have none.
    """

    name: str
    label: str
    description: str
    bpp: tuple[float, ...]
    psnr: tuple[float, ...]
    ms_ssim: tuple[float, ...] = ()
    encode_seconds: tuple[float, ...] = ()
    decode_seconds: tuple[float, ...] = ()
    qualities: tuple[float, ...] = ()
    images: int = 0
    published: bool = False

    @property
    def ms_ssim_db(self) -> tuple[float, ...]:
        return tuple(ms_ssim_db(v) for v in self.ms_ssim)

    def to_compressai(self) -> dict:
        """CompressAI's results schema (extra keys outside ``results``)."""
        results = {"bpp": list(self.bpp), "psnr-rgb": list(self.psnr)}
        if self.ms_ssim:
            results["ms-ssim-rgb"] = list(self.ms_ssim)
        if self.encode_seconds:
            results["encoding_time"] = list(self.encode_seconds)
            results["decoding_time"] = list(self.decode_seconds)
        return {
            "name": self.label,
            "description": self.description,
            "results": results,
            "codec": self.name,
            "qualities": list(self.qualities),
            "images": self.images,
        }


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


def load_curve(path: Path) -> Curve:
    """A published curve in CompressAI's schema (``psnr``/``ms-ssim`` keys accepted too)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise CodecError(f"{path}: no such file") from None
    except (OSError, ValueError) as exc:
        raise CodecError(f"{path}: not a readable JSON file ({exc})") from None
    results = data.get("results") if isinstance(data, dict) else None
    if not isinstance(results, dict) or "bpp" not in results:
        raise CodecError(
            f'{path}: expected CompressAI\'s schema {{"name", "results": {{"bpp", ...}}}}'
        )

    def numbers(*keys: str) -> tuple[float, ...]:
        for key in keys:
            if key in results:
                values = results[key]
                if not isinstance(values, list) or len(values) != len(results["bpp"]):
                    raise CodecError(f"{path}: results.{key} must be a list as long as results.bpp")
                try:
                    return tuple(float(v) for v in values)
                except (TypeError, ValueError):
                    raise CodecError(f"{path}: results.{key} holds a non-number") from None
        return ()

    bpp, psnr_values = numbers("bpp"), numbers("psnr-rgb", "psnr")
    if not psnr_values:
        raise CodecError(f"{path}: results has no psnr-rgb (or psnr) list")
    name = str(data.get("name") or path.stem)
    return Curve(
        name=name,
        label=f"{name} (published)",
        description=str(data.get("description", "")),
        bpp=bpp,
        psnr=psnr_values,
        ms_ssim=numbers("ms-ssim-rgb", "ms-ssim"),
        published=True,
    )


# ---- BD-rate -----------------------------------------------------------------------
@dataclass(frozen=True)
class BdRate:
    """A BD-rate and the distortion interval it was averaged over.

    ``percent`` is NaN when it cannot be computed (fewer than two usable points, or
    no overlap); ``overlap`` is the interval's share of the union of both ranges.
    """

    percent: float
    low: float
    high: float
    overlap: float


def _monotone(rate: Sequence[float], dist: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Points sorted by rate, keeping only those that improve on every cheaper one
    (interpolating distortion -> rate needs a strictly increasing distortion)."""
    pairs = sorted(
        (r, d) for r, d in zip(rate, dist, strict=True)
        if r is not None and d is not None and r > 0 and math.isfinite(r) and math.isfinite(d)
    )  # fmt: skip
    kept: list[tuple[float, float]] = []
    for r, d in pairs:
        if not kept or d > kept[-1][1]:
            kept.append((r, d))
    return np.array([p[0] for p in kept]), np.array([p[1] for p in kept])


def bd_rate_detail(
    anchor_bpp: Sequence[float],
    anchor_dist: Sequence[float],
    test_bpp: Sequence[float],
    test_dist: Sequence[float],
) -> BdRate:
    """Bjøntegaard delta rate of test against anchor, with its interval.

    The ``bjontegaard`` package's Akima-interpolated BD-rate: the mean difference of
    log-rate at equal distortion over the overlapping distortion interval.
    """
    import bjontegaard

    r_a, d_a = _monotone(anchor_bpp, anchor_dist)
    r_t, d_t = _monotone(test_bpp, test_dist)
    if len(r_a) < 2 or len(r_t) < 2:
        return BdRate(math.nan, math.nan, math.nan, 0.0)
    low, high = max(d_a[0], d_t[0]), min(d_a[-1], d_t[-1])
    overlap = max(high - low, 0.0) / (max(d_a[-1], d_t[-1]) - min(d_a[0], d_t[0]))
    if high <= low:
        return BdRate(math.nan, low, high, 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small overlaps are shown in the table instead
        percent = bjontegaard.bd_rate(
            r_a, d_a, r_t, d_t, method="akima", require_matching_points=False, min_overlap=0
        )
    return BdRate(float(percent), float(low), float(high), float(overlap))


def bd_rate(
    anchor_bpp: Sequence[float],
    anchor_dist: Sequence[float],
    test_bpp: Sequence[float],
    test_dist: Sequence[float],
) -> float:
    """BD-rate in percent of test against anchor (negative: test needs fewer bits for
    the same distortion); NaN when the curves do not overlap."""
    return bd_rate_detail(anchor_bpp, anchor_dist, test_bpp, test_dist).percent


@dataclass(frozen=True)
class BdEntry:
    test: str
    anchor: str
    metric: str  # "psnr" or "ms-ssim" (in dB)
    result: BdRate


def _rdcodec_curves(curves: Iterable[Curve]) -> list[Curve]:
    return [c for c in curves if is_rdcodec(c.name) and not c.published]


def _classical_curves(curves: Iterable[Curve]) -> list[Curve]:
    return [c for c in curves if not is_rdcodec(c.name) and not c.published]


def bd_table(curves: list[Curve]) -> list[BdEntry]:
    """BD-rates of every curve against each anchor present (JPEG, AVIF), both metrics;
    with two or more rdcodec models, also of each against the first one; and the first
    rdcodec model against every other classical codec (head to head)."""
    entries = []
    anchors = [c for c in curves if c.name in ANCHORS and not c.published]
    pairs = [(anchor, test) for anchor in anchors for test in curves if test is not anchor]
    ours = _rdcodec_curves(curves)
    pairs += [(ours[0], test) for test in ours[1:]]
    if ours:
        others = [c for c in _classical_curves(curves) if c.name not in ANCHORS]
        pairs += [(other, ours[0]) for other in others]
    for anchor, test in pairs:
        psnr_result = bd_rate_detail(anchor.bpp, anchor.psnr, test.bpp, test.psnr)
        entries.append(BdEntry(test.label, anchor.name, "psnr", psnr_result))
        if anchor.ms_ssim and test.ms_ssim:
            result = bd_rate_detail(anchor.bpp, anchor.ms_ssim_db, test.bpp, test.ms_ssim_db)
        else:
            result = BdRate(math.nan, math.nan, math.nan, 0.0)
        entries.append(BdEntry(test.label, anchor.name, "ms-ssim", result))
    return entries


def find_bd(entries: Iterable[BdEntry], test: str, anchor: str, metric: str) -> BdRate | None:
    for e in entries:
        if e.test == test and e.anchor == anchor and e.metric == metric:
            return e.result
    return None


def format_percent(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:+.1f}%"


def _format_interval(r: BdRate) -> str:
    if math.isnan(r.low):
        return "n/a"
    if r.overlap == 0:
        return "no overlap"
    return f"{r.low:.2f} – {r.high:.2f} ({100 * r.overlap:.0f}% of the union)"


def bd_markdown(curves: list[Curve], entries: list[BdEntry], images: int) -> str:
    lines = [
        "# BD-rate",
        "",
        f"Computed on the averaged curves (mean bpp and mean PSNR / MS-SSIM per quality point "
        f"over {images} images), not per image, with the `bjontegaard` package (Akima "
        "interpolation of log-rate over distortion). Negative: fewer bits than the anchor for "
        "the same quality. MS-SSIM in dB, -10 log10(1 - MS-SSIM). The interval is the "
        "distortion range both curves cover; the rate difference is averaged over it only, "
        "so a small overlap means a number about a small part of the curves.",
    ]
    labels = {c.name: c.label for c in curves}
    for anchor in ANCHORS:
        lines += ["", f"## Anchor: {labels.get(anchor, anchor.upper())}", ""]
        rows = [e for e in entries if e.anchor == anchor]
        lines += _bd_rows(rows, anchor) if rows else [f"{anchor.upper()} was not part of this run."]
    ours = _rdcodec_curves(curves)
    if len(ours) > 1:
        anchor = ours[0]
        lines += [
            "",
            f"## Anchor: {anchor.label}",
            "",
            "The other rdcodec models against the first one listed in --codecs.",
            "",
            *_bd_rows([e for e in entries if e.anchor == anchor.name], anchor.name),
        ]
    if ours and _classical_curves(curves):
        first = ours[0]
        rows = [e for e in entries if e.test == first.label and e.anchor != first.name]
        lines += [
            "",
            f"## Head to head: {first.label} against each codec",
            "",
            "The first rdcodec model in --codecs as the test, each classical codec as the "
            "anchor: positive means rdcodec needs that many more bits than the codec for the "
            "same quality over the interval both cover.",
            "",
            *_bd_rows(rows, first.label, by="anchor", labels=labels),
        ]
    return "\n".join(lines) + "\n"


def _bd_rows(
    rows: list[BdEntry], fixed: str, by: str = "test", labels: dict | None = None
) -> list[str]:
    """One markdown table, a row per tested curve against the anchor ``fixed`` (``by``
    "test"), or a row per anchor of the one tested curve ``fixed`` (``by`` "anchor")."""
    lines = [
        "| codec | BD-rate (PSNR) | PSNR interval (dB) "
        "| BD-rate (MS-SSIM) | MS-SSIM interval (dB) |",
        "|---|---:|---|---:|---|",
    ]
    for name in dict.fromkeys(getattr(e, by) for e in rows):
        test, anchor = (name, fixed) if by == "test" else (fixed, name)
        p = find_bd(rows, test, anchor, "psnr")
        s = find_bd(rows, test, anchor, "ms-ssim")
        label = (labels or {}).get(name, name)
        lines.append(
            f"| {label} | {format_percent(p.percent)} | {_format_interval(p)} | "
            f"{format_percent(s.percent)} | {_format_interval(s)} |"
        )
    return lines


# ---- outputs -----------------------------------------------------------------------
def _json_safe(value):
    """inf/NaN -> None (strict JSON has no such numbers)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def rd_figure(curves: list[Curve], title: str):
    """bpp vs PSNR and bpp vs MS-SSIM (dB), one curve per codec (a matplotlib Figure)."""
    # The object API (no pyplot) renders with Agg/SVG and touches no global backend.
    from matplotlib.figure import Figure

    figure = Figure(figsize=(13, 5.2), layout="constrained")
    ax_psnr, ax_ssim = figure.subplots(1, 2)
    colours = {}
    for i, curve in enumerate(curves):
        colour = colours.setdefault(curve.name, f"C{i % 10}")
        style = {
            "color": colour,
            "marker": "o",
            "markersize": 3.5,
            "linewidth": 1.4,
            "label": curve.label,
        }
        if curve.published:
            style.update(linestyle="--", marker="s")
        ax_psnr.plot(curve.bpp, curve.psnr, **style)
        if curve.ms_ssim:
            ax_ssim.plot(curve.bpp, curve.ms_ssim_db, **style)
    ax_psnr.set(xlabel="bits per pixel (bpp)", ylabel="PSNR-RGB (dB)", title="PSNR")
    ax_ssim.set(
        xlabel="bits per pixel (bpp)",
        ylabel="MS-SSIM (dB) = -10 log10(1 - MS-SSIM)",
        title="MS-SSIM",
    )
    if not any(c.ms_ssim for c in curves):
        ax_ssim.text(0.5, 0.5, "MS-SSIM not measured\n(images need > 160 px per side)",
                     ha="center", va="center", transform=ax_ssim.transAxes)  # fmt: skip
    for ax in (ax_psnr, ax_ssim):
        ax.grid(True, alpha=0.3)
        ax.set_xlim(left=0)
        if ax.lines:
            ax.legend(loc="lower right", fontsize=8)
    figure.suptitle(title)
    return figure


def rows_csv(rows: Sequence, row_type: type) -> str:
    """Dataclass rows as CSV, one column per field (None as an empty cell)."""
    columns = list(row_type.__dataclass_fields__)
    f = io.StringIO(newline="")
    writer = csv.writer(f)
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if v is None else v for v in (getattr(row, c) for c in columns)])
    return f.getvalue()


# ---- the command ---------------------------------------------------------------------
@dataclass(frozen=True)
class BenchReport:
    """What a run measured and wrote."""

    curves: list[Curve]  # measured codecs first, then published ones
    bd: list[BdEntry]
    images: int
    skipped: int
    measured_points: int  # newly encoded now
    cached_points: int  # read from the cache
    outputs: dict[str, Path] = field(default_factory=dict)
    seconds: float = 0.0
    monotonic: tuple[MonotonicCheck, ...] = ()  # each rdcodec model's levels, in --codecs order
    targets: TargetSummary | None = None  # --target-bpp, when asked for


def run_bench(
    folder: Path,
    codecs: Sequence[str] = DEFAULT_CODECS,
    out: Path = Path("results"),
    workers: int = 1,
    compare: Sequence[Path] = (),
    qualities: dict[str, tuple[float, ...]] | None = None,
    warn: Callable[[str], None] = lambda message: None,
    progress: bool = True,
    targets: Sequence[float] = (),
    html: bool = False,
) -> BenchReport:
    """Benchmark ``codecs`` on the images of ``folder``; write results under ``out``.

    ``codecs`` may name several rdcodec models (``rdcodec``, ``rdcodec@MODEL``): each
    is a codec of its own. With ``targets``, also run ``--target-bpp`` with the first
    rdcodec model listed at each target on each image; with ``html``, also write
    ``report.html`` (see ``compare.bench_page``), whose per-image comparisons use the
    first rdcodec model listed.
    """
    start = time.perf_counter()
    if workers < 1:
        raise CodecError("--workers must be at least 1")
    if targets and not any(is_rdcodec(n) for n in codecs):
        raise CodecError("--target-bpp measures rdcodec: include it in --codecs")
    if any(not (t > 0 and math.isfinite(t)) for t in targets):
        raise CodecError("--target-bpp values must be positive numbers")
    qualities = qualities or {}
    published = [load_curve(p) for p in compare]  # fail on a bad file before hours of work
    candidates_skipped: list[str] = []

    def note_skip(message: str) -> None:
        candidates_skipped.append(message)
        warn(message)

    selected = []
    for name in codecs:
        codec = make_codec(name)
        if not codec.available():
            warn(f"{codec.label} is not available in this Pillow build; skipping it")
            continue
        twin = next((c for c in selected if c.label == codec.label), None)
        if twin is not None:  # e.g. rdcodec and rdcodec@<the default model>
            warn(f"{name} is the same model as {twin.name}; measuring it once")
            continue
        selected.append(codec)
    if not selected:
        raise CodecError("none of the requested codecs is available")
    ours = [c for c in selected if is_rdcodec(c.name)]  # rdcodec models, in --codecs order
    if html and ours:
        _check_html_model(ours[0])
    images = find_images(Path(folder), note_skip)

    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CodecError(f"{out}: cannot create output directory ({exc.strerror})") from None
    cache_dir = out / "cache"

    def points_of(codec) -> tuple[float, ...]:
        return tuple(qualities.get(codec.name, codec.default_qualities))

    measured: dict[str, list[Measurement]] = {c.name: [] for c in selected}
    tasks = []
    cached = 0
    for codec in selected:
        settings = codec.settings_id()
        for image in images:
            missing = []
            for q in points_of(codec):
                path = _cache_path(cache_dir, image.sha256, codec.name, settings, q)
                m = _read_cached(path, image, codec.name)
                if m is None:
                    missing.append(q)
                else:
                    measured[codec.name].append(m)
                    cached += 1
            if missing:
                tasks.append(_Task(image, codec.name, tuple(missing), cache_dir, settings))
    tasks.sort(key=lambda t: _COST_ORDER.index(_cache_stem(t.codec)))
    new = _run_tasks(tasks, workers, progress)
    for m in new:
        measured[m.codec].append(m)

    # Everything is measured before any output is written: an interrupted run leaves
    # the previous outputs (and the cache) as they were.
    target_summary = None
    if targets:
        tasks = [_TargetTask(image, tuple(targets), ours[0].name) for image in images]
        found = _run_tasks(tasks, workers, progress, _measure_targets, lambda t: len(t.targets))
        rows = tuple(sorted(found, key=lambda r: (r.image, r.target)))
        target_summary = TargetSummary(rows, ours[0].model_name)

    curves = []
    for codec in selected:
        rows = measured[codec.name]
        rows.sort(key=lambda m: (m.image, m.quality))
        curves.append(average_curve(codec, rows, points_of(codec)))
    if any(m.ms_ssim is None for rows in measured.values() for m in rows):
        warn("MS-SSIM left out: it needs images larger than 160 px on each side")
    all_curves = curves + published
    entries = bd_table(all_curves)

    # Each output goes to a temporary file first and all are renamed at the end: a run
    # that fails while writing leaves the previous outputs whole.
    outputs: dict[str, Path] = {}
    texts: dict[Path, str] = {}
    for curve in curves:
        outputs[curve.name] = out / f"{file_stem(curve.name)}.json"
        texts[outputs[curve.name]] = json.dumps(_json_safe(curve.to_compressai()), indent=2) + "\n"
    outputs["per-image rows"] = out / "per_image.csv"
    rows = [m for c in selected for m in measured[c.name]]
    texts[outputs["per-image rows"]] = rows_csv(rows, Measurement)
    outputs["plot (PNG)"], outputs["plot (SVG)"] = out / "rd.png", out / "rd.svg"
    outputs["BD-rate table"] = out / "bd_rate.md"
    monotonic = tuple(monotonic_check(measured[c.name], c.label) for c in ours)
    if target_summary is not None:
        outputs["target-bpp rows"] = out / "target_bpp.csv"
        texts[outputs["target-bpp rows"]] = rows_csv(target_summary.rows, TargetRow)
    text = bd_markdown(all_curves, entries, len(images))
    for check in monotonic:
        text += "\n" + check.markdown()
    if target_summary is not None:
        text += "\n" + target_summary.markdown()
    texts[outputs["BD-rate table"]] = text
    title = f"{len(images)} image{'s' * (len(images) != 1)} from {Path(folder).resolve().name}"
    figure = rd_figure(all_curves, title)
    if html:
        from .compare import bench_page

        outputs["HTML report"] = out / "report.html"
        points = points_of(ours[0]) if ours else ()
        middle = points[len(points) // 2] if points else None
        names = [c.name for c in selected if not is_rdcodec(c.name)]
        paths = [image.path for image in images]
        page = bench_page(Path(folder).resolve().name, paths, names, middle, figure, text, progress)
        texts[outputs["HTML report"]] = page
    writers = {path: (lambda tmp, t=t: tmp.write_text(t)) for path, t in texts.items()}
    for path in (outputs["plot (PNG)"], outputs["plot (SVG)"]):
        writers[path] = lambda tmp, fmt=path.suffix[1:]: figure.savefig(tmp, dpi=150, format=fmt)
    image_io.atomic_write_all(writers)

    return BenchReport(
        curves=all_curves,
        bd=entries,
        images=len(images),
        skipped=len(candidates_skipped),
        measured_points=len(new),
        cached_points=cached,
        outputs=outputs,
        seconds=time.perf_counter() - start,
        monotonic=monotonic,
        targets=target_summary,
    )


def _check_html_model(codec: RdcodecCodec) -> None:
    """``--html``'s per-image comparisons code with the default model
    (``compare.bench_page`` takes no model), so the first rdcodec listed must be it."""
    from ...models import registry

    default = registry.default_model_name()
    if codec.model_name != default:
        raise CodecError(
            f"--html compares the default model ({default}) image by image: list rdcodec "
            f"first among the rdcodec models in --codecs (not {codec.name})"
        )
