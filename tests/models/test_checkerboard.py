"""The checkerboard context (each slice coded in two halves, the second conditioned on
the decoded first): the coder computes what training computes, a fresh context changes
no symbol, weight files keep its integers, and files round-trip."""

import numpy as np
import pytest
import torch

from rdcodec.codec import pipeline, refine
from rdcodec.errors import BitstreamError, ModelError
from rdcodec.models.exact import ACT_BITS, ExactSliceContext
from rdcodec.models.network import Hyperprior
from rdcodec.models.registry import build_network, export_weights, load_weights_file


def test_anchors_are_half_the_positions_none_of_them_neighbours():
    anchor = Hyperprior.anchors(5, 6)[0, 0]
    assert int(anchor.sum()) == 15 and bool(anchor[0, 0]) and not bool(anchor[0, 1])
    # every other position has its 4-neighbours among the anchors
    assert not (anchor[1:, :] & anchor[:-1, :]).any() and not (anchor[:, 1:] & anchor[:, :-1]).any()


@pytest.mark.parametrize("fixture", ["tiny_checkerboard_model", "tiny_context_model"])
def test_the_coder_computes_the_training_face(fixture, request, coffee, astronaut):
    # the same numbers, ties included (the training face rounds them up, as the integers
    # do); float32 sums in the training face may still land one grid unit apart, rarely
    model = request.getfixturevalue(fixture)
    unit = 2.0**-ACT_BITS
    net = model.network
    for image in (coffee, astronaut, coffee[::-1, ::-1].copy()):
        for quality in (1, 4.5, 8, 11):
            lat = pipeline.decode_latents(pipeline.encode(image, quality, model), model)
            with torch.no_grad():
                means, scales = net.entropy_parameters(lat.z_hat)
                m, s, y_hat = net.context_parameters(lat.y_hat, means, scales, rounder=torch.round)
            for got, want in ((m, lat.means), (s, lat.scales), (y_hat, lat.y_hat)):
                diff = (got.double() - want.double()).abs()
                assert float(diff.max()) <= unit and float((diff > 0).double().mean()) < 0.01


def test_the_second_half_is_conditioned_on_the_first(tiny_checkerboard_model, coffee):
    net = tiny_checkerboard_model.network
    lat = pipeline.decode_latents(
        pipeline.encode(coffee, 6, tiny_checkerboard_model), tiny_checkerboard_model
    )
    hyper = net.coding_parameters(lat.z_symbols)
    before = None
    anchor = net.anchors(*lat.means.shape[2:]).numpy()
    for k, ch in enumerate(net.slice_channels()):
        means = net.slice_parameters(hyper, k, before)[0]
        moved = (means != lat.means[:, ch]).numpy()
        assert not moved[np.broadcast_to(anchor, moved.shape)].any()  # anchors keep theirs
        assert moved[np.broadcast_to(~anchor, moved.shape)].mean() > 0.5
        before = lat.y_hat[:, : ch.stop].double()


def test_a_fresh_checkerboard_changes_no_symbol(
    tiny_context_model, tiny_context_weights, coffee, tmp_path
):
    # train --checkerboard on a warm start: the same symbols, tables and picture (the
    # stream codes the anchors first, so its bytes differ, not its size by much)
    from rdcodec.models.training.train import load_initial_weights

    grown = build_network(
        {**tiny_context_model.network.config.to_dict(), "checkerboard": True}, trainable=True
    )
    load_initial_weights(grown, str(tiny_context_weights))
    path = tmp_path / "grown.rdw"
    export_weights(grown, path)
    model = load_weights_file(path, "grown", 247)
    before = pipeline.encode(coffee, 6, tiny_context_model)
    after = pipeline.encode(coffee, 6, model)
    a = pipeline.decode_latents(before, tiny_context_model)
    b = pipeline.decode_latents(after, model)
    assert np.array_equal(a.y_symbols, b.y_symbols) and np.array_equal(a.y_indices, b.y_indices)
    assert np.array_equal(
        pipeline.decode_array(before, tiny_context_model), pipeline.decode_array(after, model)
    )
    assert abs(len(after) - len(before)) <= 8


def test_round_trip_weights_and_damage(tiny_checkerboard_model, coffee, tmp_path):
    result = pipeline.encode_image(coffee, 9, tiny_checkerboard_model, compare_jpeg=False)
    assert pipeline.encode(coffee, 9, tiny_checkerboard_model) == result.data
    assert pipeline.decode_array(result.data, tiny_checkerboard_model).shape == coffee.shape
    net = tiny_checkerboard_model.network
    assert net.exact_spatial is not None and len(net.exact_spatial) == net.config.slices
    path = tmp_path / "again.rdw"
    export_weights(net, path)
    again = load_weights_file(path, "again", 246).network
    for a, b in zip(again.exact_spatial, net.exact_spatial, strict=True):
        assert all(torch.equal(x, y) for x, y in zip(a.weights, b.weights, strict=True))
    for module, exact in zip(net.spatial, net.exact_spatial, strict=True):
        rebuilt = ExactSliceContext.from_module(module)
        assert all(torch.equal(x, y) for x, y in zip(rebuilt.weights, exact.weights, strict=True))
    data = pipeline.encode(coffee[:64, :96], 8, tiny_checkerboard_model)
    for pos in range(37, len(data) - 4, 3):
        bad = bytearray(data)
        bad[pos] ^= 0x5A
        with pytest.raises(BitstreamError):
            pipeline.decode_array(bytes(bad), tiny_checkerboard_model)


def test_training_reaches_the_spatial_context(tiny_checkerboard_weights):
    net = build_network(
        {"N": 8, "M": 12, "levels": 11, "exact": True, "slices": 3, "checkerboard": True},
        trainable=True,
    )
    from rdcodec.models.training.train import load_initial_weights

    load_initial_weights(net, str(tiny_checkerboard_weights))
    x = torch.rand(2, 3, 128, 128)
    out = net(x, torch.tensor([3.0, 9.0]))
    loss = -torch.log2(out["y_likelihoods"]).sum() + ((out["x_hat"] - x) ** 2).sum()
    loss.backward()
    assert all(float(m[-1].weight.grad.abs().sum()) > 0 for m in net.spatial)


def test_refinement_codes_a_checkerboard_model(tiny_checkerboard_model, astronaut):
    image = astronaut[:64, :64]
    refined = pipeline.encode(image, 6, tiny_checkerboard_model, effort=1)
    assert refined != pipeline.encode(image, 6, tiny_checkerboard_model)
    assert pipeline.decode_array(refined, tiny_checkerboard_model).shape == image.shape
    assert refine.effort_schedule(1) is not None


def test_a_checkerboard_needs_an_exact_model():
    with pytest.raises(ModelError, match="needs exact entropy parameters"):
        build_network({"N": 8, "M": 12, "checkerboard": True})


def test_a_checkerboard_warm_start_keeps_its_slice_width(tmp_path):
    # widening a one-slice checkerboard model would feed its spatial context the wrong
    # channels, and a model without one would drop it: both refused
    from rdcodec.models.training.train import load_initial_weights

    base = {"N": 8, "M": 12, "levels": 11, "exact": True, "checkerboard": True}
    path = tmp_path / "one-slice.rdw"
    export_weights(build_network(base, trainable=True), path)
    for arch in ({"M": 16}, {"checkerboard": False}):
        net = build_network({**base, **arch}, trainable=True)
        with pytest.raises(ModelError, match="checkerboard context on slices of 12"):
            load_initial_weights(net, str(path))
    wider = build_network({**base, "M": 24, "slices": 2}, trainable=True)
    load_initial_weights(wider, str(path))  # slices of the same width: a new slice
