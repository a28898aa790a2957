"""What ``rdcodec bench`` writes besides the per-codec JSON: the BD-rate tables as
markdown, rows as CSV, the RD plot, and strict JSON (no inf/NaN)."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence

from .bdrate import ANCHORS, BdEntry, BdRate, Curve, classical_curves, find_bd, rdcodec_curves


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
    ours = rdcodec_curves(curves)
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
    if ours and classical_curves(curves):
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
def json_safe(value):
    """inf/NaN -> None (strict JSON has no such numbers)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
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
