"""Damaged and hand-made bitstreams: ``decode_array`` either returns an image of the
shape the header declares or raises a ``CodecError``, never anything else, and
never takes long.

Most mutations recompute the file's CRC-32, so that they get past the container to
the entropy decoder and the network; some also recompute the header's index CRC
(by running the decoder's own first steps) so that a forged z payload reaches the
y decoder and the synthesis. ``tests/fuzz_long.py`` runs the same mutations at
random for as long as you like.
"""

from __future__ import annotations

import re
import struct
import time
import zlib
from unittest import mock

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rdcodec.codec import container, entropy, pipeline, repair
from rdcodec.errors import BitstreamError, CodecError
from rdcodec.models import gaussian

# One decode of these tiny files takes milliseconds; 5 s means a hang or a blow-up.
# Counted in CPU seconds of this process, so a loaded machine does not fail it.
MAX_DECODE_SECONDS = 5.0

FIELDS = container.FIELDS
CRC = container.CRC_BYTES

fuzz = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,  # the same examples on every run: CI stays stable
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# ---- files and helpers --------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    # Thousands of decodes of tiny tensors: threads only add overhead (6x here).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def seeds(tiny_model, astronaut) -> list[bytes]:
    """Valid files to mutate: a photo crop and noise (a longer y payload), greyscale too."""
    noise = np.random.default_rng(0).integers(0, 256, size=(40, 56, 3), dtype=np.uint8)
    return [
        pipeline.encode(astronaut[30:70, 20:76], 4, tiny_model),
        pipeline.encode(noise, 8, tiny_model),
        pipeline.encode(noise[:17, :9], 1.5, tiny_model, grayscale=True),
    ]


def with_crc(body: bytes) -> bytes:
    """``body`` (a file without its last 4 bytes) completed with a matching CRC-32."""
    return bytes(body) + struct.pack(">I", zlib.crc32(bytes(body)))


def set_field(data: bytes, name: str, value: int | bytes) -> bytes:
    """``data`` with one header field replaced; the CRC is recomputed."""
    offset, size = FIELDS[name]
    raw = value if isinstance(value, bytes) else value.to_bytes(size, "big")
    assert len(raw) == size
    body = bytearray(data[:-CRC])
    body[offset : offset + size] = raw
    return with_crc(body)


def payloads(data: bytes) -> tuple[bytes, bytes]:
    _, z, y = container.unpack(data)
    return z, y


def rebuild(data: bytes, z: bytes, y: bytes, forge_index_crc: bool = False, model=None) -> bytes:
    """``data``'s header with new payloads, consistent lengths and a valid CRC; with
    ``forge_index_crc`` also the index CRC the decoder will compute from ``z``."""
    head = bytearray(data[: container.HEADER_BYTES])
    head[29:33] = len(z).to_bytes(4, "big")
    head[33:37] = len(y).to_bytes(4, "big")
    out = with_crc(bytes(head) + z + y)
    if forge_index_crc:
        crc = decoder_index_crc(out, model)
        if crc is not None:
            out = set_field(out, "index_crc", crc)
    return out


def z_shape(header: container.Header, model) -> tuple[int, int, int, int]:
    net = model.network
    rows, cols = -(-header.height // net.multiple), -(-header.width // net.multiple)
    return (1, net.config.N, rows, cols)


@torch.no_grad()
def decoder_y_indices(data: bytes, model) -> np.ndarray | None:
    """The y table indices ``decode_array`` derives from this file's z payload (None
    where z does not decode). Uses pipeline internals on purpose: this is what
    someone forging a file would do."""
    try:
        header, z, _ = container.unpack(data)
        shape = z_shape(header, model)
        z_tables = entropy.TableSet.from_arrays(model.z_tables)
        z_sym = entropy.decode(z, pipeline._channel_indices(shape), z_tables)
    except Exception:  # noqa: BLE001 - decode_array will meet the same and be judged
        return None
    net = model.network
    z_hat = net.z_hat(z_sym)
    _, scales = net.entropy_parameters(z_hat)
    return gaussian.scale_indices(scales)


def decoder_index_crc(data: bytes, model) -> int | None:
    """The index CRC ``decode_array`` will compute, as a hand-made file can carry: what
    the decoder's own check computes (with a channel context the indices depend on the
    y decoded before them, so only the decoder can say), None where it never gets there."""
    try:
        declared = pipeline.read_header(data).index_crc
    except CodecError:
        return None
    seen: list[int] = []
    real = repair.index_crc

    def spy(indices: np.ndarray) -> int:
        seen.append(real(indices))
        return declared  # let the decode go on as a forged file would

    with mock.patch.object(repair, "index_crc", spy):
        try:
            pipeline.decode_latents(data, model)
        except Exception:  # noqa: BLE001 - decode_array will meet the same and be judged
            pass
    if seen:
        return seen[0]
    if model.network.config.slices > 1:
        return None
    # One slice: the indices follow from z alone, even where the decoder stops before
    # them (a declared size above its limit).
    indexes = decoder_y_indices(data, model)
    return None if indexes is None else real(indexes)


def code_values(values: np.ndarray, indexes: np.ndarray, tables: dict) -> bytes:
    """A well-formed ANS payload for values in -2**31 .. 2**31 - 1, all the escape
    code can carry (the encoder itself stops at 2**30)."""
    with mock.patch.object(entropy, "VALUE_LIMIT", 1 << 32):
        return entropy.encode(values, indexes, entropy.TableSet.from_arrays(tables))


EXTREMES = [-(1 << 31), (1 << 31) - 1, 1 << 30, -(1 << 30), 5000, -5000, 0]
extreme_values = st.lists(
    st.sampled_from(EXTREMES) | st.integers(-3, 3) | st.integers(-(1 << 31), (1 << 31) - 1),
    min_size=1,
    max_size=24,
)


def decode_or_codec_error(data: bytes, model) -> np.ndarray | CodecError:
    """The property: an image of the declared shape or a CodecError (returned, to be
    looked at), quickly. Any other exception propagates and fails the test."""
    start = time.process_time()
    try:
        result = pipeline.decode_array(data, model)
    except CodecError as exc:
        result = exc
    seconds = time.process_time() - start
    assert seconds < MAX_DECODE_SECONDS, f"one decode took {seconds:.1f} s"
    if isinstance(result, np.ndarray):
        header = pipeline.read_header(data)
        assert result.shape == (header.height, header.width, 3) and result.dtype == np.uint8
    return result


def refused(data: bytes, model, match: str = "") -> BitstreamError:
    """``data`` must be refused with a BitstreamError (whose message matches)."""
    result = decode_or_codec_error(data, model)
    assert isinstance(result, BitstreamError), f"expected a BitstreamError, got {result!r:.200}"
    assert re.search(match, str(result)), str(result)
    return result


# ---- the seeds and the field table ----------------------------------------------------


def test_field_table_matches_the_container(seeds):
    assert sum(size for _, size in FIELDS.values()) == container.HEADER_BYTES
    ends = [offset + size for offset, size in FIELDS.values()]
    assert [offset for offset, _ in FIELDS.values()][1:] == ends[:-1]  # contiguous
    header = pipeline.read_header(set_field(seeds[0], "height", 33))
    assert header.height == 33
    assert pipeline.read_header(set_field(seeds[0], "quality", 2500)).quality == 2.5


def test_seeds_decode(seeds, tiny_model):
    shapes = [decode_or_codec_error(data, tiny_model).shape for data in seeds]
    assert shapes == [(40, 56, 3), (40, 56, 3), (17, 9, 3)]


# ---- damage a CRC catches ---------------------------------------------------------------


@fuzz
@given(seed=st.integers(0, 2), flips=st.lists(st.integers(0, 10**6), min_size=1, max_size=8))
def test_bit_flips_are_bitstream_errors(seeds, tiny_model, seed, flips):
    data = bytearray(seeds[seed])
    for bit in {b % (8 * len(data)) for b in flips}:
        data[bit // 8] ^= 1 << (bit % 8)
    if bytes(data) == seeds[seed]:
        return
    refused(bytes(data), tiny_model)


def test_every_truncation(seeds, tiny_model):
    for data in seeds:
        for n in range(len(data)):
            refused(data[:n], tiny_model)
            if n >= CRC:  # the same length with a valid CRC: the length fields catch it
                refused(with_crc(data[: n - CRC]), tiny_model)


@fuzz
@given(seed=st.integers(0, 2), extra=st.binary(min_size=1, max_size=64), recrc=st.booleans())
def test_appended_bytes(seeds, tiny_model, seed, extra, recrc):
    data = seeds[seed]
    damaged = with_crc(data[:-CRC] + extra) if recrc else data + extra
    refused(damaged, tiny_model, "unexpected bytes after the end" if recrc else "")


# ---- damage with a valid CRC: the decoder's own checks ------------------------------------


@fuzz
@given(
    seed=st.integers(0, 2),
    edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=6),
)
def test_byte_edits_anywhere_with_a_valid_crc(seeds, tiny_model, seed, edits):
    body = bytearray(seeds[seed][:-CRC])
    for position, value in edits:
        body[position % len(body)] = value
    decode_or_codec_error(with_crc(body), tiny_model)


def _field_values(name: str) -> st.SearchStrategy:
    _, size = FIELDS[name]
    top = (1 << (8 * size)) - 1
    edges = [0, 1, 2, 3, 4, 5, 7, 8, 63, 64, 65, 255, 256, 999, 1000, 8000, 8001, 65535, 65536]
    edges += [65537, 1 << 24, (1 << 28) + 1, 1 << 31, top - 1, top]
    return st.one_of(st.sampled_from([v for v in edges if v <= top]), st.integers(0, top))


@fuzz
@given(seed=st.integers(0, 2), data=st.data())
def test_every_header_field_edited_with_a_valid_crc(seeds, tiny_model, seed, data):
    name = data.draw(st.sampled_from(sorted(FIELDS)), label="field")
    if name in ("height", "width"):
        value = data.draw(st.integers(0, 300) | st.sampled_from([65536, 65537, 1 << 31]))
    else:
        value = data.draw(_field_values(name), label="value")
    edited = set_field(seeds[seed], name, value)
    result = decode_or_codec_error(edited, tiny_model)
    if name in ("magic", "version", "model_id", "weights_hash", "index_crc", "len_z", "len_y"):
        if edited != seeds[seed]:
            assert isinstance(result, CodecError)  # each must be refused when changed


@fuzz
@given(
    seed=st.integers(0, 2),
    height=st.integers(1, 200),
    width=st.integers(1, 200),
    forge=st.booleans(),
)
def test_declared_size_edits(seeds, tiny_model, seed, height, width, forge):
    edited = set_field(set_field(seeds[seed], "height", height), "width", width)
    if forge:  # the y decoder and the synthesis then run at the new size
        edited = set_field(edited, "index_crc", decoder_index_crc(edited, tiny_model) or 0)
    result = decode_or_codec_error(edited, tiny_model)
    old = pipeline.read_header(seeds[seed])
    grid = tiny_model.network.multiple
    same_grid = [-(-side // grid) for side in (height, width, old.height, old.width)]
    if forge and same_grid[:2] == same_grid[2:]:  # the same latents, another crop
        assert isinstance(result, np.ndarray) and result.shape == (height, width, 3)


@fuzz
@given(height=st.integers(1, 200), width=st.integers(1, 200), seed=st.integers(0, 2))
def test_empty_payloads_decode_at_any_size(seeds, tiny_model, height, width, seed):
    # An ANS stream with nothing in it decodes to symbol 0 as often as asked, so a
    # header with empty payloads and a matching index CRC is a valid file.
    edited = set_field(set_field(rebuild(seeds[seed], b"", b""), "height", height), "width", width)
    edited = set_field(edited, "index_crc", decoder_index_crc(edited, tiny_model))
    result = decode_or_codec_error(edited, tiny_model)
    assert isinstance(result, np.ndarray) and result.shape == (height, width, 3)


@pytest.mark.parametrize(
    "height, width",
    [(0, 5), (5, 0), (65537, 1), (1, 65537), (1 << 15, 1 << 14), (65536, 65536), (2**32 - 1,) * 2],
)
def test_declared_size_beyond_the_limits(seeds, tiny_model, height, width):
    edited = set_field(set_field(seeds[0], "height", height), "width", width)
    refused(edited, tiny_model, "beyond the limits")


def test_large_declared_size_with_a_wrong_index_crc_fails_fast(seeds, tiny_model):
    # 8192 x 8192 within the container's limits, empty payloads, valid CRC: the z
    # decode and h_s run (on 1/16 of the pixels), then the index CRC refuses it.
    empty = rebuild(seeds[0], b"", b"")
    edited = set_field(set_field(empty, "height", 8192), "width", 8192)
    refused(edited, tiny_model, "entropy parameters differ")


def test_huge_declared_size_with_a_forged_index_crc_is_refused_fast(seeds, tiny_model):
    empty = rebuild(seeds[0], b"", b"")
    edited = set_field(set_field(empty, "height", 16384), "width", 16384)
    edited = set_field(edited, "index_crc", decoder_index_crc(edited, tiny_model))
    start = time.process_time()
    refused(edited, tiny_model, "above the limit")
    assert time.process_time() - start < 1.0


# ---- payloads ------------------------------------------------------------------------


@fuzz
@given(seed=st.integers(0, 2), shift=st.integers(-16, 16), forge=st.booleans())
def test_payload_lengths_edited_consistently(seeds, tiny_model, seed, shift, forge):
    # Move the z/y boundary: both lengths change, the file length and CRC stay valid.
    header = pipeline.read_header(seeds[seed])
    len_z = header.len_z + shift
    if not 0 <= len_z <= header.len_z + header.len_y:
        return
    edited = set_field(seeds[seed], "len_z", len_z)
    edited = set_field(edited, "len_y", header.len_z + header.len_y - len_z)
    if forge:
        edited = set_field(edited, "index_crc", decoder_index_crc(edited, tiny_model) or 0)
    result = decode_or_codec_error(edited, tiny_model)
    if shift % 4:
        assert isinstance(result, BitstreamError)


@fuzz
@given(seed=st.integers(0, 2), values=extreme_values, keep_y=st.booleans())
def test_well_formed_z_of_extreme_values(seeds, tiny_model, seed, values, keep_y):
    # h_s sees wild inputs; with an empty y (all symbols 0) the file is valid.
    header, _, y = container.unpack(seeds[seed])
    shape = z_shape(header, tiny_model)
    z = code_values(np.resize(values, shape), pipeline._channel_indices(shape), tiny_model.z_tables)
    edited = rebuild(seeds[seed], z, y if keep_y else b"", forge_index_crc=True, model=tiny_model)
    result = decode_or_codec_error(edited, tiny_model)
    assert keep_y or isinstance(result, np.ndarray)


@fuzz
@given(seed=st.integers(0, 2), values=extreme_values)
def test_well_formed_y_of_extreme_values(seeds, tiny_model, seed, values):
    # z kept, so the index CRC holds: the synthesis runs on wild y values.
    z, _ = payloads(seeds[seed])
    indexes = decoder_y_indices(seeds[seed], tiny_model)
    y = code_values(np.resize(values, indexes.shape), indexes, tiny_model.y_tables)
    result = decode_or_codec_error(rebuild(seeds[seed], z, y), tiny_model)
    assert isinstance(result, np.ndarray)


def test_payload_ending_in_a_zero_word_is_a_bitstream_error(seeds, tiny_model):
    # ANS data never ends in a zero word; constriction says so with a ValueError.
    z, y = payloads(seeds[1])
    for edited in (rebuild(seeds[1], z, y + bytes(4)), rebuild(seeds[1], z + bytes(4), y)):
        refused(edited, tiny_model)


# ---- every kind of model: float, exact, and a channel context --------------------------
# The context model's stage decoder reads each slice's indices from the slices decoded
# before it, so garbage behind a valid CRC reaches code that the one-slice models never
# run. Fewer examples per model: three models share the time of one.
fuzz_models = settings(fuzz, max_examples=70)


@pytest.fixture(scope="module", params=["float", "exact", "context"])
def coded(request, astronaut) -> tuple[object, list[bytes]]:
    """A tiny model of each kind and valid files of it to mutate."""
    model = request.getfixturevalue(
        {"float": "tiny_model", "exact": "tiny_exact_model", "context": "tiny_context_model"}[
            request.param
        ]
    )
    noise = np.random.default_rng(1).integers(0, 256, size=(40, 56, 3), dtype=np.uint8)
    files = [
        pipeline.encode(astronaut[30:70, 20:76], 4, model),
        pipeline.encode(noise, 6, model),
        pipeline.encode(noise[:17, :9], 1.5, model, grayscale=True),
    ]
    return model, files


def test_each_model_decodes_its_seeds_and_forges_its_own_index_crc(coded):
    model, files = coded
    for data in files:
        assert decoder_index_crc(data, model) == pipeline.read_header(data).index_crc
        assert isinstance(decode_or_codec_error(data, model), np.ndarray)


@fuzz_models
@given(
    seed=st.integers(0, 2),
    z=st.binary(max_size=48),
    y=st.binary(max_size=160),
    whole_words=st.booleans(),
    forge=st.booleans(),
)
def test_random_payloads_for_every_model(coded, seed, z, y, whole_words, forge):
    model, files = coded
    if whole_words:
        z, y = z[: len(z) // 4 * 4], y[: len(y) // 4 * 4]
    decode_or_codec_error(rebuild(files[seed], z, y, forge_index_crc=forge, model=model), model)


@fuzz_models
@given(
    seed=st.integers(0, 2),
    edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=6),
    cut=st.integers(0, 3),
    extra=st.binary(max_size=3).map(lambda b: b * 4),
    forge=st.booleans(),
)
def test_y_payload_edits_for_every_model(coded, seed, edits, cut, extra, forge):
    # z is untouched; with a forged index CRC a context model decodes every slice of the
    # damaged y, whatever indices the damage leads it to.
    model, files = coded
    z, y = payloads(files[seed])
    y = bytearray(y)
    for position, value in edits:
        if y:
            y[position % len(y)] = value
    y = bytes(y[: max(0, len(y) - 4 * cut)]) + extra
    decode_or_codec_error(rebuild(files[seed], z, y, forge_index_crc=forge, model=model), model)
