"""Curves of a training log: rate (the KL term, split y/z), distortion, active channels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def read_log(path: Path) -> tuple[list[dict], list[dict]]:
    """Step rows and validation rows; a resumed run's repeated steps keep the last."""
    steps: dict[int, dict] = {}
    vals: dict[int, dict] = {}
    for line in Path(path).read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a line cut by an interrupted write
        (vals if "val_estimate" in row else steps)[row["step"]] = row
    return [steps[k] for k in sorted(steps)], [vals[k] for k in sorted(vals)]


def _smooth(values: list[float], window: int) -> np.ndarray:
    """Trailing mean over up to ``window`` rows (no edge droop at either end)."""
    v = np.asarray(values, dtype=np.float64)
    c = np.concatenate([[0.0], np.cumsum(v)])
    n = np.minimum(np.arange(1, len(v) + 1), window)
    return (c[1:] - c[np.arange(1, len(v) + 1) - n]) / n


def plot_log(path: Path, out: list[Path], window: int = 25, fmt: str | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, vals = read_log(path)
    if not steps:
        raise ValueError(f"{path}: no training rows")
    x = [r["step"] for r in steps]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ax = axes[0]
    for key, label in [("bpp", "R total"), ("bpp_y", "R of y"), ("bpp_z", "R of z")]:
        ax.plot(x, _smooth([r[key] for r in steps], window), label=label)
    ax.set(xlabel="step", ylabel="bits per pixel (−log2 p, training batch)", title="Rate = KL term")
    ax.legend()
    ax = axes[1]
    ax.plot(x, _smooth([r["psnr"] for r in steps], window), label="training batch (all levels)")
    for q in ("1", "4", "8"):
        pts = [(v["step"], v["val_estimate"][q]["psnr"]) for v in vals if q in v["val_estimate"]]
        if pts:
            ax.plot(*zip(*pts, strict=True), "o-", label=f"validation, quality {q}")
    ax.set(xlabel="step", ylabel="PSNR (dB)", title="Distortion")
    ax.legend()
    ax = axes[2]
    for q in ("1", "4", "8"):
        pts = [
            (v["step"], v["val_estimate"][q]["active_channels"])
            for v in vals
            if "active_channels" in v["val_estimate"].get(q, {})
        ]
        if pts:
            ax.plot(*zip(*pts, strict=True), "o-", label=f"quality {q}")
    ax.set(
        xlabel="step",
        ylabel="channels of y with ≥ 0.001 bit/location",
        title="Active latent channels",
    )
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    for a in axes:
        a.grid(alpha=0.3)
    fig.tight_layout()
    for p in out:
        fig.savefig(p, dpi=110, format=fmt)
    plt.close(fig)
