"""Golden files: bitstreams written once, when their model shipped, decode on this
machine to the committed table indices and symbols (exact models: computed exactly; the
float model of wire id 1: repaired where another CPU's float h_s moved an index across a
table boundary, see test_repair.py) and to the committed pixels within +-1."""

from pathlib import Path

import numpy as np
import pytest

from rdcodec.codec import pipeline
from rdcodec.models.registry import find_entry, load_model

GOLDEN = Path(__file__).parent.parent / "golden"
FILES = sorted(GOLDEN.glob("*.rdc"))


def test_every_shipped_model_has_golden_files():
    import json
    from importlib import resources

    manifest = json.loads(resources.files("rdcodec.weights").joinpath("manifest.json").read_text())
    for entry in manifest["models"]:
        assert any(f.name.startswith(entry["name"] + "_q") for f in FILES), entry["name"]


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
def test_golden_file_decodes_to_its_symbols_and_picture(path):
    name = path.stem.rsplit("_q", 1)[0]
    model = load_model(name)
    with np.load(path.with_suffix(".npz")) as ref:
        expected = {k: ref[k] for k in ref.files}
    assert str(expected["sha256"]) == model.sha256 == find_entry(name)["sha256"]
    data = path.read_bytes()
    lat = pipeline.decode_latents(data, model)
    assert np.array_equal(lat.y_indices, expected["indices"])
    assert np.array_equal(lat.y_symbols, expected["symbols"])
    pixels = pipeline.decode_array(data, model)
    assert np.abs(pixels.astype(int) - expected["pixels"].astype(int)).max() <= 1
