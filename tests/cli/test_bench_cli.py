"""``rdcodec bench`` through click's CliRunner: bad folders, warnings, the summary."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from rdcodec.cli.main import main

IMAGES = Path(__file__).parents[1] / "images"
FAST = [
    "--codecs",
    "jpeg,jpeg2000",
    "--qualities",
    "jpeg=10,50,90",
    "--qualities",
    "jpeg2000=0.3,1,2",
]


@pytest.fixture
def runner():
    return CliRunner()


def _bench(runner, folder, out, *extra):
    return runner.invoke(main, ["bench", str(folder), "--out", str(out), *FAST, *extra])


def _crop_folder(tmp_path: Path, side: int) -> Path:
    """A folder holding one side x side crop of astronaut.png."""
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    with Image.open(IMAGES / "astronaut.png") as im:
        im.crop((0, 0, side, side)).save(folder / "crop.png")
    return folder


def _assert_one_line_error(result, text, code=1):
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rdcodec: error:") and text in lines[0], (
        result.stderr
    )
    assert result.stdout == ""


def test_missing_dir(runner, tmp_path):
    _assert_one_line_error(_bench(runner, tmp_path / "nope", tmp_path / "out"), "no such directory")


def test_dir_is_a_file(runner, tmp_path):
    path = tmp_path / "x.png"
    shutil.copy(IMAGES / "astronaut.png", path)
    _assert_one_line_error(_bench(runner, path, tmp_path / "out"), "not a directory")


def test_empty_dir(runner, tmp_path):
    (tmp_path / "empty").mkdir()
    _assert_one_line_error(_bench(runner, tmp_path / "empty", tmp_path / "out"), "is empty")


def test_dir_without_images(runner, tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "README.txt").write_text("no pictures here")
    _assert_one_line_error(_bench(runner, folder, tmp_path / "out"), "has no image files")


def test_dir_with_only_unreadable_images(runner, tmp_path):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    result = _bench(runner, folder, tmp_path / "out")
    assert result.exit_code == 1
    assert (
        "warning: skipping" in result.stderr
        and "none of its 1 image files could be read" in result.stderr
    )


def test_unreadable_file_among_good_ones_is_skipped_with_a_warning(runner, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(IMAGES / "astronaut.png", folder)
    shutil.copy(IMAGES / "coffee.png", folder)
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff garbage")
    out = tmp_path / "out"
    result = _bench(runner, folder, out)
    assert result.exit_code == 0, result.output
    assert "rdcodec: warning: skipping" in result.stderr and "corrupt.jpg" in result.stderr
    assert "2 images (1 skipped)" in result.stdout
    data = json.loads((out / "jpeg.json").read_text())
    assert len(data["results"]["bpp"]) == 3


def test_summary_lists_codecs_bd_rates_paths_and_time(runner, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    shutil.copy(IMAGES / "coffee.png", folder)
    out = tmp_path / "out"
    result = _bench(runner, folder, out)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    jpeg = next(line for line in lines if line.startswith("JPEG "))
    j2k = next(line for line in lines if line.startswith("JPEG 2000"))
    assert "anchor" in jpeg and "%" in j2k  # BD-rate of JPEG 2000 against JPEG
    for name in ("jpeg.json", "jpeg2000.json", "per_image.csv", "rd.png", "rd.svg", "bd_rate.md"):
        assert str(out / name) in result.stdout
        assert (out / name).exists()
    assert lines[-1].startswith("total ") and lines[-1].endswith(" s")

    again = _bench(runner, folder, out)
    assert "0 points encoded, 6 from the cache" in again.stdout


def test_rdcodec_runs_end_to_end_on_a_tiny_image(runner, tmp_path):
    folder = _crop_folder(tmp_path, 64)
    out = tmp_path / "out"
    result = runner.invoke(
        main,
        [
            "bench",
            str(folder),
            "--out",
            str(out),
            "--codecs",
            "rdcodec,jpeg",
            "--qualities",
            "rdcodec=2,7",
            "--qualities",
            "jpeg=20,60,95",
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads((out / "rdcodec.json").read_text())
    assert data["qualities"] == [2, 7] and len(data["results"]["bpp"]) == 2
    assert "rdcodec (" in result.stdout


def test_effort_keeps_the_qualities_given_for_rdcodec(runner, tmp_path):
    folder = _crop_folder(tmp_path, 32)
    out = tmp_path / "out"
    args = ["bench", str(folder), "--out", str(out), "--codecs", "rdcodec", "--effort", "1"]
    result = runner.invoke(main, [*args, "--qualities", "rdcodec=3"])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "rdcodec-e1.json").read_text())
    assert data["qualities"] == [3] and "effort 1" in data["name"] + data["description"]


def test_two_rdcodec_models_get_their_own_rows_files_and_bd_rate(runner, tmp_path):
    folder = _crop_folder(tmp_path, 64)
    out = tmp_path / "out"
    gain, exact = "rdcodec@hp-gain-n96m128", "rdcodec@hp-exact-n96m128"
    result = runner.invoke(
        main,
        [
            "bench",
            str(folder),
            "--out",
            str(out),
            "--codecs",
            f"{gain},{exact}",
            "--qualities",
            f"{gain}=1,4,8",
            "--qualities",
            f"{exact}=1,6,11",
        ],
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    for label, stem in (("hp-gain-n96m128", gain), ("hp-exact-n96m128", exact)):
        assert any(line.startswith(f"rdcodec ({label}) ") for line in lines)
        data = json.loads((out / f"{stem.replace('@', '-')}.json").read_text())
        assert data["name"] == f"rdcodec ({label})" and len(data["results"]["bpp"]) == 3
    assert any(
        line.startswith("rdcodec (hp-exact-n96m128): BD-rate (PSNR) ")
        and line.endswith("vs rdcodec (hp-gain-n96m128)")
        for line in lines
    ), result.stdout
    assert "## Anchor: rdcodec (hp-gain-n96m128)" in (out / "bd_rate.md").read_text()


def test_compare_file_appears_in_summary(runner, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    shutil.copy(IMAGES / "astronaut.png", folder)
    published = tmp_path / "paper.json"
    published.write_text(
        json.dumps(
            {"name": "Paper", "results": {"bpp": [0.3, 0.8, 2.0], "psnr-rgb": [24.0, 28.0, 33.0]}}
        )
    )
    result = _bench(runner, folder, tmp_path / "out", "--compare", str(published))
    assert result.exit_code == 0, result.output
    assert "Paper (published)" in result.stdout


def test_qualities_of_one_codec_given_twice_are_both_measured(runner, tmp_path):
    folder, out = _crop_folder(tmp_path, 32), tmp_path / "out"
    args = ["bench", str(folder), "--out", str(out), "--codecs", "jpeg"]
    result = runner.invoke(main, [*args, "--qualities", "jpeg=30", "--qualities", "jpeg=70"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "jpeg.json").read_text())["qualities"] == [30, 70]


def test_one_level_and_unreachable_targets_are_said_as_such(runner, tmp_path):
    folder, out = _crop_folder(tmp_path, 32), tmp_path / "out"
    args = ["bench", str(folder), "--out", str(out), "--codecs", "rdcodec"]
    result = runner.invoke(main, [*args, "--qualities", "rdcodec=2,2", "--target-bpp", "0.0001"])
    assert result.exit_code == 0, result.output
    assert "levels: one quality level measured: nothing to check" in result.stdout
    assert "rise with the level" not in result.stdout
    assert "no target reached: 1 below the lowest quality's rate" in result.stdout
    assert "nan" not in result.stdout and "nan" not in (out / "bd_rate.md").read_text()


def test_a_rerun_says_which_earlier_outputs_it_removed(runner, tmp_path):
    folder, out = _crop_folder(tmp_path, 32), tmp_path / "out"
    assert _bench(runner, folder, out).exit_code == 0
    args = ["bench", str(folder), "--out", str(out), "--codecs", "jpeg"]
    result = runner.invoke(main, [*args, "--qualities", "jpeg=10,90"])
    assert result.exit_code == 0, result.output
    assert f"removed (stale)   {out / 'jpeg2000.json'}" in result.stdout
    assert not (out / "jpeg2000.json").exists() and (out / "jpeg.json").exists()
    assert "a later run into the same folder removes" in " ".join(
        runner.invoke(main, ["bench", "--help"]).stdout.split()
    )


def test_empty_paths_are_refused(runner, tmp_path, monkeypatch):
    folder = _crop_folder(tmp_path, 32)
    monkeypatch.chdir(tmp_path)  # an empty path would be this folder
    for args, what in (
        ([str(folder), "--out", ""], "--out"),
        (["", "--out", "out"], "DIR"),
        ([str(folder), "--out", "out", "--compare", ""], "--compare"),
    ):
        result = runner.invoke(main, ["bench", *args, *FAST])
        _assert_one_line_error(result, f"{what}: empty path", code=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["imgs"]


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["--codecs", "heic"], "unknown codec 'heic'"),
        (["--codecs", "rdcodec@nope,jpeg"], "no installed model 'nope'; installed: hp-gain"),
        (["--qualities", "rdcodec@nope=1"], "no installed model 'nope'"),
        (["--qualities", "rdcodec@hp-gain-n96m128=9"], "takes numbers from 1 to 8"),
        (["--codecs", "jpeg@x"], "only rdcodec takes @MODEL"),
        (["--codecs", "rdcodec@hp-gain-n96m128", "--html"], "--html compares the default model"),
        (["--qualities", "jpeg=200"], "jpeg takes integers from 1 to 100"),
        (["--workers", "0"], "--workers must be at least 1"),
        (["--compare", "missing.json"], "missing.json: no such file"),
        (["--target-bpp", "x"], "--target-bpp: expected numbers"),
        (["--target-bpp", "0.5,-1"], "--target-bpp values must be positive"),
        (["--codecs", "jpeg", "--target-bpp", "1"], "include it in --codecs"),
        (["--codecs", "rdcodec", "--qualities", "jpeg=30,70"], "jpeg is not in --codecs"),
        (["--qualities", "=30,70"], "--qualities '=30,70' names no codec"),
        (["--target-bpp", ",,"], "--target-bpp ',,': no rates"),
    ],
)
def test_bad_options(runner, tmp_path, args, text):
    folder = tmp_path / "imgs"
    folder.mkdir()
    shutil.copy(IMAGES / "astronaut.png", folder)
    result = runner.invoke(main, ["bench", str(folder), "--out", str(tmp_path / "out"), *args])
    _assert_one_line_error(result, text)
