"""Training validation on real files: rows, best-only export (shipping is `release`)."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rdcodec.models import registry
from rdcodec.models.training import validate
from rdcodec.models.training.train import TrainConfig, train

IMAGES = Path(__file__).parents[2] / "images"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(folder / "0.png")
    cfg = TrainConfig(
        data=str(folder),
        val=None,
        out=str(tmp_path_factory.mktemp("run")),
        steps=1,
        batch_size=1,
        crop=64,
        arch={"N": 8, "M": 12, "levels": 8},
        threads=1,
    )
    return train(cfg, progress=False).checkpoint


@pytest.fixture
def val_dir(tmp_path):
    folder = tmp_path / "val"
    folder.mkdir()
    with Image.open(IMAGES / "coffee.png") as im:
        im.crop((0, 0, 64, 64)).save(folder / "crop.png")
    return folder


def test_keeps_only_improvements_and_never_ships(checkpoint, val_dir, tmp_path, monkeypatch):
    scripted = iter([-10.0, 5.0, -20.0])  # shipped model, then two validations
    monkeypatch.setattr(validate, "bd_rate_vs", lambda anchor, test: next(scripted))
    before = (registry.manifest(), registry.weights_path(registry.find_entry("hp-gain-n96m128")))
    out, rows = tmp_path / "run", []
    validator = validate.Validator(out, val_dir, 1, 2, report=rows.append)
    assert validator.best == -10.0 and rows[0]["shipped"]

    validator(checkpoint, 1, 60.0 * 1)  # not a multiple of --val-every: nothing
    validator(checkpoint, 2, 60.0 * 2)  # worse than the shipped model
    assert not (out / "best.rdw").exists()
    validator(checkpoint, 3, 60.0 * 3)  # too soon
    validator(checkpoint, 4, 60.0 * 4)  # better
    assert (out / "best.rdw").exists()
    best = json.loads((out / "val_best.json").read_text())
    assert best["step"] == 4 and best["bd_rate_vs_jpeg"] == -20.0 and "train_hours" in best
    # Shipping is `rdcodec release`: validation never touches the manifest.
    assert registry.manifest() == before[0]
    logged = [json.loads(line) for line in (out / "val.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == [None, 2, 4]
    assert [r.get("improved") for r in logged[1:]] == [False, True]
    assert logged[2]["train_hours"] == round(240 / 3600, 3) and len(logged[2]["bpp"]) == 8
    # A resumed run clears the best of the run so far, not the shipped model's, and
    # validates at the first checkpoint past the next multiple even off the multiples.
    monkeypatch.setattr(validate, "bd_rate_vs", lambda anchor, test: -30.0)
    again = validate.Validator(out, val_dir, 1, 2)
    assert again.best == -20.0 and again.last == 4
    again(checkpoint, 5, 60.0 * 5)
    again(checkpoint, 7, 60.0 * 7)
    logged = [json.loads(line) for line in (out / "val.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == [None, 2, 4, 7]
