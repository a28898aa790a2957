"""Folders: rdcodec encode DIR OUTDIR / decode DIR OUTDIR."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from rdcodec.cli.main import main
from rdcodec.codec import batch, pipeline
from rdcodec.errors import CodecError

IMAGES = Path(__file__).parents[1] / "images"


@pytest.fixture
def photo_folder(tmp_path) -> Path:
    """Three good photos (one in a subfolder), a corrupt PNG, a truncated PNG, a 0-byte
    JPEG and a text file."""
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    for name in ("coffee.png", "astronaut.png"):
        with Image.open(IMAGES / name) as im:
            im.convert("RGB").crop((0, 0, 96, 64)).save(src / name)
    shutil.copy(src / "coffee.png", src / "sub" / "again.png")
    (src / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (src / "cut.png").write_bytes((src / "coffee.png").read_bytes()[:300])
    (src / "sub" / "empty.jpg").write_bytes(b"")
    (src / "notes.txt").write_text("not an image")
    return src


def _encode(src: Path, out: Path, *extra: str):
    return CliRunner().invoke(main, ["encode", str(src), str(out), "-j", "1", *extra])


def test_folder_encode_mirrors_the_tree_and_reports_each_bad_file(photo_folder, tmp_path):
    out, report = tmp_path / "out", tmp_path / "report.csv"
    result = _encode(photo_folder, out, "--report", str(report))
    assert result.exit_code != 0  # three files failed
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.rdc")) == [
        "astronaut.rdc",
        "coffee.rdc",
        "sub/again.rdc",
    ]
    for name in ("bad.png", "cut.png", "sub/empty.jpg"):
        assert f"failed: {name}" in result.stderr
    assert "done 3, skipped 0" in result.output and "failed 3, not images 1" in result.output
    assert not list(out.rglob(".*"))  # no temporary file left
    rows = {r["file"]: r for r in csv.DictReader(report.open())}
    assert rows["coffee.png"]["status"] == "done" and rows["bad.png"]["status"] == "failed"
    # Each output is the file a single encode writes, and decodes to the reported PSNR.
    data = (out / "coffee.rdc").read_bytes()
    pixels = np.array(Image.open(photo_folder / "coffee.png").convert("RGB"))
    assert data == pipeline.encode(pixels, 5.0)
    assert int(rows["coffee.png"]["bytes_out"]) == len(data)


def test_a_second_run_skips_what_is_done_and_clears_stale_temporaries(photo_folder, tmp_path):
    out = tmp_path / "out"
    _encode(photo_folder, out)
    done = out / "coffee.rdc"
    before = done.stat().st_mtime_ns
    (out / "sub" / "again.rdc").unlink()  # as if the batch was killed before it
    (out / ".astronaut.rdc.abc123.part").write_bytes(b"half")  # killed mid-write
    result = _encode(photo_folder, out)
    assert "done 1, skipped 2" in result.output
    assert done.stat().st_mtime_ns == before  # not done twice
    assert (out / "sub" / "again.rdc").exists()
    assert not list(out.rglob("*.part"))
    forced = _encode(photo_folder, out, "--force")
    assert "done 3, skipped 0" in forced.output


def test_two_workers_write_the_same_files_as_one(photo_folder, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    _encode(photo_folder, one)
    CliRunner().invoke(main, ["encode", str(photo_folder), str(two), "-j", "2", "--quiet"])
    for path in one.rglob("*.rdc"):
        assert path.read_bytes() == (two / path.relative_to(one)).read_bytes()


def test_folder_decode_and_json_report(photo_folder, tmp_path):
    out, back, report = tmp_path / "out", tmp_path / "back", tmp_path / "r.json"
    _encode(photo_folder, out)
    result = CliRunner().invoke(
        main, ["decode", str(out), str(back), "-j", "1", "--report", str(report)]
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.relative_to(back).as_posix() for p in back.rglob("*.png")) == [
        "astronaut.png",
        "coffee.png",
        "sub/again.png",
    ]
    rows = json.loads(report.read_text())
    assert {r["status"] for r in rows} == {"done"} and len(rows) == 3


def test_folder_options_are_checked_before_any_work(photo_folder, tmp_path):
    out = tmp_path / "out"
    bad_model = _encode(photo_folder, out, "--model", "no-such-model")
    assert bad_model.exit_code != 0 and not out.exists()
    as_json = _encode(photo_folder, out, "--json")
    assert as_json.exit_code != 0 and "--report" in as_json.stderr
    bad_effort = _encode(photo_folder, out, "--effort", "7")
    assert bad_effort.exit_code != 0 and "effort must be one of" in bad_effort.stderr
    assert not out.exists()


def test_default_jobs_fill_the_machine():
    assert batch.default_jobs(1) >= 1
    assert batch.default_jobs(1000) == 1


def test_engine_options_are_checked_before_any_work(photo_folder, tmp_path):
    out = tmp_path / "out"
    for extra, message in (
        (["--address", "auto"], "--address is for --engine ray"),
        (["-j", "0"], "jobs (-j) must be a whole number of at least 1, got 0"),
    ):
        result = CliRunner().invoke(main, ["encode", str(photo_folder), str(out), *extra])
        assert result.exit_code != 0 and message in result.output + result.stderr
    assert not out.exists() or not list(out.rglob("*.rdc"))


@pytest.mark.parametrize(
    "kwargs, message",
    [({"jobs": "2"}, "jobs (-j) must be a whole number"), ({"threads": 0}, "threads (--threads)")],
)
def test_the_python_api_refuses_bad_engine_settings(photo_folder, tmp_path, kwargs, message):
    import rdcodec

    with pytest.raises(CodecError, match=re.escape(message)):
        rdcodec.encode_folder(photo_folder, tmp_path / "out", 2, **kwargs)
    assert not (tmp_path / "out").exists()


def test_the_python_api_runs_a_folder(photo_folder, tmp_path):
    import rdcodec

    summary = rdcodec.encode_folder(photo_folder, tmp_path / "out", 2, jobs=1)
    assert summary.count("done") == 3 and summary.failed == 3
    assert {r.quality for r in summary.rows if r.status == "done"} == {2.0}
    decoded = rdcodec.decode_folder(tmp_path / "out", tmp_path / "png", jobs=1)
    assert decoded.count("done") == 3 and decoded.failed == 0


def test_inputs_with_the_same_output_fail_before_any_work(tmp_path):
    """a.png and a.jpg both make a.rdc: neither is coded (nothing skipped as done,
    nothing overwritten), each failure names the other file, the rest is coded."""
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    Image.new("RGB", (32, 24), "red").save(src / "a.png")
    Image.new("RGB", (32, 24), "blue").save(src / "a.jpg")
    Image.new("RGB", (32, 24), "green").save(src / "c.png")
    for extra in ((), ("--force",)):
        result = _encode(src, out, "--no-jpeg", *extra)
        assert result.exit_code == 1
        assert "done 1, skipped 0 (output exists), failed 2" in result.output
        assert "failed: a.png: same output a.rdc as a.jpg" in result.stderr
        assert "failed: a.jpg: same output a.rdc as a.png" in result.stderr
        assert sorted(p.name for p in out.iterdir()) == ["c.rdc"]
        (out / "c.rdc").unlink()
    # Decode: a.rdc and a.RDC would both make a.png.
    coded = tmp_path / "coded"
    coded.mkdir()
    data = pipeline.encode(np.zeros((16, 16, 3), np.uint8), 2)
    (coded / "a.rdc").write_bytes(data)
    (coded / "a.RDC").write_bytes(data)
    result = CliRunner().invoke(main, ["decode", str(coded), str(tmp_path / "png"), "-j", "1"])
    assert result.exit_code == 1 and "failed: a.RDC: same output a.png as a.rdc" in result.stderr
    assert not list((tmp_path / "png").iterdir())


def test_report_and_quality_are_checked_before_any_work(photo_folder, tmp_path, monkeypatch):
    monkeypatch.setattr(batch, "process", None)  # coding any file would fail the run
    out = tmp_path / "out"
    for extra, message in (
        (("--report", str(tmp_path / "rep.txt")), "a report is .csv or .json"),
        (("--report", str(tmp_path / "no" / "rep.csv")), "output directory does not exist"),
        (("--quality", "12"), "quality must be between 1 and 11, got 12"),
        (("--target-bpp", "-1"), "target bpp must be a positive finite number"),
    ):
        result = _encode(photo_folder, out, *extra)
        assert result.exit_code != 0 and isinstance(result.exception, SystemExit)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("rdcodec: error:") and message in lines[0]
        assert not out.exists()  # not even an empty folder


def test_folder_decode_of_an_empty_file_says_it_is_empty(tmp_path):
    coded = tmp_path / "coded"
    coded.mkdir()
    (coded / "empty.rdc").write_bytes(b"")
    result = CliRunner().invoke(main, ["decode", str(coded), str(tmp_path / "png"), "-j", "1"])
    assert result.exit_code == 1
    assert "failed: empty.rdc: empty file (0 bytes)" in result.stderr
    assert not list((tmp_path / "png").iterdir())  # no folder or file for a failed one


def _copies(folder: Path, count: int, side: int) -> Path:
    """``folder`` holding ``count`` copies of a side x side crop of coffee.png."""
    folder.mkdir()
    with Image.open(IMAGES / "coffee.png") as im:
        crop = im.convert("RGB").crop((0, 0, side, side))
    for k in range(count):
        crop.save(folder / f"{k:02d}.png")
    return folder


def test_a_folder_run_stopped_early_drops_the_files_not_started(tmp_path):
    # Ctrl-C or SIGTERM unwinds the engine's generator: the pool must not code the rest
    # of the folder first.
    src, out = _copies(tmp_path / "in", 40, 32), tmp_path / "out"
    settings = batch.Settings("encode", quality=2)
    jobs, _ = batch.find_jobs(src, out, "encode")
    rows = batch.local_engine(2)(settings, jobs)
    first = next(rows)
    rows.close()
    assert first.status == "done"
    assert len(list(out.rglob("*.rdc"))) < len(jobs)


def test_sigterm_stops_a_folder_run_and_its_workers(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    src, out = _copies(tmp_path / "in", 30, 96), tmp_path / "out"
    # Effort 1: each file takes a while, so the run is mid-way when the signal comes.
    command = [sys.executable, "-m", "rdcodec", "encode", str(src), str(out), "-j", "2"]
    run = subprocess.Popen(
        [*command, "--effort", "1", "--quiet"], stderr=subprocess.PIPE, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not list(out.rglob("*.rdc")) and time.monotonic() < deadline:
        time.sleep(0.2)
    run.send_signal(signal.SIGTERM)
    start = time.monotonic()
    _, stderr = run.communicate(timeout=60)
    assert time.monotonic() - start < 20  # the workers are stopped, not waited for
    assert run.returncode == 128 + signal.SIGTERM and "rdcodec: error: terminated" in stderr
    assert 0 < len(list(out.rglob("*.rdc"))) < 30
    again = subprocess.run(command, capture_output=True, text=True)  # finishes the rest
    assert again.returncode == 0 and len(list(out.rglob("*.rdc"))) == 30
    assert not list(out.rglob(".*.part"))
