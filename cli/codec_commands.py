"""The codec's own commands: encode, decode, models, info, inspect."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from ..errors import BitstreamError, CodecError, ModelError, OutputError
from .common import (
    check_output,
    effort_option,
    fmt_db,
    image_input_options,
    max_pixels_option,
    read_bitstream,
    refinement_progress,
    reports_errors,
    writing,
)


def batch_options(command):
    """The options of a folder run (IN and OUT are folders)."""
    for option in reversed(
        (
            click.option(
                "-j",
                "--jobs",
                type=int,
                default=None,
                help="Folders: worker processes, each loading the model once (default: "
                "the machine's cores over --threads).",
            ),
            click.option(
                "--threads",
                type=int,
                default=1,
                show_default=True,
                help="Folders: torch threads per worker.",
            ),
            click.option("--quiet", is_flag=True, help="Folders: no progress bar."),
            click.option(
                "--engine",
                type=click.Choice(["local", "ray"]),
                default="local",
                show_default=True,
                help="Folders: processes on this machine, or Ray actors (pip install "
                '"rdcodec[ray]"); with ray, -j is the number of actors.',
            ),
            click.option(
                "--address",
                default=None,
                help="Folders, --engine ray: the cluster to join (ray://HOST:10001, or auto); "
                "default: a Ray started on this machine.",
            ),
            click.option(
                "--report",
                type=click.Path(path_type=Path),
                default=None,
                help="Folders: one row per file (bytes, bpp, PSNR, quality, seconds), "
                "as .csv or .json.",
            ),
        )
    ):
        command = option(command)
    return command


def _run_folder(input_path, output_path, settings, jobs, quiet, engine, address, report):
    """A folder run (the options of ``batch_options``; --threads is in ``settings``):
    progress, summary, report, and exit status 1 if a file failed."""
    import sys

    from ..codec import batch, folders

    if report is not None:  # before any work, not after the whole batch
        batch.check_report(report)
        if not report.resolve().is_relative_to(output_path.resolve()):  # OUT: made by the run
            check_output(report, force=True)

    def progress(rows, total):
        from tqdm import tqdm

        disable = quiet or not sys.stderr.isatty()
        return tqdm(rows, total=total, unit="image", disable=disable, desc=settings.mode)

    summary = batch.run_batch(
        input_path,
        output_path,
        settings,
        folders.make_engine(engine, jobs, settings.threads, address),
        progress,
    )
    for line in summary.lines():
        click.echo(line, err=line.startswith("failed:"))
    if report is not None:
        with writing(report):
            batch.write_report(report, summary)
    if summary.failed:
        raise CodecError(f"{summary.failed} of {len(summary.rows)} files failed")


@click.command()
@click.argument("input_path", metavar="IN", type=click.Path(path_type=Path))
@click.argument("output_path", metavar="OUT", type=click.Path(path_type=Path))
@click.option(
    "-q",
    "--quality",
    type=float,
    default=None,
    help="1 (smallest) to 11 on the default scale (a model alone: the levels it codes, "
    "see `rdcodec models`); fractions allowed.",
)
@click.option(
    "--target-bpp",
    type=float,
    default=None,
    help="Pick the highest quality whose file stays at or below this bpp.",
)
@effort_option(
    "Encode-time refinement of the latents for this photo: 0 is the single pass, "
    "1-4 spend about 7 s, 17 s, 54 s and 2.6 min on a 768x512 photo (2 cores) for smaller "
    "files; the decoder is the same."
)
@click.option("--json", "as_json", is_flag=True, help="Print the measurements as one JSON object.")
@click.option("--force", is_flag=True, help="Overwrite OUT if it exists.")
@click.option("--no-jpeg", is_flag=True, help="Skip the JPEG-at-the-same-bpp comparison.")
@click.option(
    "--strip", is_flag=True, help="Store no metadata (ICC profile, EXIF, XMP); alpha stays."
)
@image_input_options
@batch_options
@reports_errors
def encode(
    input_path,
    output_path,
    quality,
    target_bpp,
    effort,
    model_name,
    as_json,
    force,
    no_jpeg,
    strip,
    max_pixels,
    drop_alpha,
    threads,
    **folder,
):
    """Encode image IN into bitstream OUT and report what was measured; or every image
    under folder IN into the same tree of .rdc files under folder OUT."""
    from ..codec import image_io, pipeline
    from ..models.registry import load_scale

    if quality is not None and target_bpp is not None:
        raise CodecError("give --quality or --target-bpp, not both")
    if input_path.is_dir():
        from ..codec.batch import Settings

        if as_json:
            raise CodecError("--json is for one file; for a folder use --report FILE.json")
        load_scale(model_name)  # an unknown model fails before any work
        settings = Settings(
            "encode",
            quality,
            target_bpp,
            model_name,
            effort,
            threads,
            max_pixels,
            drop_alpha,
            force,
            strip,
        )
        _run_folder(input_path, output_path, settings, **folder)
        return
    check_output(output_path, force)
    if input_path.resolve() == output_path.resolve():
        raise CodecError("OUT is the same file as IN; refusing to overwrite the input")
    loaded = image_io.read_image(
        input_path, max_pixels or image_io.DEFAULT_MAX_PIXELS, drop_alpha, keep_alpha=True
    )
    model = load_scale(model_name)  # None: the default scale of models
    with refinement_progress(effort, show=not as_json):
        result = pipeline.encode_image(
            loaded.pixels,
            quality,
            model,
            not no_jpeg,
            loaded.grayscale,
            extras=pipeline.Extras.of_loaded(loaded),
            strip=strip,
            effort=effort,
            target_bpp=target_bpp,
        )
    with writing(output_path):
        image_io.write_bytes(output_path, result.data, force)
    for notice in loaded.notices:
        click.echo(f"rdcodec: note: {notice}", err=True)
    if as_json:
        info = {"input": str(input_path), "output": str(output_path), **result.to_dict()}
        click.echo(json.dumps({**info, "notices": list(loaded.notices)}))
        return
    r = result.rate
    click.echo(f"{input_path} {result.width}x{result.height} -> {output_path}")
    click.echo(f"  model     {result.model}, quality {result.quality:g}, effort {result.effort}")
    click.echo(f"  size      {result.num_bytes} bytes, {result.bpp:.4f} bpp")
    if result.baseline is not None:
        b = result.baseline
        saved = 8 * (b.num_bytes - result.num_bytes)
        click.echo(
            f"  effort    {saved} b saved, {-100 * saved / (8 * b.num_bytes):+.1f}% bits and "
            f"{result.psnr - b.psnr:+.2f} dB against effort 0 at this quality "
            f"({b.num_bytes} bytes, PSNR {fmt_db(b.psnr)} dB)"
        )
    line = f"  quality   PSNR {fmt_db(result.psnr)} dB"
    if result.ms_ssim is not None:
        line += f", MS-SSIM {result.ms_ssim:.4f}"
    click.echo(line)
    click.echo(
        f"  rate      header {r.header_bits} b + "
        + (f"metadata {r.metadata_bits} b + " if r.metadata_bits else "")
        + (f"alpha {r.alpha_bits} b + " if r.alpha_bits else "")
        + f"z {r.z_bits} b + y {r.y_bits} b = {r.file_bits} b"
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
            f"PSNR {fmt_db(j.psnr)} dB -> rdcodec {result.psnr - j.psnr:+.2f} dB "
            "at the same or lower size"
        )
    elif not no_jpeg:
        click.echo("  JPEG      cannot get this small (quality 1 is larger)")
    click.echo(
        f"  time      encode {result.encode_seconds:.2f} s, decode {result.decode_seconds:.2f} s"
    )


@click.command()
@click.argument("input_path", metavar="IN", type=click.Path(path_type=Path))
@click.argument("output_path", metavar="OUT", type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite OUT if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@max_pixels_option("Refuse files declaring larger images (default 100 MP; at least 1).")
@batch_options
@reports_errors
def decode(input_path, output_path, force, as_json, max_pixels, threads, **folder):
    """Decode bitstream IN into image OUT (format from its extension, e.g. .png); or every
    .rdc file under folder IN into the same tree of PNGs under folder OUT."""
    from ..codec import image_io, pipeline

    if input_path.is_dir():
        from ..codec.batch import Settings

        if as_json:
            raise CodecError("--json is for one file; for a folder use --report FILE.json")
        settings = Settings("decode", threads=threads, max_pixels=max_pixels, force=force)
        _run_folder(input_path, output_path, settings, **folder)
        return

    check_output(output_path, force)
    data = read_bitstream(input_path)
    try:  # the errors of a bitstream name it
        _check_format_keeps_alpha(output_path, pipeline.read_header(data), input_path)
        start = time.perf_counter()
        image = pipeline.decode(data, max_pixels=max_pixels or image_io.DEFAULT_MAX_PIXELS)
        seconds = time.perf_counter() - start
    except (BitstreamError, ModelError) as exc:
        raise type(exc)(f"{input_path}: {exc}") from None
    with writing(output_path):
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


# Pillow formats that write an RGBA or LA image with its alpha and read it back with it
# (BMP writes 32-bit pixels that readers take as RGB, GIF a palette, PPM no alpha).
_ALPHA_FORMATS = frozenset({"PNG", "WEBP", "TIFF", "AVIF", "JPEG2000", "TGA", "QOI", "SGI"})


def _check_format_keeps_alpha(output_path: Path, header, input_path: Path) -> None:
    """Refuse, before decoding, an output format that would lose the alpha plane the
    file carries (or whose extension names no format)."""
    from PIL import Image

    fmt = Image.registered_extensions().get(output_path.suffix.lower())
    if fmt is None:
        raise OutputError(
            f"{output_path}: unknown image extension '{output_path.suffix}' (use .png)"
        )
    if header.chunk(b"ALPH") is not None and fmt not in _ALPHA_FORMATS:
        raise OutputError(
            f"{output_path}: cannot write the alpha channel of {input_path} as {fmt} "
            "(use .png, .webp or .tiff)"
        )


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the manifest entries as JSON.")
@reports_errors
def models(as_json):
    """List the shipped models, their quality levels and weight hashes."""
    from ..models.registry import default_model_name, model_entries, scale_entries

    entries = model_entries()
    if as_json:
        click.echo(json.dumps(entries, indent=2))
        return
    default = default_model_name()
    scale = scale_entries()
    marks = {}  # where the default quality scale hands over from one model to the next
    for k, s in enumerate(scale):
        top = next(e["qualities"][1] for e in entries if e["name"] == s["model"])
        end = f"up to {scale[k + 1]['from']:g}" if k + 1 < len(scale) else f"to {top}"
        marks[s["model"]] = f"qualities {s['from']:g} {end}"
    for e in entries:
        mark = " (default)" if e["name"] == default and len(scale) == 1 else ""
        if len(scale) > 1 and e["name"] in marks:
            mark = f" (default scale: {marks[e['name']]})"
        lo, hi = e["qualities"]
        click.echo(
            f"{e['name']}{mark}: wire id {e['wire_id']}, quality {lo}..{hi} "
            f"(default {e.get('default_quality')}), sha256 {e['sha256'][:16]}..., "
            f"{e.get('parameters', 0) / 1e6:.2f} M parameters, {e.get('description', '')}"
        )


@click.command()
@click.argument("input_path", metavar="FILE", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the header as one JSON object.")
@reports_errors
def info(input_path, as_json):
    """Show what the header of bitstream FILE says, without decoding it."""
    from ..codec import container
    from ..codec.results import chunk_bytes
    from ..models.registry import find_entry

    data = read_bitstream(input_path)
    try:
        header, z_payload, y_payload = container.unpack(data)  # lengths and CRC checked
    except BitstreamError as exc:
        raise BitstreamError(f"{input_path}: {exc}") from None
    try:
        model = find_entry(wire_id=header.model_id)["name"]
    except ModelError:
        model = None  # a file from a model this install lacks still has a header to show
    pixels = header.width * header.height
    metadata, alpha = chunk_bytes(header)
    sizes = {
        "header": container.OVERHEAD_BYTES,
        "metadata": metadata,
        "alpha": alpha,
        "z": len(z_payload),
        "y": len(y_payload),
        "total": len(data),
    }
    present = {
        "icc_profile": header.chunk(b"ICCP") is not None,
        "exif": header.chunk(b"EXIF") is not None,
        "xmp": header.chunk(b"XMP_") is not None,
        "alpha": alpha > 0,
    }
    if as_json:
        click.echo(
            json.dumps(
                {
                    "input": str(input_path),
                    "width": header.width,
                    "height": header.height,
                    "model": model,
                    "model_id": header.model_id,
                    "weights_sha256_prefix": header.weights_hash.hex(),
                    "quality": header.quality,
                    "grayscale": header.grayscale,
                    "metadata": present,
                    "bytes": sizes,
                    "bpp": 8 * len(data) / pixels,
                }
            )
        )
        return
    name = model if model is not None else "not installed"
    click.echo(
        f"{input_path}: {header.width}x{header.height}, model {name} (wire id "
        f"{header.model_id}, weights {header.weights_hash.hex()}), quality {header.quality:g}"
        + (", greyscale" if header.grayscale else "")
    )
    kept = [k.replace("_", " ") for k, v in present.items() if v]
    click.echo(f"  carries    {', '.join(kept) if kept else 'no metadata, no alpha'}")
    parts = [("header", "header+CRC"), ("metadata", "metadata"), ("alpha", "alpha")]
    for part, label in [*parts, ("z", "z"), ("y", "y")]:
        if part in ("metadata", "alpha") and not sizes[part]:
            continue
        click.echo(f"  {label:<11}{sizes[part]:>9} bytes  {8 * sizes[part] / pixels:.4f} bpp")
    click.echo(f"  {'total':<11}{len(data):>9} bytes  {8 * len(data) / pixels:.4f} bpp")


@click.command()
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
@effort_option(
    "When FILE is an image: encode it at this effort, and show what refinement "
    "changed against effort 0, channel by channel (the amortisation gap)."
)
@click.option("--json", "as_json", is_flag=True, help="Print everything as one JSON object.")
@click.option("--force", is_flag=True, help="Overwrite the heatmap file if it exists.")
@reports_errors
def inspect(input_path, quality, effort, heatmap_path, as_json, force):
    """Account for every bit of FILE (.rdc, or an image to encode): header, z, y per channel."""
    from ..codec import container, diagnostics, image_io, pipeline

    if heatmap_path is not None:
        check_output(heatmap_path, force)
    data = image_io.read_bitstream(input_path)
    loaded = None
    if not data.startswith(container.MAGIC):
        loaded = image_io.read_image(input_path, keep_alpha=True)
        if loaded.alpha is not None:
            click.echo(
                f"rdcodec: note: {input_path}: the alpha channel is not measured here; "
                "inspect accounts for the colour (encode stores alpha losslessly beside it)",
                err=True,
            )
        with refinement_progress(effort, show=not as_json):
            data = pipeline.encode(
                loaded.pixels, quality, grayscale=loaded.grayscale, effort=effort
            )
    elif quality is not None or effort:
        raise CodecError("--quality and --effort apply to images; FILE is already a bitstream")
    try:  # the errors of a bitstream name it
        diag = diagnostics.diagnose(data)
    except (BitstreamError, ModelError) as exc:
        raise type(exc)(f"{input_path}: {exc}") from None
    gap = None
    if effort:
        single = pipeline.encode(loaded.pixels, quality, grayscale=loaded.grayscale)
        gap = diagnostics.amortisation_gap(loaded.pixels, single, data, diag)
    if heatmap_path is not None:
        with writing(heatmap_path):
            diagnostics.save_heatmap(diag, heatmap_path, force)
    info = diag.to_dict()
    if gap is not None:
        info["effort"] = {"effort": effort, **gap.to_dict()}
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
    for part in ("metadata", "alpha"):
        if b[part]:
            click.echo(f"  {part:<9} {b[part]} bits ({100 * b[part] / b['file']:.2f}%)")
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
    if gap is not None:
        click.echo(
            f"  effort {effort}  {gap.bits_saved:+d} bits saved against effort 0 "
            f"({-100 * gap.bits_saved / gap.bits_single:+.1f}%), PSNR {gap.psnr:.2f} dB "
            f"against {gap.psnr_single:.2f}"
        )
        saved = gap.channel_bits_saved
        most = sorted(range(len(saved)), key=lambda c: -abs(saved[c]))[:8]
        listed = ", ".join(f"{c}:{saved[c]:+.0f}" for c in most)
        click.echo(f"  gap by channel (bits saved) {listed}")
