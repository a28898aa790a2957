"""Repair of table indices that a float entropy model computed differently.

A model whose table choice is floating point (wire id 1, ``hp-gain-n96m128``) picks a
y symbol's probability table from a float scale. On another CPU, or under other
convolution kernels, that scale can come out a few ulp away from the encoder's, and a
scale that sits within those ulp of a table boundary then gets the neighbouring index.
The header holds a CRC-32 of all indices, so the decoder knows that something differs;
this module finds what.

The repair rests on three facts:

- Only indices whose scale lies within ``tolerance`` (relative) of a table boundary can
  have moved, and each can only have moved to the index on the other side.
- CRC-32 is affine over GF(2): flipping byte p of an n-byte message by ``x`` changes
  the CRC by ``crc32(x, 0^(n-p-1)) ^ crc32(0^(n-p))``, whatever the other bytes are. So
  each candidate's effect on the CRC is computed once, and a combination of flips is
  tested by XOR-ing their effects, without touching the 200 k-byte index array.
- A combination is accepted only if the whole CRC then matches. A wrong combination
  passes with probability 2^-32 per try, so with ``MAX_TRIES`` = 100,000 tries the chance
  that damage is turned into a wrong picture is at most 100,000 / 2^32 = 2.3e-5 per
  file (and damage that changes z moves far more than a few boundary indices).

If no combination within the budget matches, the caller refuses the file as before.
"""

from __future__ import annotations

import itertools
import time
import zlib
from dataclasses import dataclass

import numpy as np

MAX_TRIES = 100_000  # combinations tested at most (false-match chance <= 2.3e-5)
MAX_SECONDS = 2.0  # wall-clock bound of one repair
MAX_CANDIDATES = 64  # the closest positions to a boundary that are considered
TOLERANCE = 1e-5  # relative distance of a scale to a table boundary that can flip


def index_crc(indices: np.ndarray) -> int:
    """The CRC-32 of table indices as the header stores it (uint8, C order)."""
    return zlib.crc32(np.ascontiguousarray(indices, dtype=np.uint8).tobytes())


@dataclass(frozen=True)
class Repair:
    """What a repair did: the corrected indices and the work it took."""

    indices: np.ndarray
    flipped: int  # indices changed (0: nothing to repair)
    candidates: int  # positions near a boundary that were considered
    tries: int  # combinations tested
    seconds: float


# CRC-32's register update is linear over GF(2): appending a zero byte multiplies the
# (pre-inversion) register by a fixed 32x32 bit matrix. ``_zero_bytes_operators`` holds
# that matrix for 1, 2, 4, ... zero bytes (as zlib's crc32_combine builds them), so the
# effect of a flip far from the end costs a few matrix-vector products, not a pass over
# the whole message: a repair's set-up does not grow with the image.
_POLY = 0xEDB88320  # CRC-32, reflected


def _gf2_times(matrix: list[int], vector: int) -> int:
    out, i = 0, 0
    while vector:
        if vector & 1:
            out ^= matrix[i]
        vector >>= 1
        i += 1
    return out


def _gf2_square(matrix: list[int]) -> list[int]:
    return [_gf2_times(matrix, column) for column in matrix]


def _zero_bytes_operators(count: int) -> list[list[int]]:
    """Operators for 2**j zero bytes, j = 0 .. enough for ``count`` bytes."""
    one_bit = [_POLY] + [1 << (n - 1) for n in range(1, 32)]
    byte = _gf2_square(_gf2_square(_gf2_square(one_bit)))  # 8 zero bits
    ops = [byte]
    while (1 << len(ops)) <= count:
        ops.append(_gf2_square(ops[-1]))
    return ops


def _crc_effect(position: int, delta: int, length: int, ops: list[list[int]]) -> int:
    """How the CRC-32 of a ``length``-byte message changes when byte ``position`` is
    XOR-ed with ``delta`` (independent of the message's other bytes): the linear CRC
    of the one byte ``delta``, carried through the ``length - position - 1`` bytes
    after it."""
    effect = zlib.crc32(bytes([delta])) ^ zlib.crc32(b"\0")
    tail, j = length - position - 1, 0
    while tail:
        if tail & 1:
            effect = _gf2_times(ops[j], effect)
        tail >>= 1
        j += 1
    return effect


def repair_indices(
    indices: np.ndarray,
    distance: np.ndarray,
    neighbour: np.ndarray,
    target_crc: int,
    *,
    tolerance: float = TOLERANCE,
    max_tries: int = MAX_TRIES,
    max_seconds: float = MAX_SECONDS,
) -> Repair | None:
    """Find the indices whose CRC-32 is ``target_crc`` by moving the fewest, closest
    indices near a table boundary to the neighbouring index.

    ``distance`` is each scale's relative distance to its nearest table boundary and
    ``neighbour`` the index on the other side of it (both shaped like ``indices``).
    Tries single flips, then pairs, and so on, closest first; returns None when no
    combination matches within ``max_tries`` combinations or ``max_seconds``.
    """
    start = time.perf_counter()
    flat = np.ascontiguousarray(indices, dtype=np.uint8).reshape(-1)
    if index_crc(flat) == target_crc:
        return Repair(indices, 0, 0, 0, time.perf_counter() - start)
    dist = np.asarray(distance, dtype=np.float64).reshape(-1)
    other = np.asarray(neighbour, dtype=np.int64).reshape(-1)
    near = np.flatnonzero((dist < tolerance) & (other != flat))
    near = near[np.argsort(dist[near], kind="stable")][:MAX_CANDIDATES]
    ops = _zero_bytes_operators(flat.size)
    effects = [_crc_effect(int(p), int(flat[p]) ^ int(other[p]), flat.size, ops) for p in near]
    wanted = index_crc(flat) ^ target_crc
    tries = 0
    for size in range(1, len(near) + 1):
        for combo in itertools.combinations(range(len(near)), size):
            tries += 1
            effect = 0
            for i in combo:
                effect ^= effects[i]
            if effect == wanted:
                fixed = flat.copy()
                fixed[near[list(combo)]] = other[near[list(combo)]]
                if index_crc(fixed) != target_crc:  # cannot happen; checked all the same
                    continue
                return Repair(
                    fixed.reshape(indices.shape),
                    size,
                    len(near),
                    tries,
                    time.perf_counter() - start,
                )
            if tries >= max_tries or (
                tries % 1024 == 0 and time.perf_counter() - start > max_seconds
            ):
                return None
    return None
