"""The rate-distortion plane (Alemi et al. 2017, "Fixing a Broken ELBO").

Each quality level is trained on L = R + lmbda * D with D the MSE on 8-bit pixels
(lmbda * 255^2 * MSE on [0, 1] pixels). On the (D, R) plane, the level's iso-Lagrangian
lines R = L - lmbda * D have slope -lmbda: a model at the optimum for its lmbda sits
where such a line touches the achievable frontier from below. The levels together
trace the frontier the one set of weights reaches; classical codecs are plotted for
reference.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import OutputError
from ...models.registry import CodecModel
from .. import baselines
from . import sweep


@dataclass(frozen=True)
class PlanePoint:
    label: str
    rate: float  # mean bits per pixel of the real files
    distortion: float  # mean MSE on 8-bit pixels
    lmbda: float | None = None  # the level's training lambda (per 8-bit MSE)


def rdcodec_plane(model: CodecModel, images: list[np.ndarray]) -> list[PlanePoint]:
    """One point per trained quality level, averaged over images."""
    levels = range(1, model.network.config.levels + 1)
    s = sweep.rdcodec_sweep(model, images, tuple(levels))
    return [
        PlanePoint(
            f"q{level}",
            float(s.bpp[i].mean()),
            float(s.mse[i].mean()),
            model.network.config.lambdas[i],
        )
        for i, level in enumerate(levels)
    ]


def classical_plane(name: str, images: list[np.ndarray]) -> list[PlanePoint]:
    codec = baselines.CLASSICAL[name]
    if not codec.available():
        return []
    s = sweep.sweep(codec.encode, codec.decode, images, codec.default_qualities)
    return [
        PlanePoint(f"{codec.label} {q:g}", float(s.bpp[i].mean()), float(s.mse[i].mean()))
        for i, q in enumerate(s.qualities)
    ]


def plot_format(path: Path) -> str:
    """The format ``plot_plane`` writes ``path`` in: its extension (PNG without one), or
    an ``OutputError`` where matplotlib writes no such format (checked before the coding)."""
    from matplotlib.backend_bases import FigureCanvasBase

    fmt = path.suffix.lstrip(".").lower() or "png"
    formats = FigureCanvasBase.get_supported_filetypes()
    if fmt not in formats:
        known = ", ".join(f".{f}" for f in sorted(formats))
        raise OutputError(f"{path}: cannot plot to a .{fmt} file (use one of {known})")
    return fmt


def plot_plane(
    ours: list[PlanePoint],
    references: dict[str, list[PlanePoint]],
    paths: list[Path],
    fmt: str | None = None,
) -> None:
    """D on the x axis, R on the y axis, iso-Lagrangian lines through our points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 6))
    d_max = max(p.distortion for p in ours) * 1.6
    r_max = max(p.rate for p in ours) * 1.3
    d = np.linspace(0, d_max, 200)
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(ours)))
    for p, color in zip(ours, colors, strict=True):
        lagrangian = (
            p.rate + p.lmbda * p.distortion
        )  # lmbda * 255^2 * MSE[0,1] = lmbda * MSE[8-bit]
        ax.plot(d, lagrangian - p.lmbda * d, color=color, lw=0.8, ls="--", alpha=0.7)
    ax.plot(
        [p.distortion for p in ours],
        [p.rate for p in ours],
        "o-",
        color="black",
        label="rdcodec levels",
    )
    for p, color in zip(ours, colors, strict=True):
        ax.annotate(
            f"{p.label} (λ={p.lmbda:g})",
            (p.distortion, p.rate),
            textcoords="offset points",
            xytext=(6, 4),
            fontsize=8,
            color=color,
        )
    markers = itertools.cycle("s^vDpo")
    for name, pts in references.items():
        if pts:
            ax.plot(
                [p.distortion for p in pts],
                [p.rate for p in pts],
                next(markers) + ":",
                label=name,
                alpha=0.8,
            )
    ax.set_xlim(0, d_max)
    ax.set_ylim(0, r_max)
    ax.set_xlabel("distortion D: MSE per pixel and channel (8-bit scale)")
    ax.set_ylabel("rate R: bits per pixel (real files)")
    ax.set_title("Rate-distortion plane; dashed: iso-lines of R + λ·D for each level's λ")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    for path in paths:
        fig.savefig(path, dpi=120, format=fmt)
    plt.close(fig)
