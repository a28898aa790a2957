"""Releases: a shipped model never changes, a new one gets the next wire id."""

import gzip
import json
import shutil

import pytest

from rdcodec.errors import ModelError
from rdcodec.models import registry


@pytest.fixture
def weights_folder(tmp_path):
    """A copy of the manifest (weight files are not needed for the manifest checks)."""
    folder = tmp_path / "weights"
    folder.mkdir()
    shutil.copy(
        registry.weights_path(registry.find_entry("hp-gain-n96m128")).parent / "manifest.json",
        folder,
    )
    return folder


def test_release_adds_a_model_with_the_next_wire_id(weights_folder, tiny_exact_weights):
    before = json.loads((weights_folder / "manifest.json").read_text())
    entry = registry.release(
        tiny_exact_weights, "tiny-r1", "a test", {"steps": 1}, folder=weights_folder
    )
    after = json.loads((weights_folder / "manifest.json").read_text())
    assert entry["wire_id"] == max(e["wire_id"] for e in before["models"]) + 1
    assert after["models"][:-1] == before["models"] and after["default"] == before["default"]
    stored = weights_folder / "tiny-r1.rdw.gz"  # compressed; the sha256 is the .rdw's
    assert entry["file"] == stored.name and stored.stat().st_size < entry["bytes"]
    assert gzip.decompress(stored.read_bytes()) == tiny_exact_weights.read_bytes()
    model = registry.load_weights_file(stored, "x", 1, entry["sha256"])
    assert entry["qualities"] == [1, model.network.config.levels] == [1, 11]
    assert entry["architecture"]["exact"] is True


def test_a_release_never_changes(weights_folder, tiny_exact_weights):
    registry.release(tiny_exact_weights, "tiny-r1", "a test", folder=weights_folder)
    saved = (weights_folder / "manifest.json").read_text()
    for name in ("tiny-r1", "hp-gain-n96m128"):
        with pytest.raises(ModelError, match="never changes"):
            registry.release(tiny_exact_weights, name, "again", folder=weights_folder)
    with pytest.raises(ModelError, match="release name"):
        registry.release(tiny_exact_weights, "Bad Name", "x", folder=weights_folder)
    assert (weights_folder / "manifest.json").read_text() == saved


def test_release_can_make_the_default(weights_folder, tiny_exact_weights):
    registry.release(tiny_exact_weights, "tiny-r1", "x", make_default=True, folder=weights_folder)
    assert json.loads((weights_folder / "manifest.json").read_text())["default"] == "tiny-r1"


def test_release_refuses_a_file_that_is_not_weights(weights_folder, tmp_path):
    bad = tmp_path / "bad.rdw"
    bad.write_bytes(b"nope")
    with pytest.raises(ModelError):
        registry.release(bad, "bad-r1", "x", folder=weights_folder)
    assert not (weights_folder / "bad-r1.rdw.gz").exists()


def test_quality_units_follow_lambda():
    from rdcodec.models.network import ModelConfig

    eight, eleven = ModelConfig(8, 12, levels=8), ModelConfig(8, 12, levels=11)
    for q in range(1, 9):
        assert eleven.quality_of(eight.lambda_of(q)) == q + 3
    assert eight.quality_of(eleven.lambda_of(11)) == 8
    with pytest.raises(ValueError):
        eight.quality_of(eleven.lambda_of(1))  # below the 8-level ladder
    with pytest.raises(ValueError):
        eight.lambda_of(2.5)


def test_a_high_rate_release_codes_the_top_of_the_default_scale(weights_folder, tiny_exact_weights):
    entry = registry.release(
        tiny_exact_weights, "tiny-hr1", "x", qualities=(8, 11), scale_from=8, folder=weights_folder
    )
    data = json.loads((weights_folder / "manifest.json").read_text())
    assert entry["qualities"] == [8, 11] and 8 <= entry["default_quality"] <= 11
    assert registry.scale_entries(data) == [
        {"from": 1, "model": data["default"]},
        {"from": 8, "model": "tiny-hr1"},
    ]
    # a later high-rate release from a higher quality keeps the segments below it
    registry.release(
        tiny_exact_weights, "tiny-hr2", "x", qualities=(9, 11), scale_from=10, folder=weights_folder
    )
    data = json.loads((weights_folder / "manifest.json").read_text())
    assert [s["from"] for s in data["scale"]] == [1, 8, 10]
    # a new default takes over the lowest segment
    registry.release(tiny_exact_weights, "tiny-r9", "x", make_default=True, folder=weights_folder)
    data = json.loads((weights_folder / "manifest.json").read_text())
    assert data["scale"][0]["model"] == data["default"] == "tiny-r9"


@pytest.mark.parametrize(
    ("qualities", "scale_from", "match"),
    [
        ((8, 12), None, "levels 1 to 11"),
        ((9, 11), 8, "outside"),
        ((8, 11), 1, "first quality"),
        ((8, 10), 8, "would shrink"),
        ((8, 11), 8.0005, "steps of 0.001"),
    ],
)
def test_release_refuses_a_bad_scale(
    weights_folder, tiny_exact_weights, qualities, scale_from, match
):
    saved = (weights_folder / "manifest.json").read_text()
    with pytest.raises(ModelError, match=match):
        registry.release(
            tiny_exact_weights,
            "tiny-hr1",
            "x",
            qualities=qualities,
            scale_from=scale_from,
            folder=weights_folder,
        )
    assert (weights_folder / "manifest.json").read_text() == saved
    assert not (weights_folder / "tiny-hr1.rdw.gz").exists()


def test_release_keeps_the_scale_whole(weights_folder, tiny_exact_weights, tmp_path):
    registry.release(
        tiny_exact_weights, "tiny-hr1", "x", qualities=(8, 11), scale_from=8, folder=weights_folder
    )
    saved = (weights_folder / "manifest.json").read_text()
    with pytest.raises(ModelError, match="not both"):
        registry.release(
            tiny_exact_weights,
            "tiny-x",
            "x",
            make_default=True,
            scale_from=9,
            folder=weights_folder,
        )
    with pytest.raises(ModelError, match="trained for 3-6"):  # a default below 8 must reach 8
        registry.release(
            tiny_exact_weights,
            "tiny-x",
            "x",
            make_default=True,
            qualities=(3, 6),
            folder=weights_folder,
        )
    from rdcodec.models.registry import build_network, export_weights

    eight = tmp_path / "eight.rdw"  # another ladder: its quality 9 is not the scale's
    export_weights(build_network({"N": 8, "M": 12, "levels": 8, "exact": True}, True), eight)
    with pytest.raises(ModelError, match="11 levels and this one 8"):
        registry.release(eight, "tiny-x", "x", scale_from=8, folder=weights_folder)
    assert (weights_folder / "manifest.json").read_text() == saved


def test_shipped_weights_are_stored_compressed_and_named_by_the_rdw_inside():
    for entry in registry.model_entries():
        path = registry.weights_path(entry)
        assert path.name == entry["file"] and path.name.endswith(".rdw.gz")
        raw = registry.weight_bytes(path)
        assert len(raw) == entry["bytes"] and path.stat().st_size < len(raw)


def test_a_damaged_compressed_weight_file_is_one_clear_error(tmp_path, tiny_exact_weights):
    bad = tmp_path / "bad.rdw.gz"
    bad.write_bytes(gzip.compress(tiny_exact_weights.read_bytes())[:-40])
    with pytest.raises(ModelError, match="cannot inflate weights"):
        registry.load_weights_file(bad, "bad", 1)


def test_a_file_whose_pickle_would_run_code_is_refused_unrun(
    tmp_path, weights_folder, evil_checkpoint
):
    evil, marker = evil_checkpoint
    for load in (
        lambda: registry.export_checkpoint(evil, tmp_path / "w.rdw"),
        lambda: registry.config_of(evil),
        lambda: registry.load_weights_file(evil, "evil", 1),
        lambda: registry.release(evil, "evil-r1", "x", folder=weights_folder),
    ):
        with pytest.raises(ModelError, match="evil.ckpt: refused: .* could run code"):
            load()
    assert not marker.exists() and not (tmp_path / "w.rdw").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "bad: not a weight file (an empty file)"),
        (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", "bad: not a weight file (a PNG image)"),
        (b"\xff\xd8\xff\xe0\0\x10JFIF", "bad: not a weight file (a JPEG image)"),
        (b"\x89RDC\x01\x02\x03", "bad: not a weight file (an rdcodec bitstream)"),
        (b"hello\n", "bad: not a weight file (a text file)"),
        (b"\x80\x02\x8a\x0alike an old torch file", "bad: not a weight file (damaged: "),
        (b"\x00\xfe\xff binary", "bad: not a weight file (a file torch.save did not write)"),
    ],
)
def test_a_file_that_is_not_weights_is_said_in_one_line(tmp_path, content, message):
    bad = tmp_path / "bad"
    bad.write_bytes(content)
    with pytest.raises(ModelError) as caught:
        registry.load_weights_file(bad, "bad", 1)
    text = str(caught.value)
    assert text.startswith(str(tmp_path)) and message in text and "\n" not in text


def test_a_weight_file_and_a_checkpoint_are_told_apart(tmp_path, tiny_exact_weights):
    import torch

    with pytest.raises(ModelError, match=r"a weight file \(\.rdw\), not a training checkpoint"):
        registry.export_checkpoint(tiny_exact_weights, tmp_path / "w.rdw")
    checkpoint = tmp_path / "last.ckpt"
    torch.save({"opt": {}, "config": {"arch": {"N": 8, "M": 12}}, "model": {}}, checkpoint)
    with pytest.raises(ModelError, match="a training checkpoint, not a weight file"):
        registry.load_weights_file(checkpoint, "c", 1)
    other = tmp_path / "other.pt"
    torch.save([torch.zeros(1)], other)
    with pytest.raises(ModelError, match=r"not a weight file or checkpoint \(a saved list\)"):
        registry.config_of(other)
    assert not (tmp_path / "w.rdw").exists()


@pytest.mark.parametrize("scale_from", [float("nan"), float("inf"), float("-inf")])
def test_release_refuses_a_scale_from_that_is_not_a_number(
    weights_folder, tiny_exact_weights, scale_from
):
    saved = (weights_folder / "manifest.json").read_text()
    with pytest.raises(ModelError, match="--scale-from"):
        registry.release(
            tiny_exact_weights,
            "tiny-hr1",
            "x",
            qualities=(8, 11),
            scale_from=scale_from,
            folder=weights_folder,
        )
    assert (weights_folder / "manifest.json").read_text() == saved
