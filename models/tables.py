"""Integer probability tables, computed once at export and stored with the weights.

Coding from tables fixed at export (instead of CDFs recomputed from floating-point
network outputs) is what makes a bitstream decodable on another machine: the coder
only ever sees integers picked by integer indices. Each table is a row of counts that
sums to ``2**TABLE_PRECISION``; its last entry is the escape symbol, which stands for
any value outside the row's range (the value itself is then coded separately).

The y tables (one per scale of the Gaussian ladder) are built in ``models/gaussian.py``;
the z tables (one per channel of the learned density) here.
"""

from __future__ import annotations

import numpy as np
import torch

TABLE_PRECISION = 20


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


def pack_tables(rows: list[np.ndarray], offsets: list[int]) -> dict[str, np.ndarray]:
    length = max(len(r) for r in rows)
    counts = np.zeros((len(rows), length), dtype=np.uint32)
    for i, r in enumerate(rows):
        counts[i, : len(r)] = r
    return {
        "counts": counts,
        "lengths": np.array([len(r) for r in rows], dtype=np.int32),
        "offsets": np.array(offsets, dtype=np.int32),
    }


@torch.no_grad()
def bottleneck_tables(model: torch.nn.Module) -> dict[str, np.ndarray]:
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
    return pack_tables(rows, offsets)


def _double_copy(module: torch.nn.Module) -> torch.nn.Module:
    import copy

    return copy.deepcopy(module).double()
