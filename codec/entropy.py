"""Entropy coding of integer symbols with integer tables: numpy and constriction only.

A stream codes an array of integer ``values``, each with the index of the table it
is coded with. Values are coded table by table (all values of table 0 in raster
order, then table 1, ...), so that constriction codes each group in one vectorised
call; the decoder knows every index before it decodes, so it knows the groups too.
A value outside its table's range is coded as the table's escape symbol and then,
after all groups, by an Elias-gamma-like code (bit count, then bits).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import constriction
import numpy as np

from ..errors import BitstreamError

# Escaped values are zig-zag mapped to unsigned ints of at most this many bits.
ESCAPE_MAX_BITS = 32
# Encoders clamp values to this magnitude; decoded escapes can never exceed 2**32.
VALUE_LIMIT = 1 << 30


@dataclass(frozen=True)
class TableSet:
    """Integer probability tables: row k has ``lengths[k]`` counts (the last is the
    escape symbol), and its entry 0 stands for the value ``offsets[k]``."""

    counts: np.ndarray  # (K, L) uint32, rows sum to a power of two, zero-padded
    lengths: np.ndarray  # (K,) int32
    offsets: np.ndarray  # (K,) int32
    _models: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> TableSet:
        return cls(
            np.asarray(arrays["counts"], dtype=np.uint32),
            np.asarray(arrays["lengths"], dtype=np.int32),
            np.asarray(arrays["offsets"], dtype=np.int32),
        )

    def __len__(self) -> int:
        return len(self.lengths)

    def model(self, k: int):
        """The constriction model of table ``k`` (built once, then cached)."""
        if k not in self._models:
            row = self.counts[k, : self.lengths[k]].astype(np.float64)
            self._models[k] = constriction.stream.model.Categorical(row / row.sum(), perfect=False)
        return self._models[k]

    def bits(self, values: np.ndarray, indexes: np.ndarray) -> np.ndarray:
        """Information content -log2 p (bits) of each value under its table, escapes
        counted at the escape symbol's cost only."""
        idx = indexes.reshape(-1).astype(np.int64)
        sym = values.reshape(-1).astype(np.int64) - self.offsets[idx]
        esc = (sym < 0) | (sym >= self.lengths[idx] - 1)
        sym = np.where(esc, self.lengths[idx] - 1, sym)
        totals = self.counts[idx].sum(axis=1, dtype=np.float64)
        return -np.log2(self.counts[idx, sym] / totals).reshape(values.shape)


def _words_to_bytes(words: np.ndarray) -> bytes:
    return np.asarray(words, dtype="<u4").tobytes()


def _bytes_to_words(data: bytes) -> np.ndarray:
    if len(data) % 4:
        raise BitstreamError("corrupted bitstream: payload is not a whole number of 32-bit words")
    return np.frombuffer(data, dtype="<u4").astype(np.uint32)


def _groups(indexes: np.ndarray, num_tables: int):
    """(table index, positions) for each table used, in table order."""
    order = np.argsort(indexes, kind="stable")
    counts = np.bincount(indexes, minlength=num_tables)
    start = 0
    for k in np.flatnonzero(counts):
        yield int(k), order[start : start + counts[k]]
        start += counts[k]


def encode(values: np.ndarray, indexes: np.ndarray, tables: TableSet) -> bytes:
    """Code integer ``values`` (|v| < 2**30), each with its table index, into bytes."""
    return encode_stages([(values, indexes)], tables)


def encode_stages(stages: list[tuple[np.ndarray, np.ndarray]], tables: TableSet) -> bytes:
    """Code several (values, indexes) arrays into one stream that :class:`StageDecoder`
    reads back one stage at a time, in order: a stage's indexes may depend on the
    values of the stages before it (slices of a channel context). One stage is the
    stream of :func:`encode`."""
    chunks = []  # (symbols, model) in decoding order
    for values, indexes in stages:
        chunks.extend(_stage_chunks(values, indexes, tables))
    coder = constriction.stream.stack.AnsCoder()
    for symbols, model in reversed(chunks):  # ANS is a stack: encode in reverse
        coder.encode_reverse(symbols, model)
    return _words_to_bytes(coder.get_compressed())


def _stage_chunks(values: np.ndarray, indexes: np.ndarray, tables: TableSet) -> list:
    """One stage's chunks: its values table by table, then its escaped values."""
    values = values.reshape(-1).astype(np.int64)
    indexes = indexes.reshape(-1).astype(np.int64)
    if values.size and np.abs(values).max() >= VALUE_LIMIT:
        raise ValueError("value out of the coder's range")
    chunks = []
    escaped = []
    for k, pos in _groups(indexes, len(tables)):
        sym = values[pos] - tables.offsets[k]
        esc_symbol = tables.lengths[k] - 1
        esc = (sym < 0) | (sym >= esc_symbol)
        escaped.append(values[pos][esc])
        chunks.append((np.where(esc, esc_symbol, sym).astype(np.int32), tables.model(k)))
    chunks.extend(_escape_chunks(np.concatenate(escaped) if escaped else np.zeros(0, np.int64)))
    return chunks


class StageDecoder:
    """Reads a stream of :func:`encode_stages` one stage at a time; ``finish`` checks
    that the stream ends where the last stage does."""

    def __init__(self, data: bytes, tables: TableSet) -> None:
        words = _bytes_to_words(data)
        if words.size and words[-1] == 0:
            # An ANS stream never ends in a zero word; constriction would raise ValueError.
            raise BitstreamError("corrupted bitstream: entropy-coded data ends in a zero word")
        self.coder = constriction.stream.stack.AnsCoder(words)
        self.tables = tables

    def decode(self, indexes: np.ndarray) -> np.ndarray:
        """The next stage's values, of the same shape as ``indexes``."""
        tables, coder = self.tables, self.coder
        flat = indexes.reshape(-1).astype(np.int64)
        values = np.zeros(flat.size, dtype=np.int64)
        escaped_positions = []
        for k, pos in _groups(flat, len(tables)):
            sym = coder.decode(tables.model(k), len(pos)).astype(np.int64)
            esc = sym == tables.lengths[k] - 1
            values[pos] = sym + tables.offsets[k]
            escaped_positions.append(pos[esc])
        positions = (
            np.concatenate(escaped_positions) if escaped_positions else np.zeros(0, np.int64)
        )
        values[positions] = _decode_escapes(coder, len(positions))
        return values.reshape(indexes.shape)

    def finish(self) -> None:
        if not self.coder.is_empty():
            raise BitstreamError(
                "corrupted bitstream: entropy-coded data does not end where expected"
            )


def decode(data: bytes, indexes: np.ndarray, tables: TableSet) -> np.ndarray:
    """Inverse of ``encode``: values of the same shape as ``indexes``."""
    decoder = StageDecoder(data, tables)
    values = decoder.decode(indexes)
    decoder.finish()
    return values


# ---- escapes -----------------------------------------------------------------
_UNIFORM_BITS = 16


def _escape_chunks(values: np.ndarray) -> list:
    """Chunks coding each value as: bit count n of its zig-zag code, then its n bits
    in 16-bit pieces, lowest first."""
    chunks = []
    zz = np.where(values >= 0, 2 * values, -2 * values - 1).astype(np.int64)
    for u in zz:
        n = int(u).bit_length()
        chunks.append(
            (np.array([n], np.int32), constriction.stream.model.Uniform(ESCAPE_MAX_BITS + 1))
        )
        for shift in range(0, n, _UNIFORM_BITS):
            width = min(_UNIFORM_BITS, n - shift)
            piece = (int(u) >> shift) & ((1 << width) - 1)
            chunks.append(
                (np.array([piece], np.int32), constriction.stream.model.Uniform(1 << width))
            )
    return chunks


def _decode_escapes(coder, count: int) -> np.ndarray:
    out = np.zeros(count, dtype=np.int64)
    for i in range(count):
        n = int(coder.decode(constriction.stream.model.Uniform(ESCAPE_MAX_BITS + 1), 1)[0])
        u = 0
        for shift in range(0, n, _UNIFORM_BITS):
            width = min(_UNIFORM_BITS, n - shift)
            u |= int(coder.decode(constriction.stream.model.Uniform(1 << width), 1)[0]) << shift
        out[i] = u >> 1 if u % 2 == 0 else -((u + 1) >> 1)
    return out
