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
coding code) and the quality, and so is every ``--target-bpp`` row, so an interrupted
run picks up where it stopped.

The parts, lowest first: ``names`` (what a codec name says), ``codecs`` (codec objects,
``--codecs`` and ``--qualities``), ``bdrate`` (curves, BD-rates), ``report`` (markdown,
CSV, plot, strict JSON), ``measure`` (images, points, cache, worker processes, the
timing rules), ``checks`` (rdcodec's monotonic levels and ``--target-bpp``),
``compare`` (the ``--html`` page); this module runs them and writes the outputs. None
of them imports this module.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from ... import atomic
from ...errors import CodecError
from .. import baselines
from .bdrate import BdEntry, Curve, bd_table, load_curve
from .checks import (
    MonotonicCheck,
    TargetRow,
    TargetSummary,
    TargetTask,
    cached_target,
    measure_targets,
    monotonic_check,
)
from .codecs import DEFAULT_CODECS, RdcodecCodec, make_codec
from .compare import bench_page
from .measure import (
    Measurement,
    MeasureTask,
    average_curve,
    cache_path,
    find_images,
    read_cached,
    run_tasks,
)
from .names import cache_stem, file_stem, is_rdcodec
from .report import bd_markdown, json_safe, rd_figure, rows_csv

# The outputs a run wrote, one file name a line, in the output folder: the next run
# removes those it does not write again, so the folder describes one run.
OUTPUTS_LIST = "bench_outputs.txt"
_OUTPUT_SUFFIXES = (".json", ".csv", ".png", ".svg", ".md", ".html")

# Slowest codecs first, so that parallel workers finish together (rdcodec is slowest).
_COST_ORDER = ("rdcodec", *sorted(baselines.CLASSICAL, key=lambda n: -baselines.CLASSICAL[n].cost))


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
    removed: tuple[Path, ...] = ()  # an earlier run's outputs that this run did not write


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
    first rdcodec model listed. The outputs of an earlier run into ``out`` that this one
    does not write again (listed in ``OUTPUTS_LIST``) are removed once the new ones are
    written; the cache stays.
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
                path = cache_path(cache_dir, image.sha256, codec.name, settings, q)
                m = read_cached(path, image, codec.name)
                if m is None:
                    missing.append(q)
                else:
                    measured[codec.name].append(m)
                    cached += 1
            if missing:
                tasks.append(MeasureTask(image, codec.name, tuple(missing), cache_dir, settings))
    tasks.sort(key=lambda t: _COST_ORDER.index(cache_stem(t.codec)))
    new = run_tasks(tasks, workers, progress)
    for m in new:
        measured[m.codec].append(m)

    # Everything is measured before any output is written: an interrupted run leaves
    # the previous outputs (and the cache) as they were.
    target_summary = None
    if targets:
        # Cached per image and target like the points: at a high effort a row costs
        # minutes, and an interrupted run keeps the rows it finished.
        found, tasks = [], []
        settings = ours[0].settings_id()
        for image in images:
            task = TargetTask(image, tuple(targets), ours[0].name, cache_dir, settings)
            rows = {t: cached_target(task, t) for t in targets}
            found += [row for row in rows.values() if row is not None]
            missing = tuple(t for t, row in rows.items() if row is None)
            if missing:
                tasks.append(replace(task, targets=missing))
        found += run_tasks(tasks, workers, progress, measure_targets, lambda t: len(t.targets))
        rows = tuple(sorted(found, key=lambda r: (r.image, r.target)))
        target_summary = TargetSummary(rows, ours[0].model_name, ours[0].effort)

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
        texts[outputs[curve.name]] = json.dumps(json_safe(curve.to_compressai()), indent=2) + "\n"
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
        outputs["HTML report"] = out / "report.html"
        points = points_of(ours[0]) if ours else ()
        middle = points[len(points) // 2] if points else None
        names = [c.name for c in selected if not is_rdcodec(c.name)]
        paths = [image.path for image in images]
        page = bench_page(
            Path(folder).resolve().name, paths, names, middle, figure, text, progress,
            ours[0].effort if ours else 0,
        )  # fmt: skip
        texts[outputs["HTML report"]] = page
    listed = out / OUTPUTS_LIST
    earlier = _listed_outputs(listed)
    texts[listed] = "".join(f"{path.name}\n" for path in outputs.values())
    writers = {path: (lambda tmp, t=t: tmp.write_text(t)) for path, t in texts.items()}
    for path in (outputs["plot (PNG)"], outputs["plot (SVG)"]):
        writers[path] = lambda tmp, fmt=path.suffix[1:]: figure.savefig(tmp, dpi=150, format=fmt)
    atomic.atomic_write_all(writers)
    # Only after the new outputs are whole: an interrupted run keeps the old ones.
    written = {p.name for p in outputs.values()}
    inputs = {Path(p).resolve() for p in compare}  # a --compare file is never removed
    removed = []
    for path in (out / name for name in earlier):
        if path.name in written or path.resolve() in inputs or not path.is_file():
            continue
        try:
            path.unlink()
        except OSError as exc:
            warn(f"{path}: cannot remove this output of an earlier run ({exc.strerror})")
        else:
            removed.append(path)

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
        removed=tuple(removed),
    )


def _listed_outputs(listed: Path) -> list[str]:
    """The file names an earlier run listed in ``listed``; none where it wrote no list.
    Only plain names of the kinds a run writes: never a path elsewhere, nor the cache."""
    try:
        names = listed.read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    return [
        name
        for name in names
        if name == Path(name).name and name.endswith(_OUTPUT_SUFFIXES) and name != listed.name
    ]


def _check_html_model(codec: RdcodecCodec) -> None:
    """``--html``'s per-image comparisons code with the default scale
    (``compare.bench_page`` takes no model), so the first rdcodec listed must be it."""
    default = RdcodecCodec().model_name
    if codec.model_name != default:
        raise CodecError(
            f"--html compares the default model ({default}) image by image: list rdcodec "
            f"first among the rdcodec models in --codecs (not {codec.name})"
        )
