"""``rdcodec info``: the header of a file, without decoding it."""

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from rdcodec.cli.main import main
from rdcodec.codec import container, pipeline
from rdcodec.models.registry import default_model_name, find_entry

IMAGES = Path(__file__).parents[1] / "images"
DEFAULT = find_entry(default_model_name())


@pytest.fixture(scope="module")
def grey_file(tmp_path_factory) -> Path:
    """A greyscale 64x48 crop of coffee.png coded at quality 4 with the shipped model."""
    with Image.open(IMAGES / "coffee.png") as im:
        grey = im.convert("L").crop((0, 0, 64, 48))
    path = tmp_path_factory.mktemp("info") / "grey.rdc"
    path.write_bytes(pipeline.encode(grey, 4))
    return path


def test_info_json_accounts_for_every_byte(grey_file, monkeypatch):
    monkeypatch.setattr(pipeline, "decode_latents", None)  # a decode would fail
    result = CliRunner().invoke(main, ["info", str(grey_file), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    size = grey_file.stat().st_size
    assert (info["width"], info["height"], info["quality"], info["grayscale"]) == (64, 48, 4, True)
    assert (info["model"], info["model_id"]) == (DEFAULT["name"], DEFAULT["wire_id"])
    parts = info["bytes"]
    assert parts["header"] == container.OVERHEAD_BYTES
    assert parts["header"] + parts["z"] + parts["y"] == parts["total"] == size
    assert info["bpp"] == 8 * size / (64 * 48)


def test_info_text(grey_file):
    result = CliRunner().invoke(main, ["info", str(grey_file)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    name, wire_id = DEFAULT["name"], DEFAULT["wire_id"]
    assert lines[0].startswith(f"{grey_file}: 64x48, model {name} (wire id {wire_id}")
    assert "greyscale" in lines[0]
    assert lines[1].split() == ["carries", "no", "metadata,", "no", "alpha"]
    assert [line.split()[0] for line in lines[2:]] == ["header+CRC", "z", "y", "total"]


def test_info_of_a_model_not_installed(tmp_path, tiny_model):
    path = tmp_path / "tiny.rdc"
    path.write_bytes(pipeline.encode(np.zeros((16, 16, 3), np.uint8), 1, tiny_model))
    result = CliRunner().invoke(main, ["info", str(path), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["model"] is None and info["model_id"] == 250


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"hello, not a bitstream", "bad magic number"),
        (None, "truncated"),
    ],
)
def test_info_refuses_a_bad_file_in_one_line(grey_file, tmp_path, content, says):
    path = tmp_path / "bad.rdc"
    path.write_bytes(content if content is not None else grey_file.read_bytes()[:-8])
    result = CliRunner().invoke(main, ["info", str(path)])
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"rdcodec: error: {path}: ")
    assert says in lines[0]


def test_info_missing_file(tmp_path):
    result = CliRunner().invoke(main, ["info", str(tmp_path / "none.rdc")])
    assert result.exit_code != 0
    assert result.output.startswith("rdcodec: error:") and "no such file" in result.output


def test_info_counts_chunk_framing_with_its_chunk(tmp_path):
    """An alpha plane and no metadata: the chunk section (its length, the chunk's tag
    and length, the PNG) is all alpha."""
    rgba = np.zeros((32, 48, 4), np.uint8)
    rgba[..., 3] = np.linspace(0, 255, 48, dtype=np.uint8)
    path = tmp_path / "alpha.rdc"
    path.write_bytes(pipeline.encode(Image.fromarray(rgba), 4))
    header, _, _ = container.unpack(path.read_bytes())
    result = CliRunner().invoke(main, ["info", str(path), "--json"])
    assert result.exit_code == 0, result.output
    parts = json.loads(result.output)["bytes"]
    assert parts["metadata"] == 0 and parts["alpha"] == header.chunk_bytes
    assert parts["header"] + parts["alpha"] + parts["z"] + parts["y"] == parts["total"]
    text = CliRunner().invoke(main, ["info", str(path)]).output
    assert [line.split()[0] for line in text.splitlines()[2:]] == [
        "header+CRC",
        "alpha",
        "z",
        "y",
        "total",
    ]


def test_info_of_an_empty_file_says_it_is_empty(tmp_path):
    path = tmp_path / "empty.rdc"
    path.write_bytes(b"")
    result = CliRunner().invoke(main, ["info", str(path)])
    assert result.exit_code != 0
    assert result.output.strip() == f"rdcodec: error: {path}: empty file (0 bytes)"
