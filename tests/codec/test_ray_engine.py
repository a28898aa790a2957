"""Folders on Ray (the ``rdcodec[ray]`` extra): a real local Ray, as on a cluster."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from rdcodec.cli.main import main
from rdcodec.codec import folders, pipeline
from rdcodec.codec.metrics import psnr

ray = pytest.importorskip("ray", reason='the Ray engine needs pip install "rdcodec[ray]"')

IMAGES = Path(__file__).parents[1] / "images"


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the module (``ray.init(num_cpus=2)``), shut down after it."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture
def folder(tmp_path) -> Path:
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    for i, name in enumerate(("coffee.png", "astronaut.png", "chelsea.png")):
        with Image.open(IMAGES / name) as im:
            im.convert("RGB").crop((0, 0, 96 + 16 * i, 64)).save(src / name)
    shutil.copy(src / "coffee.png", src / "sub" / "again.png")
    (src / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    return src


# Before any test that starts the module's Ray: the address is checked only where this
# process has no Ray yet.
@pytest.mark.parametrize(
    "address, message",
    [
        ("127.0.0.1:1", "cannot reach the Ray cluster at 127.0.0.1:1"),
        ("ray://127.0.0.1:1", "cannot reach the Ray cluster at ray://127.0.0.1:1"),
        ("nohost", "expected HOST:PORT"),
    ],
)
def test_an_unreachable_address_fails_at_once_and_leaves_no_outdir(
    folder, tmp_path, address, message
):
    assert not ray.is_initialized()
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main, ["encode", str(folder), str(out), "--engine", "ray", "--address", address]
    )
    assert result.exit_code != 0 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_ray_run_matches_the_local_run(local_ray, folder, tmp_path):
    local = folders.encode_folder(folder, tmp_path / "local", 3, jobs=1)
    on_ray = folders.encode_folder(folder, tmp_path / "ray", 3, engine="ray", jobs=2)
    # The same rows (file, status, bytes, bpp, PSNR, quality), and the same files.
    keep = ("file", "status", "bytes_in", "bytes_out", "bpp", "psnr", "quality")
    assert [tuple(getattr(r, k) for k in keep) for r in on_ray.rows] == [
        tuple(getattr(r, k) for k in keep) for r in local.rows
    ]
    assert on_ray.count("done") == 4 and on_ray.failed == 1
    for row in on_ray.rows:
        if row.status != "done":
            continue
        name = Path(row.file).with_suffix(".rdc")
        data = (tmp_path / "ray" / name).read_bytes()
        assert data == (tmp_path / "local" / name).read_bytes()
        pixels = np.array(Image.open(folder / row.file).convert("RGB"))
        assert psnr(pixels, pipeline.decode_array(data)) == pytest.approx(row.psnr)
    # Run again: everything is skipped, nothing is redone.
    again = folders.encode_folder(folder, tmp_path / "ray", 3, engine="ray", jobs=2)
    assert again.count("skipped") == 4 and again.count("done") == 0


def test_ray_from_the_cli_with_a_report_and_a_decode(local_ray, folder, tmp_path):
    out, report = tmp_path / "out", tmp_path / "report.json"
    args = ["encode", str(folder), str(out), "--engine", "ray", "-j", "2", "--quiet"]
    result = CliRunner().invoke(main, [*args, "-q", "2", "--report", str(report)])
    assert result.exit_code == 1 and "failed: bad.png" in result.stderr
    rows = {r["file"]: r for r in json.loads(report.read_text())}
    assert rows["sub/again.png"]["status"] == "done" and rows["sub/again.png"]["quality"] == 2
    decoded = tmp_path / "decoded"
    result = CliRunner().invoke(main, ["decode", str(out), str(decoded), "--engine", "ray"])
    assert result.exit_code == 0, result.output
    assert sorted(p.relative_to(decoded).as_posix() for p in decoded.rglob("*.png")) == [
        "astronaut.png",
        "chelsea.png",
        "coffee.png",
        "sub/again.png",
    ]
