"""Measurement tools beside the benchmark: rdplane, speed."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..errors import CodecError
from .common import check_output, effort_option, reports_errors, writing


@click.command()
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
    from ..codec import baselines, image_io
    from ..codec.bench import rdplane as plane
    from ..codec.bench import sweep as evaluate
    from ..codec.bench.codecs import parse_codecs
    from ..codec.bench.names import is_rdcodec
    from ..models.registry import load_model

    # Every option is checked before the coding, which takes minutes.
    if count < 1:
        raise CodecError("--images must be at least 1")
    names = parse_codecs(reference, option="--reference", known=tuple(baselines.CLASSICAL))
    if any(is_rdcodec(n) for n in names):
        raise CodecError("--reference takes classical codecs (jpeg, webp, avif, jpeg2000)")
    check_output(out_path, force)
    fmt = plane.plot_format(out_path)
    if not folder.is_dir():
        raise CodecError(f"{folder}: not a directory")
    images = evaluate.load_images(folder, count)
    if not images:
        raise CodecError(f"{folder}: no images")
    ours = plane.rdcodec_plane(load_model(), images)
    refs = {name: plane.classical_plane(name, images) for name in names}
    with writing(out_path):
        image_io.atomic_write(out_path, lambda tmp: plane.plot_plane(ours, refs, [tmp], fmt), force)
    for p in ours:
        click.echo(
            f"  {p.label}: R {p.rate:.4f} bpp, D {p.distortion:.2f} (MSE), "
            f"lambda {p.lmbda:g}, R + lambda*D = {p.rate + p.lmbda * p.distortion:.3f}"
        )
    click.echo(f"wrote {out_path}")


@click.command()
@click.option("--sizes", default="1,4,12,24", show_default=True, help="Image sizes in megapixels.")
@click.option("-q", "--quality", type=float, default=4.0, show_default=True)
@click.option("--threads", type=int, default=None, help="torch threads (default: torch's choice).")
@effort_option("Encode effort of the timed encodes.")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
@click.option(
    "--versus",
    "versus_image",
    type=click.Path(path_type=Path),
    default=None,
    help="Instead: time the shipped models and compressai on the same transforms on this "
    "photo, in one process; --quality is a level of the first model, the others code at "
    "the level trained at the same lambda.",
)
@click.option(
    "--models",
    "model_names",
    default=None,
    help="With --versus: model names, comma-separated (default: all that code the quality).",
)
@reports_errors
def speed(sizes, quality, threads, effort, as_json, versus_image, model_names):
    """Encode/decode seconds and peak memory (RSS) per image size, each in a fresh process."""
    from ..codec import pipeline
    from ..codec.bench import speed as bench_speed

    if threads is not None and threads < 1:  # torch refuses less, in words of its own
        raise CodecError("--threads must be at least 1")
    if versus_image is not None:
        if effort:
            raise CodecError("--versus times effort 0 (the same transforms); drop --effort")
        import torch

        from ..codec.image_io import read_image
        from ..models.registry import find_entry, model_entries

        if model_names is None:
            names = [e["name"] for e in model_entries()]
        else:  # each model once, in the order given
            names = list(dict.fromkeys(n.strip() for n in model_names.split(",") if n.strip()))
            if not names:
                raise CodecError("--models names no model")
        low, high = find_entry(names[0])["qualities"]  # a ModelError for a name not shipped
        for name in names[1:]:
            find_entry(name)
        if not low <= quality <= high:  # NaN fails too
            raise CodecError(f"--quality: {names[0]} codes {low:g} to {high:g}, got {quality:g}")
        if threads:
            torch.set_num_threads(threads)
        pixels = read_image(versus_image).pixels
        try:
            rows = bench_speed.versus_compressai(pixels, names, quality)
        except ValueError as exc:  # a quality the first model was not trained at
            raise CodecError(f"--quality: {exc}") from None
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

    if model_names is not None:
        raise CodecError("--models applies with --versus (the sizes time the default model)")
    pipeline.effort_schedule(effort)
    try:
        pipeline.check_quality(quality)
    except CodecError as exc:
        raise CodecError(f"--quality: {exc}") from None
    try:
        mps = [float(v) for v in sizes.split(",") if v.strip()]
    except ValueError:
        raise CodecError(f"--sizes: expected numbers separated by commas, got {sizes!r}") from None
    if not mps:
        raise CodecError("--sizes: give positive megapixel counts")
    bench_speed.check_sizes(mps)
    try:
        rows = bench_speed.run(mps, quality, threads, effort)
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
