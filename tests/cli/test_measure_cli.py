"""``rdcodec rdplane`` and ``rdcodec speed`` through click's CliRunner: every option is
checked before any coding, in one line. Then the group's rules for every command: no
empty path, and summaries in ``rdcodec --help`` that are not cut inside a sentence."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from rdcodec.cli.main import SECTIONS, main
from rdcodec.codec.bench import rdplane as plane
from rdcodec.codec.bench import speed as bench_speed
from rdcodec.codec.bench.rdplane import PlanePoint
from rdcodec.models.registry import default_model_name

IMAGES = Path(__file__).parents[1] / "images"


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture
def folder(tmp_path):
    """Two 64x64 crops of coffee.png."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    with Image.open(IMAGES / "coffee.png") as im:
        for i in range(2):
            im.convert("RGB").crop((64 * i, 0, 64 * i + 64, 64)).save(folder / f"{i}.png")
    return folder


@pytest.fixture
def no_coding(monkeypatch):
    """Coding fails the test: each refusal must come before it."""

    def coded(*args, **kwargs):
        raise AssertionError("coded before the options were checked")

    for module, name in (
        (plane, "rdcodec_plane"),
        (plane, "classical_plane"),
        (bench_speed, "run"),
        (bench_speed, "versus_compressai"),
    ):
        monkeypatch.setattr(module, name, coded)


def _assert_one_line_error(result, text, code=1):
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rdcodec: error:") and text in lines[0], (
        result.stderr
    )
    assert result.stdout == ""


# ---- rdplane -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "text", "code"),
    [
        (["--out", "plot.txt"], "plot.txt: cannot plot to a .txt file (use one of", 6),
        (["--images", "0"], "--images must be at least 1", 1),
        (["--images", "-1"], "--images must be at least 1", 1),
        (["--reference", ",,"], "--reference names no codec", 1),
        (["--reference", "foo"], "unknown codec 'foo'; known: jpeg, webp, avif, jpeg2000", 1),
    ],
)
def test_rdplane_checks_its_options_before_coding(
    runner, folder, tmp_path, monkeypatch, no_coding, args, text, code
):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(main, ["rdplane", str(folder), "--images", "2", *args])
    _assert_one_line_error(result, text, code)
    assert "rdcodec@MODEL" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["imgs"]


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc, where no file can be made")
def test_rdplane_checks_the_output_can_be_written_before_coding(runner, folder, no_coding):
    result = runner.invoke(main, ["rdplane", str(folder), "--out", "/proc/x.png"])
    _assert_one_line_error(result, "/proc/x.png: cannot write", code=6)


def test_rdplane_writes_the_format_its_extension_names(runner, folder, tmp_path, monkeypatch):
    ours = [PlanePoint("q1", 0.5, 40.0, 0.01), PlanePoint("q2", 1.0, 20.0, 0.02)]
    monkeypatch.setattr(plane, "rdcodec_plane", lambda model, images: ours)
    monkeypatch.setattr(plane, "classical_plane", lambda name, images: [])
    out = tmp_path / "plane.SVG"
    result = runner.invoke(main, ["rdplane", str(folder), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert b"<svg" in out.read_bytes()[:2000]


# ---- speed ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["--sizes", "nan"], "--sizes: give positive megapixel counts, got nan"),
        (["--sizes", "inf"], "--sizes: give positive megapixel counts, got inf"),
        (["--sizes", "0.01,-1"], "--sizes: give positive megapixel counts, got -1"),
        (["--sizes", "1e9"], "--sizes: 1e+09 MP is above the 100 MP image limit"),
        (["--sizes", "1e-9"], "--sizes: 1e-09 MP is less than one pixel"),
        (["--sizes", ","], "--sizes: give positive megapixel counts"),
        (["--sizes", "0.01", "-q", "0"], "--quality: quality must be between 1 and"),
        (["--sizes", "0.01", "-q", "nan"], "--quality: quality must be a number from 1 to"),
        (["--sizes", "0.01", "-q", "1000"], "--quality: quality must be between 1 and"),
        (["--sizes", "0.01", "--threads", "0"], "--threads must be at least 1"),
        (["--sizes", "0.01", "--threads", "-1"], "--threads must be at least 1"),
        (["--sizes", "0.01", "--models", "foo"], "--models applies with --versus"),
        (["--versus", "PHOTO", "--models", ",,"], "--models names no model"),
        (["--versus", "PHOTO", "-q", "nan"], "--quality: hp-gain-n96m128 codes 1 to 8, got nan"),
        (["--versus", "PHOTO", "-q", "0"], "--quality: hp-gain-n96m128 codes 1 to 8, got 0"),
        (["--versus", "PHOTO", "--threads", "0"], "--threads must be at least 1"),
    ],
)
def test_speed_checks_its_options_before_any_coding(runner, folder, no_coding, args, text):
    photo = str(folder / "0.png")
    models = (
        ["--models", "hp-gain-n96m128"] if "--versus" in args and "--models" not in args else []
    )
    result = runner.invoke(main, ["speed", *(photo if a == "PHOTO" else a for a in args), *models])
    _assert_one_line_error(result, text)


def test_speed_versus_times_each_model_once(runner, folder, monkeypatch):
    timed = []

    def versus(pixels, names, quality):
        timed.append(names)
        return []

    monkeypatch.setattr(bench_speed, "versus_compressai", versus)
    photo = str(folder / "0.png")
    default = default_model_name()
    for models in (f",{default},,{default}", "hp-gain-n96m128,hp-exact-n96m128,hp-gain-n96m128"):
        args = ["speed", "--versus", photo, "--models", models, "-q", "4", "--json"]
        result = runner.invoke(main, args)
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout) == []
    assert timed == [[default], ["hp-gain-n96m128", "hp-exact-n96m128"]]


# ---- every command -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "what"),
    [
        (["info", ""], "FILE"),
        (["inspect", ""], "FILE"),
        (["decode", "", "x.png"], "IN"),
        (["encode", "IMAGE", ""], "OUT"),
        (["rdplane", ""], "FOLDER"),
        (["rdplane", "IMAGES", "--out", ""], "--out"),
        (["speed", "--versus", ""], "--versus"),
    ],
)
def test_an_empty_path_is_refused_in_one_line(runner, folder, tmp_path, monkeypatch, args, what):
    monkeypatch.chdir(tmp_path)  # an empty path would be this folder
    fill = {"IMAGE": str(folder / "0.png"), "IMAGES": str(folder)}
    result = runner.invoke(main, [fill.get(a, a) for a in args])
    _assert_one_line_error(result, f"{what}: empty path", code=2)  # a usage error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["imgs"]


def test_help_summaries_are_not_cut_inside_a_sentence(runner):
    result = runner.invoke(main, ["--help"])
    assert result.exit_code == 0, result.output
    names = [c.name for commands in SECTIONS.values() for c in commands]
    rows = {}
    for line in result.stdout.splitlines():
        match = re.match(r"  (\S+)\s+(.*)$", line)
        if match and match.group(1) in names:
            rows[match.group(1)] = match.group(2)
    assert sorted(rows) == sorted(names)
    for name, summary in rows.items():
        assert summary.endswith("."), (name, summary)
        # Cut short ("...") or a whole sentence, whose brackets close.
        assert summary.endswith("...") or summary.count("(") == summary.count(")"), summary
        assert not summary.endswith(("e.g.", "i.e.")), summary
    assert rows["release"].startswith("Ship WEIGHTS (a .rdw, e.g. RUN/best.rdw) as a new")
