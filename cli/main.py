"""The ``rdcodec`` command: argument parsing and printing only."""

from __future__ import annotations

import functools
import json
import math
import sys
import time
from pathlib import Path

import click

from ..errors import CodecError


def _fail(message: str, code: int) -> None:
    click.echo(f"rdcodec: error: {message}", err=True)
    sys.exit(code)


def reports_errors(command):
    """Turn a ``CodecError`` into one line on stderr and its exit code; Ctrl-C into 130."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except CodecError as exc:
            _fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            _fail("interrupted", 130)

    return wrapper


def _fmt_db(value: float) -> str:
    return "inf" if math.isinf(value) else f"{value:.2f}"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rdcodec")
def main() -> None:
    """rdcodec: a learned image codec. Rates and qualities it reports for images are
    measured on real files (the training tools also show the model's own estimates)."""


@main.command()
@click.argument("input_path", metavar="IN", type=click.Path(path_type=Path))
@click.argument("output_path", metavar="OUT", type=click.Path(path_type=Path))
@click.option(
    "-q",
    "--quality",
    type=float,
    default=None,
    help="1 (smallest) to the model's top level (11; 8 for hp-gain-n96m128); fractions allowed.",
)
@click.option(
    "--target-bpp",
    type=float,
    default=None,
    help="Pick the highest quality whose file stays at or below this bpp.",
)
@click.option(
    "--model", "model_name", default=None, help="Shipped model name (see `rdcodec models`)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the measurements as one JSON object.")
@click.option("--force", is_flag=True, help="Overwrite OUT if it exists.")
@click.option("--no-jpeg", is_flag=True, help="Skip the JPEG-at-the-same-bpp comparison.")
@click.option("--max-pixels", type=int, default=None, help="Refuse larger images (default 100 MP).")
@click.option(
    "--drop-alpha",
    is_flag=True,
    help="Composite a transparent image onto white instead of refusing it.",
)
@reports_errors
def encode(
    input_path,
    output_path,
    quality,
    target_bpp,
    model_name,
    as_json,
    force,
    no_jpeg,
    max_pixels,
    drop_alpha,
):
    """Encode image IN into bitstream OUT and report what was measured."""
    from ..codec import image_io, pipeline
    from ..models.registry import load_model

    if quality is not None and target_bpp is not None:
        raise CodecError("give --quality or --target-bpp, not both")
    image_io.check_output(output_path, force)
    if input_path.resolve() == output_path.resolve():
        raise CodecError("OUT is the same file as IN; refusing to overwrite the input")
    loaded = image_io.read_image(input_path, max_pixels or image_io.DEFAULT_MAX_PIXELS, drop_alpha)
    model = load_model(model_name)
    if target_bpp is not None:
        quality = pipeline.quality_for_bpp(loaded.pixels, target_bpp, model)
    result = pipeline.encode_image(loaded.pixels, quality, model, not no_jpeg, loaded.grayscale)
    image_io.write_bytes(output_path, result.data, force)
    for notice in loaded.notices:
        click.echo(f"rdcodec: note: {notice}", err=True)
    if as_json:
        info = {"input": str(input_path), "output": str(output_path), **result.to_dict()}
        click.echo(json.dumps({**info, "notices": list(loaded.notices)}))
        return
    r = result.rate
    click.echo(f"{input_path} {result.width}x{result.height} -> {output_path}")
    click.echo(f"  model     {result.model}, quality {result.quality:g}")
    click.echo(f"  size      {result.num_bytes} bytes, {result.bpp:.4f} bpp")
    line = f"  quality   PSNR {_fmt_db(result.psnr)} dB"
    if result.ms_ssim is not None:
        line += f", MS-SSIM {result.ms_ssim:.4f}"
    click.echo(line)
    click.echo(
        f"  rate      header {r.header_bits} b + z {r.z_bits} b + y {r.y_bits} b = {r.file_bits} b"
    )
    click.echo(
        f"  estimate  -log2 p = {r.estimate_bits:.0f} b "
        f"(z {r.estimate_z_bits:.0f}, y {r.estimate_y_bits:.0f}); "
        f"file is {r.overhead_percent:+.2f}% over it"
    )
    if result.jpeg is not None:
        j = result.jpeg
        click.echo(
            f"  JPEG      q{j.quality}: {j.num_bytes} bytes, {j.bpp:.4f} bpp, "
            f"PSNR {_fmt_db(j.psnr)} dB -> rdcodec {result.psnr - j.psnr:+.2f} dB "
            "at the same or lower size"
        )
    elif not no_jpeg:
        click.echo("  JPEG      cannot get this small (quality 1 is larger)")
    click.echo(
        f"  time      encode {result.encode_seconds:.2f} s, decode {result.decode_seconds:.2f} s"
    )


@main.command()
@click.argument("input_path", metavar="IN", type=click.Path(path_type=Path))
@click.argument("output_path", metavar="OUT", type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite OUT if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@click.option(
    "--max-pixels",
    type=int,
    default=None,
    help="Refuse files declaring larger images (default 100 MP).",
)
@reports_errors
def decode(input_path, output_path, force, as_json, max_pixels):
    """Decode bitstream IN into image OUT (format from its extension, e.g. .png)."""
    from ..codec import image_io, pipeline

    image_io.check_output(output_path, force)
    data = image_io.read_bitstream(input_path)
    start = time.perf_counter()
    image = pipeline.decode(data, max_pixels=max_pixels or image_io.DEFAULT_MAX_PIXELS)
    seconds = time.perf_counter() - start
    image_io.save_image(output_path, image, force)
    pixels = image.width * image.height
    info = {
        "input": str(input_path),
        "output": str(output_path),
        "width": image.width,
        "height": image.height,
        "bytes": len(data),
        "bpp": 8 * len(data) / pixels,
        "decode_seconds": seconds,
    }
    if as_json:
        click.echo(json.dumps(info))
    else:
        click.echo(
            f"{input_path} -> {output_path} {image.width}x{image.height}, {len(data)} bytes "
            f"({info['bpp']:.4f} bpp), decoded in {seconds:.2f} s"
        )


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the manifest entries as JSON.")
@reports_errors
def models(as_json):
    """List the shipped models, their quality levels and weight hashes."""
    from ..models.registry import default_model_name, model_entries

    entries = model_entries()
    if as_json:
        click.echo(json.dumps(entries, indent=2))
        return
    default = default_model_name()
    for e in entries:
        mark = " (default)" if e["name"] == default else ""
        lo, hi = e["qualities"]
        click.echo(
            f"{e['name']}{mark}: wire id {e['wire_id']}, quality {lo}..{hi} "
            f"(default {e.get('default_quality')}), sha256 {e['sha256'][:16]}..., "
            f"{e.get('parameters', 0) / 1e6:.2f} M parameters, {e.get('description', '')}"
        )


@main.command()
@click.option(
    "--data", default="../shared/data/train", show_default=True, help="Folder of training photos."
)
@click.option(
    "--val", default="../shared/data/val", show_default=True, help="Folder of validation photos."
)
@click.option(
    "--out", default="runs/default", show_default=True, help="Run folder (checkpoints, log)."
)
@click.option(
    "--init", default=None, help="Weights or checkpoint to start from (default: the shipped model)."
)
@click.option("--from-scratch", is_flag=True, help="Start from random weights.")
@click.option(
    "--steps", type=int, default=10000, show_default=True, help="Stop at this global step."
)
@click.option("--time-budget", type=float, default=None, help="Stop after this many seconds.")
@click.option("--batch-size", type=int, default=8, show_default=True)
@click.option(
    "--crop", type=int, default=128, show_default=True, help="Crop side (a multiple of 64)."
)
@click.option("--lr", type=float, default=1e-4, show_default=True)
@click.option(
    "--gain-lr-scale",
    type=float,
    default=20.0,
    show_default=True,
    help="Learning rate of the per-level gain vectors, as a multiple of --lr.",
)
@click.option("--threads", type=int, default=None, help="torch CPU threads.")
@click.option(
    "--arch", default="96,128", show_default=True, help="N,M channels (with --from-scratch)."
)
@click.option("--packed", default=None, help="A .npy of uint8 crops to train on instead of --data.")
@click.option(
    "--export", "export_path", default=None, help="Write shipped-format weights here at the end."
)
@click.option(
    "--val-every",
    type=int,
    default=2000,
    show_default=True,
    help="Steps between real-file validations (BD-rate vs JPEG on --val); 0 disables.",
)
@click.option(
    "--val-images",
    type=int,
    default=6,
    show_default=True,
    help="Validation images used (centre 512 px).",
)
@click.option(
    "--ship",
    is_flag=True,
    help="Replace the shipped weights whenever the validation BD-rate improves.",
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
    "--ema-decay",
    type=click.FloatRange(0, 1, max_open=True),
    default=0.999,
    show_default=True,
    help="Decay of the weight average that is validated and exported; 0 disables.",
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
    threads,
    arch,
    packed,
    export_path,
    val_every,
    val_images,
    ship,
    device,
    channels_last,
    compiled,
    bf16,
    exact,
    levels,
    ema_decay,
):
    """Train (or resume, or continue from the shipped weights) on lmbda*255^2*MSE + bpp."""
    from ..models import registry
    from ..models.network import ModelConfig
    from ..models.training.train import TrainConfig, bf16_is_native, init_distributed
    from ..models.training.train import train as run_training

    if crop % 64:
        raise CodecError("--crop must be a multiple of 64")
    if not packed and not Path(data).is_dir():
        raise CodecError(f"{data}: training data folder does not exist")
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
        threads=threads,
        packed=packed,
        device=device,
        channels_last=channels_last,
        compile=compiled,
        bf16=bf16,
        ema_decay=ema_decay,
    )
    if from_scratch:
        n, m = (int(v) for v in arch.split(","))
        cfg.arch = ModelConfig(n, m).to_dict()
    else:
        cfg.init = init or str(
            registry.weights_path(registry.find_entry(registry.default_model_name()))
        )
        cfg.arch = registry.config_of(cfg.init)
    cfg.arch = {**cfg.arch, **({"exact": True} if exact else {})}
    if levels:
        cfg.arch["levels"] = levels
    registry.build_network(cfg.arch)  # a clear error for an impossible combination
    init_distributed()  # under torchrun: DDP (gloo on CPU, nccl on GPU)
    validator = None
    if val_every and val and Path(val).is_dir():
        from ..codec.evaluate import Validator

        validator = Validator(
            Path(out),
            val,
            val_images,
            val_every,
            ship,
            report=lambda row: click.echo(f"validation: {json.dumps(row)}", err=True),
        )
    ckpt = run_training(cfg, on_checkpoint=validator).checkpoint
    click.echo(f"checkpoint: {ckpt}")
    if export_path:
        digest = registry.export_checkpoint(ckpt, Path(export_path))
        click.echo(f"exported {export_path} sha256 {digest}")


@main.command()
@click.argument("folder", type=click.Path(path_type=Path))
@click.option(
    "--out",
    "out_path",
    type=click.Path(path_type=Path),
    default=Path("rdplane.png"),
    show_default=True,
)
@click.option(
    "--images", "count", type=int, default=6, show_default=True, help="Images of FOLDER to use."
)
@click.option(
    "--reference", default="jpeg,avif", show_default=True, help="Classical codecs to plot."
)
@click.option("--force", is_flag=True, help="Overwrite the plot if it exists.")
@reports_errors
def rdplane(folder, out_path, count, reference, force):
    """Plot the shipped model's levels on the distortion-rate plane with iso-Lagrangian lines."""
    from ..codec import evaluate, image_io
    from ..codec import rdplane as plane
    from ..models.registry import load_model

    image_io.check_output(out_path, force)
    if not folder.is_dir():
        raise CodecError(f"{folder}: not a directory")
    images = evaluate.load_images(folder, count)
    if not images:
        raise CodecError(f"{folder}: no images")
    ours = plane.rdcodec_plane(load_model(), images)
    refs = {name: plane.classical_plane(name, images) for name in reference.split(",") if name}
    fmt = out_path.suffix.lstrip(".") or "png"
    image_io.atomic_write(out_path, lambda tmp: plane.plot_plane(ours, refs, [tmp], fmt), force)
    for p in ours:
        click.echo(
            f"  {p.label}: R {p.rate:.4f} bpp, D {p.distortion:.2f} (MSE), "
            f"lambda {p.lmbda:g}, R + lambda*D = {p.rate + p.lmbda * p.distortion:.3f}"
        )
    click.echo(f"wrote {out_path}")


@main.command("plot-log")
@click.argument("log", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--out",
    "out_path",
    type=click.Path(path_type=Path),
    default=Path("training.png"),
    show_default=True,
)
@click.option("--force", is_flag=True, help="Overwrite the plot if it exists.")
@reports_errors
def plot_log(log, out_path, force):
    """Plot a training log (run folder or log.jsonl): rate split, distortion, active channels."""
    from ..codec import image_io
    from ..models.training.logplot import plot_log as plot

    if log.is_dir():
        log = log / "log.jsonl"
    image_io.check_output(out_path, force)
    try:
        fmt = out_path.suffix.lstrip(".") or "png"
        image_io.atomic_write(out_path, lambda tmp: plot(log, [tmp], fmt=fmt), force)
    except (ValueError, OSError) as exc:
        raise CodecError(str(exc)) from None
    click.echo(f"wrote {out_path}")


@main.command()
@click.option("--sizes", default="1,4,12,24", show_default=True, help="Image sizes in megapixels.")
@click.option("-q", "--quality", type=float, default=4.0, show_default=True)
@click.option("--threads", type=int, default=None, help="torch threads (default: torch's choice).")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
@click.option(
    "--versus",
    "versus_image",
    type=click.Path(path_type=Path),
    default=None,
    help="Instead: time the shipped models and compressai on the same transforms on this "
    "photo, in one process.",
)
@click.option(
    "--models", "model_names", default=None, help="With --versus: model names (default: all)."
)
@reports_errors
def speed(sizes, quality, threads, as_json, versus_image, model_names):
    """Encode/decode seconds and peak memory (RSS) per image size, each in a fresh process."""
    from ..codec import speed as bench_speed

    if versus_image is not None:
        import torch

        from ..codec.image_io import read_image
        from ..models.registry import model_entries

        if threads:
            torch.set_num_threads(threads)
        names = model_names.split(",") if model_names else [e["name"] for e in model_entries()]
        pixels = read_image(versus_image).pixels
        rows = bench_speed.versus_compressai(pixels, names, quality)
        if as_json:
            click.echo(json.dumps([r.__dict__ for r in rows]))
            return
        click.echo(f"{versus_image}: {pixels.shape[1]}x{pixels.shape[0]}, best of 3, one process")
        click.echo("| implementation | bytes | encode s | decode s |")
        click.echo("|---|---:|---:|---:|")
        for r in rows:
            click.echo(
                f"| {r.name} | {r.bytes} | {r.encode_seconds:.3f} | {r.decode_seconds:.3f} |"
            )
        return

    try:
        mps = [float(v) for v in sizes.split(",") if v]
    except ValueError:
        raise CodecError(f"--sizes: expected numbers separated by commas, got {sizes!r}") from None
    if not mps or min(mps) <= 0:
        raise CodecError("--sizes: give positive megapixel counts")
    try:
        rows = bench_speed.run(mps, quality, threads)
    except RuntimeError as exc:
        raise CodecError(str(exc)) from None
    if as_json:
        click.echo(json.dumps([r.__dict__ for r in rows]))
        return
    click.echo("| MP | size | bytes | bpp | encode s | decode s | peak RSS MiB |")
    click.echo("|---:|---|---:|---:|---:|---:|---:|")
    for r in rows:
        click.echo(
            f"| {r.megapixels:.1f} | {r.width}x{r.height} | {r.bytes} | {r.bpp:.3f} | "
            f"{r.encode_seconds:.1f} | {r.decode_seconds:.1f} | {r.peak_rss_mib:.0f} |"
        )


@main.command("train-speed")
@click.option(
    "--arch", "archs", multiple=True, default=["96,128"], show_default=True, help="N,M (repeat)."
)
@click.option("--crop", "crops", type=int, multiple=True, default=[128], show_default=True)
@click.option("--batch-size", type=int, default=8, show_default=True)
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
        raise CodecError("--arch: expected N,M such as 96,128") from None
    if any(len(s) != 2 or min(s) < 1 for s in shapes) or steps < 1:
        raise CodecError("--arch takes N,M > 0 and --steps at least 1")
    if any(c < 64 or c % 64 for c in crops):
        raise CodecError("--crop must be a multiple of 64")
    if not as_json:
        click.echo(
            "| N,M | crop | batch | threads | mode | s/step | kpixels/s | warm-up s "
            "| sampler ms/batch | JPEG decode ms/batch |"
        )
        click.echo("|---|---:|---:|---:|---|---:|---:|---:|---:|---:|")
    rows = []
    for (n, m), crop, threads, mode in itertools.product(shapes, crops, threads_list, modes):
        try:
            rows.append(throughput.measure(n, m, crop, batch_size, threads, mode, steps))
        except RuntimeError as exc:
            raise CodecError(str(exc)) from None
        if not as_json:
            r = rows[-1]
            click.echo(
                f"| {r.N},{r.M} | {r.crop} | {r.batch_size} | {r.threads} | {r.mode} | "
                f"{r.seconds_per_step:.3f} | {r.pixels_per_second / 1e3:.0f} | "
                f"{r.warmup_seconds:.1f} | {r.sampler_ms_per_batch:.2f} | "
                f"{r.jpeg_decode_ms_per_batch:.1f} |"
            )
    if as_json:
        click.echo(json.dumps([r.__dict__ for r in rows]))


@main.command()
@click.option(
    "--weights",
    "weights_path",
    default=None,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A .rdw weight file or a training checkpoint (default: the shipped model).",
)
@click.option("--data", default="../shared/data/train", show_default=True, help="Training photos.")
@click.option("--val", default="../shared/data/val", show_default=True, help="Validation photos.")
@click.option("--crops", type=int, default=24, show_default=True, help="Crops per split.")
@click.option("--size", type=int, default=256, show_default=True, help="Crop side (px).")
@click.option(
    "--noise-samples",
    type=int,
    default=0,
    show_default=True,
    help="Also measure the gradient noise scale from this many per-sample gradients "
    "(128 px training crops; 0: skip).",
)
@click.option(
    "--overfit-steps",
    type=int,
    default=0,
    show_default=True,
    help="Also train a copy on one fixed batch of 8 training crops (128 px, quality 8) for "
    "this many steps: can the transforms fit it? (0: skip).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@reports_errors
def probe(weights_path, data, val, crops, size, noise_samples, overfit_steps, as_json):
    """Where the loss goes: train vs validation loss, and the unquantised autoencoder's PSNR
    (the transforms' ceiling) beside the quantised one, per quality level."""
    from ..models import registry
    from ..models.training import probe as probe_lib

    for folder in (data, val):
        if not Path(folder).is_dir():
            raise CodecError(f"{folder}: folder does not exist")
    if crops < 1 or size < 64 or size % 64:
        raise CodecError("--crops must be at least 1 and --size a multiple of 64")
    if noise_samples == 1 or noise_samples < 0:
        raise CodecError("--noise-samples must be 0 (skip) or at least 2")
    if overfit_steps < 0:
        raise CodecError("--overfit-steps must be 0 (skip) or more")
    path = weights_path or registry.weights_path(registry.find_entry(registry.default_model_name()))
    try:
        network = probe_lib.load_network(path)
    except Exception as exc:  # any unreadable file: one line, not a traceback
        raise CodecError(f"{path}: not a weight file or checkpoint ({exc})") from None
    try:
        splits = probe_lib.default_splits(Path(data), Path(val), size, crops)
    except (OSError, ValueError) as exc:  # an unreadable photo
        raise CodecError(f"cannot read the crops: {exc}") from None
    if not splits["train"] or not splits["val"]:
        raise CodecError(f"no image of at least {size} px per side in one of the folders")
    rows = probe_lib.probe(network, splits)
    noise = None
    if noise_samples:
        try:
            noise = probe_lib.noise_scale(network, Path(data), noise_samples)
        except (OSError, ValueError) as exc:  # unreadable or too small photos
            raise CodecError(f"cannot measure the noise scale: {exc}") from None
    fit = []
    if overfit_steps:
        try:
            batch = probe_lib.random_crops(Path(data), 8, seed=1)
        except (OSError, ValueError) as exc:
            raise CodecError(f"cannot read the crops: {exc}") from None
        fit = probe_lib.overfit(network, batch, steps=overfit_steps)
    if as_json:
        noise_json = None if noise is None else {**noise.__dict__, "b_simple": noise.b_simple}
        click.echo(
            json.dumps(
                {
                    "rows": [r.__dict__ for r in rows],
                    "noise_scale": noise_json,
                    "overfit": [point.__dict__ for point in fit],
                }
            )
        )
        return
    click.echo(f"{path}: {size} px crops")
    click.echo(
        "| split | quality | crops | bpp (model) | PSNR | PSNR unquantised | loss | active |"
    )
    click.echo("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        click.echo(
            f"| {r.split} | {r.quality} | {r.crops} | {r.bpp:.4f} | {r.psnr:.2f} | "
            f"{r.psnr_unquantised:.2f} | {r.loss:.4f} | {r.active_channels} |"
        )
    by_key = {(r.split, r.quality): r for r in rows}
    for q in sorted({r.quality for r in rows}):
        t, v = by_key["train", q], by_key["val", q]
        click.echo(
            f"q{q}: val/train loss {v.loss / t.loss:.3f}; on val, rounding costs "
            f"{v.psnr_unquantised - v.psnr:.2f} dB of the {v.psnr_unquantised:.2f} dB "
            "the transforms reach unquantised"
        )
    if noise is not None:
        click.echo(
            f"gradient noise scale B_simple = tr(Sigma)/|G|^2 = {noise.b_simple:.1f} "
            f"({noise.samples} per-sample gradients): below it, samples not steps are the "
            f"cost; a batch-8 gradient has norm ~{noise.batch_grad_norm(8):.2f}, "
            f"|G| = {noise.grad_sq**0.5 if noise.grad_sq > 0 else 0:.2f}"
        )
    for point in fit:
        click.echo(
            f"one fixed batch of 8, quality 8, step {point.step}: {point.bpp:.3f} bpp, "
            f"{point.psnr:.2f} dB ({point.psnr_unquantised:.2f} dB unquantised), "
            f"loss {point.loss:.3f}"
        )


@main.command("export")
@click.argument("checkpoint", type=click.Path(exists=True, path_type=Path))
@click.argument("output_path", metavar="OUT", type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite OUT if it exists.")
@reports_errors
def export(checkpoint, output_path, force):
    """Export a training checkpoint as a compact shipped weight file (no optimiser state)."""
    from ..codec import image_io
    from ..models import registry

    digests = []
    image_io.atomic_write(
        output_path,
        lambda tmp: digests.append(registry.export_checkpoint(checkpoint, tmp)),
        force,
    )
    digest = digests[0]
    click.echo(f"{output_path}: sha256 {digest}, {output_path.stat().st_size} bytes")


@main.command()
@click.argument("input_path", metavar="FILE", type=click.Path(path_type=Path))
@click.option(
    "-q",
    "--quality",
    type=float,
    default=None,
    help="When FILE is an image: encode it at this quality first.",
)
@click.option(
    "--heatmap",
    "heatmap_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Write a bits-per-location heatmap PNG here.",
)
@click.option("--json", "as_json", is_flag=True, help="Print everything as one JSON object.")
@click.option("--force", is_flag=True, help="Overwrite the heatmap file if it exists.")
@reports_errors
def inspect(input_path, quality, heatmap_path, as_json, force):
    """Account for every bit of FILE (.rdc, or an image to encode): header, z, y per channel."""
    from ..codec import container, diagnostics, image_io, pipeline

    if heatmap_path is not None:
        image_io.check_output(heatmap_path, force)
    data = image_io.read_bitstream(input_path)
    if not data.startswith(container.MAGIC):
        loaded = image_io.read_image(input_path)
        data = pipeline.encode(loaded.pixels, quality, grayscale=loaded.grayscale)
    elif quality is not None:
        raise CodecError("--quality applies to images; FILE is already a bitstream")
    diag = diagnostics.diagnose(data)
    if heatmap_path is not None:
        diagnostics.save_heatmap(diag, heatmap_path, force)
    info = diag.to_dict()
    if as_json:
        click.echo(json.dumps(info))
        return
    h = info["header"]
    click.echo(
        f"{input_path}: {h['width']}x{h['height']}, model {h['model']} (id {h['model_id']}, "
        f"weights {h['weights_sha256_prefix']}), quality {h['quality']:g}"
        + (", greyscale" if h["grayscale"] else "")
    )
    b = info["bits"]
    px = diag.pixels
    click.echo(f"  file      {b['file']} bits = {info['bpp']:.4f} bpp")
    click.echo(f"  header    {b['header']} bits ({100 * b['header'] / b['file']:.2f}%)")
    click.echo(
        f"  z         {b['z']} bits ({b['z'] / px:.4f} bpp), -log2 p {diag.estimate_z_bits:.0f}, "
        f"tables {diag.table_z_bits:.0f}"
    )
    click.echo(
        f"  y         {b['y']} bits ({b['y'] / px:.4f} bpp), -log2 p {diag.estimate_y_bits:.0f}, "
        f"tables {diag.table_y_bits:.0f}"
    )
    click.echo(f"  overhead  file is {diag.overhead_percent:+.2f}% over the model's -log2 p")
    rates = diag.channel_rates
    order = sorted(range(len(rates)), key=lambda c: -rates[c])
    click.echo(
        f"  y channels: {info['active_channels']} of {len(rates)} active "
        f"(>= {diagnostics.INACTIVE_BITS_PER_LOCATION} bit/location)"
    )
    top = ", ".join(f"{c}:{rates[c]:.3f}" for c in order[:8])
    click.echo(f"  busiest   channel:bits/location {top}")
    if diag.inactive_channels:
        click.echo(f"  inactive  {', '.join(map(str, diag.inactive_channels))}")
    if heatmap_path is not None:
        click.echo(
            f"  heatmap   {heatmap_path} (bits per 16x16 block, max {diag.heatmap.max():.1f})"
        )


# Commands in modules of their own (each only parses and prints); imported last
# because they use reports_errors from this module.
from .bench import bench  # noqa: E402
from .compare import compare  # noqa: E402

main.add_command(bench)
main.add_command(compare)

if __name__ == "__main__":
    main()
