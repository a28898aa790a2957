"""``rdcodec bench``: argument parsing and printing only (the work is in codec/bench/runner.py)."""

from __future__ import annotations

import time
from pathlib import Path

import click

from ..errors import CodecError
from .common import reports_errors


@click.command()
@click.argument("folder", metavar="DIR", type=click.Path(path_type=Path))
@click.option(
    "--codecs",
    default="all",
    show_default=True,
    help="Comma-separated: all (rdcodec and every classical codec), rdcodec (the default "
    "model), rdcodec@MODEL (a shipped model by name, see `rdcodec models`; list several to "
    "compare them, e.g. rdcodec@hp-gain-n96m128,rdcodec@hp-exact-n96m128), or a classical "
    "codec: jpeg, webp, avif, jpeg2000 (codec/baselines.py's table). Each "
    "rdcodec model is a codec of its own (curve, JSON, BD-rates); with two or more, "
    "bd_rate.md also compares each against the first one listed.",
)
@click.option(
    "--out",
    default="results",
    show_default=True,
    type=click.Path(path_type=Path),
    help="Output folder (JSON per codec, e.g. jpeg.json, rdcodec.json, "
    "rdcodec-hp-gain-n96m128.json; per_image.csv, rd.png/svg, bd_rate.md, cache/). "
    "bench_outputs.txt lists what a run wrote: a later run into the same folder removes "
    "the files of that list it does not write again (e.g. the JSON of a codec now left "
    "out), so the outputs describe one run; the cache stays.",
)
@click.option(
    "--workers",
    type=int,
    default=1,
    show_default=True,
    help="Parallel processes (one torch thread each).",
)
@click.option(
    "--compare",
    multiple=True,
    type=click.Path(path_type=Path),
    help="A published curve in CompressAI's JSON schema to overlay (repeatable).",
)
@click.option(
    "--qualities",
    multiple=True,
    metavar="CODEC=Q1,Q2,...",
    help="Quality points of one codec, e.g. jpeg=10,50,90, jpeg2000=0.25,1 (target bpp) or "
    "rdcodec@hp-gain-n96m128=1,4,8; repeatable. Default for rdcodec models: every level of "
    "the model.",
)
@click.option(
    "--target-bpp",
    "target_bpp",
    default=None,
    metavar="B1,B2,...",
    help="Also run rdcodec's --target-bpp at these rates on every image and report how "
    "close the files land (target_bpp.csv, bd_rate.md). Uses the first rdcodec model in "
    "--codecs.",
)
@click.option(
    "--html",
    is_flag=True,
    help="Also write OUT/report.html, one self-contained page: the RD plot, the BD-rate "
    "tables and each image compared at rdcodec's middle quality (every other codec at the "
    "same or lower size; one 256x256 full-resolution crop per image). Codes each image "
    "once more per codec. The comparisons use the first rdcodec model in --codecs, which "
    "must be the default model.",
)
@click.option(
    "--effort",
    type=int,
    default=None,
    help="Encode effort of every rdcodec model in --codecs that names none (rdcodec+e2 "
    "names one per model; list rdcodec,rdcodec+e2,... to compare efforts).",
)
@reports_errors
def bench(folder, codecs, out, workers, compare, qualities, target_bpp, html, effort):
    """Rate-distortion benchmark of rdcodec models and classical codecs on the images in DIR."""
    start = time.perf_counter()
    from ..codec.bench.bdrate import find_bd
    from ..codec.bench.codecs import parse_codecs, parse_qualities
    from ..codec.bench.names import is_rdcodec
    from ..codec.bench.report import format_percent
    from ..codec.bench.runner import run_bench

    def at_effort(name: str) -> str:  # an rdcodec model that names no effort takes --effort's
        return f"{name}+e{effort}" if effort and is_rdcodec(name) and "+" not in name else name

    names = parse_codecs(",".join(at_effort(n) for n in parse_codecs(codecs)))
    points: dict[str, tuple[float, ...]] = {}
    for spec in qualities:
        name, q = parse_qualities(spec)
        name = at_effort(name)
        if name not in names:  # its points would be measured for nothing, unsaid
            raise CodecError(f"--qualities '{spec}': {name} is not in --codecs")
        # A codec named twice gets the points of both items.
        points[name] = tuple(sorted({*points.get(name, ()), *q}))
    try:
        targets = [float(v) for v in (target_bpp or "").split(",") if v.strip()]
    except ValueError:
        raise CodecError(
            f"--target-bpp: expected numbers separated by commas, got {target_bpp!r}"
        ) from None
    if target_bpp is not None and not targets:
        raise CodecError(f"--target-bpp '{target_bpp}': no rates")
    report = run_bench(
        folder,
        codecs=names,
        out=out,
        workers=workers,
        compare=compare,
        qualities=points,
        warn=lambda message: click.echo(f"rdcodec: warning: {message}", err=True),
        targets=targets,
        html=html,
    )

    pct = format_percent
    click.echo(
        f"{report.images} images ({report.skipped} skipped), "
        f"{report.measured_points} points encoded, {report.cached_points} from the cache"
    )
    header = (
        f"{'codec':<34} {'points':>6} {'bpp range':>15} {'BD vs JPEG':>11} {'BD vs AVIF':>11} "
        f"{'enc ms':>8} {'dec ms':>8}"
    )
    click.echo(header)
    click.echo("-" * len(header))
    for c in report.curves:
        bd = {}
        for anchor in ("jpeg", "avif"):
            r = find_bd(report.bd, c.label, anchor, "psnr")
            bd[anchor] = (
                "anchor" if c.name == anchor and not c.published else pct(r.percent if r else None)
            )
        span = f"{min(c.bpp):.3f}-{max(c.bpp):.3f}" if c.bpp else "-"
        enc = (
            f"{1000 * sum(c.encode_seconds) / len(c.encode_seconds):.1f}"
            if c.encode_seconds
            else "-"
        )
        dec = (
            f"{1000 * sum(c.decode_seconds) / len(c.decode_seconds):.1f}"
            if c.decode_seconds
            else "-"
        )
        click.echo(
            f"{c.label:<34} {len(c.bpp):>6} {span:>15} {bd['jpeg']:>11} {bd['avif']:>11} "
            f"{enc:>8} {dec:>8}"
        )
    click.echo(
        "BD-rate on PSNR over the averaged curves (MS-SSIM and intervals in bd_rate.md); "
        "times: mean ms per image and point."
    )
    ours = [c for c in report.curves if is_rdcodec(c.name) and not c.published]
    for c in ours[1:]:
        r = find_bd(report.bd, c.label, ours[0].name, "psnr")
        click.echo(f"{c.label}: BD-rate (PSNR) {pct(r.percent if r else None)} vs {ours[0].label}")
    for m in report.monotonic:
        click.echo(f"{m.label} levels: {m.summary()}")
    if report.targets is not None:
        t = report.targets
        at = f"{t.model}, effort {t.effort}" if t.effort else t.model
        if t.feasible():
            click.echo(
                f"--target-bpp ({at}): mean undershoot {t.undershoot_percent():.2f}% over "
                f"{len(t.feasible())} files, {t.over_target()} above the target, "
                f"{t.infeasible()} targets below the lowest quality's rate"
            )
        else:
            click.echo(f"--target-bpp ({at}): {t.none_reached()}")
    width = max(17, *(len(what) for what in report.outputs))  # rdcodec@MODEL names are long
    for what, path in report.outputs.items():
        click.echo(f"  {what:<{width}} {path}")
    for path in report.removed:
        click.echo(f"  {'removed (stale)':<{width}} {path}")
    click.echo(f"total {time.perf_counter() - start:.1f} s")
