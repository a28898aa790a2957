"""``rdcodec compare`` and ``rdcodec bench --html`` through click's CliRunner."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from rdcodec.cli.main import main
from rdcodec.codec.bench import compare as compare_lib

IMAGES = Path(__file__).parents[1] / "images"
COFFEE = str(IMAGES / "coffee.png")


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture(scope="module")
def json_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare") / "page.html"
    result = CliRunner().invoke(
        main, ["compare", COFFEE, "--codecs", "jpeg,webp", "--out", str(out), "--json"]
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), out


def _page_data(path: Path) -> dict:
    text = path.read_text("utf-8")
    return json.loads(re.search(r'id="data">(.*?)</script>', text, re.S).group(1))


def _assert_one_line_error(result, text, code=1):
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rdcodec: error:") and text in lines[0], (
        result.stderr
    )


def test_json_prints_the_table(json_run):
    info, out = json_run
    assert [r["codec"] for r in info["rows"]] == ["rdcodec", "jpeg", "webp"]
    ours = info["rows"][0]
    assert ours["quality"] == 5.0 and ours["setting"] == "quality 5"
    for row in info["rows"]:
        assert set(row) >= {"codec", "bytes", "bpp", "psnr", "ms_ssim", "quality", "setting"}
        assert row["bytes"] <= ours["bytes"]
        assert row["bpp"] == 8 * row["bytes"] / (240 * 160)
    assert info["page_bytes"] == out.stat().st_size
    assert _page_data(out)["images"][0]["rows"] == info["rows"]


def test_text_output(runner, tmp_path):
    out = tmp_path / "page.html"
    result = runner.invoke(main, ["compare", COFFEE, "--codecs", "jpeg", "--out", str(out)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"{COFFEE} 240x160 -> {out} (")
    assert "PSNR dB" in lines[1] and "MS-SSIM" in lines[1]
    assert lines[2].split()[0] == "rdcodec" and lines[3].split()[0] == "JPEG"
    assert out.is_file()


def test_existing_page_needs_force(runner, tmp_path):
    out = tmp_path / "page.html"
    out.write_text("keep me")
    result = runner.invoke(main, ["compare", COFFEE, "--codecs", "jpeg", "--out", str(out)])
    _assert_one_line_error(result, "already exists (use --force", code=6)
    assert out.read_text() == "keep me"
    result = runner.invoke(
        main, ["compare", COFFEE, "--codecs", "jpeg", "--out", str(out), "--force"]
    )
    assert result.exit_code == 0, result.output
    assert out.read_text("utf-8").startswith("<!doctype html>")


def test_a_failure_leaves_no_partial_page(runner, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise KeyboardInterrupt

    out = tmp_path / "page.html"
    monkeypatch.setattr(compare_lib, "render_page", broken)
    result = runner.invoke(main, ["compare", COFFEE, "--codecs", "jpeg", "--out", str(out)])
    _assert_one_line_error(result, "interrupted", code=130)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "text", "code"),
    [
        (["nope.png"], "no such file", 4),
        ([str(IMAGES / "README.md")], "not an image file", 4),
        ([COFFEE, "-q", "2", "--target-bpp", "1"], "not both", 1),
        ([COFFEE, "-q", "12"], "quality must be between", 1),
        ([COFFEE, "--codecs", "jpeg,gif"], "unknown codec 'gif'", 1),
        ([COFFEE, "--target-bpp", "0.01"], "below the lowest quality", 1),
    ],
)
def test_bad_input_is_one_line(runner, tmp_path, args, text, code):
    result = runner.invoke(main, ["compare", *args, "--out", str(tmp_path / "page.html")])
    _assert_one_line_error(result, text, code)
    assert not (tmp_path / "page.html").exists()


@pytest.mark.parametrize("name", ["page.png", "page", "page.html.txt"])
def test_the_page_must_be_named_html(runner, tmp_path, name):
    result = runner.invoke(main, ["compare", COFFEE, "--out", str(tmp_path / name)])
    _assert_one_line_error(result, "name it .html or .htm", code=6)
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_codec_lists_what_compare_takes(runner, tmp_path):
    out = str(tmp_path / "page.html")
    result = runner.invoke(main, ["compare", COFFEE, "--codecs", "foo", "--out", out])
    _assert_one_line_error(result, "unknown codec 'foo'; known: jpeg, webp, avif, jpeg2000")
    assert result.stderr.strip().endswith("known: jpeg, webp, avif, jpeg2000")  # no rdcodec@MODEL


def test_empty_paths_are_refused(runner, tmp_path):
    for args, what in (
        (["", "--out", str(tmp_path / "p.html")], "IMAGE"),
        ([COFFEE, "--out", ""], "--out"),
    ):
        result = runner.invoke(main, ["compare", *args])
        _assert_one_line_error(result, f"{what}: empty path", code=2)
    assert list(tmp_path.iterdir()) == []


def test_an_image_with_alpha_is_refused_with_what_is_true(runner, tmp_path):
    from PIL import Image

    image = tmp_path / "rgba.png"
    with Image.open(COFFEE) as im:
        rgba = im.convert("RGBA").crop((0, 0, 48, 32))
    rgba.putalpha(128)
    rgba.save(image)
    page = tmp_path / "page.html"
    result = runner.invoke(main, ["compare", str(image), "--out", str(page)])
    _assert_one_line_error(result, "compare measures the colour alone", code=4)
    assert "--drop-alpha" in result.stderr and "does not code transparency" not in result.stderr
    assert not page.exists()


def test_output_folder_must_exist(runner, tmp_path):
    result = runner.invoke(main, ["compare", COFFEE, "--out", str(tmp_path / "no" / "p.html")])
    _assert_one_line_error(result, "output directory does not exist", code=6)


def test_refuses_to_overwrite_the_input(runner, tmp_path):
    image = tmp_path / "coffee.png"
    shutil.copy(COFFEE, image)
    result = runner.invoke(main, ["compare", str(image), "--out", str(image), "--force"])
    _assert_one_line_error(result, "same file as IMAGE")


def test_help_states_the_size_cap(runner):
    result = runner.invoke(main, ["compare", "--help"])
    text = " ".join(result.stdout.split())
    limits = compare_lib.PAGE_LIMITS
    assert f"up to {limits.full_side} px on the long side" in text
    assert f"downscaled to {limits.overview_side} px" in text
    assert f"{limits.crops} full-resolution crops of {limits.crop_side}x{limits.crop_side}" in text
    # The most pixels one version can take: the largest image shown whole, or an
    # overview (at most square) plus the crops, whichever is more.
    most = max(limits.full_side**2, limits.overview_side**2 + limits.crops * limits.crop_side**2)
    assert f"at most {most / 1e6:.1f} megapixels (a {limits.full_side}x{limits.full_side}" in text


def test_cli_import_leaves_the_page_code_alone():
    code = "import sys, rdcodec.cli.main; print('rdcodec.codec.bench' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_bench_html(runner, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    shutil.copy(IMAGES / "astronaut.png", folder)
    out = tmp_path / "out"
    args = ["bench", str(folder), "--out", str(out), "--codecs", "rdcodec,jpeg", "--html"]
    args += ["--qualities", "rdcodec=4,6,8", "--qualities", "jpeg=10,50,90"]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    report = out / "report.html"
    assert f"HTML report       {report}" in result.stdout
    text = report.read_text("utf-8")
    assert "src='data:image/svg+xml;base64," in text and "<h3>Anchor: JPEG</h3>" in text
    assert "Each image at rdcodec quality 6" in text
    [image] = _page_data(report)["images"]
    assert image["image"] == "astronaut.png"
    rows = {r["codec"]: r for r in image["rows"]}
    assert rows["rdcodec"]["quality"] == 6 and rows["jpeg"]["bytes"] <= rows["rdcodec"]["bytes"]
    [view] = image["views"]  # one full-resolution crop (the image is smaller than one)
    assert view["region"] == [0, 0, 128, 128]
