"""Encode-time refinement (--effort): better files for the same decoder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from rdcodec.cli.main import main
from rdcodec.codec import pipeline, refine
from rdcodec.codec.metrics import bpp
from rdcodec.errors import CodecError
from rdcodec.models.registry import load_model

IMAGES = Path(__file__).parents[1] / "images"


def _loss(model, image: np.ndarray, data: bytes, quality: float) -> float:
    """The real file's R + lambda * 255^2 * MSE: what refinement minimises."""
    decoded = pipeline.decode_array(data, model).astype(np.float64)
    mse = np.mean((decoded - image) ** 2) / 255**2
    lmbda = refine.lambda_of_quality(model.network.config.lambdas, quality)
    return bpp(len(data), image.shape[0] * image.shape[1]) + lmbda * 255**2 * mse


def test_sga_rounds_between_floor_and_ceiling_and_anneals_to_rounding():
    torch.manual_seed(0)
    x = torch.linspace(-3, 3, 1001, requires_grad=True)
    soft = refine.sga_round(x, 0.5)
    assert torch.all(soft >= torch.floor(x)) and torch.all(soft <= torch.floor(x) + 1)
    soft.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    cold = refine.sga_round(x.detach(), 1e-3)
    away = (x.detach() - torch.round(x.detach())).abs() < 0.45  # not at a tie
    assert torch.allclose(cold[away], torch.round(x.detach())[away], atol=1e-3)


def test_schedule_holds_then_anneals():
    e = refine.Effort(steps=100, lr=1e-2, hold=0.3)
    assert e.tau(0) == e.tau(29) == e.tau_max
    assert e.tau(99) < e.tau(60) < e.tau_max
    assert e.tau(99) == pytest.approx(e.tau_min, rel=0.1)


def test_lambda_interpolates_geometrically():
    lambdas = (0.01, 0.04, 0.16)
    assert refine.lambda_of_quality(lambdas, 1) == pytest.approx(0.01)
    assert refine.lambda_of_quality(lambdas, 2.5) == pytest.approx(0.08)
    assert refine.lambda_of_quality(lambdas, 3) == pytest.approx(0.16)


def test_effort_zero_is_the_single_pass(coffee):
    model = load_model()
    assert pipeline.encode(coffee, 5, model, effort=0) == pipeline.encode(coffee, 5, model)


@pytest.fixture(scope="module")
def refined_coffee(coffee):
    model = load_model()
    return model, pipeline.encode(coffee, 5, model), pipeline.encode(coffee, 5, model, effort=1)


def test_refined_file_decodes_and_lowers_the_real_objective(coffee, refined_coffee):
    model, single, refined = refined_coffee
    assert refined != single
    # The same decode function reads it; the real file's R + lambda D is lower.
    assert _loss(model, coffee, refined, 5) < _loss(model, coffee, single, 5)


def test_refinement_is_repeatable(coffee, refined_coffee):
    model, _, refined = refined_coffee
    assert pipeline.encode(coffee, 5, model, effort=1) == refined


@pytest.mark.parametrize("which", ["tiny", "tiny-exact", "tiny-context"])
def test_refinement_codes_every_kind_of_model(which, request, coffee):
    """The float model, the exact h_s and the channel context each have a float face
    that the rate gradient flows through; the file is coded with the coding path."""
    model = request.getfixturevalue(which.replace("-", "_") + "_model")
    data = pipeline.encode(coffee[:64, :96], 3, model, effort=1)
    assert pipeline.decode_array(data, model).shape == (64, 96, 3)


def test_target_bpp_lands_at_or_under_the_target_at_effort(coffee):
    model, crop = load_model(), coffee[:96, :128]
    quality, data = pipeline.encode_at_bpp(crop, 0.5, model, effort=1)
    assert bpp(len(data), crop.shape[0] * crop.shape[1]) <= 0.5
    assert pipeline.read_header(data).quality_milli == int(round(quality * 1000))


def test_unknown_effort_is_a_one_line_error(coffee):
    for bad in (9, -1, True, 2.0, "1"):
        with pytest.raises(CodecError, match="effort must be one of"):
            pipeline.encode(coffee, 5, effort=bad)
    assert refine.effort_schedule(np.int64(2)) is refine.EFFORTS[2]


def test_tiles_give_the_distortion_gradient_of_the_whole_image(tiny_model):
    """Large images run g_s's backward pass a tile at a time: the gradient that reaches
    y is the whole image's (in float32, to the order of the sums)."""
    net = tiny_model.network
    torch.manual_seed(0)
    y = torch.randn(1, net.config.M, 9, 11, requires_grad=True)
    x = torch.rand(1, 3, 9 * 16 - 5, 11 * 16 - 7)  # the padding is not compared
    inv_gain = torch.rand(1, net.config.M, 1, 1) + 0.5
    g_s = net.frozen_synthesis()
    x_hat = g_s((y * inv_gain).contiguous(memory_format=torch.channels_last))
    (3.0 * torch.mean((x_hat[:, :, : x.shape[2], : x.shape[3]] - x) ** 2)).backward()
    for tile in (2, 4, 5):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(refine, "TILE_LATENTS", tile)
            grad = refine._distortion_grad(net, g_s, y.detach(), inv_gain, x, 3.0, False)
        torch.testing.assert_close(grad, y.grad, rtol=1e-4, atol=1e-9)


def test_a_refinement_over_tiles_decodes_and_lowers_the_real_objective(coffee, monkeypatch):
    """Any size refines: beyond WHOLE_LATENTS y positions g_s runs on tiles."""
    model, crop = load_model(), np.ascontiguousarray(coffee[:128, :192])
    single = pipeline.encode(crop, 5, model)
    monkeypatch.setattr(refine, "WHOLE_LATENTS", 0)
    monkeypatch.setattr(refine, "TILE_LATENTS", 4)
    refined = pipeline.encode(crop, 5, model, effort=1)
    assert refined != single
    assert _loss(model, crop, refined, 5) < _loss(model, crop, single, 5)


def test_encode_command_reports_the_effort_and_what_it_saved(tmp_path):
    out = tmp_path / "c.rdc"
    result = CliRunner().invoke(
        main, ["encode", str(IMAGES / "coffee.png"), str(out), "--effort", "1", "--no-jpeg"]
    )
    assert result.exit_code == 0, result.output
    assert "effort 1" in result.output
    assert "saved" in result.output and "against effort 0" in result.output
    bad = CliRunner().invoke(
        main, ["encode", str(IMAGES / "coffee.png"), str(tmp_path / "x.rdc"), "-e", "7"]
    )
    assert bad.exit_code != 0 and "effort must be one of" in bad.stderr
    assert not (tmp_path / "x.rdc").exists()


def test_bench_names_efforts_as_codecs():
    from rdcodec.codec.bench import codecs

    names = codecs.parse_codecs("rdcodec,rdcodec+e2,rdcodec@hp-exact-n96m128+e1,rdcodec+e0")
    assert names == ["rdcodec", "rdcodec+e2", "rdcodec@hp-exact-n96m128+e1"]
    assert codecs.make_codec("rdcodec+e2").effort == 2
    assert codecs.make_codec("rdcodec").effort == 0
    with pytest.raises(CodecError):
        codecs.parse_codecs("jpeg+e2")
    with pytest.raises(CodecError):
        codecs.parse_codecs("rdcodec+e9")


def test_each_refinement_step_is_reported_within_the_block(tiny_model, coffee):
    heard: list[tuple[int, int]] = []
    with refine.reporting(lambda done, steps: heard.append((done, steps))):
        pipeline.encode(coffee[:64, :64], 3, tiny_model, effort=1)
    steps = refine.EFFORTS[1].steps
    assert heard == [(i, steps) for i in range(1, steps + 1)]
    pipeline.encode(coffee[:64, :64], 3, tiny_model, effort=1)  # outside: no one hears
    assert len(heard) == steps


def test_progress_bar_shows_on_a_terminal_only(monkeypatch):
    import io
    import sys

    from rdcodec.cli.common import refinement_progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    for stream, effort, shown in (
        (Terminal(), 3, True),
        (io.StringIO(), 3, False),
        (Terminal(), 0, False),
    ):
        monkeypatch.setattr(sys, "stderr", stream)
        with refinement_progress(effort):
            on_step = refine._ON_STEP.get()
            assert (on_step is not None) == shown
            if on_step:
                for done in range(1, 6):
                    on_step(done, 5)
        assert ("effort 3" in stream.getvalue() and "/5 " in stream.getvalue()) == shown
