"""RD curves and Bjøntegaard delta rates (BD-rate) between them.

A curve is one point per quality point, each the mean over images (as CompressAI
does; ``measure.average_curve``), or a published curve in CompressAI's JSON schema.
Light to import: numpy only (``bjontegaard`` is imported when a BD-rate is computed),
so that training's validation can use ``bd_rate`` without the benchmark's codecs.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import CodecError
from ..metrics import ms_ssim_db
from .names import is_rdcodec

ANCHORS = ("jpeg", "avif")


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


def rdcodec_curves(curves: Iterable[Curve]) -> list[Curve]:
    """The measured rdcodec models' curves, in order."""
    return [c for c in curves if is_rdcodec(c.name) and not c.published]


def classical_curves(curves: Iterable[Curve]) -> list[Curve]:
    """The measured classical codecs' curves, in order."""
    return [c for c in curves if not is_rdcodec(c.name) and not c.published]


def bd_table(curves: list[Curve]) -> list[BdEntry]:
    """BD-rates of every curve against each anchor present (JPEG, AVIF), both metrics;
    with two or more rdcodec models, also of each against the first one; and the first
    rdcodec model against every other classical codec (head to head)."""
    entries = []
    anchors = [c for c in curves if c.name in ANCHORS and not c.published]
    pairs = [(anchor, test) for anchor in anchors for test in curves if test is not anchor]
    ours = rdcodec_curves(curves)
    pairs += [(ours[0], test) for test in ours[1:]]
    if ours:
        others = [c for c in classical_curves(curves) if c.name not in ANCHORS]
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
