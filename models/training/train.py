"""Training: lmbda * 255^2 * MSE + bpp, one lambda per sample from the quality ladder.

The rate term is -log2 of the latents' likelihoods (the KL term of the ELBO); the
distortion term is the MSE of the reconstruction on [0, 1] pixels, scaled to 8-bit.
Runs are resumable bit-exactly: a checkpoint holds the model, both optimisers, the
step, and the states of every random generator the loop draws from.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from ... import atomic
from ...errors import ImageError, ModelError
from ..gaussian import SCALE_MIN
from ..network import ModelConfig, bf16_is_native  # noqa: F401  (the CLI's check)
from ..registry import build_network
from ..trainable import GainedHyperprior
from .config import TrainConfig  # noqa: F401  (re-exported: the training entry point)
from .data import CropSampler, centre_crops
from .objective import (
    LevelBalance,
    measure_level,
    psnr_from_mse,
    rate_distortion,
    rd_parameters,
)


def _rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _all_agree(flag: bool) -> bool:
    """True on every rank as soon as it is true on any (ranks must stop together)."""
    if _world() == 1:
        return flag
    t = torch.tensor([int(flag)])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


GAIN_PARAMETERS = ("log_gain", "log_inv_gain")


def build_optimizers(model: GainedHyperprior, cfg: TrainConfig):
    """Adam on the R + lmbda D parameters (transforms, then gains: two groups whose
    parameter order is that of ``named_parameters``) and Adam on the tail quantiles."""
    named = rd_parameters(model)
    contexts = ("context.", "spatial.")  # the channel and the checkerboard contexts
    transforms = [p for n, p in named if n not in GAIN_PARAMETERS and not n.startswith(contexts)]
    gains = [p for n, p in named if n in GAIN_PARAMETERS]
    context = [p for n, p in named if n.startswith(contexts)]
    aux = [p for n, p in model.named_parameters() if n.endswith("quantiles")]
    groups = [
        {"params": transforms, "lr": cfg.lr},
        {"params": gains, "lr": cfg.lr * cfg.gain_lr_scale},
    ]
    if context:  # a third group only where there is a context (old checkpoints have two)
        groups.append({"params": context, "lr": cfg.lr * cfg.context_lr_scale})
    return torch.optim.Adam(groups), torch.optim.Adam(aux, lr=cfg.aux_lr)


def set_learning_rates(opt: torch.optim.Optimizer, cfg: TrainConfig) -> None:
    scales = (1.0, cfg.gain_lr_scale, cfg.context_lr_scale)
    for group, scale in zip(opt.param_groups, scales, strict=False):
        group["lr"] = cfg.lr * scale


def load_optimizer_state(opt: torch.optim.Optimizer, state: dict, model: nn.Module) -> None:
    """Load an optimiser state, also from checkpoints written before the gains had
    their own group (one group over ``named_parameters`` order, gains first)."""
    if len(state["param_groups"]) == 1 and len(opt.param_groups) == 2:
        legacy = [n for n, _ in rd_parameters(model)]
        names = {id(p): n for n, p in model.named_parameters()}
        current = [names[id(p)] for g in opt.param_groups for p in g["params"]]
        old_index = {n: i for i, n in enumerate(legacy)}
        moved = {
            new: state["state"][old_index[n]]
            for new, n in enumerate(current)
            if old_index[n] in state["state"]
        }
        groups, start = [], 0
        for group in opt.param_groups:
            ids = list(range(start, start + len(group["params"])))
            groups.append({**state["param_groups"][0], "params": ids})
            start += len(ids)
        state = {"state": moved, "param_groups": groups}
    opt.load_state_dict(state)


def _gather(obj) -> list:
    """Every rank's ``obj``, in rank order (a one-element list without DDP)."""
    if _world() == 1:
        return [obj]
    out = [None] * _world()
    dist.all_gather_object(out, obj)
    return out


class WeightAverage:
    """Exponential moving average of a model's floating-point state (parameters and
    buffers alike; integer buffers are copied). Averaging the weights over the last
    ~1/(1-decay) steps removes most of the gradient noise a small batch leaves in them."""

    def __init__(self, model: nn.Module, decay: float, state: dict | None = None) -> None:
        self.decay = decay
        source = state if state is not None else model.state_dict()
        self.state = {
            k: v.detach().clone().float() if v.is_floating_point() else v.clone()
            for k, v in source.items()
        }

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for k, v in model.state_dict().items():
            avg = self.state[k]
            if v.is_floating_point():
                avg.mul_(self.decay).add_(v.detach().float(), alpha=1 - self.decay)
            else:
                avg.copy_(v)

    def state_dict(self) -> dict:
        return self.state


def save_checkpoint(
    path: Path,
    model,
    opt,
    aux_opt,
    step: int,
    cfg: TrainConfig,
    sampler,
    elapsed: float,
    ema: WeightAverage | None = None,
    balance: LevelBalance | None = None,
) -> None:
    """Atomically write a resumable checkpoint (includes optimiser state: never ship it).

    Collective under DDP (every rank's random state is stored); only rank 0 writes.
    """
    torch_rngs = _gather(torch.get_rng_state())
    sampler_rngs = _gather(sampler.state())
    if _rank() != 0:
        return
    state = {
        "model": model.state_dict(),
        "ema": ema.state_dict() if ema is not None else None,
        "level_balance": balance.state_dict() if balance is not None else None,
        "opt": opt.state_dict(),
        "aux_opt": aux_opt.state_dict(),
        "step": step,
        "elapsed": elapsed,
        "config": asdict(cfg),
        "torch_rng": torch_rngs,
        "sampler_rng": sampler_rngs,
    }
    atomic.write_file(path, lambda tmp: torch.save(state, tmp))


def _restore_rng(ckpt: dict, sampler: CropSampler) -> None:
    torch_rng, sampler_rng = ckpt["torch_rng"], ckpt["sampler_rng"]
    if isinstance(torch_rng, torch.Tensor):  # checkpoints of single-process runs before DDP
        torch_rng, sampler_rng = [torch_rng], [sampler_rng]
    if len(torch_rng) != _world():
        # Another process count: keep the seeds' fresh streams rather than duplicate one.
        return
    torch.set_rng_state(torch_rng[_rank()])
    sampler.set_state(sampler_rng[_rank()])


def load_initial_weights(
    model: GainedHyperprior, path: str, widen_start: str = "zero"
) -> dict | None:
    """Load model weights from a checkpoint or a shipped weight file; returns the
    checkpoint when ``path`` is one of the same architecture (to resume from).

    Weights of another architecture warm-start ``model`` function-preservingly: an exact
    model from the float one (h_s's grids calibrated on the loaded weights), and a model
    with more quality levels from one with fewer (see ``_fit_levels``)."""
    from ..exact import ExactHyperSynthesis
    from ..registry import CONTEXTS, context_arrays, is_checkpoint, load_blob

    state = load_blob(path)
    if is_checkpoint(state):
        if ModelConfig(**state["config"]["arch"]) == model.config:
            model.load_state_dict(state["model"])
            return state
        weights = state.get("ema") or state["model"]
    else:
        weights = state["state_dict"] if "state_dict" in state else state
    weights = {
        k: v.float() if v.is_floating_point() else v
        for k, v in weights.items()
        if v.is_floating_point() or k.endswith("weight_exponents")
    }
    if "exact_h_s" in state:  # a shipped exact model: its h_s is stored as integers
        arrays = {k: v.numpy() for k, v in state["exact_h_s"].items()}
        weights.update(ExactHyperSynthesis.from_arrays(arrays).float_weights("h_s."))
    for kind, first in CONTEXTS:  # and its channel and checkerboard contexts
        if f"exact_{kind}" in state:
            slices = state["config"].get("slices", 1)
            for k, exact in enumerate(context_arrays(state[f"exact_{kind}"], slices, first)):
                weights.update(exact.float_weights(f"{kind}.{k}."))
    _fit_levels(weights, model)
    old_slices = 1 + len({k.split(".")[1] for k in weights if k.startswith("context.")})
    if old_slices > 1:
        # A context carries over slice by slice: the slices must keep their width (a
        # wider latent adds whole slices after the old ones).
        old_width = weights["g_a.6.weight"].shape[0] // old_slices
        width = model.config.M // model.config.slices
        if width != old_width:
            raise ModelError(
                f"{path} codes y in {old_slices} slices of {old_width} channels; a model "
                f"of {model.config.slices} slices of {width} cannot start from its context "
                f"(keep slices of {old_width} channels, or start from a model without a "
                "context)"
            )
    spatial = len({k.split(".")[1] for k in weights if k.startswith("spatial.")})
    if spatial:
        # So does a checkerboard context (one network per slice, as wide as its slice).
        old_width = weights["g_a.6.weight"].shape[0] // spatial
        width = model.config.M // model.config.slices
        if width != old_width or not model.config.checkerboard:
            raise ModelError(
                f"{path} has a checkerboard context on slices of {old_width} channels; a "
                f"model of {model.config.slices} slices of {width}"
                f"{'' if model.config.checkerboard else ' without one'} cannot start from it "
                f"(keep slices of {old_width} channels and the checkerboard)"
            )
    _widen_transforms(weights, model)
    _widen_latent(weights, model, widen_start)
    model.load_state_dict(weights, strict=False)
    if model.config.exact and "h_s.weight_exponents" not in weights:
        model.h_s.calibrate()
    # A context that the warm start lacks starts as built: zero corrections, so the
    # model codes exactly as the one it grew from until training moves it.
    return None


def _fit_levels(weights: dict[str, Tensor], model: GainedHyperprior) -> None:
    """Give weights of a model with fewer (top) levels the lower levels of ``model``:
    their log-gains continue each channel's step between the two lowest trained
    levels (the ladders' lambdas are in the same ~1.93x steps)."""
    for name in ("log_gain", "log_inv_gain"):
        old = weights.get(name)
        new = getattr(model, name)
        if old is None or old.shape[0] == new.shape[0]:  # (channels: _widen_latent)
            continue
        extra = new.shape[0] - old.shape[0]
        if extra < 0 or old.shape[0] < 2:
            raise ValueError(f"cannot fit {old.shape[0]} quality levels into {new.shape[0]}")
        step = old[1] - old[0]
        low = [old[0] - k * step for k in range(extra, 0, -1)]
        weights[name] = torch.cat([torch.stack(low), old])


def _widen_latent(weights: dict[str, Tensor], model: GainedHyperprior, start: str = "zero") -> None:
    """Give weights of a model with fewer latent channels (M) the channels of ``model``,
    function-preservingly: the new channels of y start at zero (g_a's new output
    filters are zero), h_s gives them mean 0 and the
    smallest scale (so they cost next to no bits), and h_a does not read them (its new
    input filters are zero); h_s's new hidden channels are zero, so the old channels
    keep their means and scales, and a channel context keeps its old slices' networks
    (new slices get new, zero-output ones). g_s's new input filters are small random
    ones: they read zeros, so the picture is unchanged, but they pass the distortion's
    gradient to the new channels (with zero filters, straight-through rounding of
    all-zero channels would give them none, and they would never open).

    ``start="projections"``: g_a's new rows are instead random projections of its
    features (at the old rows' spread) and g_s reads them through zeros: the picture is
    the same, the new channels carry information from step 0 (and bits: give them a
    rate warm-up), and g_s's zero filters learn to read them at once."""
    old_m = weights["g_a.6.weight"].shape[0] if "g_a.6.weight" in weights else None
    new_m = model.config.M
    if old_m is None or old_m == new_m:
        return
    if old_m > new_m or weights["g_a.6.weight"].shape[1] != model.config.transform_channels:
        raise ValueError(
            f"cannot widen a latent of {old_m} channels to {new_m} (g_a's width must match)"
        )
    target = model.state_dict()
    # h_s's last layer: means of the old channels, then their scales; make room for both.
    for key in ("h_s.4.weight", "h_s.4.bias"):
        if key in weights:
            means, scales = weights[key].chunk(2, dim=0)
            shape = (new_m - old_m, *means.shape[1:])
            fill = torch.zeros(shape)
            scale_fill = fill + (SCALE_MIN if key.endswith("bias") else 0.0)
            weights[key] = torch.cat([means, fill, scales, scale_fill])
    for key, value in list(weights.items()):
        want = target.get(key)
        if want is None or want.shape == value.shape or key.startswith("entropy_bottleneck"):
            continue
        grown = torch.zeros(want.shape, dtype=value.dtype)
        grown[tuple(slice(0, n) for n in value.shape)] = value
        weights[key] = grown
    # g_s reads the new channels through small random filters (a tenth of the old ones'
    # spread; the channels are zero, so the picture does not change), and they get the
    # per-level gains of the average old channel.
    old = weights["g_s.0.weight"][:old_m]
    weights["g_s.0.weight"][old_m:] = torch.randn_like(weights["g_s.0.weight"][old_m:]) * (
        0.1 * float(old.std())
    )
    for name in ("log_gain", "log_inv_gain"):
        if name in weights:
            weights[name][:, old_m:] = weights[name][:, :old_m].mean(dim=1, keepdim=True)
    if start == "projections":
        analysis = weights["g_a.6.weight"]
        analysis[old_m:] = torch.randn_like(analysis[old_m:]) * float(analysis[:old_m].std())
        weights["g_s.0.weight"][old_m:] = 0
    elif start != "zero":
        raise ValueError(f"unknown start for new channels: {start!r}")


# Where g_a and g_s hold their hidden channels: (layer, dim of its output channels, dim
# of its input channels) for the convolutions (Conv2d weights are (out, in, k, k),
# ConvTranspose2d ones (in, out, k, k)), and the GDN layers between them.
_TRANSFORM_CONVS = {
    "g_a": ((0, 0, None), (2, 0, 1), (4, 0, 1), (6, None, 1)),
    "g_s": ((0, 1, None), (2, 1, 0), (4, 1, 0), (6, None, 0)),
}
_TRANSFORM_GDNS = (1, 3, 5)


def _widen_transforms(weights: dict[str, Tensor], model: GainedHyperprior) -> None:
    """Give weights of a model whose g_a and g_s are narrower the hidden channels of
    ``model`` (G), function-preservingly: each new channel is computed by random filters
    (of the old filters' spread) and a GDN that divides it by itself alone, and nothing
    old reads it (its outgoing weights are zero), so y and the picture are unchanged.
    The outgoing weights get gradients at once (the new channels are not zero), and
    through them the new filters: the capacity opens as training needs it."""
    old_g = weights["g_a.0.weight"].shape[0] if "g_a.0.weight" in weights else None
    new_g = model.config.transform_channels
    if old_g is None or old_g == new_g:
        return
    if old_g > new_g:
        raise ValueError(f"cannot narrow g_a and g_s from {old_g} channels to {new_g}")
    target = model.state_dict()  # the new model as built: its GDNs' initial values
    for transform, layers in _TRANSFORM_CONVS.items():
        for index, out_dim, in_dim in layers:
            key = f"{transform}.{index}"
            old = weights[f"{key}.weight"]
            shape = list(old.shape)  # only G grows here (M: ``_widen_latent``, after this)
            for dim in (out_dim, in_dim):
                if dim is not None:
                    shape[dim] = new_g
            grown = torch.randn(shape) * float(old.std())
            if in_dim is not None:  # old outputs do not read the new inputs
                keep_out = slice(None) if out_dim is None else slice(0, old.shape[out_dim])
                index_ = [slice(None)] * 4
                index_[in_dim] = slice(old.shape[in_dim], None)
                index_[1 - in_dim] = keep_out
                grown[tuple(index_)] = 0
            grown[tuple(slice(0, n) for n in old.shape)] = old
            weights[f"{key}.weight"] = grown
            if out_dim is not None:
                bias = torch.zeros(new_g)
                bias[:old_g] = weights[f"{key}.bias"]
                weights[f"{key}.bias"] = bias
        for index in _TRANSFORM_GDNS:
            for name in ("beta", "gamma"):
                key = f"{transform}.{index}.{name}"
                grown = target[key].detach().clone()  # beta 1, gamma 0.1 I: self-division
                grown[tuple(slice(0, n) for n in weights[key].shape)] = weights[key]
                weights[key] = grown


@torch.no_grad()
def evaluate_estimate(
    model: GainedHyperprior, images: list[np.ndarray], qualities=(1, 4, 8)
) -> dict:
    """Model-estimated bpp (-log2 p of rounded latents), PSNR, the unquantised
    autoencoder's PSNR, and the per-channel KL of y (bits per latent location) with the
    count of active channels, on centre crops."""
    model.eval()
    rows = {}
    for q in qualities:
        stats = measure_level(model, images, q)
        rows[q] = {
            "bpp": stats.bpp,
            "psnr": stats.psnr,
            "psnr_unquantised": stats.psnr_unquantised,
            "y_channel_bits_per_location": [round(v, 5) for v in stats.channel_bits.tolist()],
            "active_channels": stats.active_channels,
        }
    model.train()
    return rows


def _val_crops(folder: str | None, size: int = 256, count: int = 8) -> list[np.ndarray]:
    if not folder or not Path(folder).is_dir():
        return []
    return centre_crops(Path(folder), size, count)


def to_batch(crops: np.ndarray, device: torch.device, channels_last: bool = False) -> Tensor:
    """uint8 (B, 3, H, W) crops -> float [0, 1] tensor on ``device``."""
    batch = torch.from_numpy(crops).to(device).float() / 255
    return batch.contiguous(memory_format=torch.channels_last) if channels_last else batch


def train_step(
    step_model,
    model: GainedHyperprior,
    opt,
    aux_opt,
    batch: Tensor,
    levels: Tensor,
    lambdas,
    clip,
    bf16: bool = False,
    weights: Tensor | None = None,
    channel_rate: Tensor | None = None,
) -> tuple[dict[str, Tensor], Tensor]:
    """One update of the R + lmbda D parameters and one of the tail quantiles.

    ``step_model`` is what runs the forward pass (``model`` itself, or wrapped by DDP
    and/or ``torch.compile``); ``levels`` are 0-based quality levels, one per sample.
    ``bf16``: the transforms run under bfloat16 autocast (weights, optimiser state and
    the rate terms stay float32). ``weights``: per-sample loss weights (``LevelBalance``);
    ``channel_rate``: the share of each y channel's bits the loss charges.
    """
    with torch.autocast(batch.device.type, dtype=torch.bfloat16, enabled=bf16):
        out = step_model(batch, (levels + 1).float().to(batch.device))
        lmbda = lambdas[levels].to(batch.device)
        if weights is not None:
            weights = weights.to(lmbda)
        rd = rate_distortion(out, batch, lmbda, weights, channel_rate)
    opt.zero_grad(set_to_none=True)
    rd["loss"].backward()
    if clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    opt.step()
    aux_opt.zero_grad(set_to_none=True)
    aux = model.aux_loss()
    aux.backward()
    if _world() > 1:
        grad = model.entropy_bottleneck.quantiles.grad
        dist.all_reduce(grad)
        grad /= _world()
    aux_opt.step()
    return rd, aux


@dataclass(frozen=True)
class TrainResult:
    checkpoint: Path
    model: GainedHyperprior
    step: int


def init_distributed() -> None:
    """Join the process group torchrun describes (WORLD_SIZE > 1); gloo on CPU, nccl on GPU."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")


def train(cfg: TrainConfig, progress: bool = True, on_checkpoint=None) -> TrainResult:
    """Run (or resume) training; returns the last checkpoint and the trained model.

    ``on_checkpoint(path, step, seconds)`` is called on rank 0 after each periodic checkpoint
    (``seconds``: the run's cumulative training time, over all resumptions)
    (the CLI uses it for real-file validation and export).
    """
    from tqdm import tqdm

    from ...codec import allocator

    allocator.keep_large_blocks()  # each step makes and frees tensors of tens of MB
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    ckpt_path = out / "last.ckpt"
    torch.manual_seed(cfg.seed + _rank())

    model = build_network(cfg.arch, trainable=True)
    device = torch.device(cfg.device)
    try:
        sampler = (
            CropSampler.from_packed(Path(cfg.packed), cfg.crop, cfg.seed + _rank())
            if cfg.packed
            else CropSampler.from_folder(Path(cfg.data), cfg.crop, cfg.seed + _rank())
        )
    except ValueError as exc:  # no images, none large enough, not an array of crops
        raise ImageError(str(exc)) from None
    step, elapsed = 0, 0.0
    resume_from = str(ckpt_path) if ckpt_path.exists() else cfg.init
    ckpt = load_initial_weights(model, resume_from, cfg.widen_start) if resume_from else None
    model.to(device)
    opt, aux_opt = build_optimizers(model, cfg)
    resumed = ckpt is not None and resume_from == str(ckpt_path)
    if resumed:
        load_optimizer_state(opt, ckpt["opt"], model)
        aux_opt.load_state_dict(ckpt["aux_opt"])
        set_learning_rates(opt, cfg)  # a new --lr applies on resume
        step, elapsed = ckpt["step"], ckpt["elapsed"]
        _restore_rng(ckpt, sampler)
        # The rate warm-up stays on the channels the run's own --widen added.
        cfg.rate_warmup_from = ckpt["config"].get("rate_warmup_from", cfg.rate_warmup_from)
    ema = None
    if cfg.ema_decay:
        ema = WeightAverage(model, cfg.ema_decay, ckpt.get("ema") if resumed else None)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    ddp_model = model
    if _world() > 1:
        # The tail quantiles are trained by the aux loss alone; their gradients are
        # averaged by hand below, so DDP must not wait for them.
        torch.nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
            model, ["entropy_bottleneck.quantiles"]
        )
        ddp_model = torch.nn.parallel.DistributedDataParallel(model)
    step_model = torch.compile(ddp_model) if cfg.compile else ddp_model

    val_images = _val_crops(cfg.val) if _rank() == 0 else []
    # Made only now: a run that fails to start (its data, its weights) leaves no folder.
    out.mkdir(parents=True, exist_ok=True)
    log = open(out / "log.jsonl", "a") if _rank() == 0 else None
    lambdas = torch.tensor(model.config.lambdas)
    balance = None
    if cfg.level_weighting == "balanced":
        balance = LevelBalance(len(lambdas), state=ckpt.get("level_balance") if resumed else None)
    level_lo, level_hi = cfg.level_range(len(lambdas))
    start, last_ckpt_step = time.time(), step
    bar = tqdm(
        total=cfg.steps,
        initial=step,
        disable=not progress or _rank() != 0,
        dynamic_ncols=True,
        mininterval=0.5 if sys.stderr.isatty() else 60,  # a log file gets a line a minute
    )
    window = time.time()
    while step < cfg.steps:
        if cfg.time_budget is not None and _all_agree(time.time() - start >= cfg.time_budget):
            break
        batch = to_batch(sampler.batch(cfg.batch_size), device, cfg.channels_last)
        levels = torch.randint(level_lo, level_hi, (cfg.batch_size,))
        weights = balance.weights(levels) if balance is not None else None
        channel_rate = None
        if cfg.rate_warmup_from is not None and step < 2 * cfg.rate_warmup:
            channel_rate = torch.ones(model.config.M)
            share = max(step - cfg.rate_warmup, 0) / cfg.rate_warmup
            channel_rate[cfg.rate_warmup_from :] = share
        rd, aux = train_step(
            step_model,
            model,
            opt,
            aux_opt,
            batch,
            levels,
            lambdas,
            cfg.clip,
            cfg.bf16,
            weights,
            channel_rate,
        )
        if balance is not None:
            balance.update(levels, rd["sample_loss"])
        if ema is not None:
            ema.update(model)
        step += 1
        bar.update(1)

        if log is not None and step % cfg.log_every == 0:
            now = time.time()
            its = cfg.log_every / max(now - window, 1e-9)
            window = now
            mse = rd["mse"].mean().item()
            row = {
                "step": step,
                "loss": rd["sample_loss"].mean().item(),  # unweighted: comparable across runs
                "bpp": rd["bpp"].mean().item(),
                "bpp_y": rd["bpp_y"].mean().item(),
                "bpp_z": rd["bpp_z"].mean().item(),
                "mse": mse,
                "psnr": psnr_from_mse(mse),
                "aux": aux.item(),
                "it_s": its,
                "time": elapsed + now - start,
            }
            log.write(json.dumps(row) + "\n")
            log.flush()
            bar.set_postfix(
                bpp=f"{row['bpp']:.3f}",
                psnr=f"{row['psnr']:.2f}",
                loss=f"{row['loss']:.3f}",
                it_s=f"{its:.2f}",
                refresh=False,  # the bar's own interval decides when to draw
            )
        if _rank() == 0 and val_images and step % cfg.estimate_every == 0:
            rows = evaluate_estimate(model, val_images)
            log.write(json.dumps({"step": step, "val_estimate": rows}) + "\n")
            log.flush()
        if step - last_ckpt_step >= cfg.ckpt_every:
            seconds = elapsed + time.time() - start
            save_checkpoint(
                ckpt_path, model, opt, aux_opt, step, cfg, sampler, seconds, ema, balance
            )
            last_ckpt_step = step
            if on_checkpoint is not None and _rank() == 0:
                on_checkpoint(ckpt_path, step, seconds)
    bar.close()
    seconds = elapsed + time.time() - start
    save_checkpoint(ckpt_path, model, opt, aux_opt, step, cfg, sampler, seconds, ema, balance)
    if log is not None:
        log.close()
    return TrainResult(ckpt_path, model, step)
