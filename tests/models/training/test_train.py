import numpy as np
import pytest
import torch
from PIL import Image

from rdcodec.models import registry
from rdcodec.models.training.train import TrainConfig, train

TINY = {"N": 8, "M": 12, "levels": 8}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (80, 96, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def _config(data_dir, out, steps):
    return TrainConfig(
        data=str(data_dir),
        val=None,
        out=str(out),
        steps=steps,
        batch_size=2,
        crop=64,
        arch=TINY,
        log_every=1,
        ckpt_every=2,
        threads=1,
    )


def _weights(path):
    return torch.load(path, weights_only=True)["model"]


@pytest.mark.parametrize("weighting", ["lambda", "balanced"])
def test_resume_is_bit_exact(data_dir, tmp_path, weighting):
    def run(out, steps):
        cfg = _config(data_dir, out, steps)
        cfg.level_weighting = weighting
        return train(cfg, progress=False).checkpoint

    straight = torch.load(run(tmp_path / "a", 6), weights_only=True)
    run(tmp_path / "b", 3)
    resumed = torch.load(run(tmp_path / "b", 6), weights_only=True)
    for part in ("model", "ema"):
        a, b = straight[part], resumed[part]
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), (part, k)


def test_gains_train_faster_and_one_group_checkpoints_still_load(data_dir):
    from rdcodec.models.network import ModelConfig
    from rdcodec.models.trainable import GainedHyperprior
    from rdcodec.models.training.train import build_optimizers, load_optimizer_state

    model = GainedHyperprior(ModelConfig(**TINY))
    cfg = _config(data_dir, "unused", 1)
    opt, _ = build_optimizers(model, cfg)
    assert [g["lr"] for g in opt.param_groups] == [cfg.lr, cfg.lr * cfg.gain_lr_scale]
    assert opt.param_groups[1]["params"] == [model.log_gain, model.log_inv_gain]
    # An optimiser state from before the split: one group, named_parameters order.
    legacy = [p for n, p in model.named_parameters() if not n.endswith("quantiles")]
    old = torch.optim.Adam(legacy, lr=cfg.lr)
    model(torch.rand(1, 3, 64, 64), torch.tensor([1.0]))["x_hat"].sum().backward()
    old.step()
    load_optimizer_state(opt, old.state_dict(), model)
    assert len(opt.param_groups) == 2
    assert model.log_gain in old.state and len(old.state) > 2
    for p in old.state:
        assert torch.equal(opt.state[p]["exp_avg"], old.state[p]["exp_avg"])
    opt.step()  # shapes line up


def test_bf16_autocast_keeps_the_rate_in_float32_and_close(data_dir, tmp_path):
    from rdcodec.models.network import LAMBDAS, ModelConfig
    from rdcodec.models.trainable import GainedHyperprior
    from rdcodec.models.training.objective import rate_distortion

    torch.manual_seed(0)
    model = GainedHyperprior(ModelConfig(**TINY)).eval()
    x = torch.rand(2, 3, 64, 64)
    q, lmbda = torch.tensor([1.0, 8.0]), torch.tensor([LAMBDAS[0], LAMBDAS[7]])
    full = rate_distortion(model(x, q), x, lmbda)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x, q)
        mixed = rate_distortion(out, x, lmbda)
    assert out["y_likelihoods"].dtype == out["z_likelihoods"].dtype == torch.float32
    assert out["x_hat"].dtype == torch.float32
    assert torch.allclose(mixed["bpp"], full["bpp"], rtol=0.02)
    assert torch.allclose(mixed["mse"], full["mse"], rtol=0.05)
    cfg = _config(data_dir, tmp_path / "bf16", 2)
    cfg.bf16 = True
    state = torch.load(train(cfg, progress=False).checkpoint, weights_only=True)
    assert state["config"]["bf16"] and state["model"]["g_a.0.weight"].dtype == torch.float32


def test_training_changes_weights_and_logs(data_dir, tmp_path):
    before = _weights(train(_config(data_dir, tmp_path / "c", 1), progress=False).checkpoint)
    ckpt = train(_config(data_dir, tmp_path / "c", 3), progress=False).checkpoint
    state = torch.load(ckpt, weights_only=True)
    assert state["step"] == 3
    # Every trained tensor of the transforms moved (the lr is far above float resolution).
    for name in ("g_a.0.weight", "g_s.0.weight", "h_a.0.weight", "h_s.0.weight"):
        assert not torch.equal(before[name], state["model"][name]), name
    log = (tmp_path / "c" / "log.jsonl").read_text().splitlines()
    assert len(log) == 3 and '"bpp"' in log[0]


def test_export_has_no_optimizer_state(data_dir, tmp_path):
    ckpt = train(_config(data_dir, tmp_path / "d", 1), progress=False).checkpoint
    digest = registry.export_checkpoint(ckpt, tmp_path / "w.rdw")
    blob = torch.load(tmp_path / "w.rdw", weights_only=True)
    assert set(blob) == {"format", "config", "state_dict", "z_tables", "y_tables"}
    model = registry.load_weights_file(tmp_path / "w.rdw", "w", 251, digest)
    assert model.network.config.N == 8


def _ddp_worker(rank: int, world: int, port: int, data_dir: str, out: str, results: str) -> None:
    import os

    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world)
    )
    import torch.distributed as dist

    from rdcodec.models.training.train import init_distributed

    init_distributed()
    try:
        result = train(_config(data_dir, out, 3), progress=False)
        torch.save(result.model.state_dict(), f"{results}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_ddp_ranks_end_with_identical_weights(data_dir, tmp_path):
    """Two CPU processes (gloo) train the tiny model; DDP must keep them in lockstep."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mp.spawn(
        _ddp_worker, args=(2, port, str(data_dir), str(tmp_path / "ddp"), str(tmp_path)), nprocs=2
    )
    a, b = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    start = torch.load(tmp_path / "ddp" / "last.ckpt", weights_only=True)
    assert start["step"] == 3 and len(start["sampler_rng"]) == 2
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_cli_warns_when_bf16_would_be_emulated(data_dir, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from rdcodec.cli.main import main
    from rdcodec.models.training import train as train_module

    monkeypatch.setattr(train_module, "bf16_is_native", lambda device: False)
    args = ["train", "--data", str(data_dir), "--out", str(tmp_path / "run"), "--from-scratch"]
    args += ["--arch", "8,12", "--steps", "1", "--crop", "64", "--batch-size", "2"]
    args += ["--val-every", "0", "--threads", "1", "--bf16"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "emulated" in result.stderr
    assert (tmp_path / "run" / "last.ckpt").exists()


def test_widening_the_latent_preserves_the_function(tmp_path):
    """A warm start into more latent channels (M 12 -> 16) decodes the same picture and
    gives the old channels the same means and scales; the new channels start small."""
    from rdcodec.models.training.train import load_initial_weights

    torch.manual_seed(0)
    narrow = registry.build_network({"N": 8, "M": 12, "levels": 11, "exact": True}, True)
    path = tmp_path / "narrow.rdw"
    registry.export_weights(narrow, path)
    narrow = registry.build_network({"N": 8, "M": 12, "levels": 11, "exact": True}, True)
    load_initial_weights(narrow, str(path))
    wide = registry.build_network({"N": 8, "M": 16, "levels": 11, "exact": True}, True)
    load_initial_weights(wide, str(path))
    narrow.eval(), wide.eval()
    x = torch.rand(1, 3, 64, 64)
    q = torch.tensor([6.0])
    with torch.no_grad():
        a, b = narrow(x, q), wide(x, q)
        assert torch.allclose(a["x_hat"], b["x_hat"], atol=1e-5)
        assert torch.allclose(a["y"], b["y"][:, :12], atol=1e-5)
        assert b["y"][:, 12:].abs().max() < a["y"].abs().max()
        z_hat = torch.round(torch.randn(1, 8, 1, 1) * 2)
        (m_a, s_a), (m_b, s_b) = narrow.entropy_parameters(z_hat), wide.entropy_parameters(z_hat)
        assert torch.equal(m_a, m_b[:, :12]) and torch.equal(s_a, s_b[:, :12])
    with pytest.raises(ValueError, match="cannot widen"):
        load_initial_weights(
            registry.build_network({"N": 8, "M": 8, "levels": 11, "exact": True}, True), str(path)
        )
    # Started as projections, the new channels carry values (information) from step 0,
    # and g_s reads them through zeros, so the picture is still the same.
    projected = registry.build_network({"N": 8, "M": 16, "levels": 11, "exact": True}, True)
    load_initial_weights(projected, str(path), widen_start="projections")
    with torch.no_grad():
        c = projected.eval()(x, q)
    assert torch.allclose(a["x_hat"], c["x_hat"], atol=1e-5)
    assert c["y"][:, 12:].abs().mean() > 0.2 * a["y"].abs().mean()
    assert not projected.g_s[0].weight[12:].any()


def test_widening_the_transforms_preserves_the_function_and_opens(tmp_path):
    """A warm start into wider g_a and g_s (G 8 -> 12, the hyperprior kept at N 8) gives
    the same y and picture; the zero weights that read the new channels get gradients."""
    from rdcodec.models.training.train import load_initial_weights

    torch.manual_seed(0)
    arch = {"N": 8, "M": 12, "levels": 11, "exact": True, "slices": 2}
    narrow = registry.build_network(arch, True)
    with torch.no_grad():  # trained-looking GDNs: the copied blocks must matter
        for name, value in narrow.named_parameters():
            if name.startswith(("g_a.", "g_s.")) and name.endswith(("gamma", "beta")):
                value.add_(0.3 * torch.rand_like(value))
    path = tmp_path / "narrow.rdw"
    registry.export_weights(narrow, path)
    narrow = registry.build_network(arch, True)
    load_initial_weights(narrow, str(path))
    wide = registry.build_network({**arch, "G": 12}, True)
    load_initial_weights(wide, str(path))
    assert wide.g_s[2].weight.shape == (12, 12, 5, 5) and wide.h_a[0].weight.shape[0] == 8
    narrow.eval(), wide.eval()
    x = torch.rand(1, 3, 64, 64)
    q = torch.tensor([9.0])
    with torch.no_grad():
        a = narrow(x, q)
    b = wide(x, q)
    assert torch.allclose(a["x_hat"], b["x_hat"], atol=1e-5)
    assert torch.allclose(a["y"], b["y"], atol=1e-5)
    assert torch.allclose(a["y_likelihoods"], b["y_likelihoods"], atol=1e-5)
    (b["x_hat"] - x).square().mean().backward()
    # The zero weights that read the new channels learn at once.
    assert wide.g_s[2].weight.grad[8:].abs().sum() > 0
    assert wide.g_a[6].weight.grad[:, 8:].abs().sum() > 0
    with pytest.raises(ValueError, match="cannot narrow"):
        load_initial_weights(registry.build_network({**arch, "G": 6}, True), str(path))
    # Both at once: wider transforms and a wider latent (a new slice of 6 channels).
    both = registry.build_network({**arch, "G": 12, "M": 18, "slices": 3}, True)
    load_initial_weights(both, str(path))
    with torch.no_grad():
        c = both.eval()(x, q)
    assert torch.allclose(a["x_hat"], c["x_hat"], atol=1e-5)
    assert torch.allclose(a["y"], c["y"][:, :12], atol=1e-5)


def test_a_channel_context_grows_from_a_warm_start_and_learns(
    data_dir, tiny_exact_weights, tmp_path
):
    # train --slices: the context starts at zero inside the warm-start model, learns at
    # its own (higher) rate, and the run resumes with its three optimiser groups.
    cfg = _config(data_dir, tmp_path / "cc", 4)
    cfg.init = str(tiny_exact_weights)
    cfg.arch = {**registry.config_of(tiny_exact_weights), "slices": 3}
    ckpt = train(cfg, progress=False).checkpoint
    state = torch.load(ckpt, weights_only=True)
    last = [state["model"][f"context.{k}.4.weight"] for k in (0, 1)]
    assert all(float(w.abs().max()) > 0 for w in last)  # moved away from zero
    lrs = [g["lr"] for g in state["opt"]["param_groups"]]
    assert lrs == [cfg.lr, cfg.lr * cfg.gain_lr_scale, cfg.lr * cfg.context_lr_scale]
    cfg.steps = 6
    again = train(cfg, progress=False).checkpoint
    assert torch.load(again, weights_only=True)["step"] == 6
    path = tmp_path / "cc.rdw"
    registry.export_checkpoint(again, path)
    model = registry.load_weights_file(path, "cc", 250)
    assert model.network.config.slices == 3 and len(model.network.exact_context) == 2


def test_balanced_level_weighting_trains_differently(data_dir, tmp_path):
    plain = _weights(train(_config(data_dir, tmp_path / "plain", 3), progress=False).checkpoint)
    cfg = _config(data_dir, tmp_path / "balanced", 3)
    cfg.level_weighting = "balanced"
    state = torch.load(train(cfg, progress=False).checkpoint, weights_only=True)
    assert state["config"]["level_weighting"] == "balanced"
    # The running means are kept for a resume: one per level seen, at different values.
    means = state["level_balance"]["mean_loss"]
    assert int(state["level_balance"]["count"].sum()) == 3 * cfg.batch_size
    seen = means[~torch.isnan(means)]
    assert len(seen) >= 2 and len(set(seen.tolist())) == len(seen)
    balanced = state["model"]
    assert all(torch.isfinite(t).all() for t in balanced.values())
    assert not torch.equal(plain["g_a.0.weight"], balanced["g_a.0.weight"])


def test_a_quality_range_trains_only_those_levels(data_dir, tmp_path):
    cfg = _config(data_dir, tmp_path / "top", 4)
    cfg.level_weighting = "balanced"
    cfg.qualities = [7, 8]
    state = torch.load(train(cfg, progress=False).checkpoint, weights_only=True)
    # Only levels 7 and 8 (0-based 6 and 7) were sampled.
    counts = state["level_balance"]["count"].tolist()
    assert sum(counts[6:]) == 4 * cfg.batch_size and sum(counts[:6]) == 0
    # The gains of the levels left out did not move.
    initial = registry.build_network(TINY, trainable=True).state_dict()["log_gain"]
    trained = state["model"]["log_gain"]
    assert torch.equal(trained[:6], initial[:6]) and not torch.equal(trained[6:], initial[6:])


def test_a_quality_range_outside_the_model_is_refused(data_dir, tmp_path):
    cfg = _config(data_dir, tmp_path / "bad", 1)
    cfg.qualities = [7, 9]
    with pytest.raises(ValueError, match="not within the model's 1-8"):
        train(cfg, progress=False)
