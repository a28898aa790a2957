"""rdcodec's own checks in ``rdcodec bench``: do bpp and PSNR rise with the quality
level on every image (``MonotonicCheck``), and how close ``--target-bpp`` lands
(``TargetSummary``)."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ...errors import CodecError
from ..metrics import bpp as bits_per_pixel
from .measure import BenchImage, Measurement, cache_path, codec_for, read_pixels, write_cached


@dataclass(frozen=True)
class MonotonicCheck:
    """Whether bpp and PSNR rise with the quality level on every image."""

    images: int
    monotonic: int
    failures: tuple[str, ...]  # "image: what went down between which levels"
    label: str = "rdcodec"  # the model's curve label
    levels: int = 2  # quality levels measured: under two, there is nothing to check

    def summary(self) -> str:
        """One sentence: on how many images bpp and PSNR rise with the level."""
        if self.levels < 2:
            return "one quality level measured: nothing to check (give two or more)"
        return f"bpp and PSNR rise with the level on {self.monotonic} of {self.images} images"

    def markdown(self) -> str:
        lines = [f"## {self.label}: quality levels", "", f"{self.summary()}."]
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
    levels = len({m.quality for rows in by_image.values() for m in rows})
    return MonotonicCheck(len(by_image), len(by_image) - len(bad), tuple(failures), label, levels)


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
class TargetTask:
    """What a worker needs to run ``--target-bpp`` on one image (picklable); each row
    is cached under ``cache_dir`` as it is measured (none without one)."""

    image: BenchImage
    targets: tuple[float, ...]
    codec: str = "rdcodec"  # an rdcodec --codecs name
    cache_dir: Path | None = None
    settings_id: str = ""  # the codec's settings_id()

    def cache_file(self, target: float) -> Path:
        return cache_path(
            self.cache_dir, self.image.sha256, self.codec, self.settings_id, target, kind="t"
        )


def cached_target(task: TargetTask, target: float) -> TargetRow | None:
    """The cached ``--target-bpp`` row of the task's image at ``target`` (named as the
    image is now); None when there is none or it cannot be read."""
    try:
        data = json.loads(task.cache_file(target).read_text())
        row = TargetRow(**{k: data[k] for k in TargetRow.__dataclass_fields__})
    except (OSError, ValueError, KeyError, TypeError):
        return None  # missing or damaged: measure again
    return TargetRow(**{**asdict(row), "image": task.image.path.name})


def measure_targets(task: TargetTask) -> list[TargetRow]:
    """``--target-bpp`` at every target of a task, with the rdcodec model it names."""
    from .. import pipeline

    codec = codec_for(task.codec)
    model = codec.loaded_model()
    array = read_pixels(task.image.path)
    pixels = task.image.width * task.image.height
    top = pipeline.quality_range(model)[1]
    rows = []
    for target in task.targets:
        start = time.perf_counter()
        try:
            quality, data = pipeline.encode_at_bpp(array, target, model, codec.effort)
        except CodecError:  # below the lowest quality's rate
            row = TargetRow(task.image.path.name, target, None, None, 0.0, top)
        else:
            seconds = time.perf_counter() - start
            size = bits_per_pixel(len(data), pixels)
            row = TargetRow(task.image.path.name, target, quality, size, seconds, top)
        if task.cache_dir is not None:
            write_cached(task.cache_file(target), asdict(row))
        rows.append(row)
    return rows


@dataclass(frozen=True)
class TargetSummary:
    """How close ``--target-bpp`` lands, per target and over all feasible rows."""

    rows: tuple[TargetRow, ...]
    model: str = ""  # the rdcodec model's name
    effort: int = 0  # the encode effort the files were made at

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

    def none_reached(self) -> str:
        """What became of the targets where none was reached (no mean to give)."""
        return (
            f"no target reached: {self.infeasible()} below the lowest quality's rate, "
            f"{self.capped()} above the highest quality's rate"
        )

    def markdown(self) -> str:
        effort = [f"effort {self.effort}"] if self.effort else []
        at = ", ".join(([self.model] if self.model else []) + effort)
        lines = [
            "## rdcodec --target-bpp" + (f": {at}" if at else ""),
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
        if not self.feasible():
            lines += ["", f"Over all rows: {self.none_reached()}."]
            return "\n".join(lines) + "\n"
        lines += [
            "",
            f"Over all reached rows: mean undershoot {self.undershoot_percent():.2f}%, "
            f"{self.over_target()} above the target; {self.infeasible()} targets below the "
            f"lowest quality's rate, {self.capped()} above the highest quality's rate "
            "(left out of the means).",
        ]
        return "\n".join(lines) + "\n"
