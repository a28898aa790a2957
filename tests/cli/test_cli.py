"""The commands, through click's CliRunner, on the shipped default model."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from rdcodec.cli.main import main
from rdcodec.codec.metrics import psnr

IMAGES = Path(__file__).parents[1] / "images"


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture(scope="module")
def encoded(tmp_path_factory):
    """coffee.png encoded once with the shipped model, with the JSON it printed."""
    folder = tmp_path_factory.mktemp("enc")
    out = folder / "coffee.rdc"
    result = CliRunner().invoke(main, ["encode", str(IMAGES / "coffee.png"), str(out), "--json"])
    assert result.exit_code == 0, result.output
    return out, json.loads(result.output)


def test_encode_reports_measured_numbers(encoded, tmp_path, runner):
    out, info = encoded
    assert info["bytes"] == out.stat().st_size
    assert info["bpp"] == 8 * info["bytes"] / (240 * 160)
    assert info["bits"]["file"] == info["bits"]["header"] + info["bits"]["z"] + info["bits"]["y"]
    assert info["bits"]["file"] == 8 * info["bytes"]
    decoded = tmp_path / "d.png"
    result = runner.invoke(main, ["decode", str(out), str(decoded)])
    assert result.exit_code == 0, result.output
    with Image.open(decoded) as im:
        assert im.mode == "RGB" and im.size == (240, 160)
        pixels = np.asarray(im)
    with Image.open(IMAGES / "coffee.png") as im:
        original = np.asarray(im.convert("RGB"))
    assert info["psnr"] == pytest.approx(psnr(original, pixels), abs=1e-9)
    jpeg = info["jpeg_same_bpp"]
    assert jpeg is None or jpeg["bytes"] <= info["bytes"]


def test_encode_text_output(runner, tmp_path):
    result = runner.invoke(
        main, ["encode", str(IMAGES / "astronaut.png"), str(tmp_path / "a.rdc"), "-q", "2.5"]
    )
    assert result.exit_code == 0, result.output
    assert "bpp" in result.output and "PSNR" in result.output and "JPEG" in result.output


def test_encoding_twice_gives_identical_bytes(encoded, runner, tmp_path):
    out, _ = encoded
    again = tmp_path / "again.rdc"
    assert (
        runner.invoke(
            main, ["encode", str(IMAGES / "coffee.png"), str(again), "--no-jpeg"]
        ).exit_code
        == 0
    )
    assert again.read_bytes() == out.read_bytes()


def test_models_lists_the_default(runner):
    result = runner.invoke(main, ["models"])
    assert result.exit_code == 0 and "sha256" in result.output
    # the default model, or the default scale's models and where each one codes
    assert "(default)" in result.output or "(default scale: qualities 1 up to" in result.output


def _assert_one_line_error(result, code_min=1):
    assert result.exit_code >= code_min
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rdcodec: error:"), result.output


def test_missing_input(runner, tmp_path):
    result = runner.invoke(main, ["encode", str(tmp_path / "nope.png"), str(tmp_path / "o.rdc")])
    _assert_one_line_error(result)
    assert not (tmp_path / "o.rdc").exists()


def test_not_an_image(runner, tmp_path):
    fake = tmp_path / "fake.png"
    fake.write_text("hello")
    result = runner.invoke(main, ["encode", str(fake), str(tmp_path / "o.rdc")])
    _assert_one_line_error(result)
    assert not (tmp_path / "o.rdc").exists()


def test_existing_output_needs_force(runner, tmp_path, encoded):
    out = tmp_path / "o.rdc"
    out.write_bytes(b"keep me")
    result = runner.invoke(main, ["encode", str(IMAGES / "astronaut.png"), str(out)])
    _assert_one_line_error(result)
    assert out.read_bytes() == b"keep me"
    result = runner.invoke(main, ["decode", str(encoded[0]), str(out)])
    _assert_one_line_error(result)
    assert out.read_bytes() == b"keep me"
    assert (
        runner.invoke(
            main, ["encode", str(IMAGES / "astronaut.png"), str(out), "--force", "--no-jpeg"]
        ).exit_code
        == 0
    )
    assert out.read_bytes()[:4] == b"\x89RDC"


def test_missing_output_directory(runner, tmp_path):
    result = runner.invoke(
        main, ["encode", str(IMAGES / "astronaut.png"), str(tmp_path / "no" / "o.rdc")]
    )
    _assert_one_line_error(result)


def test_refuses_to_overwrite_input(runner, tmp_path):
    src = tmp_path / "a.png"
    shutil.copy(IMAGES / "astronaut.png", src)
    result = runner.invoke(main, ["encode", str(src), str(src), "--force"])
    _assert_one_line_error(result)
    assert src.read_bytes() == (IMAGES / "astronaut.png").read_bytes()


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty", "text", "version"])
def test_bad_bitstreams(runner, tmp_path, encoded, damage):
    data = bytearray(encoded[0].read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip":
        data[len(data) // 3] ^= 0x01
    elif damage == "empty":
        data = bytearray()
    elif damage == "text":
        data = bytearray(b"not a bitstream at all")
    elif damage == "version":
        data[4] = 9
    bad = tmp_path / "bad.rdc"
    bad.write_bytes(bytes(data))
    result = runner.invoke(main, ["decode", str(bad), str(tmp_path / "out.png")])
    _assert_one_line_error(result)
    assert f"rdcodec: error: {bad}: " in result.output  # the message names the file
    if damage == "empty":
        assert "empty file" in result.output
    inspected = runner.invoke(main, ["inspect", str(bad)])
    _assert_one_line_error(inspected)
    assert f"rdcodec: error: {bad}: " in inspected.output
    assert not (tmp_path / "out.png").exists()
    assert not list(tmp_path.glob("*.part"))


def test_decode_missing_file(runner, tmp_path):
    _assert_one_line_error(
        runner.invoke(main, ["decode", str(tmp_path / "x.rdc"), str(tmp_path / "x.png")])
    )


def test_target_bpp(runner, tmp_path):
    result = runner.invoke(
        main,
        [
            "encode",
            str(IMAGES / "coffee.png"),
            str(tmp_path / "t.rdc"),
            "--target-bpp",
            "0.5",
            "--json",
            "--no-jpeg",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["bpp"] <= 0.5


def test_inspect_json_accounts_for_every_bit(runner, encoded, tmp_path):
    out, info = encoded
    heat = tmp_path / "heat.png"
    result = runner.invoke(main, ["inspect", str(out), "--json", "--heatmap", str(heat)])
    assert result.exit_code == 0, result.output
    diag = json.loads(result.output)
    bits = diag["bits"]
    assert bits["file"] == 8 * out.stat().st_size == bits["header"] + bits["z"] + bits["y"]
    assert sum(diag["y_channel_bits"]) == pytest.approx(diag["table_bits"]["y"], rel=1e-9)
    assert diag["header"]["quality"] == info["quality"]
    assert heat.exists()


def test_inspect_image_and_text(runner):
    result = runner.invoke(main, ["inspect", str(IMAGES / "astronaut.png"), "-q", "1"])
    assert result.exit_code == 0, result.output
    assert "active" in result.output and "overhead" in result.output


def test_inspect_shows_the_amortisation_gap_by_channel(runner, encoded, tmp_path):
    from PIL import Image

    from rdcodec.codec import diagnostics, pipeline

    image = tmp_path / "crop.png"
    with Image.open(IMAGES / "coffee.png") as im:
        im.convert("RGB").crop((64, 32, 160, 128)).save(image)
    result = runner.invoke(main, ["inspect", str(image), "-q", "4", "-e", "1", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    gap = info["effort"]
    assert gap["effort"] == 1 and gap["bits"] == info["bits"]["file"]
    # The channels' savings add up to the y payload's change under the coder's tables.
    with Image.open(image) as im:
        single = diagnostics.diagnose(pipeline.encode(np.array(im), 4))
    assert gap["bits_effort0"] == single.file_bits
    expected = single.table_y_bits - info["table_bits"]["y"]
    assert sum(gap["y_channel_bits_saved"]) == pytest.approx(expected, abs=1)
    text = runner.invoke(main, ["inspect", str(image), "-q", "4", "-e", "1"])
    assert "bits saved against effort 0" in text.output and "gap by channel" in text.output
    refused = runner.invoke(main, ["inspect", str(encoded[0]), "-e", "1"])
    assert refused.exit_code != 0 and "apply to images" in refused.output


@pytest.fixture(scope="module")
def alpha_file(tmp_path_factory):
    """A 48x32 RGBA crop of coffee.png (a graded alpha, no metadata) and its .rdc."""
    folder = tmp_path_factory.mktemp("alpha")
    with Image.open(IMAGES / "coffee.png") as im:
        rgba = im.convert("RGB").crop((0, 0, 48, 32))
    rgba.putalpha(Image.fromarray(np.tile(np.linspace(0, 255, 48, dtype=np.uint8), (32, 1))))
    png, rdc = folder / "rgba.png", folder / "rgba.rdc"
    rgba.save(png)
    result = CliRunner().invoke(main, ["encode", str(png), str(rdc), "--no-jpeg", "--json"])
    assert result.exit_code == 0, result.output
    return png, rdc, json.loads(result.output)


def _no_coding(monkeypatch):
    """Any encode or decode fails the test: what a command refuses, it refuses first."""
    from rdcodec.codec import pipeline

    def forbidden(*args, **kwargs):
        raise AssertionError("coded before the output was checked")

    for name in ("encode_image", "decode"):
        monkeypatch.setattr(pipeline, name, forbidden)


def test_an_output_that_cannot_be_written_fails_in_one_line_before_any_work(
    runner, tmp_path, encoded, monkeypatch
):
    # The longest legal name works: the temporary file beside it has a short name.
    longest = tmp_path / ("b" * 251 + ".rdc")
    args = ["encode", str(IMAGES / "coffee.png"), str(longest), "--no-jpeg"]
    assert runner.invoke(main, args).exit_code == 0
    assert longest.exists() and not list(tmp_path.glob(".*.part"))
    _no_coding(monkeypatch)
    too_long = tmp_path / ("b" * 256 + ".rdc")
    result = runner.invoke(main, ["encode", str(IMAGES / "coffee.png"), str(too_long)])
    _assert_one_line_error(result)
    assert "name too long" in result.output
    result = runner.invoke(main, ["decode", str(encoded[0]), str(tmp_path / ("d" * 256 + ".png"))])
    _assert_one_line_error(result)
    if Path("/proc/self").is_dir():  # a folder no file can be made in, even by root
        for args in (
            ["encode", str(IMAGES / "coffee.png"), "/proc/out.rdc"],
            ["decode", str(encoded[0]), "/proc/out.png"],
        ):
            result = runner.invoke(main, args)
            _assert_one_line_error(result)
            assert "/proc/out." in result.output and "cannot write" in result.output


def test_decode_refuses_a_format_that_would_lose_alpha(runner, tmp_path, alpha_file, monkeypatch):
    _, rdc, _ = alpha_file
    kept = tmp_path / "kept.tiff"
    assert runner.invoke(main, ["decode", str(rdc), str(kept)]).exit_code == 0
    with Image.open(kept) as im:
        assert im.mode == "RGBA"
    _no_coding(monkeypatch)
    for name in ("lost.bmp", "lost.jpg", "lost.ppm", "lost.gif"):
        result = runner.invoke(main, ["decode", str(rdc), str(tmp_path / name)])
        _assert_one_line_error(result)
        assert "alpha channel" in result.output and not (tmp_path / name).exists()


@pytest.mark.parametrize("value", ["0", "-5"])
def test_max_pixels_below_one_is_refused_when_parsed(runner, tmp_path, encoded, value):
    for args in (
        ["encode", str(IMAGES / "coffee.png"), str(tmp_path / "o.rdc")],
        ["decode", str(encoded[0]), str(tmp_path / "o.png")],
    ):
        result = runner.invoke(main, [*args, "--max-pixels", value])
        assert result.exit_code == 2 and "--max-pixels" in result.output
        assert f"{value} is not in the range x>=1" in result.output
    assert not list(tmp_path.iterdir())
    assert "at least 1" in runner.invoke(main, ["decode", "--help"]).output


def test_inspect_of_an_image_with_alpha_measures_its_colour(runner, alpha_file):
    png, _, _ = alpha_file
    result = runner.invoke(main, ["inspect", str(png), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["header"]["width"] == 48
    assert "alpha channel is not measured" in result.stderr
    assert "does not code transparency" not in result.output


def test_the_rate_line_counts_chunk_framing_with_its_chunk(runner, tmp_path, alpha_file):
    from rdcodec.codec import container

    _, rdc, info = alpha_file
    header, _, _ = container.unpack(rdc.read_bytes())
    bits = info["bits"]
    assert bits["metadata"] == 0  # no ICC, EXIF or XMP: no metadata bits
    assert bits["alpha"] == 8 * header.chunk_bytes  # the alpha chunk and its framing
    assert bits["file"] == bits["header"] + bits["alpha"] + bits["z"] + bits["y"]
    args = ["encode", str(alpha_file[0]), str(tmp_path / "t.rdc"), "--no-jpeg"]
    text = runner.invoke(main, args).output
    rate = next(line for line in text.splitlines() if line.startswith("  rate"))
    assert "metadata" not in rate and f"alpha {bits['alpha']} b" in rate


def test_a_usage_error_is_one_line():
    result = CliRunner().invoke(main, ["encode", "--bogus"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rdcodec: error: No such option '--bogus'")
    assert "(see `main encode --help`)" in lines[0] or "rdcodec encode --help" in lines[0]


def test_sigterm_ends_a_command_like_ctrl_c_and_leaves_no_temporary_file(tmp_path):
    import os
    import signal

    import click

    from rdcodec.cli.common import reports_errors
    from rdcodec.codec import image_io

    target = tmp_path / "out.bin"

    def write(tmp):
        tmp.write_bytes(b"partial")
        os.kill(os.getpid(), signal.SIGTERM)  # arrives while the output is written

    @click.command()
    @reports_errors
    def command():
        image_io.atomic_write(target, write, False)

    previous = signal.getsignal(signal.SIGTERM)
    result = CliRunner().invoke(command, [])
    assert result.exit_code == 128 + signal.SIGTERM
    assert result.stderr.strip() == "rdcodec: error: terminated"
    assert list(tmp_path.iterdir()) == []  # neither the output nor its temporary file
    assert signal.getsignal(signal.SIGTERM) == previous  # the handler is the command's only


def test_python_dash_m_rdcodec_is_the_command():
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "rdcodec", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0 and result.stdout.startswith("rdcodec, version")
