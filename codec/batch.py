"""Folders of photos: ``rdcodec encode DIR OUTDIR`` and ``rdcodec decode DIR OUTDIR``.

What the tools people already use for this do (avifenc ``--jobs``, vipsthumbnail,
squoosh-cli, GNU parallel ``--joblog``): the folder tree is mirrored under OUTDIR;
worker processes each load the model once; every output is written to a temporary file
and renamed, so a batch killed at any moment leaves no partial file and, run again,
does only what is left (outputs that exist are skipped unless ``force``); a file that
fails is reported and the batch goes on; a summary and an optional per-file report
(CSV or JSON) come at the end, and the exit status says whether anything failed.

The engine is a seam: ``run_batch`` takes the jobs and a ``map`` of (function, jobs)
to results in any order. Local processes (``local_engine``) are the default; Ray
(``codec/ray_engine.py``) runs the same per-file function on a cluster;
``codec/folders.py`` picks the engine and is the Python API of the same job.
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import json
import multiprocessing
import os
import signal
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..atomic import check_writable
from ..errors import BitstreamError, CodecError, OutputError
from .image_io import IMAGE_SUFFIXES

BITSTREAM_SUFFIX = ".rdc"


@dataclass(frozen=True)
class Job:
    """One file of a batch: where it comes from and where its output goes."""

    source: Path
    output: Path
    relative: str  # the source's path under the input folder, for reports


@dataclass(frozen=True)
class Settings:
    """What every file of a batch is coded with."""

    mode: str  # "encode" or "decode"
    quality: float | None = None
    target_bpp: float | None = None
    model: str | None = None
    effort: int = 0
    threads: int = 1
    max_pixels: int | None = None
    drop_alpha: bool = False
    force: bool = False
    strip: bool = False  # store no metadata


@dataclass(frozen=True)
class Row:
    """The outcome of one file (a row of the report)."""

    file: str
    status: str  # done, skipped, failed
    bytes_in: int = 0
    bytes_out: int = 0
    width: int = 0
    height: int = 0
    bpp: float | None = None
    psnr: float | None = None
    quality: float | None = None
    seconds: float = 0.0
    error: str = ""


@dataclass
class Summary:
    rows: list[Row] = field(default_factory=list)
    seconds: float = 0.0
    ignored: int = 0  # files in the folder that are not inputs of this mode

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.rows)

    @property
    def failed(self) -> int:
        return self.count("failed")

    def lines(self) -> list[str]:
        done = [r for r in self.rows if r.status == "done"]
        bytes_in = sum(r.bytes_in for r in done)
        bytes_out = sum(r.bytes_out for r in done)
        out = [
            f"done {len(done)}, skipped {self.count('skipped')} (output exists), "
            f"failed {self.failed}, not images {self.ignored}; {self.seconds:.1f} s, "
            f"{len(done) / self.seconds if self.seconds else 0:.2f} images/s"
        ]
        if done:
            line = f"bytes {bytes_in:,} -> {bytes_out:,}"
            if bytes_out and bytes_in > bytes_out:
                line += f" ({bytes_in / bytes_out:.1f}:1)"
            bpps = [r.bpp for r in done if r.bpp is not None]
            psnrs = [r.psnr for r in done if r.psnr is not None]
            if bpps:
                line += f", mean {sum(bpps) / len(bpps):.4f} bpp"
            if psnrs:
                line += f", mean PSNR {sum(psnrs) / len(psnrs):.2f} dB"
            out.append(line)
        out += [f"failed: {r.file}: {r.error}" for r in self.rows if r.status == "failed"]
        return out


# ---- finding the work -----------------------------------------------------------------
def find_jobs(source: Path, out_root: Path, mode: str) -> tuple[list[Job], int]:
    """Every input file under ``source`` (recursive, hidden files and folders skipped),
    with its mirrored output under ``out_root``; and how many other files were skipped.
    Inputs are chosen by suffix: images for encode, ``.rdc`` for decode."""
    suffixes = IMAGE_SUFFIXES if mode == "encode" else {BITSTREAM_SUFFIX}
    new_suffix = BITSTREAM_SUFFIX if mode == "encode" else ".png"
    jobs, ignored = [], 0
    out_resolved = out_root.resolve()
    for folder, dirs, files in os.walk(source):
        here = Path(folder)
        # Hidden folders and the output folder itself (when it lies inside the input).
        dirs[:] = sorted(
            d for d in dirs if not d.startswith(".") and (here / d).resolve() != out_resolved
        )
        for name in sorted(files):
            path = here / name
            if name.startswith(".") or path.suffix.lower() not in suffixes:
                ignored += not name.startswith(".")
                continue
            relative = path.relative_to(source)
            jobs.append(Job(path, (out_root / relative).with_suffix(new_suffix), str(relative)))
    return jobs, ignored


def split_clashes(jobs: list[Job]) -> tuple[list[Job], list[Row]]:
    """The jobs whose output no other job writes, and a failed row for each of the
    others (``a.png`` and ``a.jpg`` both make ``a.rdc``: coding either would skip or
    overwrite the other's file), naming the files it clashes with."""
    by_output: dict[Path, list[Job]] = defaultdict(list)
    for job in jobs:
        by_output[job.output].append(job)
    kept, failed = [], []
    for job in jobs:
        sharing = by_output[job.output]
        if len(sharing) == 1:
            kept.append(job)
            continue
        others = ", ".join(other.relative for other in sharing if other is not job)
        error = f"same output {job.output.name} as {others}; rename one of them"
        failed.append(Row(job.relative, "failed", error=error))
    return kept, failed


def remove_stale_temporaries(out_root: Path) -> int:
    """Temporary files that a killed batch left beside its outputs (``atomic_write``'s
    ``.NAME.XXXXXXXX.part``): never outputs, so they go."""
    removed = 0
    if out_root.is_dir():
        for path in out_root.rglob(".*.part"):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


# ---- one file -------------------------------------------------------------------------
_WORKER: dict = {}


def init_worker(settings: Settings) -> None:
    """Per process: torch threads and the model (or the default scale, whose models
    load when first coded with), each loaded once."""
    import torch

    from ..models.registry import load_scale

    if multiprocessing.parent_process() is not None:
        # A worker: Ctrl-C and SIGTERM are the parent's to handle (it stops the workers);
        # a worker of a forked pool would otherwise inherit the parent's handlers.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    torch.set_num_threads(max(1, settings.threads))
    _WORKER["settings"] = settings
    # A named model, or the default scale (the general and the high-rate model).
    _WORKER["model"] = load_scale(settings.model) if settings.mode == "encode" else None


def process(job: Job) -> Row:
    """Code one file; every failure becomes a row (the batch goes on)."""
    settings: Settings = _WORKER["settings"]
    start = time.perf_counter()
    try:
        if not settings.force and job.output.exists():
            return Row(job.relative, "skipped", bytes_out=job.output.stat().st_size)
        row = _encode(job, settings) if settings.mode == "encode" else _decode(job, settings)
        return Row(**{**asdict(row), "seconds": time.perf_counter() - start})
    except CodecError as exc:
        return Row(job.relative, "failed", seconds=time.perf_counter() - start, error=str(exc))
    except Exception as exc:  # a batch of thousands must not stop at one bad file
        message = f"{type(exc).__name__}: {exc}"
        return Row(job.relative, "failed", seconds=time.perf_counter() - start, error=message)


def _encode(job: Job, settings: Settings) -> Row:
    from . import image_io, pipeline
    from .metrics import psnr

    max_pixels = settings.max_pixels or image_io.DEFAULT_MAX_PIXELS
    loaded = image_io.read_image(job.source, max_pixels, settings.drop_alpha, keep_alpha=True)
    model = _WORKER["model"]
    extras = pipeline.Extras.of_loaded(loaded)
    if settings.strip:
        extras = extras.stripped()
    if settings.target_bpp is not None:
        quality, data = pipeline.encode_at_bpp(
            loaded.pixels, settings.target_bpp, model, settings.effort, loaded.grayscale, extras
        )
    else:
        quality = model.default_quality if settings.quality is None else settings.quality
        data = pipeline.encode(
            loaded.pixels, quality, model, loaded.grayscale, settings.effort, extras
        )
    decoded = pipeline.decode_array(data, model)
    job.output.parent.mkdir(parents=True, exist_ok=True)  # here: a failed file makes none
    image_io.write_bytes(job.output, data, force=True)
    height, width = loaded.pixels.shape[:2]
    return Row(
        job.relative,
        "done",
        bytes_in=job.source.stat().st_size,
        bytes_out=len(data),
        width=width,
        height=height,
        bpp=8 * len(data) / (width * height),
        psnr=psnr(loaded.pixels, decoded),
        quality=pipeline.read_header(data).quality,
    )


def _decode(job: Job, settings: Settings) -> Row:
    from . import image_io, pipeline

    data = image_io.read_bitstream(job.source)
    if not data:  # the container would call it a bad magic number
        raise BitstreamError("empty file (0 bytes)")
    max_pixels = settings.max_pixels or image_io.DEFAULT_MAX_PIXELS
    image = pipeline.decode(data, max_pixels=max_pixels)
    job.output.parent.mkdir(parents=True, exist_ok=True)  # here: a failed file makes none
    image_io.save_image(job.output, image, force=True)
    return Row(
        job.relative,
        "done",
        bytes_in=len(data),
        bytes_out=job.output.stat().st_size,
        width=image.width,
        height=image.height,
        bpp=8 * len(data) / (image.width * image.height),
        quality=pipeline.read_header(data).quality,
    )


# ---- engines --------------------------------------------------------------------------
Engine = Callable[[Settings, list[Job]], Iterator[Row]]


def default_jobs(threads: int = 1) -> int:
    """Worker processes that fill this machine without oversubscribing it."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // max(1, threads))


def local_engine(workers: int) -> Engine:
    """``workers`` processes on this machine (1: in this process, no pool)."""

    def run(settings: Settings, jobs: list[Job]) -> Iterator[Row]:
        if workers <= 1:
            init_worker(settings)
            for job in jobs:
                yield process(job)
            return
        pool = ProcessPoolExecutor(workers, initializer=init_worker, initargs=(settings,))
        waiting = iter(jobs)
        # One file a worker at a time (a pool fed the whole folder would hand each worker
        # files ahead, which no stop could take back).
        running = {pool.submit(process, job) for job in itertools.islice(waiting, workers)}
        finished = False
        try:
            while running:
                done, running = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    job = next(waiting, None)
                    if job is not None:
                        running.add(pool.submit(process, job))
                    yield future.result()
            finished = True
        finally:
            if not finished:
                # Interrupted (Ctrl-C, SIGTERM) or closed early: the workers stop where
                # they are (an output is renamed into place only when whole; a leftover
                # temporary file goes at the next run) and no further file starts.
                _stop_workers(pool)
            pool.shutdown(wait=True, cancel_futures=True)

    return run


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Terminate a pool's worker processes (Python 3.14's ``terminate_workers``)."""
    terminate = getattr(pool, "terminate_workers", None)
    if terminate is not None:
        terminate()
        return
    for process_ in list((getattr(pool, "_processes", None) or {}).values()):
        process_.terminate()


def run_batch(
    source: Path,
    out_root: Path,
    settings: Settings,
    engine: Engine,
    progress: Callable[[Iterable[Row], int], Iterable[Row]] | None = None,
) -> Summary:
    """Find the files, code them on ``engine``, and return what happened."""
    if not source.is_dir():
        raise CodecError(f"{source}: not a folder")
    if out_root.exists() and not out_root.is_dir():
        raise OutputError(f"{out_root}: exists and is not a folder")
    if settings.mode == "encode":
        check_settings(settings)  # what every file would refuse fails once, before OUT is made
    created = not out_root.exists()
    try:
        out_root.mkdir(parents=True, exist_ok=True)
        check_writable(out_root / "probe")  # a read-only OUT fails once, not per file
    except OSError as exc:
        raise OutputError(f"{out_root}: cannot write there ({exc.strerror or exc})") from None
    remove_stale_temporaries(out_root)
    jobs, ignored = find_jobs(source, out_root, settings.mode)
    jobs, clashes = split_clashes(jobs)
    start = time.perf_counter()
    rows = engine(settings, jobs)
    if progress is not None:
        rows = progress(rows, len(jobs))
    try:
        rows = list(rows)
    except BaseException:
        if created:  # an engine that failed (or was stopped) before writing: no OUT left
            with contextlib.suppress(OSError):
                out_root.rmdir()  # only if empty
        raise
    summary = Summary(sorted([*clashes, *rows], key=lambda r: r.file), ignored=ignored)
    summary.seconds = time.perf_counter() - start
    return summary


def check_settings(settings: Settings) -> None:
    """Refuse an encode's effort, quality or target bpp that every file would refuse."""
    from .pipeline import check_quality, check_target_bpp, effort_schedule

    effort_schedule(settings.effort)
    if settings.quality is not None:
        check_quality(settings.quality, settings.model)
    if settings.target_bpp is not None:
        check_target_bpp(settings.target_bpp)


def check_report(path: Path) -> None:
    """A report's suffix names its format: .csv or .json."""
    if path.suffix.lower() not in (".csv", ".json"):
        raise OutputError(f"{path}: a report is .csv or .json")


def write_report(path: Path, summary: Summary) -> None:
    """One row per file, as CSV or JSON (by the suffix), written atomically."""
    from .image_io import atomic_write

    check_report(path)
    rows = [asdict(r) for r in summary.rows]
    if path.suffix.lower() == ".json":
        atomic_write(path, lambda tmp: tmp.write_text(json.dumps(rows, indent=1)), force=True)
        return

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(Row.__dataclass_fields__))
            writer.writeheader()
            writer.writerows(rows)

    atomic_write(path, write, force=True)
