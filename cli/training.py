"""Training: train, train-speed, pack-crops (the weight tools are in ``model_tools``)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import click

from ..errors import CodecError, OutputError
from ..models.training.config import TrainConfig  # torch-free: the defaults below
from .common import check_output, parse_level_range, reports_errors, writing

DEFAULTS = TrainConfig()


@click.command()
@click.option(
    "--data", default="../shared/data/train", show_default=True, help="Folder of training photos."
)
@click.option(
    "--val", default="../shared/data/val", show_default=True, help="Folder of validation photos."
)
@click.option(
    "--out",
    type=click.Path(),  # refused when empty: "" is the current folder
    default="runs/default",
    show_default=True,
    help="Run folder (checkpoints, log).",
)
@click.option(
    "--init", default=None, help="Weights or checkpoint to start from (default: the shipped model)."
)
@click.option("--from-scratch", is_flag=True, help="Start from random weights.")
@click.option(
    "--steps",
    type=click.IntRange(1),
    default=DEFAULTS.steps,
    show_default=True,
    help="Stop at this global step.",
)
@click.option("--time-budget", type=float, default=None, help="Stop after this many seconds.")
@click.option(
    "--batch-size", type=click.IntRange(1), default=DEFAULTS.batch_size, show_default=True
)
@click.option(
    "--crop",
    type=int,
    default=DEFAULTS.crop,
    show_default=True,
    help="Crop side (a multiple of 64).",
)
@click.option("--lr", type=float, default=DEFAULTS.lr, show_default=True)
@click.option(
    "--gain-lr-scale",
    type=float,
    default=DEFAULTS.gain_lr_scale,
    show_default=True,
    help="Learning rate of the per-level gain vectors, as a multiple of --lr.",
)
@click.option(
    "--context-lr-scale",
    type=float,
    default=DEFAULTS.context_lr_scale,
    show_default=True,
    help="Learning rate of the channel and checkerboard contexts, as a multiple of --lr "
    "(a context grown at zero inside a trained model learns faster than the rest).",
)
@click.option("--threads", type=click.IntRange(1), default=None, help="torch CPU threads.")
@click.option("--arch", default=None, help="N,M channels (with --from-scratch; default 96,128).")
@click.option("--packed", default=None, help="A .npy of uint8 crops to train on instead of --data.")
@click.option(
    "--export", "export_path", default=None, help="Write shipped-format weights here at the end."
)
@click.option("--force", is_flag=True, help="Overwrite --export's file if it exists.")
@click.option(
    "--val-every",
    type=click.IntRange(0),
    default=2000,
    show_default=True,
    help="Steps between real-file validations (BD-rate vs JPEG on --val); 0 disables.",
)
@click.option(
    "--val-images",
    type=click.IntRange(1),
    default=6,
    show_default=True,
    help="Validation images used (centre 512 px).",
)
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda.")
@click.option("--channels-last", is_flag=True, help="NHWC activations (see `rdcodec train-speed`).")
@click.option("--compile", "compiled", is_flag=True, help="torch.compile the forward pass.")
@click.option(
    "--bf16",
    is_flag=True,
    help="bfloat16 autocast for the transforms (fast on CPUs with AVX512-BF16 or AMX).",
)
@click.option(
    "--exact",
    is_flag=True,
    help="Train the exact model (integer h_s), warm-started from float weights if need be.",
)
@click.option(
    "--levels",
    type=click.IntRange(2, 11),
    default=None,
    help="Quality levels (11 adds three below the shipped eight; default: as --init).",
)
@click.option(
    "--widen",
    type=int,
    default=None,
    help="Latent channels M to grow the warm-start model to (function-preserving: the new "
    "channels start at zero and cost next to no bits; a channel context gets whole new "
    "slices of its width).",
)
@click.option(
    "--widen-start",
    type=click.Choice(["zero", "projections"]),
    default=DEFAULTS.widen_start,
    show_default=True,
    help="With --widen: how the new channels start. zero: the same bytes and picture; "
    "projections: random projections of g_a's features that g_s reads through zeros (the "
    "same picture, new information from step 0; give them --rate-warmup).",
)
@click.option(
    "--widen-transforms",
    type=click.IntRange(1),
    default=None,
    help="Hidden channels G to grow the warm-start model's g_a and g_s to (capacity for "
    "the picture at high rates; function-preserving: nothing reads the new channels "
    "until training opens them; the hyperprior keeps its N).",
)
@click.option(
    "--slices",
    type=click.IntRange(1, 16),
    default=None,
    help="Code y in this many channel slices, each conditioned on those before it (a "
    "channel context, Minnen & Singh 2020; needs an exact model). Grown from a warm start "
    "without one function-preservingly: the context starts at zero.",
)
@click.option(
    "--checkerboard",
    is_flag=True,
    help="Code each slice in two checkerboard halves, the second with means and scales "
    "corrected from the decoded first (a spatial context, He et al. 2021; needs an exact "
    "model). Grown function-preservingly: the context starts at zero.",
)
@click.option(
    "--ema-decay",
    type=click.FloatRange(0, 1, max_open=True),
    default=DEFAULTS.ema_decay,
    show_default=True,
    help="Decay of the weight average that is validated and exported; 0 disables.",
)
@click.option(
    "--level-weighting",
    type=click.Choice(["lambda", "balanced"]),
    default=DEFAULTS.level_weighting,
    show_default=True,
    help="lambda: R + lmbda D as it is (the top levels dominate each batch); balanced: "
    "each sample's loss divided by a running mean of its level's loss.",
)
@click.option(
    "--rate-warmup",
    type=click.IntRange(0),
    default=DEFAULTS.rate_warmup,
    show_default=True,
    help="With --widen: the new channels' bits are free for the first N steps, then charged "
    "on a ramp to their full cost at step 2N (free bits, then a KL warm-up), so the decoder "
    "learns to read them before the rate term can close them.",
)
@click.option(
    "--qualities",
    "qualities",
    metavar="LO-HI",
    help="Train (and validate) only these quality levels, e.g. 8-11: a model for one end "
    "of the scale, such as the high-rate model.",
)
@reports_errors
def train(
    data,
    val,
    out,
    init,
    from_scratch,
    steps,
    time_budget,
    batch_size,
    crop,
    lr,
    gain_lr_scale,
    context_lr_scale,
    threads,
    arch,
    packed,
    export_path,
    force,
    val_every,
    val_images,
    device,
    channels_last,
    compiled,
    bf16,
    exact,
    levels,
    widen,
    widen_start,
    widen_transforms,
    slices,
    checkerboard,
    ema_decay,
    level_weighting,
    rate_warmup,
    qualities,
):
    """Train (or resume, or continue from the shipped weights) on lmbda*255^2*MSE + bpp."""
    from ..codec import image_io
    from ..models import registry
    from ..models.network import ModelConfig
    from ..models.training.config import plan_architecture
    from ..models.training.train import bf16_is_native, init_distributed
    from ..models.training.train import train as run_training

    _check_train_numbers(crop, time_budget, lr, gain_lr_scale, context_lr_scale, ema_decay)
    _check_device(device)
    if from_scratch and init:
        raise CodecError("--from-scratch and --init: give one (random weights, or these)")
    if from_scratch:
        n, m = _arch_channels(arch or "96,128")
    elif arch:
        raise CodecError("--arch sets the channels of --from-scratch: a warm start keeps its own")
    if export_path:
        check_output(Path(export_path), force)  # before hours of training, not after
    created = _check_run_folder(Path(out))
    if packed:
        _check_packed(Path(packed))
    elif not Path(data).is_dir():
        raise CodecError(f"{data}: training data folder does not exist")
    elif not image_io.list_images(data):
        raise CodecError(f"no images in {data}")
    if bf16 and not bf16_is_native(device):
        click.echo(
            "warning: this CPU has no AVX512-BF16/AMX, so --bf16 is emulated and about "
            "10x slower; drop it",
            err=True,
        )
    cfg = TrainConfig(
        data=data,
        val=val,
        out=out,
        steps=steps,
        time_budget=time_budget,
        batch_size=batch_size,
        crop=crop,
        lr=lr,
        gain_lr_scale=gain_lr_scale,
        context_lr_scale=context_lr_scale,
        threads=threads,
        packed=packed,
        device=device,
        channels_last=channels_last,
        compile=compiled,
        bf16=bf16,
        ema_decay=ema_decay,
        level_weighting=level_weighting,
        rate_warmup=rate_warmup,
        widen_start=widen_start,
        qualities=parse_level_range(qualities),
    )
    last = Path(out) / "last.ckpt"
    resumed = registry.config_of(last) if last.exists() else None
    if from_scratch:
        start = ModelConfig(n, m).to_dict()
    else:
        cfg.init = init or str(
            registry.weights_path(registry.find_entry(registry.default_model_name()))
        )
        # Resuming a run: its own architecture, not the warm start's (which would leave
        # out what the run grew, such as a channel context).
        start = resumed or registry.config_of(cfg.init)
    try:
        plan = plan_architecture(
            start,
            from_scratch=from_scratch,
            exact=exact,
            levels=levels,
            widen=widen,
            widen_transforms=widen_transforms,
            slices=slices,
            checkerboard=checkerboard,
            rate_warmup=rate_warmup,
            resumed=resumed,
        )
    except ValueError as exc:
        raise CodecError(str(exc)) from None
    cfg.arch, cfg.rate_warmup_from = plan.arch, plan.rate_warmup_from
    registry.build_network(cfg.arch)  # a clear error for an impossible combination
    if cfg.qualities:
        try:
            cfg.level_range(cfg.arch.get("levels", ModelConfig().levels))
        except ValueError as e:
            raise CodecError(f"--qualities: {e}") from None
    if val_every and not (val and Path(val).is_dir()):
        raise CodecError(
            f"{val}: validation folder does not exist (--val-every 0 trains without validation)"
        )
    init_distributed()  # under torchrun: DDP (gloo on CPU, nccl on GPU)
    try:
        validator = None
        if val_every:
            from ..models.training.validate import Validator

            validator = Validator(
                Path(out),
                val,
                val_images,
                val_every,
                report=lambda row: click.echo(f"validation: {json.dumps(row)}", err=True),
                qualities=cfg.qualities,
            )
        ckpt = run_training(cfg, on_checkpoint=validator).checkpoint
    except BaseException:
        # A failed start (too small photos, Ctrl-C while validating the shipped model)
        # leaves no run folder behind: one made here, with no training log yet, goes.
        if created and not (Path(out) / "log.jsonl").exists():
            shutil.rmtree(out, ignore_errors=True)
        raise
    click.echo(f"checkpoint: {ckpt}")
    if export_path:
        digests = []
        with writing(Path(export_path)):
            image_io.atomic_write(
                export_path,
                lambda tmp: digests.append(registry.export_checkpoint(ckpt, tmp)),
                force,
            )
        click.echo(f"exported {export_path} sha256 {digests[0]}")


def _check_train_numbers(
    crop: int,
    time_budget: float | None,
    lr: float,
    gain_lr_scale: float,
    context_lr_scale: float,
    ema_decay: float,
) -> None:
    """Numbers click's ranges do not refuse: a crop the transforms cannot take, and NaN
    (which passes any range check, and would train an all-NaN model)."""
    if crop < 64 or crop % 64:
        raise CodecError(f"--crop {crop}: give a multiple of 64 (64 or more)")
    for name, value in (("--time-budget", time_budget), ("--lr", lr)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise CodecError(f"{name} {value:g}: give a finite number above 0")
    for name, value in (
        ("--gain-lr-scale", gain_lr_scale),
        ("--context-lr-scale", context_lr_scale),
        ("--ema-decay", ema_decay),
    ):
        if not (math.isfinite(value) and value >= 0):
            raise CodecError(f"{name} {value:g}: give a finite number, 0 or more")


def _check_device(device: str) -> None:
    """A device torch can name and this machine has (torch's own errors come mid-setup,
    as tracebacks)."""
    import torch

    try:
        kind = torch.device(device).type
    except RuntimeError:
        raise CodecError(f"--device {device}: give cpu or cuda (or cuda:N)") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise CodecError(f"--device {device}: this machine has no CUDA device")
    if kind not in ("cpu", "cuda"):
        raise CodecError(f"--device {device}: give cpu or cuda (or cuda:N)")


def _arch_channels(arch: str) -> tuple[int, int]:
    """``--arch N,M`` as two channel counts of at least 1."""
    try:
        n, m = (int(v) for v in arch.split(","))
    except ValueError:
        n = m = 0
    if n < 1 or m < 1:
        raise CodecError(f"--arch {arch}: give N,M channels such as 96,128")
    return n, m


def _check_run_folder(out: Path) -> bool:
    """Refuse an ``--out`` that cannot be a run folder (a file; a place where no folder
    can be made) before any work; returns whether the run will create it."""
    from ..atomic import check_writable

    with writing(out):
        if out.exists():
            if not out.is_dir():
                raise OutputError(f"{out}: not a folder (--out is the run folder)")
            check_writable(out / "log.jsonl")
            return False
        base = out.parent
        while not base.exists():  # the nearest folder there is, where it will be made
            base = base.parent
        if not base.is_dir():
            raise OutputError(f"{out}: {base} is not a folder")
        check_writable(base / out.name)
    return True


def _check_packed(path: Path) -> None:
    """``--packed``'s array, from its header, before the model loads."""
    from ..models.training.data import load_packed

    try:
        load_packed(path, mmap_mode="r")
    except ValueError as exc:
        raise CodecError(f"--packed {exc}") from None


@click.command("train-speed")
@click.option(
    "--arch",
    "archs",
    multiple=True,
    default=["96,128,4"],
    show_default=True,
    help="N,M or N,M,S (repeat): N,M is the float hyperprior, S > 1 the exact model with S "
    "channel slices, as the default model trains.",
)
@click.option("--crop", "crops", type=int, multiple=True, default=[128], show_default=True)
@click.option("--batch-size", type=int, default=DEFAULTS.batch_size, show_default=True)
@click.option("--threads", "threads_list", type=int, multiple=True, default=[2], show_default=True)
@click.option(
    "--mode",
    "modes",
    type=click.Choice(["eager", "channels_last", "compile", "compile+channels_last", "bf16"]),
    multiple=True,
    default=["eager", "channels_last"],
    show_default=True,
)
@click.option("--steps", type=int, default=20, show_default=True, help="Timed steps per row.")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
@reports_errors
def train_speed(archs, crops, batch_size, threads_list, modes, steps, as_json):
    """Training throughput (s/step, pixels/s) of each combination, each in a fresh process."""
    import itertools

    from ..models.training import throughput

    try:
        shapes = [tuple(int(v) for v in a.split(",")) for a in archs]
    except ValueError:
        raise CodecError("--arch: expected N,M or N,M,S such as 96,128,4") from None
    if any(len(s) not in (2, 3) or min(s) < 1 for s in shapes) or steps < 1:
        raise CodecError("--arch takes N,M or N,M,S > 0 and --steps at least 1")
    if any(len(s) == 3 and s[1] % s[2] for s in shapes):
        raise CodecError("--arch N,M,S: the slices S must divide M")
    if any(c < 64 or c % 64 for c in crops):
        raise CodecError("--crop must be a multiple of 64")
    if not as_json:
        click.echo(
            "| N,M,S | crop | batch | threads | mode | s/step | kpixels/s | warm-up s "
            "| sampler ms/batch | JPEG decode ms/batch |"
        )
        click.echo("|---|---:|---:|---:|---|---:|---:|---:|---:|---:|")
    rows = []
    for shape, crop, threads, mode in itertools.product(shapes, crops, threads_list, modes):
        n, m, k = (*shape, 1)[:3]
        try:
            rows.append(throughput.measure(n, m, crop, batch_size, threads, mode, steps, k))
        except RuntimeError as exc:
            raise CodecError(str(exc)) from None
        if not as_json:
            r = rows[-1]
            click.echo(
                f"| {r.N},{r.M},{r.slices} | {r.crop} | {r.batch_size} | {r.threads} | {r.mode} | "
                f"{r.seconds_per_step:.3f} | {r.pixels_per_second / 1e3:.0f} | "
                f"{r.warmup_seconds:.1f} | {r.sampler_ms_per_batch:.2f} | "
                f"{r.jpeg_decode_ms_per_batch:.1f} |"
            )
    if as_json:
        click.echo(json.dumps([r.__dict__ for r in rows]))


@click.command("pack-crops")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("output_path", metavar="OUT", type=click.Path(path_type=Path))
@click.option("--size", type=int, default=128, show_default=True, help="Crop side (px).")
@click.option("--per-image", type=int, default=1, show_default=True, help="Crops per photo.")
@click.option("--force", is_flag=True, help="Overwrite OUT if it exists.")
@reports_errors
def pack_crops(folder, output_path, size, per_image, force):
    """Pack random crops of FOLDER's photos into one uint8 .npy for `train --packed` (to carry
    training data to a machine without the photos, such as a GPU machine). Size: 3 * size^2
    bytes a crop; the defaults give 48 KiB a photo (32 MiB for 680)."""
    from ..codec import image_io
    from ..models.training.data import sample_crops, save_crops

    if size % 64 or size < 64 or per_image < 1:
        raise CodecError("--size must be a positive multiple of 64 and --per-image at least 1")
    check_output(output_path, force)
    try:
        crops = sample_crops(folder, size, per_image)
    except ValueError as exc:  # no photo large enough, or more crops than memory
        raise CodecError(str(exc)) from None
    with writing(output_path):  # SIGTERM removes the temporary file (reports_errors)
        image_io.atomic_write(output_path, lambda tmp: save_crops(tmp, crops), force)
    mib = output_path.stat().st_size / 2**20
    click.echo(f"{output_path}: {len(crops)} crops of {size}x{size}, {mib:.1f} MiB")
