"""The channel context (y coded in slices, each conditioned on those before it):
exact integers equal to the training face, a fresh context that changes nothing,
weight files that keep the integers, and files that round-trip."""

import numpy as np
import pytest
import torch

from rdcodec.codec import pipeline
from rdcodec.errors import BitstreamError, ModelError
from rdcodec.models.exact import (
    ACT_BITS,
    ACT_LIMIT,
    EXACT_LIMIT,
    ExactSliceContext,
    QuantisedSliceContext,
    accumulator_bound,
)
from rdcodec.models.registry import build_network, export_weights, load_weights_file

UNIT = 1 << ACT_BITS


def _trained_like(seed: int = 0) -> QuantisedSliceContext:
    torch.manual_seed(seed)
    module = QuantisedSliceContext(10, 12, 4)
    with torch.no_grad():
        module[-1].weight.normal_(0, 0.05)
        module[-1].bias.normal_(0, 0.3)
    module.calibrate()
    return module


def _grid_inputs(seed: int, shape=(1, 10, 6, 7), spread=3.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.round(torch.randn(shape, generator=g, dtype=torch.float64) * spread * UNIT)


def test_integers_compute_the_training_face():
    module = _trained_like()
    exact = ExactSliceContext.from_module(module)
    units = _grid_inputs(1)
    with torch.no_grad():
        trained = module((units / UNIT).float()).double() * UNIT
    got = exact.forward_units(units.clone())
    # float32 rounding ties may land one grid unit apart, rarely
    assert float((trained - got).abs().max()) <= 4
    assert float((trained - got).abs().mean()) < 0.1
    assert torch.equal(got, got.round())
    assert accumulator_bound(exact) < EXACT_LIMIT


def test_extreme_inputs_stay_exact_and_thread_independent():
    exact = ExactSliceContext.from_module(_trained_like(3))
    units = _grid_inputs(2, spread=1e6).clamp(-ACT_LIMIT, ACT_LIMIT)
    threads = torch.get_num_threads()
    try:
        outs = []
        for n in (1, 2):
            torch.set_num_threads(n)
            outs.append(exact.forward_units(units.clone()))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(outs[0], outs[1])
    assert float(outs[0].abs().max()) <= ACT_LIMIT


def test_a_fresh_context_changes_nothing(tiny_exact_model, tiny_exact_weights, coffee, tmp_path):
    # train --slices on a warm start: the model with a new (zero) context codes the same
    # symbols with the same tables and means, and decodes the same pixels, as the model
    # it grew from.
    from rdcodec.models.training.train import load_initial_weights

    grown = build_network(
        {**tiny_exact_model.network.config.to_dict(), "slices": 3}, trainable=True
    )
    load_initial_weights(grown, str(tiny_exact_weights))
    path = tmp_path / "grown.rdw"
    export_weights(grown, path)
    model = load_weights_file(path, "grown", 254)
    a = pipeline.decode_latents(pipeline.encode(coffee, 6, tiny_exact_model), tiny_exact_model)
    data = pipeline.encode(coffee, 6, model)
    b = pipeline.decode_latents(data, model)
    assert np.array_equal(a.y_symbols, b.y_symbols)
    assert np.array_equal(a.y_indices, b.y_indices)
    assert torch.equal(a.means, b.means)
    assert np.array_equal(
        pipeline.decode_array(data, model),
        pipeline.decode_array(pipeline.encode(coffee, 6, tiny_exact_model), tiny_exact_model),
    )


def test_context_moves_the_parameters(tiny_context_model, coffee):
    data = pipeline.encode(coffee, 6, tiny_context_model)
    lat = pipeline.decode_latents(data, tiny_context_model)
    hyper = tiny_context_model.network.coding_parameters(lat.z_symbols)
    first = tiny_context_model.network.slice_channels()[0]
    rest = slice(first.stop, None)
    assert torch.equal(lat.means[:, first], hyper[0][:, first])  # slice 0: the hyperprior
    assert not torch.equal(lat.means[:, rest], hyper[0][:, rest])
    assert (lat.y_indices[:, rest] != hyper[2][:, rest]).mean() > 0.05


def test_round_trip_is_what_the_encoder_reconstructs(tiny_context_model, coffee):
    result = pipeline.encode_image(coffee, 5, tiny_context_model, compare_jpeg=False)
    decoded = pipeline.decode_array(result.data, tiny_context_model)
    assert decoded.shape == coffee.shape
    assert result.rate.file_bits == 8 * len(result.data)
    # encoding twice gives the same bytes
    assert pipeline.encode(coffee, 5, tiny_context_model) == result.data


def test_damaged_files_fail_cleanly(tiny_context_model, coffee):
    data = pipeline.encode(coffee[:64, :96], 8, tiny_context_model)
    header = 37
    failures = 0
    for pos in range(header, len(data) - 4):
        bad = bytearray(data)
        bad[pos] ^= 0x5A
        with pytest.raises(BitstreamError):
            pipeline.decode_array(bytes(bad), tiny_context_model)
        failures += 1
    assert failures > 0
    with pytest.raises(BitstreamError):
        pipeline.decode_array(data[:-4], tiny_context_model)


def test_weight_file_keeps_the_integers(tiny_context_model, tmp_path):
    net = tiny_context_model.network
    assert net.exact_context is not None and len(net.exact_context) == 2
    for module, exact in zip(net.context, net.exact_context, strict=True):
        rebuilt = ExactSliceContext.from_module(module)
        for a, b in zip(rebuilt.weights, exact.weights, strict=True):
            assert torch.equal(a, b)
        assert rebuilt.exponents == exact.exponents
    # exported again from the loaded network: the same integers
    path = tmp_path / "again.rdw"
    export_weights(net, path)
    again = load_weights_file(path, "again", 253).network
    for a, b in zip(again.exact_context, net.exact_context, strict=True):
        assert all(torch.equal(x, y) for x, y in zip(a.weights, b.weights, strict=True))


def test_slices_need_an_exact_model_and_must_divide_m():
    with pytest.raises(ModelError, match="exact"):
        build_network({"N": 8, "M": 12, "slices": 3})
    with pytest.raises(ModelError, match="divide"):
        build_network({"N": 8, "M": 12, "exact": True, "slices": 5})


def test_a_wider_latent_keeps_the_context_of_the_old_slices(
    tiny_context_model, tiny_context_weights, coffee, tmp_path
):
    # train --widen of a context model (M 12 in 3 slices -> 16 in 4): the old slices keep
    # their symbols, tables and means (their context networks carry over), the new slice
    # is all zeros at the smallest scale, the picture is the same and the file barely
    # grows.
    from rdcodec.models.training.train import load_initial_weights

    torch.manual_seed(0)
    wide = build_network(
        {**tiny_context_model.network.config.to_dict(), "M": 16, "slices": 4}, True
    )
    load_initial_weights(wide, str(tiny_context_weights))
    path = tmp_path / "wide.rdw"
    export_weights(wide, path)
    model = load_weights_file(path, "wide", 254)
    for quality in (1, 6, 11, 7.5):
        narrow_data = pipeline.encode(coffee, quality, tiny_context_model)
        a = pipeline.decode_latents(narrow_data, tiny_context_model)
        data = pipeline.encode(coffee, quality, model)
        b = pipeline.decode_latents(data, model)
        assert np.array_equal(a.y_symbols, b.y_symbols[:, :12])
        assert np.array_equal(a.y_indices, b.y_indices[:, :12])
        assert torch.equal(a.means, b.means[:, :12])
        assert not b.y_symbols[:, 12:].any() and not b.y_indices[:, 12:].any()
        assert not b.means[:, 12:].any()
        assert np.array_equal(
            pipeline.decode_array(data, model),
            pipeline.decode_array(narrow_data, tiny_context_model),
        )
        assert len(narrow_data) <= len(data) <= len(narrow_data) + 16
    with pytest.raises(ModelError, match="slices of 4 channels"):
        load_initial_weights(
            build_network({**model.network.config.to_dict(), "M": 16, "slices": 2}, True),
            str(tiny_context_weights),
        )
