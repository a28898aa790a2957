"""Integer probability tables, computed once at export and stored with the weights.

Coding from tables fixed at export (instead of CDFs recomputed from floating-point
network outputs) is what makes a bitstream decodable on another machine: the coder
only ever sees integers picked by integer indices. Each table is a row of counts that
sums to ``2**TABLE_PRECISION``; its last entry is the escape symbol, which stands for
any value outside the row's range (the value itself is then coded separately).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .network import scale_table
from .trainable import GainedHyperprior

TABLE_PRECISION = 20
# Tail mass left outside a table's range: P(|value| > bound) for the y Gaussians.
TAIL_MASS = 1e-9


def quantize_pmf(pmf: np.ndarray, precision: int = TABLE_PRECISION) -> np.ndarray:
    """Counts >= 1 summing to exactly 2**precision, close to ``pmf`` (float64)."""
    total = 1 << precision
    pmf = np.maximum(np.asarray(pmf, dtype=np.float64), 0)
    pmf = pmf / pmf.sum()
    n = len(pmf)
    if n > total // 2:
        raise ValueError(f"table of {n} symbols does not fit {precision}-bit precision")
    # One count each guarantees every symbol stays codable; the rest is shared in
    # proportion to the probabilities, remainders going to the largest fractions
    # (a remainder dumped on one symbol costs up to 0.08 bit at scale 256).
    share = pmf * (total - n)
    counts = 1 + np.floor(share).astype(np.int64)
    left = total - counts.sum()
    if left:
        order = np.argsort(-(share - np.floor(share)), kind="stable")
        counts[order[:left]] += 1
    assert counts.min() >= 1 and counts.sum() == total
    return counts.astype(np.uint32)


def _pack(rows: list[np.ndarray], offsets: list[int]) -> dict[str, np.ndarray]:
    length = max(len(r) for r in rows)
    counts = np.zeros((len(rows), length), dtype=np.uint32)
    for i, r in enumerate(rows):
        counts[i, : len(r)] = r
    return {
        "counts": counts,
        "lengths": np.array([len(r) for r in rows], dtype=np.int32),
        "offsets": np.array(offsets, dtype=np.int32),
    }


def gaussian_tables() -> dict[str, np.ndarray]:
    """One table per scale of ``scale_table()``: symbols round(y - mu) in [-T, T] + escape."""
    multiplier = -_normal_ppf(TAIL_MASS / 2)
    rows, offsets = [], []
    for sigma in scale_table():
        bound = math.ceil(sigma * multiplier)
        s = np.arange(-bound, bound + 1, dtype=np.float64)
        pmf = _normal_cdf((s + 0.5) / sigma) - _normal_cdf((s - 0.5) / sigma)
        tail = max(1.0 - pmf.sum(), 0.0)
        rows.append(quantize_pmf(np.append(pmf, tail)))
        offsets.append(-bound)
    return _pack(rows, offsets)


@torch.no_grad()
def bottleneck_tables(model: GainedHyperprior) -> dict[str, np.ndarray]:
    """One table per z channel, over round(z - median) within the learned tail quantiles."""
    eb = model.entropy_bottleneck
    quantiles = eb.quantiles[:, 0, :].double()
    medians = quantiles[:, 1]
    lo = -torch.clamp(torch.ceil(medians - quantiles[:, 0]), min=0).long()
    hi = torch.clamp(torch.ceil(quantiles[:, 2] - medians), min=0).long()
    length = int((hi - lo).max()) + 1
    samples = torch.arange(length, dtype=torch.float64)[None, :] + (lo + medians)[:, None]
    pmf, _, _ = _double_copy(eb)._likelihood(samples[:, None, :], stop_gradient=True)
    pmf = pmf[:, 0].clamp(min=0).numpy()
    rows, offsets = [], []
    for c in range(eb.channels):
        n = int(hi[c] - lo[c]) + 1
        tail = max(1.0 - pmf[c, :n].sum(), 0.0)
        rows.append(quantize_pmf(np.append(pmf[c, :n], tail)))
        offsets.append(int(lo[c]))
    return _pack(rows, offsets)


def _double_copy(module: torch.nn.Module) -> torch.nn.Module:
    import copy

    return copy.deepcopy(module).double()


def _normal_cdf(x: np.ndarray) -> np.ndarray:
    return 0.5 * np.array([math.erfc(-v / math.sqrt(2)) for v in np.atleast_1d(x)])


def _normal_ppf(p: float) -> float:
    # Bisection on the CDF: exact enough for a table bound and free of scipy.
    lo, hi = -40.0, 40.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if 0.5 * math.erfc(-mid / math.sqrt(2)) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2
