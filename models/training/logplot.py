"""Curves of a training log: rate (the KL term, split y/z), distortion, active channels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def read_log(path: Path) -> tuple[list[dict], list[dict]]:
    """Step rows and validation rows; a resumed run's repeated steps keep the last.
    A file that is not a training log (the run's val.jsonl, other JSON, binary data)
    is a ``ValueError`` naming it and, where it helps, the line."""
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not a training log (binary data at byte {exc.start})") from None
    steps: dict[int, dict] = {}
    vals: dict[int, dict] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a line cut by an interrupted write
        problem = _row_problem(row)
        if problem:
            raise ValueError(f"{path}: not a training log (line {number}: {problem})")
        (vals if "val_estimate" in row else steps)[row["step"]] = row
    if not steps:
        raise ValueError(f"{path}: not a training log (no training rows)")
    return [steps[k] for k in sorted(steps)], [vals[k] for k in sorted(vals)]


_JSON_NAMES = {
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _row_problem(row) -> str | None:
    """Why a parsed line is not a row of ``train``'s log.jsonl (None when it is one):
    each value the plot reads is checked, so a foreign file fails here, not mid-plot."""
    if not isinstance(row, dict):
        return f"{_JSON_NAMES.get(type(row), 'a JSON value')}, not an object"
    if "bd_rate_vs_jpeg" in row:
        return "a validation row of a run's val.jsonl; plot-log draws the run's log.jsonl"
    step = row.get("step")
    if not isinstance(step, int) or isinstance(step, bool):
        return "no step" if step is None else f"step {json.dumps(step)} is not a whole number"
    if "val_estimate" in row:
        levels = row["val_estimate"]
        if not isinstance(levels, dict) or not all(
            isinstance(v, dict)
            and _is_number(v.get("psnr"))
            and _is_number(v.get("active_channels", 0))
            for v in levels.values()
        ):
            return "val_estimate is not quality levels with a PSNR each"
        return None
    for key in ("bpp", "psnr"):
        if not _is_number(row.get(key)):
            return f"no number '{key}'"
    for key in ("bpp_y", "bpp_z"):  # the rate split (absent from older logs)
        if key in row and not _is_number(row[key]):
            return f"'{key}' is not a number"
    return None


def _smooth(values: list[float], window: int) -> np.ndarray:
    """Trailing mean over up to ``window`` rows (no edge droop at either end)."""
    v = np.asarray(values, dtype=np.float64)
    c = np.concatenate([[0.0], np.cumsum(v)])
    n = np.minimum(np.arange(1, len(v) + 1), window)
    return (c[1:] - c[np.arange(1, len(v) + 1) - n]) / n


def plot_log(path: Path, out: list[Path], window: int = 25, fmt: str | None = None) -> None:
    """Plot the training log at ``path`` (``read_log``) to each of ``out``."""
    steps, vals = read_log(path)
    draw(steps, vals, out, window, fmt)


def draw(
    steps: list[dict], vals: list[dict], out: list[Path], window: int = 25, fmt: str | None = None
) -> None:
    """The plot of ``read_log``'s rows, saved to each of ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [r["step"] for r in steps]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ax = axes[0]
    for key, label in [("bpp", "R total"), ("bpp_y", "R of y"), ("bpp_z", "R of z")]:
        if all(key in r for r in steps):  # older logs have no y/z split
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
