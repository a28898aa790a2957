"""The loss probe (``rdcodec probe``) and the objective measurements behind it."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from rdcodec.cli.main import main
from rdcodec.models.network import LAMBDAS, ModelConfig
from rdcodec.models.trainable import GainedHyperprior
from rdcodec.models.training.objective import measure_level, psnr_from_mse

IMAGES = Path(__file__).parents[2] / "images"


@pytest.fixture(scope="module")
def crops():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(2)]


def test_level_stats_add_up(crops):
    torch.manual_seed(0)
    network = GainedHyperprior(ModelConfig(8, 12)).eval()
    s = measure_level(network, crops, 8)
    # The y channels' bits (16 latent locations of a 64 px crop) are part of the total rate.
    y_bpp = s.channel_bits.sum() * 16 / (64 * 64)
    assert 0 < y_bpp < s.bpp
    assert 0 <= s.active_channels <= 12 and s.channel_bits.shape == (12,)
    # loss = bpp + lmbda * 255^2 * MSE, with the PSNR's MSE (one crop at a time).
    one = measure_level(network, crops[:1], 8)
    mse = 10 ** (-one.psnr / 10)
    assert one.loss == pytest.approx(one.bpp + LAMBDAS[7] * 255**2 * mse, rel=1e-4)
    assert psnr_from_mse(mse) == pytest.approx(one.psnr)


def test_cli_reports_train_and_val_per_level():
    args = ["probe", "--data", str(IMAGES), "--val", str(IMAGES), "--size", "64", "--crops", "2"]
    extra = ["--json", "--noise-samples", "2", "--overfit-steps", "3"]
    result = CliRunner().invoke(main, [*args, *extra])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)["rows"]
    assert [p["step"] for p in json.loads(result.output)["overfit"]] == [0, 3]
    noise = json.loads(result.output)["noise_scale"]
    assert noise["samples"] == 2 and noise["trace_sigma"] > 0
    assert [(r["split"], r["quality"]) for r in rows] == [
        (split, q) for split in ("train", "val") for q in (1, 4, 8)
    ]
    val = [r for r in rows if r["split"] == "val"]
    assert val[0]["bpp"] < val[1]["bpp"] < val[2]["bpp"]
    text = CliRunner().invoke(main, [*args, "--noise-samples", "2", "--overfit-steps", "2"])
    assert text.exit_code == 0 and "val/train loss" in text.output
    assert "gradient noise scale" in text.output
    assert "fixed batch of 8, quality 8, step 2" in text.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "/nonexistent"], "folder does not exist"),
        (["--size", "100"], "multiple of 64"),
        (["--noise-samples", "1"], "at least 2"),
        (["--overfit-steps", "-1"], "0 (skip) or more"),
        (["--weights", __file__], "not a weight file or checkpoint"),
        (["--size", "1024"], "no image of at least 1024 px"),
        (["--data", "BROKEN"], "photo.png: not an image file"),
    ],
)
def test_cli_bad_input(args, message, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "photo.png").write_text("not an image")
    args = [str(broken) if a == "BROKEN" else a for a in args]
    base = ["probe", "--data", str(IMAGES), "--val", str(IMAGES)]
    result = CliRunner().invoke(main, [*base, *args])
    assert result.exit_code != 0
    assert message in result.output and len(result.output.strip().splitlines()) == 1


class _Scale(torch.nn.Module):
    """x_hat = w * x at zero rate: per-sample gradients known in closed form."""

    config = ModelConfig(8, 12)  # the eight-level ladder

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(0.5))

    def forward(self, x, quality):
        ones = torch.ones(x.shape[0], 1, 1, 1)
        return {"x_hat": self.w * x, "y_likelihoods": ones, "z_likelihoods": ones}


def test_noise_scale_matches_closed_form_per_sample_gradients():
    from rdcodec.models.training.objective import gradient_noise_scale

    batch = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    levels = torch.tensor([0, 7, 3, 3, 5, 1])
    ns = gradient_noise_scale(_Scale(), batch, levels)
    # d/dw of lmbda * 255^2 * mean((w x - x)^2) = lmbda * 255^2 * 2 (w - 1) mean(x^2)
    lam = torch.tensor(LAMBDAS, dtype=torch.float64)[levels]
    g = (lam * 255**2 * 2 * (0.5 - 1) * (batch.double() ** 2).flatten(1).mean(1)).numpy()
    n = len(g)
    assert ns.samples == n
    assert ns.trace_sigma == pytest.approx(g.var(ddof=1), rel=1e-4)  # unbiased variance
    assert ns.grad_sq == pytest.approx(g.mean() ** 2 - g.var(ddof=1) / n, rel=1e-4)
    assert ns.b_simple == pytest.approx(ns.trace_sigma / ns.grad_sq)
    assert ns.batch_grad_norm(n) == pytest.approx(abs(g.mean()), rel=1e-4)
    with pytest.raises(ValueError):
        gradient_noise_scale(_Scale(), batch[:1], levels[:1])


def test_overfitting_one_batch_lowers_its_loss_and_leaves_the_network_alone():
    from rdcodec.models.training.probe import overfit

    torch.manual_seed(0)
    network = GainedHyperprior(ModelConfig(8, 12)).eval()
    before = {k: v.clone() for k, v in network.state_dict().items()}
    batch = np.random.default_rng(0).integers(0, 256, (2, 3, 64, 64), dtype=np.uint8)
    points = overfit(network, batch, steps=30, lr=1e-3, every=10)
    assert [p.step for p in points] == [0, 10, 20, 30]
    assert points[-1].loss < points[0].loss
    assert all(torch.equal(before[k], v) for k, v in network.state_dict().items())
