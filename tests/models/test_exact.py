"""The integer h_s: exact arithmetic, the same function as its training face, and
table indices that agree with the float index function."""

import math

import numpy as np
import pytest
import torch

from rdcodec.models import exact
from rdcodec.models.exact import (
    ACT_BITS,
    ACT_LIMIT,
    EXACT_LIMIT,
    INPUT_BITS,
    LEAKY_NUM,
    LEAKY_SHIFT,
    ExactHyperSynthesis,
    QuantisedHyperSynthesis,
)
from rdcodec.models.gaussian import scale_indices, scale_table


def _round_shift(x: np.ndarray, shift: int) -> np.ndarray:
    return (x + (1 << (shift - 1))) >> shift  # arithmetic shift: floor division


def _conv_int64(x: np.ndarray, w: np.ndarray, padding: int) -> np.ndarray:
    """Plain int64 stride-1 convolution (cross-correlation), (C, H, W) * (O, C, k, k)."""
    k = w.shape[2]
    xp = np.pad(x, ((0, 0), (padding, padding), (padding, padding)))
    h, wd = x.shape[1] + 2 * padding - k + 1, x.shape[2] + 2 * padding - k + 1
    out = np.zeros((w.shape[0], h, wd), dtype=np.int64)
    for i in range(k):
        for j in range(k):
            out += np.einsum("oc,chw->ohw", w[:, :, i, j], xp[:, i : i + h, j : j + wd])
    return out


def _deconv_int64(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """int64 transposed conv, stride 2, kernel 5, padding 2, output padding 1:
    zero-stuff the input, then a stride-1 conv with the flipped, transposed kernel."""
    c, h, wd = x.shape
    up = np.zeros((c, 2 * h - 1, 2 * wd - 1), dtype=np.int64)
    up[:, ::2, ::2] = x
    # Zero-stuffed input padded by k-1-p = 2 before and 2 + output_padding = 3 after.
    up = np.pad(up, ((0, 0), (2, 3), (2, 3)))
    kernel = w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)
    return _conv_int64(up, np.ascontiguousarray(kernel), 0)


def reference(e: ExactHyperSynthesis, z_symbols: np.ndarray) -> np.ndarray:
    """The integer h_s in int64 numpy, written independently of the torch path."""
    x = (
        z_symbols[0].astype(np.int64) * (1 << INPUT_BITS)
        + e.medians.numpy().astype(np.int64)[:, None, None]
    )
    x = np.clip(x, -ACT_LIMIT, ACT_LIMIT)
    in_bits = INPUT_BITS
    for i, kind in enumerate(e.KINDS):
        w = e.weights[i].numpy().astype(np.int64)
        acc = _deconv_int64(x, w) if kind == "deconv" else _conv_int64(x, w, 1)
        acc += e.biases[i].numpy().astype(np.int64)[:, None, None]
        x = _round_shift(acc, in_bits + e.exponents[i] - ACT_BITS)
        if i < 2:
            x = np.where(x < 0, _round_shift(x * LEAKY_NUM, LEAKY_SHIFT), x)
        x = np.clip(x, -ACT_LIMIT, ACT_LIMIT)
        in_bits = ACT_BITS
    return x[None]


@pytest.fixture(scope="module")
def trained_like():
    """A small quantised h_s with weights of a trained network's size, and its integers."""
    torch.manual_seed(3)
    module = QuantisedHyperSynthesis(8, 12)
    with torch.no_grad():
        for layer in module.layers():
            layer.weight.normal_(0, 0.05)
            layer.bias.normal_(0, 0.2)
    module.calibrate()
    medians = torch.randn(8) * 3
    return module, ExactHyperSynthesis.from_module(module, medians, scale_table())


def _symbols(seed: int, shape=(1, 8, 5, 7), spread=6) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.rint(rng.normal(0, spread, shape)).astype(np.int32)


def test_float64_path_equals_an_int64_reference(trained_like):
    _, e = trained_like
    for seed in range(3):
        z = _symbols(seed)
        assert np.array_equal(e.forward_units(z).numpy().astype(np.int64), reference(e, z))


def test_extreme_symbols_stay_exact(trained_like):
    # A hostile file can carry any z symbol; the clamps keep every sum below 2**53.
    _, e = trained_like
    z = _symbols(0, spread=1e6)
    z[0, :, 0, 0] = 2**30 - 1
    assert np.array_equal(e.forward_units(z).numpy().astype(np.int64), reference(e, z))
    assert exact.accumulator_bound(e) < EXACT_LIMIT


def test_bands_give_the_integers_of_one_pass(trained_like, monkeypatch):
    # Tall inputs run in bands of rows with a halo: the same integers as one pass (and
    # as the int64 reference), for bands that do and do not divide the height.
    _, e = trained_like
    z = _symbols(7, (1, 8, 41, 6))
    whole = reference(e, z)
    for rows in (4, 12, 28):  # output rows: 1, 3 and 7 input rows a band
        monkeypatch.setattr(exact, "BAND_ROWS", rows)
        assert np.array_equal(e.forward_units(z).numpy().astype(np.int64), whole)
    # h_s reaches 1 + 1/2 + 1/4 rows of z: a halo of 2. One row short would change rows
    # at the seams: the check bites.
    assert e.halo() == 2
    monkeypatch.setattr(type(e), "halo", lambda self: 1)
    assert not np.array_equal(e.forward_units(z).numpy().astype(np.int64), whole)


def test_a_slice_context_in_bands_gives_the_integers_of_one_pass(monkeypatch):
    # Three 3x3 convolutions at one resolution reach 3 rows: the halo of a context.
    rng = np.random.default_rng(4)
    shapes = [(5, 6), (5, 5), (4, 5)]
    context = exact.ExactSliceContext(
        [rng.integers(-300, 301, (o, i, 3, 3)) for o, i in shapes],
        [rng.integers(-(1 << 20), 1 << 20, o) for o, _ in shapes],
        [8, 8, 8],
    )
    assert context.halo() == 3
    x = torch.from_numpy(rng.integers(-(1 << 17), 1 << 17, (1, 6, 53, 9))).double()
    monkeypatch.setattr(exact, "BAND_ROWS", 10**6)
    whole = context.forward_units(x)
    monkeypatch.setattr(exact, "BAND_ROWS", 5)
    assert torch.equal(context.forward_units(x), whole)
    monkeypatch.setattr(type(context), "halo", lambda self: 2)
    assert not torch.equal(context.forward_units(x), whole)


def test_result_does_not_depend_on_threads(trained_like):
    _, e = trained_like
    z = _symbols(5, (1, 8, 12, 16))
    threads = torch.get_num_threads()
    try:
        outs = []
        for n in (1, 2):
            torch.set_num_threads(n)
            outs.append(e(z))
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(outs[0], outs[1], strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b))


def test_training_face_computes_the_coding_face(trained_like):
    # The quantised module (float32, straight-through rounding) is what training
    # optimises; the integers must compute the same function up to rounding ties.
    module, e = trained_like
    z = _symbols(7)
    z_hat = torch.from_numpy(z).float() + e.medians.float()[None, :, None, None] / (1 << INPUT_BITS)
    with torch.no_grad():
        trained = module(z_hat).double() * (1 << ACT_BITS)
    units = e.forward_units(z)
    assert float((trained - units).abs().max()) <= 4  # grid units of 2**-12
    assert float((trained - units).abs().mean()) < 0.1


def test_indices_match_the_float_index_function():
    # Away from a boundary, the thresholds pick the table the float function picks.
    thresholds = torch.from_numpy(exact.index_thresholds(scale_table()).astype(np.float64))
    scales = torch.exp(torch.linspace(math.log(0.05), math.log(300), 2001)).double()
    units = torch.round(scales * (1 << ACT_BITS)).clamp(max=ACT_LIMIT)
    idx = torch.searchsorted(thresholds, units, right=True).numpy()
    table = np.log(scale_table())
    ref = scale_indices(units / (1 << ACT_BITS))
    logs = np.log(np.clip(units.numpy() / (1 << ACT_BITS), 0.11, 256))
    gap = np.abs(logs[:, None] - (table[:-1] + table[1:])[None, :] / 2).min(axis=1)
    clear = gap > 1e-3
    assert clear.mean() > 0.9
    assert np.array_equal(idx[clear], ref[clear])
    assert idx.min() == 0 and idx.max() == len(scale_table()) - 1


def test_arrays_round_trip(trained_like):
    _, e = trained_like
    again = ExactHyperSynthesis.from_arrays(e.arrays())
    z = _symbols(9)
    for a, b in zip(e(z), again(z), strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b))


def test_weights_out_of_range_are_refused(trained_like):
    _, e = trained_like
    arrays = e.arrays()
    arrays["weight0"] = arrays["weight0"].astype(np.int64) * 4
    with pytest.raises(ValueError, match="out of range"):
        ExactHyperSynthesis.from_arrays(arrays)


def test_shipped_format_keeps_the_integers(tiny_exact_model):
    net = tiny_exact_model.network
    assert net.exact_h_s is not None
    rebuilt = ExactHyperSynthesis.from_module(net.h_s, net.z_medians(), scale_table())
    assert np.array_equal(rebuilt.medians.numpy(), net.exact_h_s.medians.numpy())
    for a, b in zip(rebuilt.weights, net.exact_h_s.weights, strict=True):
        assert torch.equal(a, b)
