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
    """rdcodec: a learned image codec. Every number it prints is measured on real files."""


@main.command()
@click.argument("input_path", metavar="IN", type=click.Path(path_type=Path))
@click.argument("output_path", metavar="OUT", type=click.Path(path_type=Path))
@click.option("-q", "--quality", type=float, default=None, help="1 (smallest) .. 8 (best); fractions allowed.")
@click.option("--target-bpp", type=float, default=None, help="Pick the highest quality whose file stays at or below this bpp.")
@click.option("--model", "model_name", default=None, help="Shipped model name (see `rdcodec models`).")
@click.option("--json", "as_json", is_flag=True, help="Print the measurements as one JSON object.")
@click.option("--force", is_flag=True, help="Overwrite OUT if it exists.")
@click.option("--no-jpeg", is_flag=True, help="Skip the JPEG-at-the-same-bpp comparison.")
@click.option("--max-pixels", type=int, default=None, help="Refuse larger images (default 100 MP).")
@reports_errors
def encode(input_path, output_path, quality, target_bpp, model_name, as_json, force, no_jpeg, max_pixels):
    """Encode image IN into bitstream OUT and report what was measured."""
    from ..codec import image_io, pipeline
    from ..models.registry import load_model

    if quality is not None and target_bpp is not None:
        raise CodecError("give --quality or --target-bpp, not both")
    image_io.check_output(output_path, force)
    if input_path.resolve() == output_path.resolve():
        raise CodecError("OUT is the same file as IN; refusing to overwrite the input")
    image = image_io.read_image(input_path, max_pixels or image_io.DEFAULT_MAX_PIXELS)
    model = load_model(model_name)
    if target_bpp is not None:
        quality = pipeline.quality_for_bpp(image, target_bpp, model)
    result = pipeline.encode_image(image, quality, model, compare_jpeg=not no_jpeg)
    image_io.write_bytes(output_path, result.data, force)
    if as_json:
        click.echo(json.dumps({"input": str(input_path), "output": str(output_path), **result.to_dict()}))
        return
    r = result.rate
    click.echo(f"{input_path} {result.width}x{result.height} -> {output_path}")
    click.echo(f"  model     {result.model}, quality {result.quality:g}")
    click.echo(f"  size      {result.num_bytes} bytes, {result.bpp:.4f} bpp")
    line = f"  quality   PSNR {_fmt_db(result.psnr)} dB"
    if result.ms_ssim is not None:
        line += f", MS-SSIM {result.ms_ssim:.4f}"
    click.echo(line)
    click.echo(f"  rate      header {r.header_bits} b + z {r.z_bits} b + y {r.y_bits} b = {r.file_bits} b")
    click.echo(f"  estimate  -log2 p = {r.estimate_bits:.0f} b (z {r.estimate_z_bits:.0f}, y {r.estimate_y_bits:.0f}); "
               f"file is {r.overhead_percent:+.2f}% over it")
    if result.jpeg is not None:
        j = result.jpeg
        click.echo(f"  JPEG      q{j.quality}: {j.num_bytes} bytes, {j.bpp:.4f} bpp, PSNR {_fmt_db(j.psnr)} dB "
                   f"-> rdcodec {result.psnr - j.psnr:+.2f} dB at the same or lower size")
    elif not no_jpeg:
        click.echo("  JPEG      cannot get this small (quality 1 is larger)")
    click.echo(f"  time      encode {result.encode_seconds:.2f} s, decode {result.decode_seconds:.2f} s")


@main.command()
@click.argument("input_path", metavar="IN", type=click.Path(path_type=Path))
@click.argument("output_path", metavar="OUT", type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite OUT if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@reports_errors
def decode(input_path, output_path, force, as_json):
    """Decode bitstream IN into image OUT (format from its extension, e.g. .png)."""
    from ..codec import image_io, pipeline
    from ..errors import BitstreamError

    image_io.check_output(output_path, force)
    try:
        data = input_path.read_bytes()
    except FileNotFoundError:
        raise BitstreamError(f"{input_path}: no such file") from None
    except IsADirectoryError:
        raise BitstreamError(f"{input_path}: is a directory") from None
    except OSError as exc:
        raise BitstreamError(f"{input_path}: {exc.strerror}") from None
    start = time.perf_counter()
    image = pipeline.decode(data)
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
        click.echo(f"{input_path} -> {output_path} {image.width}x{image.height}, {len(data)} bytes "
                   f"({info['bpp']:.4f} bpp), decoded in {seconds:.2f} s")


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
        click.echo(f"{e['name']}{mark}: wire id {e['wire_id']}, quality {lo}..{hi} "
                   f"(default {e.get('default_quality')}), sha256 {e['sha256'][:16]}..., "
                   f"{e.get('parameters', 0) / 1e6:.2f} M parameters, {e.get('description', '')}")


@main.command()
@click.option("--data", default="../shared/data/train", show_default=True, help="Folder of training photos.")
@click.option("--val", default="../shared/data/val", show_default=True, help="Folder of validation photos.")
@click.option("--out", default="runs/default", show_default=True, help="Run folder (checkpoints, log).")
@click.option("--init", default=None, help="Weights or checkpoint to start from (default: the shipped model).")
@click.option("--from-scratch", is_flag=True, help="Start from random weights.")
@click.option("--steps", type=int, default=10000, show_default=True, help="Stop at this global step.")
@click.option("--time-budget", type=float, default=None, help="Stop after this many seconds.")
@click.option("--batch-size", type=int, default=8, show_default=True)
@click.option("--crop", type=int, default=128, show_default=True, help="Crop side (a multiple of 64).")
@click.option("--lr", type=float, default=1e-4, show_default=True)
@click.option("--threads", type=int, default=None, help="torch CPU threads.")
@click.option("--arch", default="96,128", show_default=True, help="N,M channels (with --from-scratch).")
@click.option("--packed", default=None, help="A .npy of uint8 crops to train on instead of --data.")
@click.option("--export", "export_path", default=None, help="Write shipped-format weights here at the end.")
@reports_errors
def train(data, val, out, init, from_scratch, steps, time_budget, batch_size, crop, lr, threads, arch,
          packed, export_path):
    """Train (or resume, or continue from the shipped weights) on lmbda*255^2*MSE + bpp."""
    from ..models import registry
    from ..models.network import ModelConfig
    from ..models.train import TrainConfig, train as run_training

    if crop % 64:
        raise CodecError("--crop must be a multiple of 64")
    if not packed and not Path(data).is_dir():
        raise CodecError(f"{data}: training data folder does not exist")
    cfg = TrainConfig(data=data, val=val, out=out, steps=steps, time_budget=time_budget,
                      batch_size=batch_size, crop=crop, lr=lr, threads=threads, packed=packed)
    if from_scratch:
        n, m = (int(v) for v in arch.split(","))
        cfg.arch = ModelConfig(n, m).to_dict()
    else:
        cfg.init = init or str(registry.weights_path(registry.find_entry(registry.default_model_name())))
        cfg.arch = registry.config_of(cfg.init)
    ckpt = run_training(cfg)
    click.echo(f"checkpoint: {ckpt}")
    if export_path:
        digest = registry.export_checkpoint(ckpt, Path(export_path))
        click.echo(f"exported {export_path} sha256 {digest}")


@main.command("export")
@click.argument("checkpoint", type=click.Path(exists=True, path_type=Path))
@click.argument("output_path", metavar="OUT", type=click.Path(path_type=Path))
@reports_errors
def export(checkpoint, output_path):
    """Export a training checkpoint as a compact shipped weight file (no optimiser state)."""
    from ..models import registry

    digest = registry.export_checkpoint(checkpoint, output_path)
    click.echo(f"{output_path}: sha256 {digest}, {output_path.stat().st_size} bytes")


def _register_optional_commands() -> None:
    # Commands that live in their own modules (each only parses and prints).
    import importlib

    for module, name in [("bench", "bench")]:
        try:
            mod = importlib.import_module(f"{__package__}.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__package__}.{module}":
                raise
            continue
        main.add_command(getattr(mod, name))


_register_optional_commands()

if __name__ == "__main__":
    main()
