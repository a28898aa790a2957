"""Tools for weights and runs: probe, plot-log, export, release."""

from __future__ import annotations

import json
import math
from pathlib import Path

import click

from ..errors import CodecError
from .common import check_output, parse_level_range, reports_errors, writing


@click.command()
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
    except CodecError:  # what the file is, said by the registry
        raise
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


@click.command("plot-log")
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
    from ..models.training.logplot import draw, read_log

    if log.is_dir():
        if not (log / "log.jsonl").is_file():
            raise CodecError(f"{log}: no log.jsonl (not a training run's folder)")
        log = log / "log.jsonl"
    check_output(out_path, force)
    try:
        steps, vals = read_log(log)
    except ValueError as exc:  # not a training log: the message names the file
        raise CodecError(str(exc)) from None
    except OSError as exc:
        raise CodecError(f"{log}: cannot read ({exc.strerror or exc})") from None
    fmt = out_path.suffix.lstrip(".") or "png"
    try:
        with writing(out_path):
            image_io.atomic_write(out_path, lambda tmp: draw(steps, vals, [tmp], fmt=fmt), force)
    except ValueError as exc:  # a format matplotlib does not write
        raise CodecError(f"{out_path}: {exc}") from None
    click.echo(f"wrote {out_path}")


@click.command("export")
@click.argument("checkpoint", type=click.Path(exists=True, path_type=Path))
@click.argument("output_path", metavar="OUT", type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite OUT if it exists.")
@reports_errors
def export(checkpoint, output_path, force):
    """Export a training checkpoint as a compact shipped weight file (no optimiser state)."""
    from ..codec import image_io
    from ..models import registry

    check_output(output_path, force)
    digests = []
    with writing(output_path):
        image_io.atomic_write(
            output_path,
            lambda tmp: digests.append(registry.export_checkpoint(checkpoint, tmp)),
            force,
        )
    digest = digests[0]
    click.echo(f"{output_path}: sha256 {digest}, {output_path.stat().st_size} bytes")


@click.command()
@click.argument("weights", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", required=True, help="The release's name (new; e.g. hp-exact-n96m128-r2).")
@click.option("--description", default="", help="One line for `rdcodec models`.")
@click.option(
    "--run",
    "run_folder",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="The training run the weights come from: its best validation goes in the manifest.",
)
@click.option("--default", "make_default", is_flag=True, help="Make it the default model.")
@click.option(
    "--qualities",
    default=None,
    metavar="LO-HI",
    help="The levels it was trained for (default: the --run's, else all): it encodes only these.",
)
@click.option(
    "--scale-from",
    type=float,
    default=None,
    help="Code the default quality scale from this quality up (a high-rate model: the "
    "default model keeps the qualities below).",
)
@reports_errors
def release(weights, name, description, run_folder, make_default, qualities, scale_from):
    """Ship WEIGHTS (a .rdw, e.g. RUN/best.rdw) as a new model with the next wire id.
    A shipped model never changes: existing names are refused."""
    from ..models import registry

    qualities = parse_level_range(qualities)
    if scale_from is not None and not math.isfinite(scale_from):
        raise CodecError(f"--scale-from {scale_from}: give a quality such as 8")
    training = {}
    if run_folder is not None:
        training, run_qualities = _run_summary(run_folder)
        if qualities is None:  # a run on some levels only
            qualities = run_qualities
    entry = registry.release(
        weights,
        name,
        description,
        training,
        make_default,
        qualities=qualities,
        scale_from=scale_from,
    )
    low, high = entry["qualities"]
    notes = ["now the default"] if make_default else []
    if scale_from is not None:
        notes.append(f"codes the default scale from quality {scale_from:g} to {high}")
    click.echo(
        f"released {entry['name']} (wire id {entry['wire_id']}, sha256 {entry['sha256'][:16]}..., "
        f"{entry['bytes']} bytes, qualities {low}-{high})" + "".join(f"; {n}" for n in notes)
    )


def _run_summary(run_folder: Path) -> tuple[dict, list[int] | None]:
    """What ``release --run`` records from a run's val_best.json (step, hours, BD-rate),
    and the qualities it trained (None: all), each checked: it goes into the manifest."""
    path = run_folder / "val_best.json"
    try:
        best = json.loads(path.read_text())
    except FileNotFoundError:
        raise CodecError(f"{run_folder}: no val_best.json (the run never validated)") from None
    except (OSError, ValueError) as exc:
        raise CodecError(f"{path}: cannot read it ({exc})") from None
    if not isinstance(best, dict):
        raise CodecError(f"{path}: not a run's best validation (a JSON object was wanted)")
    for key in ("step", "train_hours", "bd_rate_vs_jpeg"):
        value = best.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise CodecError(f"{path}: its {key} {json.dumps(value)} is not a number")
    training = {
        "run_step": best.get("step"),
        "run_hours": best.get("train_hours"),
        "validation_bd_rate_vs_jpeg": best.get("bd_rate_vs_jpeg"),
    }
    qualities = best.get("qualities")
    if qualities in (None, []):  # a run on all levels
        return training, None
    if not isinstance(qualities, list) or not all(
        isinstance(q, int) and not isinstance(q, bool) and q >= 1 for q in qualities
    ):
        raise CodecError(f"{path}: qualities {json.dumps(qualities)} are not quality levels")
    return training, [min(qualities), max(qualities)]
