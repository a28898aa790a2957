"""``rdcodec compare``: argument parsing and printing only (the work: codec/bench/compare.py)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..errors import CodecError, ImageError, OutputError
from .common import check_output, effort_option, image_input_options, reports_errors, writing
from .common import fmt_db as _fmt_db


@click.command()
@click.argument("input_path", metavar="IMAGE", type=click.Path(path_type=Path))
@click.option(
    "-q",
    "--quality",
    type=float,
    default=None,
    help="rdcodec's quality, 1 to the model's top level (default: the model's, 5).",
)
@click.option(
    "--target-bpp",
    type=float,
    default=None,
    help="rdcodec at the highest quality whose file stays at or below this bpp.",
)
@click.option(
    "--codecs",
    default="jpeg,webp,avif",
    show_default=True,
    help="The codecs beside rdcodec, comma-separated: jpeg, webp, avif, jpeg2000.",
)
@click.option(
    "--out",
    "out_path",
    required=True,
    type=click.Path(path_type=Path),
    help="The HTML page to write (.html or .htm).",
)
@effort_option("rdcodec's encode effort (0-4).")
@click.option("--no-heatmaps", is_flag=True, help="Leave the error maps out of the page.")
@click.option("--json", "as_json", is_flag=True, help="Print the table as one JSON object.")
@click.option("--force", is_flag=True, help="Overwrite the page if it exists.")
@image_input_options
@reports_errors
def compare(
    input_path,
    quality,
    target_bpp,
    codecs,
    out_path,
    effort,
    no_heatmaps,
    model_name,
    as_json,
    force,
    max_pixels,
    drop_alpha,
):
    """Code IMAGE with rdcodec, and with each other codec at its largest quality whose
    file is at most rdcodec's bytes; write one self-contained HTML page (no network, no
    server: images inside as data URIs) with a swipe slider, zoom, error maps and a table
    of bytes, bpp, PSNR, MS-SSIM and times.

    Size cap: each version is embedded losslessly, the whole image at full resolution
    up to 1600 px on the long side; a larger image as an overview downscaled to 1024 px
    plus 4 full-resolution crops of 512x512 px (where the image has the most detail).
    So a version costs at most 2.6 megapixels (a 1600x1600 image). Measured: the page
    is about 2 MB for a 768x512 photo, 10-20 MB for a detailed one of 1600 px or more.
    """
    from ..codec import baselines, image_io
    from ..codec.bench import compare as lib
    from ..codec.bench.codecs import parse_codecs
    from ..codec.bench.names import is_rdcodec

    if quality is not None and target_bpp is not None:
        raise CodecError("give --quality or --target-bpp, not both")
    check_output(out_path, force)
    if input_path.resolve() == out_path.resolve():
        raise CodecError("--out is the same file as IMAGE; refusing to overwrite the input")
    names = parse_codecs(codecs, known=tuple(baselines.CLASSICAL))
    if any(is_rdcodec(n) for n in names):
        raise CodecError(
            "--codecs lists the codecs beside rdcodec; pick rdcodec's model with --model"
        )
    if out_path.suffix.lower() not in (".html", ".htm"):  # a page named .png opens as no image
        raise OutputError(f"{out_path}: the page is HTML: name it .html or .htm")
    loaded = image_io.read_image(
        input_path, max_pixels or image_io.DEFAULT_MAX_PIXELS, drop_alpha, keep_alpha=True
    )
    if loaded.alpha is not None:  # read_image's own refusal would say rdcodec cannot code it
        raise ImageError(
            f"{input_path}: the image has an alpha channel; compare measures the colour "
            "alone, at one size for every codec (use --drop-alpha to composite it onto "
            "white; encode codes alpha losslessly)"
        )
    result = lib.compare_image(
        loaded.pixels, input_path.name, quality, target_bpp, names, model_name, effort
    )
    page = lib.render_page([result], f"{input_path.name}", heatmaps=not no_heatmaps)
    with writing(out_path):
        image_io.atomic_write(out_path, lambda tmp: tmp.write_text(page, "utf-8"), force)
    for notice in loaded.notices:
        click.echo(f"rdcodec: note: {notice}", err=True)
    if as_json:
        info = {"input": str(input_path), "output": str(out_path), **result.to_dict()}
        info["page_bytes"] = len(page.encode())
        click.echo(json.dumps({**info, "notices": list(loaded.notices)}))
        return
    click.echo(
        f"{input_path} {result.width}x{result.height} -> {out_path} ({lib.page_summary(page)})"
    )
    header = (
        f"  {'codec':<26} {'setting':<16} {'bytes':>9} {'bpp':>7} {'PSNR dB':>8} "
        f"{'MS-SSIM':>8} {'enc s':>7} {'dec s':>7}"
    )
    click.echo(header)
    for r in result.rows:
        ssim = "n/a" if r.ms_ssim is None else f"{r.ms_ssim:.4f}"
        click.echo(
            f"  {r.label:<26} {r.setting:<16} {r.num_bytes:>9} {r.bpp:>7.4f} "
            f"{_fmt_db(r.psnr):>8} {ssim:>8} {r.encode_seconds:>7.2f} {r.decode_seconds:>7.2f}"
        )
    for label, why in result.skipped:
        click.echo(f"  {label}: left out, {why}")
