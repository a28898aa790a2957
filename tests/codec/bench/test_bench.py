"""The benchmark's measurements, BD-rate, cache and output files (small images, few points)."""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rdcodec.codec import baselines
from rdcodec.codec.bench import measure
from rdcodec.codec.bench.bdrate import Curve, bd_rate, bd_rate_detail, bd_table, find_bd, load_curve
from rdcodec.codec.bench.checks import TargetRow, TargetSummary, monotonic_check
from rdcodec.codec.bench.codecs import make_codec, parse_codecs, parse_qualities
from rdcodec.codec.bench.measure import Measurement, find_images
from rdcodec.codec.bench.names import file_stem
from rdcodec.codec.bench.report import bd_markdown
from rdcodec.codec.bench.runner import BenchReport, run_bench
from rdcodec.codec.metrics import psnr
from rdcodec.errors import CodecError
from rdcodec.models.registry import load_model

IMAGES = Path(__file__).parents[2] / "images"


def _folder(tmp_path: Path, *names: str) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    for name in names:
        shutil.copy(IMAGES / name, folder / name)
    return folder


def _rows(out: Path) -> list[dict]:
    with open(out / "per_image.csv", newline="") as f:
        return list(csv.DictReader(f))


def _run(folder: Path, out: Path, **kwargs) -> BenchReport:
    return run_bench(folder, out=out, progress=False, **kwargs)


# ---- measurements ------------------------------------------------------------------
def test_jpeg_numbers_match_an_independent_measurement(tmp_path):
    folder = _folder(tmp_path, "astronaut.png", "coffee.png")
    out = tmp_path / "out"
    _run(folder, out, codecs=["jpeg"], qualities={"jpeg": (10, 50, 90)})
    rows = _rows(out)
    assert len(rows) == 2 * 3
    for row in rows:
        with Image.open(folder / row["image"]) as im:
            original = np.array(im.convert("RGB"), dtype=np.float64)
        buffer = io.BytesIO()
        Image.fromarray(original.astype(np.uint8)).save(
            buffer, format="JPEG", quality=int(row["quality"])
        )
        with Image.open(io.BytesIO(buffer.getvalue())) as im:
            decoded = np.array(im.convert("RGB"), dtype=np.float64)
        expected_psnr = 10 * np.log10(255**2 / np.mean((original - decoded) ** 2))
        expected_bpp = 8 * len(buffer.getvalue()) / (original.shape[0] * original.shape[1])
        assert float(row["psnr"]) == pytest.approx(expected_psnr, abs=0.01)
        assert float(row["bpp"]) == pytest.approx(expected_bpp, rel=1e-3)
        assert int(row["num_bytes"]) == len(buffer.getvalue())


def test_curve_is_the_mean_over_images(tmp_path):
    folder = _folder(tmp_path, "astronaut.png", "coffee.png")
    out = tmp_path / "out"
    _run(folder, out, codecs=["jpeg"], qualities={"jpeg": (20, 80)})
    rows = _rows(out)
    results = json.loads((out / "jpeg.json").read_text())["results"]
    for i, q in enumerate((20, 80)):
        at_q = [r for r in rows if float(r["quality"]) == q]
        assert results["bpp"][i] == pytest.approx(np.mean([float(r["bpp"]) for r in at_q]))
        assert results["psnr-rgb"][i] == pytest.approx(np.mean([float(r["psnr"]) for r in at_q]))
    assert results["bpp"][0] < results["bpp"][1] and results["psnr-rgb"][0] < results["psnr-rgb"][1]


@pytest.mark.parametrize("codec", [baselines.WEBP, baselines.AVIF, baselines.JPEG2000])
def test_classical_codecs_round_trip(codec, astronaut):
    if not codec.available():
        pytest.skip(f"{codec.label} not in this Pillow")
    low, high = codec.default_qualities[1], codec.default_qualities[-2]
    small, large = codec.encode(astronaut, low), codec.encode(astronaut, high)
    assert len(small) < len(large)
    decoded = codec.decode(large)
    assert decoded.shape == astronaut.shape and decoded.dtype == np.uint8
    assert psnr(astronaut, decoded) > psnr(astronaut, codec.decode(small))


def test_jpeg2000_quality_is_the_target_bpp(coffee):
    pixels = coffee.shape[0] * coffee.shape[1]
    for target in (0.25, 1.0):
        got = 8 * len(baselines.JPEG2000.encode(coffee, target)) / pixels
        assert got == pytest.approx(target, rel=0.1)


def test_rdcodec_points_are_real_bitstreams(tmp_path):
    from rdcodec.codec import pipeline
    from rdcodec.models.registry import load_scale

    folder = tmp_path / "images"
    folder.mkdir()
    with Image.open(IMAGES / "chelsea.png") as im:
        crop = np.array(im.convert("RGB"))[:64, :64]
    Image.fromarray(crop).save(folder / "crop.png")
    out = tmp_path / "out"
    report = _run(folder, out, codecs=["rdcodec"], qualities={"rdcodec": (1, 8)})
    rows = _rows(out)
    model = load_scale()  # what `rdcodec` codes with: the default quality scale
    # The bench codes on one thread. The transforms are floating point, so another thread
    # count may move a few pixels by 1 (the documented guarantee): on one thread the numbers
    # are exact, and a decode on the default count stays within what +-1 allows.
    threads = torch.get_num_threads()
    for row in rows:
        torch.set_num_threads(1)
        try:
            data = pipeline.encode(crop, float(row["quality"]), model)
            one_thread = psnr(crop, pipeline.decode_array(data, model))
        finally:
            torch.set_num_threads(threads)
        assert int(row["num_bytes"]) == len(data)
        assert float(row["psnr"]) == pytest.approx(one_thread, abs=1e-9)
        assert float(row["psnr"]) == pytest.approx(
            psnr(crop, pipeline.decode_array(data, model)), abs=0.01
        )
    (curve,) = report.curves
    assert curve.bpp[0] < curve.bpp[1]
    first = model.model_for(1.0)  # the cache is keyed by the scale's first model (and the rest)
    assert first.sha256[:12] in next((out / "cache").rglob("rdcodec-*.json")).name


def _crop_folder(tmp_path: Path, name: str = "chelsea.png", side: int = 64) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    with Image.open(IMAGES / name) as im:
        Image.fromarray(np.array(im.convert("RGB"))[:side, :side]).save(folder / "crop.png")
    return folder


GAIN, EXACT = "rdcodec@hp-gain-n96m128", "rdcodec@hp-exact-n96m128"


def test_two_rdcodec_models_are_two_codecs_with_real_bitstreams(tmp_path):
    from rdcodec.codec import pipeline
    from rdcodec.models.registry import load_model

    folder = _crop_folder(tmp_path)
    with Image.open(folder / "crop.png") as im:
        crop = np.array(im)
    out = tmp_path / "out"
    # hp-gain at its default points (all 8 levels of its manifest range), hp-exact at two.
    report = _run(folder, out, codecs=[GAIN, EXACT], qualities={EXACT: (2, 11)})
    gain, exact = report.curves
    assert (gain.name, gain.label) == (GAIN, "rdcodec (hp-gain-n96m128)")
    assert (exact.name, exact.label) == (EXACT, "rdcodec (hp-exact-n96m128)")
    assert gain.qualities == tuple(range(1, 9)) and exact.qualities == (2, 11)
    for curve, stem in ((gain, "rdcodec-hp-gain-n96m128"), (exact, "rdcodec-hp-exact-n96m128")):
        data = json.loads((out / f"{stem}.json").read_text())
        assert (data["name"], data["codec"]) == (curve.label, curve.name)
        assert data["results"]["bpp"] == list(curve.bpp)
    assert not (out / "rdcodec.json").exists()

    rows = _rows(out)
    assert sorted(r["codec"] for r in rows) == [EXACT] * 2 + [GAIN] * 8
    threads = torch.get_num_threads()
    for row in rows:
        model = load_model(row["codec"].partition("@")[2])
        torch.set_num_threads(1)  # the bench codes on one thread: the same bytes and pixels
        try:
            data = pipeline.encode(crop, float(row["quality"]), model)
            decoded_psnr = psnr(crop, pipeline.decode_array(data, model))
        finally:
            torch.set_num_threads(threads)
        assert int(row["num_bytes"]) == len(data)
        assert float(row["psnr"]) == pytest.approx(decoded_psnr, abs=1e-9)
    # At level 2 the two models write different files (their own weights, wire id, hash).
    at_2 = {r["codec"]: int(r["num_bytes"]) for r in rows if float(r["quality"]) == 2}
    assert at_2[GAIN] != at_2[EXACT]

    # Each model's points are cached apart, keyed by its own weights.
    names = {p.name for p in (out / "cache").rglob("rdcodec-*.json")}
    for name in (GAIN, EXACT):
        prefix = f"rdcodec-{load_model(name.partition('@')[2]).sha256[:12]}-"
        assert sum(n.startswith(prefix) for n in names) == (8 if name == GAIN else 2)

    table = (out / "bd_rate.md").read_text()
    assert "## Anchor: rdcodec (hp-gain-n96m128)" in table
    assert "| rdcodec (hp-exact-n96m128) |" in table.split("## Anchor: rdcodec (hp-gain")[1]
    assert find_bd(report.bd, exact.label, GAIN, "psnr") is not None
    assert find_bd(report.bd, gain.label, EXACT, "psnr") is None  # the first is the anchor
    assert [c.label for c in report.monotonic] == [gain.label, exact.label]
    assert "## rdcodec (hp-gain-n96m128): quality levels" in table


def test_rdcodec_and_its_model_name_share_the_cache_and_are_measured_once(tmp_path, monkeypatch):
    from rdcodec.models import registry

    # Where the default scale is the default model alone, `rdcodec` and its name are one
    # codec (with a high-rate model on the scale, `rdcodec` is both models: another curve).
    alone = [{"from": 1, "model": registry.default_model_name()}]
    monkeypatch.setattr(registry, "scale_entries", lambda data=None: alone)
    folder = _crop_folder(tmp_path)
    out = tmp_path / "out"
    default = f"rdcodec@{registry.default_model_name()}"
    first = _run(folder, out, codecs=["rdcodec"], qualities={"rdcodec": (3,)})
    assert (first.measured_points, first.cached_points) == (1, 0)
    warnings: list[str] = []
    both = _run(
        folder,
        out,
        codecs=["rdcodec", default],
        qualities={"rdcodec": (3,), default: (3,)},
        warn=warnings.append,
    )
    assert [c.name for c in both.curves] == ["rdcodec"] and both.measured_points == 0
    assert any("measuring it once" in w for w in warnings)
    named = _run(folder, out, codecs=[default], qualities={default: (3,)})
    assert (named.measured_points, named.cached_points) == (0, 1)
    assert [r["codec"] for r in _rows(out)] == [default]
    assert (out / f"{file_stem(default)}.json").exists()


def test_target_bpp_and_html_use_the_first_rdcodec_model(tmp_path):
    folder = _crop_folder(tmp_path)
    out = tmp_path / "out"
    report = _run(
        folder, out, codecs=["jpeg", GAIN, EXACT], qualities={GAIN: (1,), EXACT: (1,)},
        targets=(50.0,),
    )  # fmt: skip
    (row,) = report.targets.rows
    assert report.targets.model == "hp-gain-n96m128"
    assert row.quality == row.top_quality == 8  # hp-gain's top level, not hp-exact's 11
    assert "## rdcodec --target-bpp: hp-gain-n96m128" in (out / "bd_rate.md").read_text()
    with pytest.raises(CodecError, match="--html compares the default model"):
        _run(folder, tmp_path / "html", codecs=[GAIN, EXACT], html=True)
    assert not (tmp_path / "html").exists()  # refused before any work


def test_rdcodec_models_take_their_own_default_qualities():
    assert make_codec(GAIN).default_qualities == tuple(range(1, 9))
    assert make_codec(EXACT).default_qualities == tuple(range(1, 12))
    from rdcodec.models import registry

    assert make_codec("rdcodec").default_qualities == tuple(range(1, 12))  # the whole scale
    for segment in registry.scale_entries():  # each model alone: the levels it encodes
        low, high = registry.find_entry(segment["model"])["qualities"]
        assert make_codec("rdcodec@" + segment["model"]).default_qualities == tuple(
            range(low, high + 1)
        )
    assert file_stem(GAIN) == "rdcodec-hp-gain-n96m128"
    assert file_stem("rdcodec@a/b c") == "rdcodec-a-b-c"


def _measurement(image: str, quality: float, bpp: float, psnr_db: float) -> Measurement:
    return Measurement(image, "0" * 64, 8, 8, "rdcodec", quality, 1, bpp, psnr_db, None, 0, 0)


def test_monotonic_check_names_the_level_that_goes_down():
    rows = [_measurement("a.png", q, 0.1 * q, 25 + q) for q in (1, 2, 3)]
    rows += [_measurement("b.png", 1, 0.1, 25), _measurement("b.png", 2, 0.2, 24.5)]
    check = monotonic_check(rows)
    assert (check.images, check.monotonic) == (2, 1)
    assert check.failures == ("b.png: psnr does not rise from q1 to q2",)


def test_monotonic_check_of_one_level_says_there_is_nothing_to_check():
    check = monotonic_check([_measurement(name, 2, 0.2, 27) for name in ("a.png", "b.png")])
    assert check.levels == 1 and "nothing to check" in check.summary()
    assert "rise with the level on" not in check.markdown()


def test_target_summary_with_no_target_reached_gives_no_mean():
    rows = (
        TargetRow("a.png", 0.001, None, None, 0.0),  # below the lowest quality's rate
        TargetRow("a.png", 99.0, 8.0, 3.0, 1.0),  # above the top quality's rate
    )
    summary = TargetSummary(rows)
    assert summary.none_reached() == (
        "no target reached: 1 below the lowest quality's rate, 1 above the highest quality's rate"
    )
    assert "nan" not in summary.markdown() and summary.none_reached() in summary.markdown()


def test_target_bpp_rows_land_at_or_below_the_target(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    with Image.open(IMAGES / "coffee.png") as im:
        im.crop((0, 0, 128, 128)).save(folder / "crop.png")
    out = tmp_path / "out"
    low = _run(folder, out, codecs=["rdcodec"], qualities={"rdcodec": (1, 8)}).curves[0].bpp[0]
    targets = (0.01, low * 1.5, 50.0)
    report = _run(folder, out, codecs=["rdcodec"], qualities={"rdcodec": (1, 8)}, targets=targets)
    infeasible, reached, capped = report.targets.rows
    top = float(load_model().network.config.levels)
    assert capped.quality == capped.top_quality == top and report.targets.capped() == 1
    assert infeasible.quality is None and infeasible.bpp is None
    assert 1 <= reached.quality <= 8 and low <= reached.bpp <= reached.target
    assert report.targets.over_target() == 0 and report.targets.infeasible() == 1
    assert report.targets.undershoot_percent() == pytest.approx(
        100 * (reached.target - reached.bpp) / reached.target
    )
    assert "## rdcodec --target-bpp" in (out / "bd_rate.md").read_text()
    assert "on 1 of 1 images" in (out / "bd_rate.md").read_text()
    with open(out / "target_bpp.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 3


def test_target_bpp_codes_at_the_codecs_effort(tmp_path):
    from rdcodec.codec import pipeline

    folder = _crop_folder(tmp_path)
    out = tmp_path / "out"
    name = "rdcodec+e1"
    report = _run(folder, out, codecs=[name], qualities={name: (2, 6)})
    low, high = report.curves[0].bpp
    target = (low + high) / 2
    report = _run(folder, out, codecs=[name], qualities={name: (2, 6)}, targets=(target,))
    (row,) = report.targets.rows
    array = measure.read_pixels(folder / "crop.png")
    with measure.one_torch_thread():  # as bench codes (refined bytes follow the threads)
        quality, data = pipeline.encode_at_bpp(array, target, effort=1)
    assert (row.quality, row.bpp) == (quality, 8 * len(data) / (64 * 64))
    assert row.bpp <= target and report.targets.effort == 1
    assert "--target-bpp: cc-" in (out / "bd_rate.md").read_text()
    assert ", effort 1\n" in (out / "bd_rate.md").read_text()


def test_target_bpp_rows_are_cached_per_image_and_target(tmp_path, monkeypatch):
    from rdcodec.codec import pipeline

    folder = _crop_folder(tmp_path)
    out = tmp_path / "out"
    calls = []
    real = pipeline.encode_at_bpp

    def counting(array, target, *args, **kwargs):
        calls.append(target)
        return real(array, target, *args, **kwargs)

    monkeypatch.setattr(pipeline, "encode_at_bpp", counting)
    kwargs = {"codecs": ["rdcodec"], "qualities": {"rdcodec": (2,)}}
    first = _run(folder, out, targets=(0.5, 1.0), **kwargs)
    assert sorted(calls) == [0.5, 1.0]
    calls.clear()
    again = _run(folder, out, targets=(0.5, 1.0, 1.5), **kwargs)
    assert calls == [1.5]  # only the new target is coded
    assert again.targets.rows[:2] == first.targets.rows  # seconds included: read back
    next((out / "cache").rglob("rdcodec-*-t0.5.json")).write_text("{")  # a damaged entry
    calls.clear()
    _run(folder, out, targets=(0.5, 1.0), **kwargs)
    assert calls == [0.5]


def test_a_refined_codec_warms_up_at_effort_0(tmp_path, monkeypatch):
    from rdcodec.codec import refine

    folder = _crop_folder(tmp_path)
    calls = []
    real = refine.refine

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(refine, "refine", counting)
    monkeypatch.setattr(measure, "_WARMED", set())
    name = "rdcodec+e1"
    report = _run(folder, tmp_path / "out", codecs=[name], qualities={name: (2, 6)})
    assert report.measured_points == 2 and len(calls) == 2  # one refinement per point


# ---- BD-rate -----------------------------------------------------------------------
RATES = [0.12, 0.25, 0.45, 0.7, 1.0, 1.4, 1.9]
PSNRS = [26.1, 28.4, 30.2, 31.9, 33.3, 34.8, 36.0]


def test_bd_rate_of_scaled_rates_is_the_scale():
    assert bd_rate(RATES, PSNRS, [0.8 * r for r in RATES], PSNRS) == pytest.approx(-20, abs=1e-6)
    assert bd_rate(RATES, PSNRS, [1.25 * r for r in RATES], PSNRS) == pytest.approx(25, abs=1e-6)


def test_bd_rate_of_identical_curves_is_zero():
    assert bd_rate(RATES, PSNRS, RATES, PSNRS) == pytest.approx(0, abs=1e-9)


def test_bd_rate_interval_is_the_overlap():
    # The test curve only covers the upper part of the anchor's PSNR range.
    result = bd_rate_detail(RATES, PSNRS, [0.8 * r for r in RATES[3:]], PSNRS[3:])
    # Not exact: Akima's end slopes differ on the shorter curve.
    assert result.percent == pytest.approx(-20, abs=0.1)
    assert (result.low, result.high) == (31.9, 36.0)
    assert result.overlap == pytest.approx((36.0 - 31.9) / (36.0 - 26.1))


def test_bd_rate_without_overlap_is_nan():
    result = bd_rate_detail(RATES[:3], PSNRS[:3], RATES[4:], PSNRS[4:])
    assert math.isnan(result.percent) and result.overlap == 0


def test_bd_rate_ignores_points_that_do_not_improve_quality():
    # A point with more bits and lower PSNR than its neighbour is off the curve.
    rates, psnrs = RATES + [2.5], PSNRS + [35.0]
    assert bd_rate(RATES, PSNRS, [0.8 * r for r in rates], psnrs) == pytest.approx(-20, abs=1e-6)


# ---- folders -----------------------------------------------------------------------
def test_find_images_skips_unreadable_files_with_a_warning(tmp_path):
    folder = _folder(tmp_path, "astronaut.png")
    (folder / "broken.png").write_bytes(b"not a png")
    (folder / "notes.txt").write_text("ignored: not an image extension")
    warnings: list[str] = []
    images = find_images(folder, warnings.append)
    assert [i.path.name for i in images] == ["astronaut.png"]
    assert (images[0].width, images[0].height) == (128, 128)
    assert len(warnings) == 1 and "broken.png" in warnings[0]


def _bad_folder(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / kind
    if kind == "a_file.png":
        path.write_bytes(b"x")
    elif kind == "empty":
        path.mkdir()
    elif kind == "text_only":
        path.mkdir()
        (path / "a.txt").write_text("x")
    return path


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("missing", "no such directory"),
        ("a_file.png", "not a directory"),
        ("empty", "is empty"),
        ("text_only", "has no image files"),
    ],
)
def test_find_images_bad_folders(tmp_path, kind, message):
    with pytest.raises(CodecError, match=message):
        find_images(_bad_folder(tmp_path, kind), lambda m: None)


# ---- cache -------------------------------------------------------------------------
def test_rerun_reads_the_cache_instead_of_encoding(tmp_path, monkeypatch):
    folder = _folder(tmp_path, "astronaut.png", "coffee.png")
    out = tmp_path / "out"
    calls = []
    real_encode = baselines.PillowCodec.encode

    def counting_encode(self, image, quality):
        calls.append(quality)
        return real_encode(self, image, quality)

    monkeypatch.setattr(baselines.PillowCodec, "encode", counting_encode)
    monkeypatch.setattr(measure, "_WARMED", set())
    kwargs = {"codecs": ["jpeg"], "qualities": {"jpeg": (10, 50, 90)}}
    first = _run(folder, out, **kwargs)
    assert len(calls) == 1 + 2 * 3  # one untimed warm-up, then every point once
    assert (first.measured_points, first.cached_points) == (6, 0)
    first_json = (out / "jpeg.json").read_text()

    calls.clear()
    second = _run(folder, out, **kwargs)
    assert calls == [] and (second.measured_points, second.cached_points) == (0, 6)
    assert (out / "jpeg.json").read_text() == first_json  # timings included: nothing re-measured

    # An interrupted run leaves some points missing: only those are encoded again.
    next((out / "cache").rglob("jpeg-*-q50.json")).unlink()
    calls.clear()
    third = _run(folder, out, **kwargs)
    assert calls == [50] and (third.measured_points, third.cached_points) == (1, 5)


def test_cache_key_changes_with_quality_and_codec_settings(tmp_path):
    folder = _folder(tmp_path, "astronaut.png")
    out = tmp_path / "out"
    _run(folder, out, codecs=["jpeg"], qualities={"jpeg": (30,)})
    report = _run(folder, out, codecs=["jpeg"], qualities={"jpeg": (30, 31)})
    assert (report.measured_points, report.cached_points) == (1, 1)
    assert baselines.JPEG.settings_id() != baselines.WEBP.settings_id()


# ---- outputs -----------------------------------------------------------------------
def test_outputs_follow_compressai_schema_and_plots_exist(tmp_path):
    folder = _folder(tmp_path, "chelsea.png")  # 168x164: large enough for MS-SSIM
    out = tmp_path / "out"
    report = _run(
        folder, out, codecs=["jpeg", "webp"], qualities={"jpeg": (10, 40, 90), "webp": (10, 50, 90)}
    )
    for name in ("jpeg", "webp"):
        data = json.loads((out / f"{name}.json").read_text())
        assert isinstance(data["name"], str) and isinstance(data["description"], str)
        results = data["results"]
        assert set(results) == {"bpp", "psnr-rgb", "ms-ssim-rgb", "encoding_time", "decoding_time"}
        assert all(len(v) == 3 and all(isinstance(x, float) for x in v) for v in results.values())
        assert all(0 < v < 1 for v in results["ms-ssim-rgb"])
        assert all(t >= 0 for t in results["encoding_time"] + results["decoding_time"])
    assert (out / "rd.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in (out / "rd.svg").read_bytes()[:2000]
    assert len(_rows(out)) == 6
    table = (out / "bd_rate.md").read_text()
    assert "## Anchor: JPEG" in table and "averaged curves" in table and "| WebP |" in table
    webp_vs_jpeg = find_bd(report.bd, "WebP", "jpeg", "ms-ssim")
    assert not math.isnan(webp_vs_jpeg.percent) and webp_vs_jpeg.low < webp_vs_jpeg.high


def test_a_failed_plot_leaves_the_previous_outputs_whole(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    folder, out = _folder(tmp_path, "chelsea.png"), tmp_path / "out"
    _run(folder, out, codecs=["jpeg"], qualities={"jpeg": (10, 90)})
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}

    def half_written(self, path, **kwargs):
        Path(path).write_bytes(b"\x89PNG half")
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", half_written)
    with pytest.raises(OSError):
        _run(folder, out, codecs=["jpeg"], qualities={"jpeg": (10, 50, 90)})
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert after == before  # no .part leftovers, rd.png not half-written


def test_compare_overlays_a_published_curve(tmp_path):
    folder = _folder(tmp_path, "astronaut.png")
    out = tmp_path / "out"
    points = (10, 30, 60, 90)
    _run(folder, out / "first", codecs=["jpeg"], qualities={"jpeg": points})
    jpeg = json.loads((out / "first" / "jpeg.json").read_text())["results"]
    published = tmp_path / "paper.json"
    published.write_text(json.dumps({
        "name": "Paper2024",
        "description": "a published curve",
        "results": {"bpp": [0.8 * b for b in jpeg["bpp"]], "psnr": jpeg["psnr-rgb"]},
    }))  # fmt: skip
    report = _run(folder, out, codecs=["jpeg"], qualities={"jpeg": points}, compare=[published])
    assert [c.label for c in report.curves] == ["JPEG", "Paper2024 (published)"]
    assert find_bd(report.bd, "Paper2024 (published)", "jpeg", "psnr").percent == pytest.approx(
        -20, abs=1e-6
    )
    assert "| Paper2024 (published) | -20.0%" in (out / "bd_rate.md").read_text()


def test_a_rerun_removes_the_earlier_outputs_it_does_not_write_again(tmp_path):
    folder, out = _folder(tmp_path, "astronaut.png"), tmp_path / "out"
    first = _run(
        folder, out, codecs=["jpeg", "webp"], qualities={"jpeg": (30, 70), "webp": (30, 70)}
    )
    assert (out / "bench_outputs.txt").read_text().splitlines() == [
        p.name for p in first.outputs.values()
    ]
    (out / "notes.json").write_text("{}")  # not the bench's: never touched
    report = _run(folder, out, codecs=["jpeg"], qualities={"jpeg": (30, 70)})
    assert report.removed == (out / "webp.json",) and not (out / "webp.json").exists()
    assert (out / "notes.json").exists() and (out / "jpeg.json").exists()
    assert any((out / "cache").rglob("webp-*.json"))  # the cache stays
    assert "WebP" not in (out / "bd_rate.md").read_text()


def test_a_rerun_keeps_an_earlier_output_given_to_compare(tmp_path):
    folder, out = _folder(tmp_path, "astronaut.png"), tmp_path / "out"
    _run(folder, out, codecs=["jpeg", "webp"], qualities={"jpeg": (30, 70), "webp": (30, 70)})
    report = _run(
        folder, out, codecs=["jpeg"], qualities={"jpeg": (30, 70)}, compare=[out / "webp.json"]
    )
    assert report.removed == () and (out / "webp.json").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not a readable JSON"),
        (json.dumps({"name": "x"}), "CompressAI's schema"),
        (json.dumps({"results": {"bpp": [0.1, 0.2]}}), "no psnr-rgb"),
        (json.dumps({"results": {"bpp": [0.1, 0.2], "psnr-rgb": [30]}}), "as long as"),
    ],
)
def test_bad_compare_files(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(CodecError, match=message):
        load_curve(path)


def test_parse_codecs_and_qualities():
    assert parse_codecs("rdcodec, JPG,jpeg,j2k") == ["rdcodec", "jpeg", "jpeg2000"]
    assert parse_codecs(f"{GAIN}, RDCODEC@hp-exact-n96m128,{GAIN}") == [GAIN, EXACT]
    assert parse_qualities("jpeg=90,10") == ("jpeg", (10, 90))
    assert parse_qualities("jpeg2000=0.25,1") == ("jpeg2000", (0.25, 1))
    assert parse_qualities(f"{GAIN}=8,1.5") == (GAIN, (1.5, 8))
    assert parse_qualities(f"{EXACT}=11") == (EXACT, (11,))
    for bad in ("heic", "", "jpeg@x", "rdcodec@", "rdcodec@nope"):
        with pytest.raises(CodecError):
            parse_codecs(bad)
    with pytest.raises(CodecError, match="no installed model 'nope'; installed: hp-gain"):
        parse_codecs("rdcodec@nope")
    bad_points = ("jpeg", "jpeg=10.5", "rdcodec=12", f"{GAIN}=9", "webp=a,b", "jpeg=")
    for bad in bad_points:
        with pytest.raises(CodecError):
            parse_qualities(bad)


def test_parse_errors_name_the_option_and_the_names_it_takes():
    with pytest.raises(CodecError, match="^--reference names no codec$"):
        parse_codecs(",,", option="--reference")
    with pytest.raises(CodecError, match="^--qualities '=30,70' names no codec$"):
        parse_qualities("=30,70")
    classical = tuple(baselines.CLASSICAL)
    with pytest.raises(CodecError, match="known: jpeg, webp, avif, jpeg2000$"):
        parse_codecs("foo", known=classical)
    with pytest.raises(CodecError, match="known: rdcodec, jpeg, .*, rdcodec@MODEL$"):
        parse_codecs("foo")


@pytest.mark.slow
def test_workers_give_the_same_bytes_as_one_process(tmp_path):
    folder = _folder(tmp_path, "astronaut.png", "coffee.png", "chelsea.png")
    kwargs = {"codecs": ["jpeg", "webp"], "qualities": {"jpeg": (20, 80), "webp": (20, 80)}}
    _run(folder, tmp_path / "one", **kwargs)
    _run(folder, tmp_path / "two", workers=2, **kwargs)

    def key(rows):
        return sorted(
            (r["image"], r["codec"], r["quality"], r["num_bytes"], r["psnr"]) for r in rows
        )

    assert key(_rows(tmp_path / "one")) == key(_rows(tmp_path / "two"))


def test_codec_names_come_from_the_one_table():
    assert parse_codecs("all") == ["rdcodec", *baselines.CLASSICAL]
    assert parse_codecs("jpg,J2K,all") == ["jpeg", "jpeg2000", "rdcodec", "webp", "avif"]
    for codec in baselines.CLASSICAL.values():
        assert parse_qualities(f"{codec.name}={codec.search_grid[1]:g}")[0] == codec.name
        with pytest.raises(CodecError):
            parse_qualities(f"{codec.name}={codec.search_grid[1] * 2:g}")


def test_head_to_head_puts_the_first_rdcodec_model_against_each_codec():
    psnr_points = (26.0, 29.0, 32.0, 35.0)
    rates = (0.2, 0.4, 0.8, 1.6)

    def curve(name, label, scale):
        return Curve(name, label, "", tuple(r * scale for r in rates), psnr_points)

    curves = [
        curve("rdcodec", "rdcodec (cc)", 1.1),
        curve("jpeg", "JPEG", 2.0),
        curve("webp", "WebP", 1.0),
        curve("jpeg2000", "JPEG 2000", 1.25),
    ]
    entries = bd_table(curves)
    assert find_bd(entries, "rdcodec (cc)", "webp", "psnr").percent == pytest.approx(10)
    assert find_bd(entries, "rdcodec (cc)", "jpeg2000", "psnr").percent == pytest.approx(-12)
    text = bd_markdown(curves, entries, 1).split("## Head to head: rdcodec (cc) against each codec")
    assert len(text) == 2
    rows = [line for line in text[1].splitlines() if line.startswith("| ") and "%" in line]
    assert [r.split(" | ")[0] for r in rows] == ["| JPEG", "| WebP", "| JPEG 2000"]
    assert "+10.0%" in rows[1] and "-12.0%" in rows[2]
