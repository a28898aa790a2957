"""The Gaussian model of the y latents, in one place (CompressAI's
``GaussianConditional`` is the anchor): the scale ladder of the probability tables,
the two index functions that pick a table from a predicted scale (float, for the first
release; exact integer thresholds, for every later one), how close a float scale is
to a table boundary (for the repair of indices computed on other kernels), the
tables themselves and the likelihood of the rate estimate.

The torch-free side of coding (``codec/entropy.TableSet``) only ever sees the tables'
integer counts and the indices computed here.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

# Scales of the Gaussian tables the y symbols are coded with (CompressAI's default
# ladder); the coder picks a table by integer index into this list. SCALE_MIN is also
# the lower bound of a scale in the likelihood.
SCALE_MIN, SCALE_MAX, SCALE_LEVELS = 0.11, 256.0, 64
LOG_SCALE_STEP = (math.log(SCALE_MAX) - math.log(SCALE_MIN)) / (SCALE_LEVELS - 1)
LIKELIHOOD_BOUND = 1e-9
# Tail mass left outside a table's range: P(|value| > bound) for the y Gaussians.
TAIL_MASS = 1e-9
# The exact models give means and scales as integers on the 2**-ACT_BITS grid (the
# grid of their hidden activations too, ``models/exact.py``); the table thresholds are
# integers on it.
ACT_BITS = 12


def scale_table() -> list[float]:
    """Log-spaced scales of the y probability tables."""
    return [math.exp(math.log(SCALE_MIN) + i * LOG_SCALE_STEP) for i in range(SCALE_LEVELS)]


# ---- index functions ---------------------------------------------------------------
def _log_position(scales: Tensor) -> np.ndarray:
    """Each scale's position on the ladder in table steps (float64, a fresh array)."""
    s = scales.double().numpy().copy()
    np.clip(s, SCALE_MIN, SCALE_MAX, out=s)
    np.log(s, out=s)
    s -= math.log(SCALE_MIN)
    s /= LOG_SCALE_STEP
    return s


def scale_indices(scales: Tensor) -> np.ndarray:
    """Table index of each float scale: the nearest table scale in the log domain (the
    float model's index function; exact models use integer thresholds)."""
    s = _log_position(scales)
    np.rint(s, out=s)
    np.clip(s, 0, SCALE_LEVELS - 1, out=s)
    return s.astype(np.uint8)


def boundary_margins(scales: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """For the float index function: each scale's relative distance to the nearest
    table boundary, and the index on the other side of that boundary. A scale computed
    a few ulp differently on another CPU can only have crossed that boundary."""
    u = _log_position(scales)
    below = np.floor(u - 0.5) + 0.5  # the boundaries (half steps) around u
    above = below + 1
    to_below, to_above = u - below, above - u
    nearer_below = to_below < to_above
    step = np.where(nearer_below, to_below, to_above)
    # The neighbour: on the far side of the nearer boundary from u's own index.
    neighbour = np.where(nearer_below, below - 0.5, above + 0.5)
    distance = step * LOG_SCALE_STEP  # |log s - log boundary| ~ relative distance
    outside = (neighbour < 0) | (neighbour > SCALE_LEVELS - 1)
    distance[outside] = np.inf  # clipped at the ladder's ends: no boundary there
    return distance, np.clip(neighbour, 0, SCALE_LEVELS - 1).astype(np.uint8)


def index_thresholds(scales: Sequence[float] | None = None) -> np.ndarray:
    """Integer thresholds on the exact models' output grid (2**-ACT_BITS): a scale's
    table index is the number of thresholds at or below it (nearest table scale in the
    log domain, as the float path picks it). Computed once, at export, and stored with
    the weights (libm's exp may differ in the last bit between machines; stored
    integers do not)."""
    logs = [math.log(s) for s in (scale_table() if scales is None else scales)]
    bounds = [math.exp((a + b) / 2) for a, b in zip(logs, logs[1:], strict=False)]
    return np.array([math.ceil(b * (1 << ACT_BITS)) for b in bounds], dtype=np.int64)


@functools.lru_cache(maxsize=1)
def default_thresholds() -> Tensor:
    """``index_thresholds()`` as float64 integers, for a live (not shipped) network."""
    return torch.from_numpy(index_thresholds().astype(np.float64))


def table_indices(thresholds: Tensor, scales_units: Tensor) -> np.ndarray:
    """Table index (uint8) of each scale in units of 2**-ACT_BITS: the number of
    thresholds (float64 integers, see :func:`index_thresholds`) at or below it."""
    found = torch.searchsorted(thresholds, scales_units.contiguous(), right=True, out_int32=True)
    return found.numpy().astype(np.uint8)


# ---- likelihood and tables ---------------------------------------------------------
def likelihood(values: Tensor, scales: Tensor, means: Tensor) -> Tensor:
    """P(value) of quantised values under N(mean, scale) integrated over +-1/2."""
    scales = torch.clamp(scales, min=SCALE_MIN)
    v = torch.abs(values - means)
    c = -(2**-0.5)
    upper = 0.5 * torch.erfc(c * (0.5 - v) / scales)
    lower = 0.5 * torch.erfc(c * (-0.5 - v) / scales)
    return torch.clamp(upper - lower, min=LIKELIHOOD_BOUND)


def tables() -> dict[str, np.ndarray]:
    """One integer table per scale of ``scale_table()``: symbols round(y - mu) in
    [-T, T] plus the escape symbol, counts summing to 2**TABLE_PRECISION."""
    from .tables import pack_tables, quantize_pmf

    multiplier = -_normal_ppf(TAIL_MASS / 2)
    rows, offsets = [], []
    for sigma in scale_table():
        bound = math.ceil(sigma * multiplier)
        s = np.arange(-bound, bound + 1, dtype=np.float64)
        pmf = _normal_cdf((s + 0.5) / sigma) - _normal_cdf((s - 0.5) / sigma)
        tail = max(1.0 - pmf.sum(), 0.0)
        rows.append(quantize_pmf(np.append(pmf, tail)))
        offsets.append(-bound)
    return pack_tables(rows, offsets)


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
