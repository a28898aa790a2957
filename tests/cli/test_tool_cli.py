"""The tool commands (speed, rdplane, plot-log, export) through click's CliRunner."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from rdcodec.cli.main import main
from rdcodec.models import registry
from rdcodec.models.training.train import TrainConfig, train

IMAGES = Path(__file__).parents[1] / "images"


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """A 2-step tiny training run: its folder holds last.ckpt and log.jsonl."""
    photos = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (80, 96, 3), dtype=np.uint8)).save(photos / f"{i}.png")
    out = tmp_path_factory.mktemp("run")
    cfg = TrainConfig(
        data=str(photos),
        val=None,
        out=str(out),
        steps=2,
        batch_size=2,
        crop=64,
        arch={"N": 8, "M": 12, "levels": 8},
        log_every=1,
        ckpt_every=2,
        threads=1,
    )
    checkpoint = train(cfg, progress=False).checkpoint
    return out, Path(checkpoint)


def test_export_writes_loadable_weights_and_refuses_to_overwrite(runner, run_folder, tmp_path):
    _, checkpoint = run_folder
    out = tmp_path / "w.rdw"
    result = runner.invoke(main, ["export", str(checkpoint), str(out)])
    assert result.exit_code == 0, result.output
    digest = result.output.split("sha256 ")[1].split(",")[0]
    model = registry.load_weights_file(out, "w", 251, digest)
    assert model.network.config.M == 12
    before = out.read_bytes()
    again = runner.invoke(main, ["export", str(checkpoint), str(out)])
    assert again.exit_code != 0 and "already exists" in again.output
    assert out.read_bytes() == before
    assert runner.invoke(main, ["export", str(checkpoint), str(out), "--force"]).exit_code == 0


def test_export_of_a_non_checkpoint_is_one_line(runner, tmp_path):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    result = runner.invoke(main, ["export", str(bad), str(tmp_path / "w.rdw")])
    assert result.exit_code != 0
    assert result.output.count("\n") == 1
    assert "bad.ckpt: not a training checkpoint (a text file)" in result.output
    assert not (tmp_path / "w.rdw").exists()
    assert not list(tmp_path.glob(".w.rdw.*"))


def test_a_checkpoint_of_the_training_code_loads_without_running_code(run_folder):
    """Checkpoints are read with weights_only (tensors and plain values): what
    ``rdcodec train`` writes must stay within that."""
    _, checkpoint = run_folder
    blob = torch.load(checkpoint, weights_only=True)
    assert registry.is_checkpoint(blob) and blob["step"] == 2
    assert registry.config_of(checkpoint)["M"] == 12


def test_a_checkpoint_that_would_run_code_is_refused_in_one_line(runner, tmp_path, evil_checkpoint):
    evil, marker = evil_checkpoint
    photos = _noise_photos(tmp_path / "photos", 1, (64, 64))
    for args in (
        ["export", str(evil), str(tmp_path / "w.rdw")],
        ["probe", "--weights", str(evil), "--data", str(photos), "--val", str(photos)],
        ["train", "--init", str(evil), "--data", str(photos), "--out", str(tmp_path / "run")],
    ):
        result = runner.invoke(main, args)
        assert result.exit_code == 5, result.output
        assert result.output.startswith(f"rdcodec: error: {evil}: refused")
        assert "could run code" in result.output and result.output.count("\n") == 1
    assert not marker.exists() and not (tmp_path / "w.rdw").exists()


@pytest.mark.parametrize(
    ("command", "given", "message"),
    [
        ("export", "PNG", "small.png: not a training checkpoint (a PNG image)"),
        ("export", "WEIGHTS", "tiny_exact.rdw: a weight file (.rdw), not a training checkpoint"),
        ("export", "EMPTY", "empty.bin: not a training checkpoint (an empty file)"),
        ("release", "PNG", "small.png: not a weight file (a PNG image)"),
        ("release", "EMPTY", "empty.bin: not a weight file (an empty file)"),
        ("release", "TEXT", "text.txt: not a weight file (a text file)"),
        ("release", "RDC", "small.rdc: not a weight file (an rdcodec bitstream)"),
        ("release", "CHECKPOINT", "last.ckpt: a training checkpoint, not a weight file"),
    ],
)
def test_a_wrong_file_is_named_for_what_it_is(
    runner, tmp_path, monkeypatch, run_folder, tiny_exact_weights, command, given, message
):
    folder = _release_folder(tmp_path, monkeypatch)
    saved = (folder / "manifest.json").read_text()
    files = {
        "PNG": tmp_path / "small.png",
        "EMPTY": tmp_path / "empty.bin",
        "TEXT": tmp_path / "text.txt",
        "RDC": tmp_path / "small.rdc",
        "WEIGHTS": tiny_exact_weights,
        "CHECKPOINT": run_folder[1],
    }
    with Image.open(IMAGES / "coffee.png") as im:
        im.convert("RGB").crop((0, 0, 64, 64)).save(files["PNG"])
    files["EMPTY"].write_bytes(b"")
    files["TEXT"].write_text("hello\n")
    files["RDC"].write_bytes(b"\x89RDC\x01" + bytes(40))
    out = tmp_path / "x.rdw"
    if command == "export":
        args = ["export", str(files[given]), str(out)]
    else:
        args = ["release", str(files[given]), "--name", "new-a"]
    result = runner.invoke(main, args)
    assert result.exit_code == 5, result.output
    assert result.output.startswith("rdcodec: error: ") and result.output.count("\n") == 1
    assert message in result.output
    assert not out.exists() and (folder / "manifest.json").read_text() == saved


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
@pytest.mark.parametrize("command", ["export", "pack-crops", "plot-log"])
def test_an_unwritable_output_fails_before_any_work(
    runner, tmp_path, monkeypatch, run_folder, command
):
    from rdcodec.models.training import data

    def no_work(*args, **kwargs):
        raise AssertionError("the work began before the output was checked")

    monkeypatch.setattr(registry, "export_checkpoint", no_work)
    monkeypatch.setattr(data, "sample_crops", no_work)
    folder, checkpoint = run_folder
    photos = _noise_photos(tmp_path / "photos", 1, (64, 64))
    out = "/proc/x.out"  # a virtual filesystem: no temporary file can be made there
    args = {
        "export": [str(checkpoint), out],
        "pack-crops": [str(photos), out, "--size", "64"],
        "plot-log": [str(folder), "--out", out],
    }[command]
    result = runner.invoke(main, [command, *args])
    assert result.exit_code == 6, result.output
    assert result.output == f"rdcodec: error: {out}: cannot write (No such file or directory)\n"


def test_plot_log_draws_the_run(runner, run_folder, tmp_path):
    folder, _ = run_folder
    out = tmp_path / "log.png"
    result = runner.invoke(main, ["plot-log", str(folder), "--out", str(out)])
    assert result.exit_code == 0, result.output
    with Image.open(out) as im:
        assert im.size[0] > 300 and np.array(im.convert("L")).std() > 5
    assert runner.invoke(main, ["plot-log", str(folder), "--out", str(out)]).exit_code != 0


def test_plot_log_of_a_broken_log_is_one_line(runner, tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text("{not json\n")
    result = runner.invoke(main, ["plot-log", str(log), "--out", str(tmp_path / "x.png")])
    assert result.exit_code != 0 and result.output.startswith("rdcodec: error:")
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (
            '{"step": null, "model": "m", "bd_rate_vs_jpeg": -26.4, "shipped": true}\n'
            '{"step": 250, "train_hours": 0.1, "bd_rate_vs_jpeg": -27.0, "improved": true}\n',
            "line 1: a validation row of a run's val.jsonl",
        ),
        ("[1, 2]\n", "line 1: an array, not an object"),
        ('{"a": 1}\n', "line 1: no step"),
        ("5\n", "line 1: a number, not an object"),
        (
            '{"step": 10, "bpp": 1.0, "psnr": 30}\n{"step": "20", "bpp": 1.0, "psnr": 30}\n',
            'line 2: step "20" is not a whole number',
        ),
        ('{"step": 10, "bpp": "high", "psnr": 30}\n', "line 1: no number 'bpp'"),
        ('{"step": 10, "val_estimate": [1]}\n', "line 1: val_estimate is not"),
        (b"\x80\x02\x8a\x0a\xff binary", "binary data at byte 0"),
    ],
)
def test_plot_log_of_a_file_that_is_not_a_training_log_names_it(runner, tmp_path, content, why):
    log = tmp_path / "val.jsonl"
    if isinstance(content, bytes):
        log.write_bytes(content)
    else:
        log.write_text(content)
    out = tmp_path / "x.png"
    result = runner.invoke(main, ["plot-log", str(log), "--out", str(out)])
    assert result.exit_code == 1, result.output
    assert result.output.startswith(f"rdcodec: error: {log}: not a training log (")
    assert why in result.output and result.output.count("\n") == 1
    assert not out.exists() and not list(tmp_path.glob(".x.png.*"))


def test_plot_log_draws_a_log_from_before_the_rate_split(runner, tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text("".join(f'{{"step": {s}, "bpp": 1.0, "psnr": 30.0}}\n' for s in (10, 20)))
    result = runner.invoke(main, ["plot-log", str(log), "--out", str(tmp_path / "x.png")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "x.png").stat().st_size > 10_000


def test_rdplane_prints_every_level_and_plots(runner, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    with Image.open(IMAGES / "coffee.png") as im:
        im.convert("RGB").crop((0, 0, 96, 64)).save(folder / "crop.png")
    out = tmp_path / "plane.png"
    result = runner.invoke(main, ["rdplane", str(folder), "--out", str(out), "--reference", "jpeg"])
    assert result.exit_code == 0, result.output
    levels = registry.find_entry(registry.default_model_name())["qualities"][1]
    lines = [line for line in result.output.splitlines() if line.strip().startswith("q")]
    assert len(lines) == levels
    rates = [float(line.split("R ")[1].split(" bpp")[0]) for line in lines]
    assert rates == sorted(rates)
    assert out.stat().st_size > 10_000


def test_rdplane_needs_a_folder_of_images(runner, tmp_path):
    result = runner.invoke(main, ["rdplane", str(tmp_path), "--out", str(tmp_path / "p.png")])
    assert result.exit_code != 0 and "no images" in result.output


def test_speed_measures_in_a_fresh_process(runner):
    result = runner.invoke(main, ["speed", "--sizes", "0.02", "--json"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.output)
    assert row["bytes"] > 0 and row["encode_seconds"] > 0 and row["decode_seconds"] > 0
    assert row["bpp"] == pytest.approx(8 * row["bytes"] / (row["width"] * row["height"]))


def test_speed_times_encodes_at_an_effort(runner):
    rows = {}
    for effort in ("0", "1"):
        result = runner.invoke(main, ["speed", "--sizes", "0.02", "-e", effort, "--json"])
        assert result.exit_code == 0, result.output
        (rows[effort],) = json.loads(result.output)
    assert rows["1"]["bytes"] != rows["0"]["bytes"]  # the refined file, not the single pass
    bad = runner.invoke(main, ["speed", "--sizes", "0.02", "-e", "9"])
    assert bad.exit_code != 0 and "effort must be one of" in bad.output


def test_speed_rejects_bad_sizes(runner):
    result = runner.invoke(main, ["speed", "--sizes", "big"])
    assert result.exit_code != 0 and "--sizes" in result.output


def test_speed_versus_times_the_same_bytes_as_encode(runner, tmp_path):
    from rdcodec.codec import pipeline
    from rdcodec.models.registry import default_model_name, load_model

    photo = tmp_path / "crop.png"
    with Image.open(IMAGES / "coffee.png") as im:
        im.convert("RGB").crop((0, 0, 128, 96)).save(photo)
    name = default_model_name()
    threads = torch.get_num_threads()
    try:
        result = runner.invoke(
            main, ["speed", "--versus", str(photo), "--models", name, "--threads", "1", "--json"]
        )
        assert result.exit_code == 0, result.output
        rows = json.loads(result.output)
        ours = next(r for r in rows if r["name"].startswith(f"rdcodec {name} "))
        quality = float(ours["name"].rsplit("(q", 1)[1].rstrip(")"))
        pixels = np.array(Image.open(photo).convert("RGB"))
        assert ours["bytes"] == len(pipeline.encode(pixels, quality, load_model()))
    finally:
        torch.set_num_threads(threads)
    assert any(r["name"].startswith("compressai") and r["bytes"] > 0 for r in rows)


def _noise_photos(folder: Path, count: int, shape: tuple[int, int]) -> Path:
    """``count`` random-noise PNGs of ``shape`` (H, W) in a new ``folder``."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (*shape, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def test_pack_crops_then_train_on_them_on_another_machine(runner, tmp_path):
    """The GPU recipe on CPU with a tiny budget: packed crops in, shipped-format
    weights out (a checkpoint with optimiser state is too large to bring back)."""
    photos = _noise_photos(tmp_path / "photos", 3, (70, 90))
    crops = tmp_path / "crops.npy"
    packed = runner.invoke(
        main, ["pack-crops", str(photos), str(crops), "--size", "64", "--per-image", "2"]
    )
    assert packed.exit_code == 0, packed.output
    array = np.load(crops)
    assert array.shape == (3 * 2, 64, 64, 3) and array.dtype == np.uint8
    again = runner.invoke(main, ["pack-crops", str(photos), str(crops), "--size", "64"])
    assert again.exit_code != 0 and "already exists" in again.output
    too_big = runner.invoke(
        main, ["pack-crops", str(photos), str(tmp_path / "x.npy"), "--size", "128"]
    )
    assert too_big.exit_code != 0 and "at least 128 px" in too_big.output

    weights = tmp_path / "gpu.rdw"
    args = ["train", "--packed", str(crops), "--exact", "--steps", "2", "--batch-size", "2"]
    args += ["--crop", "64", "--threads", "1", "--val-every", "0", "--time-budget", "600"]
    result = runner.invoke(main, [*args, "--out", str(tmp_path / "run"), "--export", str(weights)])
    assert result.exit_code == 0, result.output
    model = registry.load_weights_file(weights, "gpu", 1)
    assert model.network.config.exact and weights.stat().st_size < 16 * 2**20

    # The same with a wider latent, grown from a shipped model without a channel context
    # (one with a context: test_train_resumes_a_context_run_and_refuses_another_slice_count).
    wide = tmp_path / "wide.rdw"
    args[args.index("2")] = "1"
    args += ["--init", str(registry.weights_path(registry.find_entry("hp-exact-n96m128")))]
    result = runner.invoke(
        main, [*args, "--widen", "144", "--out", str(tmp_path / "w"), "--export", str(wide)]
    )
    assert result.exit_code == 0, result.output
    assert registry.load_weights_file(wide, "wide", 1).network.config.M == 144
    narrower = runner.invoke(main, [*args, "--widen", "64", "--out", str(tmp_path / "n")])
    assert narrower.exit_code != 0 and "--widen 64" in narrower.output


def test_pack_crops_refuses_more_crops_than_memory_up_front(runner, tmp_path):
    photos = _noise_photos(tmp_path / "photos", 1, (64, 64))
    out = tmp_path / "big.npy"
    args = ["pack-crops", str(photos), str(out), "--size", "64", "--per-image", "100000000"]
    result = runner.invoke(main, args)
    assert result.exit_code == 1, result.output
    assert result.output.startswith("rdcodec: error: 100000000 crops of 64x64 need 1144.4 GiB")
    assert result.output.count("\n") == 1
    assert not out.exists() and not list(tmp_path.glob(".big.npy.*"))


def test_pack_crops_killed_while_writing_leaves_no_temporary_file(runner, tmp_path, monkeypatch):
    import os
    import signal

    from rdcodec.models.training import data

    def killed_halfway(out, crops):
        out.write_bytes(b"\x93NUMPY half a file")
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM did not stop the write")

    monkeypatch.setattr(data, "save_crops", killed_halfway)
    photos = _noise_photos(tmp_path / "photos", 1, (64, 64))
    out = tmp_path / "crops.npy"
    terms = []

    def ours(signum, frame):  # without the command's own handler: pytest lives on
        terms.append(signum)

    previous = signal.signal(signal.SIGTERM, ours)
    try:
        result = runner.invoke(main, ["pack-crops", str(photos), str(out), "--size", "64"])
        assert signal.getsignal(signal.SIGTERM) is ours  # the command put it back
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert not terms
    assert result.exit_code == 143 and result.output == "rdcodec: error: terminated\n"
    assert not out.exists() and not list(tmp_path.glob(".crops.npy.*"))


def _release_folder(tmp_path, monkeypatch):
    """A weights folder with a copy of the manifest, where `rdcodec release` writes."""
    folder = tmp_path / "weights"
    folder.mkdir()
    manifest = registry.weights_path(registry.find_entry(registry.default_model_name())).parent
    (folder / "manifest.json").write_text((manifest / "manifest.json").read_text())
    monkeypatch.setattr(registry, "WEIGHTS_DIR", folder)
    return folder


def test_release_command_ships_a_new_model_once(runner, tmp_path, monkeypatch, tiny_exact_weights):
    folder = _release_folder(tmp_path, monkeypatch)
    run = tmp_path / "run"
    run.mkdir()
    (run / "val_best.json").write_text(json.dumps({"step": 10, "train_hours": 0.5}))
    args = ["release", str(tiny_exact_weights), "--name", "tiny-r9", "--run", str(run)]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    entry = json.loads((folder / "manifest.json").read_text())["models"][-1]
    assert entry["name"] == "tiny-r9" and entry["training"]["run_hours"] == 0.5
    again = runner.invoke(main, args)
    assert again.exit_code != 0 and "never changes" in again.output
    (run / "val_best.json").write_text("{broken")
    broken = runner.invoke(main, [*args[:3], "tiny-r10", *args[4:]])
    assert broken.exit_code != 0 and broken.output.startswith("rdcodec: error:")
    assert "tiny-r10" not in (folder / "manifest.json").read_text()


def test_release_of_a_high_rate_model_from_its_run(
    runner, tmp_path, monkeypatch, tiny_exact_weights
):
    folder = _release_folder(tmp_path, monkeypatch)
    run = tmp_path / "run"
    run.mkdir()  # a run of `train --qualities 8-11`
    (run / "val_best.json").write_text(json.dumps({"step": 10, "qualities": [8, 11]}))
    args = ["release", str(tiny_exact_weights), "--name", "tiny-hr1", "--run", str(run)]
    result = runner.invoke(main, [*args, "--scale-from", "9"])
    assert result.exit_code == 0, result.output
    assert "qualities 8-11" in result.output and "from quality 9" in result.output
    data = json.loads((folder / "manifest.json").read_text())
    assert data["models"][-1]["qualities"] == [8, 11]
    assert data["scale"][-1] == {"from": 9.0, "model": "tiny-hr1"}
    outside = runner.invoke(main, [*args[:3], "tiny-hr2", *args[4:], "--scale-from", "7"])
    assert outside.exit_code != 0 and outside.output.startswith("rdcodec: error: --scale-from 7")


@pytest.mark.parametrize(
    ("val_best", "scale_from", "message"),
    [
        ('{"step": 10, "qualities": [8, 11]}', "nan", "--scale-from nan: give a quality"),
        ('{"step": 10, "qualities": [8, 11]}', "inf", "--scale-from inf: give a quality"),
        ("[1]", None, "val_best.json: not a run's best validation"),
        ('{"qualities": "abc"}', None, 'val_best.json: qualities "abc" are not quality levels'),
        ('{"qualities": [8, true]}', None, "are not quality levels"),
        ('{"step": "x"}', None, 'val_best.json: its step "x" is not a number'),
    ],
)
def test_release_of_a_bad_run_or_scale_is_one_line(
    runner, tmp_path, monkeypatch, tiny_exact_weights, val_best, scale_from, message
):
    folder = _release_folder(tmp_path, monkeypatch)
    saved = (folder / "manifest.json").read_text()
    run = tmp_path / "run"
    run.mkdir()
    (run / "val_best.json").write_text(val_best)
    args = ["release", str(tiny_exact_weights), "--name", "tiny-hr1", "--run", str(run)]
    if scale_from is not None:
        args += ["--scale-from", scale_from]
    result = runner.invoke(main, args)
    assert result.exit_code != 0 and result.output.startswith("rdcodec: error:"), result.output
    assert message in result.output and result.output.count("\n") == 1
    assert (folder / "manifest.json").read_text() == saved
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["bench", "IMAGES", "--qualities", "all=1,2"], "one codec per item"),
        (["compare", "IMAGE", "--out", "OUT", "--codecs", "rdcodec,jpeg"], "--model"),
        (["rdplane", "IMAGES", "--out", "OUT", "--reference", "rdcodec"], "classical codecs"),
        (["rdplane", "IMAGES", "--out", "OUT", "--reference", "heic"], "unknown codec"),
        (["train", "--export", "MISSING/w.rdw", "--steps", "1"], "directory does not exist"),
        (["train", "--data", "IMAGES", "--rate-warmup", "5", "--steps", "1"], "give --widen"),
        (["train", "--data", "IMAGES", "--arch", "64,64", "--steps", "1"], "--from-scratch"),
        (["train", "--data", "IMAGES", "--widen", "0", "--steps", "1"], "--widen 0"),
    ],
)
def test_tool_options_fail_in_one_line(runner, tmp_path, args, message):
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(IMAGES / "coffee.png", images)
    fill = {
        "IMAGES": str(images),
        "IMAGE": str(images / "coffee.png"),
        "OUT": str(tmp_path / "out.png"),
        "MISSING/w.rdw": str(tmp_path / "missing" / "w.rdw"),
    }
    result = runner.invoke(main, [fill.get(a, a) for a in args])
    assert result.exit_code != 0 and result.output.startswith("rdcodec: error:"), result.output
    assert message in result.output and result.output.count("\n") == 1


def test_train_grows_a_checkerboard_and_resumes_it(runner, tmp_path, tiny_exact_weights):
    photos = _noise_photos(tmp_path / "photos", 2, (80, 96))
    run = tmp_path / "run"
    args = ["train", "--data", str(photos), "--init", str(tiny_exact_weights), "--out", str(run)]
    args += ["--batch-size", "2", "--crop", "64", "--threads", "1", "--val-every", "0"]
    first = runner.invoke(main, [*args, "--slices", "3", "--checkerboard", "--steps", "2"])
    assert first.exit_code == 0, first.output
    wide = tmp_path / "cb.rdw"
    again = runner.invoke(main, [*args, "--steps", "3", "--export", str(wide)])
    assert again.exit_code == 0, again.output
    ckpt = torch.load(run / "last.ckpt", weights_only=True)
    assert ckpt["step"] == 3 and ckpt["config"]["arch"]["checkerboard"] is True
    assert any(k.startswith("spatial.") for k in ckpt["model"])
    network = registry.load_weights_file(wide, "cb", 1).network
    assert network.config.checkerboard and len(network.exact_spatial) == 3


def test_train_resumes_a_context_run_and_refuses_another_slice_count(
    runner, tmp_path, tiny_exact_weights
):
    photos = _noise_photos(tmp_path / "photos", 2, (80, 96))
    run = tmp_path / "run"
    args = ["train", "--data", str(photos), "--init", str(tiny_exact_weights), "--out", str(run)]
    args += ["--batch-size", "2", "--crop", "64", "--threads", "1", "--val-every", "0"]
    first = runner.invoke(main, [*args, "--slices", "3", "--steps", "2"])
    assert first.exit_code == 0, first.output
    # Resumed without --slices: the run's own architecture (its context), not the
    # warm start's.
    again = runner.invoke(main, [*args, "--steps", "4"])
    assert again.exit_code == 0, again.output
    ckpt = torch.load(run / "last.ckpt", weights_only=True)
    assert ckpt["step"] == 4 and ckpt["config"]["arch"]["slices"] == 3
    assert any(k.startswith("context.") for k in ckpt["model"])
    other = [*args[:4], str(run / "last.ckpt"), "--out", str(tmp_path / "r2"), *args[7:]]
    refused = runner.invoke(main, [*other, "--slices", "2", "--steps", "1"])
    assert refused.exit_code != 0 and refused.output.startswith("rdcodec: error:")
    assert "3 slices" in refused.output and refused.output.count("\n") == 1
    # --widen of a context model adds whole slices of its width (4 channels).
    wide = runner.invoke(main, [*other, "--widen", "20", "--rate-warmup", "5", "--steps", "1"])
    assert wide.exit_code == 0, wide.output
    config = torch.load(tmp_path / "r2" / "last.ckpt", weights_only=True)["config"]
    assert (config["arch"]["M"], config["arch"]["slices"]) == (20, 5)
    assert (config["rate_warmup"], config["rate_warmup_from"]) == (5, 12)
    # Resumed, the warm-up still covers the channels the first --widen added.
    resumed = runner.invoke(main, [*other, "--widen", "20", "--rate-warmup", "5", "--steps", "2"])
    assert resumed.exit_code == 0, resumed.output
    config = torch.load(tmp_path / "r2" / "last.ckpt", weights_only=True)["config"]
    assert config["rate_warmup_from"] == 12
    r3 = [*other, "--out", str(tmp_path / "r3"), "--steps", "1"]
    for extra, message in [
        (["--widen", "18"], "slice width 4"),
        (["--widen", "20", "--slices", "4"], "needs --slices 5"),
    ]:
        bad = runner.invoke(main, [*r3, *extra])
        assert bad.exit_code != 0 and message in bad.output and bad.output.count("\n") == 1
    assert not (tmp_path / "r3").exists()  # refused before the run folder is made
    # A run folder keeps its architecture: widening it again needs a new run.
    again = runner.invoke(main, [*other, "--widen", "24", "--steps", "2"])
    assert again.exit_code != 0 and "another architecture" in again.output


def _train_args(tmp_path, tiny_exact_weights) -> tuple[list[str], Path]:
    """A 1-step tiny run's arguments (options given again later win), and its --out."""
    photos = _noise_photos(tmp_path / "photos", 1, (64, 64))
    run = tmp_path / "run"
    args = ["train", "--data", str(photos), "--val", str(photos), "--val-every", "0"]
    args += ["--steps", "1", "--crop", "64", "--init", str(tiny_exact_weights)]
    return [*args, "--out", str(run)], run


@pytest.fixture
def no_training(monkeypatch):
    """Training that fails the test if it begins: a refusal must come before it."""
    from rdcodec.models.training import train as train_module

    def began(*args, **kwargs):
        raise AssertionError("training began")

    monkeypatch.setattr(train_module, "train", began)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--steps", "0"], "'--steps': 0 is not in the range x>=1"),
        (["--steps", "-1"], "'--steps': -1 is not in the range x>=1"),
        (["--time-budget", "0"], "--time-budget 0: give a finite number above 0"),
        (["--time-budget", "-5"], "--time-budget -5: give a finite number above 0"),
        (["--time-budget", "nan"], "--time-budget nan: give a finite number above 0"),
        (["--batch-size", "0"], "'--batch-size': 0 is not in the range x>=1"),
        (["--lr", "-1"], "--lr -1: give a finite number above 0"),
        (["--lr", "0"], "--lr 0: give a finite number above 0"),
        (["--lr", "nan"], "--lr nan: give a finite number above 0"),
        (["--gain-lr-scale", "nan"], "--gain-lr-scale nan: give a finite number"),
        (["--ema-decay", "nan"], "--ema-decay nan: give a finite number"),
        (["--val-every", "-1"], "'--val-every': -1 is not in the range x>=0"),
        (["--val-images", "0"], "'--val-images': 0 is not in the range x>=1"),
        (["--crop", "0"], "--crop 0: give a multiple of 64"),
        (["--crop", "-64"], "--crop -64: give a multiple of 64"),
        (["--threads", "0"], "'--threads': 0 is not in the range x>=1"),
        (["--threads", "-2"], "'--threads': -2 is not in the range x>=1"),
        (["--device", "gpu0"], "--device gpu0: give cpu or cuda"),
        (["--from-scratch", "--arch", "96"], "--arch 96: give N,M channels"),
        (["--from-scratch", "--arch", "0,0"], "--arch 0,0: give N,M channels"),
        (["--from-scratch", "--arch", "8,x"], "--arch 8,x: give N,M channels"),
        (["--from-scratch", "--init", "FILE"], "--from-scratch and --init: give one"),
        (["--val", "MISSING", "--val-every", "1"], "MISSING: validation folder does not exist"),
        (["--data", "EMPTY"], "no images in"),
        (["--out", "FILE"], "FILE: not a folder"),
        (["--out", "FILE/run"], "FILE is not a folder"),
        (["--out", ""], "--out: empty path"),
    ],
)
def test_train_refuses_bad_options_before_any_work(
    runner, tmp_path, tiny_exact_weights, no_training, extra, message
):
    args, run = _train_args(tmp_path, tiny_exact_weights)
    (tmp_path / "empty").mkdir()
    (tmp_path / "file").write_text("keep")
    fill = {
        "MISSING": str(tmp_path / "missing"),
        "EMPTY": str(tmp_path / "empty"),
        "FILE": str(tmp_path / "file"),
        "FILE/run": str(tmp_path / "file" / "run"),
    }
    if "--from-scratch" in extra:
        args = [a for a in args if a not in ("--init", str(tiny_exact_weights))]
    result = runner.invoke(main, [*args, *(fill.get(a, a) for a in extra)])
    assert result.exit_code != 0 and result.output.startswith("rdcodec: error:"), result.output
    assert message.replace("MISSING", "missing").replace("FILE", "file") in result.output
    assert result.output.count("\n") == 1
    assert not run.exists() and (tmp_path / "file").read_text() == "keep"
    assert not (tmp_path / "missing").exists()


def test_train_on_too_small_photos_is_one_line_and_leaves_no_folder(
    runner, tmp_path, monkeypatch, tiny_exact_weights
):
    from rdcodec.models.training import validate

    class Validator:  # as the real one starts: the shipped model's row in val.jsonl
        def __init__(self, out, *args, **kwargs):
            out.mkdir(parents=True, exist_ok=True)
            (out / "val.jsonl").write_text('{"step": null}\n')

    monkeypatch.setattr(validate, "Validator", Validator)
    args, run = _train_args(tmp_path, tiny_exact_weights)
    small = _noise_photos(tmp_path / "small", 2, (40, 40))
    for validating in ("0", "1"):
        result = runner.invoke(main, [*args, "--data", str(small), "--val-every", validating])
        assert result.exit_code == 4, result.output
        assert result.output == (
            "rdcodec: error: no training image is at least 64 px on its short side\n"
        )
        assert not run.exists()  # made by the command, removed by it
    run.mkdir()  # a folder that was there (a run to resume) stays
    result = runner.invoke(main, [*args, "--data", str(small), "--val-every", "1"])
    assert result.exit_code == 4 and (run / "val.jsonl").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (np.zeros((4, 64, 64, 3), np.float32), "got float32 (4, 64, 64, 3)"),
        (np.zeros((4, 64, 64), np.uint8), "got uint8 (4, 64, 64)"),
        (np.zeros((4, 3, 64, 64), np.uint8), "got uint8 (4, 3, 64, 64)"),
        (np.zeros((0, 64, 64, 3), np.uint8), "got uint8 (0, 64, 64, 3)"),
        (np.array([None, 1], dtype=object), "not an array of crops"),
        (b"hello\n", "not a .npy file"),
        (None, "cannot read (No such file or directory)"),
    ],
)
def test_train_refuses_a_wrong_packed_array_before_the_model_loads(
    runner, tmp_path, monkeypatch, tiny_exact_weights, content, message
):
    def loads(*args, **kwargs):
        raise AssertionError("the model loaded before --packed was checked")

    monkeypatch.setattr(registry, "build_network", loads)
    packed = tmp_path / "crops.npy"
    if isinstance(content, bytes):
        packed.write_bytes(content)
    elif content is not None:
        np.save(packed, content, allow_pickle=True)
    args, run = _train_args(tmp_path, tiny_exact_weights)
    result = runner.invoke(main, [*args, "--packed", str(packed)])
    assert result.exit_code != 0, result.output
    assert result.output.startswith(f"rdcodec: error: --packed {packed}: ")
    assert message in result.output and result.output.count("\n") == 1
    assert not run.exists()


def test_export_refuses_a_diverged_checkpoint_in_one_line(runner, run_folder, tmp_path):
    _, checkpoint = run_folder
    blob = torch.load(checkpoint, weights_only=True)
    for state in (blob["model"], blob["ema"]):  # a run whose --lr sent it to NaN
        state["g_a.0.weight"].view(-1)[:5] = float("nan")
        state["g_a.0.bias"].view(-1)[:1] = float("inf")
    diverged = tmp_path / "last.ckpt"
    torch.save(blob, diverged)
    out = tmp_path / "w.rdw"
    result = runner.invoke(main, ["export", str(diverged), str(out)])
    assert result.exit_code == 5, result.output
    total = sum(v.numel() for v in blob["ema"].values() if v.is_floating_point())
    assert result.output == (
        f"rdcodec: error: {diverged}: 6 of {total} weights are not finite (NaN or inf): "
        "not exported\n"
    )
    assert not out.exists() and not list(tmp_path.glob(".w.rdw.*"))
