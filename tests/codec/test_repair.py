"""Files of the first release (float table choice) decode everywhere, repaired where a
few indices landed across a table boundary, and damage is still refused.

``tests/field/`` holds three files written by ``hp-gain-n96m128`` on the field machine
(of the 120 in the field report; tests/field_long.py measures all of them), with the
sha256 of the indices and symbols their encoder coded, a 64x64 crop of each source photo
and the PSNR the first release's decode had over that crop (the whole photos are not
committed; the full-photo PSNR is in field.json and checked by field_long.py).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rdcodec.codec import container, pipeline, repair
from rdcodec.codec.metrics import psnr
from rdcodec.errors import BitstreamError, CodecNotice
from rdcodec.models import gaussian

FIELD = Path(__file__).parent.parent / "field"
META = json.loads((FIELD / "field.json").read_text())
NAMES = sorted(META)
FLOAT_MODEL = "hp-gain-n96m128"


def _sha(array: np.ndarray, dtype) -> str:
    return hashlib.sha256(np.ascontiguousarray(array, dtype=dtype).tobytes()).hexdigest()


def _check_decode(name: str, indices: np.ndarray, symbols: np.ndarray, pixels: np.ndarray):
    entry = META[name]
    assert _sha(indices, np.uint8) == entry["indices_sha256"]
    assert _sha(symbols, np.int32) == entry["symbols_sha256"]
    r0, c0, n = entry["crop"]
    with Image.open(FIELD / f"{Path(name).stem}_crop.png") as im:
        crop = np.array(im.convert("RGB"))
    got = psnr(crop, pixels[r0 : r0 + n, c0 : c0 + n])
    assert abs(got - entry["crop_psnr"]) < 0.05


# ---- the search itself ----------------------------------------------------------------
def _problem(seed: int, size: int = 5000, near: int = 40):
    rng = np.random.default_rng(seed)
    indices = rng.integers(0, 64, size, dtype=np.uint8)
    distance = np.full(size, 1.0)
    where = rng.choice(size, near, replace=False)
    distance[where] = rng.uniform(0, 5e-6, near)
    neighbour = np.clip(indices.astype(int) + rng.choice([-1, 1], size), 0, 63).astype(np.uint8)
    neighbour[neighbour == indices] = indices[neighbour == indices] ^ 1
    return indices, distance, neighbour, where


@pytest.mark.parametrize("flips", [1, 2, 3])
def test_repair_finds_the_flipped_indices(flips):
    indices, distance, neighbour, where = _problem(flips)
    encoded = indices.copy()
    moved = where[:flips]
    encoded[moved] = neighbour[moved]  # what the encoder had; the decoder computed `indices`
    fixed = repair.repair_indices(indices, distance, neighbour, repair.index_crc(encoded))
    assert fixed is not None and fixed.flipped == flips
    assert np.array_equal(fixed.indices, encoded)


@pytest.mark.parametrize("length", [1, 2, 7, 1000, 196_608])
def test_crc_effect_of_a_flip_matches_recomputing_the_crc(length):
    import zlib

    rng = np.random.default_rng(length)
    message = rng.integers(0, 256, length, dtype=np.uint8)
    ops = repair._zero_bytes_operators(length)
    for position in {0, length // 2, length - 1}:
        delta = int(rng.integers(1, 256))
        flipped = message.copy()
        flipped[position] ^= delta
        direct = zlib.crc32(message.tobytes()) ^ zlib.crc32(flipped.tobytes())
        assert repair._crc_effect(position, delta, length, ops) == direct


def test_repair_set_up_does_not_grow_with_the_image():
    start = time.perf_counter()
    ops = repair._zero_bytes_operators(200_000_000)
    for p in range(0, 200_000_000, 3_000_000):
        repair._crc_effect(p, 1, 200_000_000, ops)
    assert time.perf_counter() - start < 0.5


def test_repair_leaves_matching_indices_alone():
    indices, distance, neighbour, _ = _problem(4)
    fixed = repair.repair_indices(indices, distance, neighbour, repair.index_crc(indices))
    assert fixed.flipped == 0 and fixed.tries == 0 and np.array_equal(fixed.indices, indices)


def test_repair_ignores_positions_far_from_a_boundary():
    indices, distance, neighbour, where = _problem(5)
    encoded = indices.copy()
    far = np.setdiff1d(np.arange(indices.size), where)[0]
    encoded[far] = neighbour[far]  # a real difference, not a boundary case
    assert repair.repair_indices(indices, distance, neighbour, repair.index_crc(encoded)) is None


def test_repair_respects_its_budget():
    indices, distance, neighbour, _ = _problem(6, near=64)
    target = repair.index_crc(indices) ^ 0x5A5A5A5A  # no combination reaches it (a.s.)
    start = time.perf_counter()
    assert repair.repair_indices(indices, distance, neighbour, target, max_tries=20_000) is None
    assert repair.repair_indices(indices, distance, neighbour, target, max_seconds=0.2) is None
    assert time.perf_counter() - start < 2 * repair.MAX_SECONDS + 1


def test_false_match_chance_is_below_one_in_ten_thousand_per_file():
    assert repair.MAX_TRIES / 2**32 < 1e-4


# ---- field files ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def float_model():
    from rdcodec.models.registry import load_model

    return load_model(FLOAT_MODEL)


@pytest.mark.parametrize("name", NAMES)
def test_field_file_decodes_to_its_encoders_indices_and_picture(name, float_model):
    data = (FIELD / name).read_bytes()
    lat = pipeline.decode_latents(data, float_model)
    _check_decode(name, lat.y_indices, lat.y_symbols, pipeline.decode_array(data, float_model))


def _move_one_index_across_a_boundary(network, monkeypatch) -> None:
    """Simulate another CPU: the decoder's h_s lands one scale across a table boundary."""
    real = network.coding_parameters

    def off_by_an_ulp(z_symbols):
        means, scales, indices = real(z_symbols)
        distance, neighbour = network.index_margins(scales)
        p = int(np.argmin(distance))
        own, other = int(indices.reshape(-1)[p]), int(neighbour.reshape(-1)[p])
        log_boundary = math.log(gaussian.SCALE_MIN) + (own + other) / 2 * gaussian.LOG_SCALE_STEP
        moved = scales.clone().reshape(-1)
        moved[p] = math.exp(log_boundary) * (1 + 1e-6 * (other - own))  # just across it
        moved = moved.reshape(scales.shape)
        return means, moved, gaussian.scale_indices(moved)

    monkeypatch.setattr(network, "coding_parameters", off_by_an_ulp)


def test_a_moved_index_is_repaired_with_a_notice(float_model, monkeypatch):
    name = NAMES[0]
    data = (FIELD / name).read_bytes()
    _move_one_index_across_a_boundary(float_model.network, monkeypatch)
    with pytest.warns(CodecNotice, match="repaired 1 scale index computed differently"):
        lat = pipeline.decode_latents(data, float_model)
    _check_decode(name, lat.y_indices, lat.y_symbols, pipeline.decode_array(data, float_model))


def test_decode_command_prints_the_repair_notice(float_model, monkeypatch, tmp_path):
    from click.testing import CliRunner

    from rdcodec.cli.main import main

    monkeypatch.setattr(pipeline, "load_model", lambda *a, **k: float_model)
    _move_one_index_across_a_boundary(float_model.network, monkeypatch)
    out = tmp_path / "out.png"
    result = CliRunner().invoke(main, ["decode", str(FIELD / NAMES[0]), str(out)])
    assert result.exit_code == 0, result.output
    assert "rdcodec: notice: repaired 1 scale index" in result.stderr
    assert out.exists()


# ---- damage is refused, not repaired ---------------------------------------------------
def _altered_index_crc(data: bytes) -> bytes:
    header, z, y = container.unpack(data)
    forged = container.Header(**{**header.__dict__, "index_crc": header.index_crc ^ 0x00010000})
    return container.pack(forged, z, y)


def _flipped_z_bits(data: bytes):
    """Files with one z bit flipped (and the file CRC recomputed), across the stream."""
    header, z, y = container.unpack(data)
    for byte in range(0, len(z), 11):
        for bit in (0, 5):
            flipped = bytearray(z)
            flipped[byte] ^= 1 << bit
            yield container.pack(header, bytes(flipped), y)


def _spy_on_repair(monkeypatch) -> list:
    calls = []
    real = repair.repair_indices

    def spy(*args, **kwargs):
        calls.append(real(*args, **kwargs))
        return calls[-1]

    monkeypatch.setattr(repair, "repair_indices", spy)
    return calls


def test_an_altered_index_crc_is_refused(float_model, monkeypatch):
    calls = _spy_on_repair(monkeypatch)
    data = _altered_index_crc((FIELD / NAMES[0]).read_bytes())
    container.unpack(data)  # the trailing file CRC is valid: the damage reaches the repair
    start = time.perf_counter()
    with pytest.raises(BitstreamError, match="entropy parameters differ"):
        pipeline.decode_array(data, float_model)
    assert calls == [None]  # the repair ran, and found nothing
    assert time.perf_counter() - start < repair.MAX_SECONDS + 5


def test_a_flipped_z_bit_is_refused(float_model, monkeypatch):
    """Most flips break the z stream's end check; those that decode to other z symbols
    reach the repair, which must refuse them too (other z: other scales everywhere)."""
    calls = _spy_on_repair(monkeypatch)
    for data in _flipped_z_bits((FIELD / NAMES[0]).read_bytes()):
        with pytest.raises(BitstreamError):
            pipeline.decode_latents(data, float_model)
    assert len(calls) >= 3 and all(call is None for call in calls)


# ---- under other CPU kernels, in fresh processes -----------------------------------------
DECODE = r"""
import sys, json, warnings
import numpy as np
from rdcodec.codec import pipeline
from rdcodec.errors import CodecError
out = {}
for path in sys.argv[2:]:
    data = open(path, "rb").read()
    with warnings.catch_warnings(record=True) as notes:
        warnings.simplefilter("always")
        try:
            lat = pipeline.decode_latents(data)
            pixels = pipeline.decode_array(data)
        except CodecError as exc:
            out[path] = {"error": str(exc)}
            continue
    np.savez(path + ".out.npz", indices=lat.y_indices, symbols=lat.y_symbols, pixels=pixels)
    out[path] = {"notes": [str(n.message) for n in notes]}
open(sys.argv[1], "w").write(json.dumps(out))
"""


def test_field_files_decode_under_forced_kernels(forced_kernels, tmp_path):
    """Every field file decodes to its encoder's indices and picture on SSE, AVX2 and
    AVX-512 kernels (repaired where needed; on the field machine AVX2 needed it for
    all three)."""
    paths = []
    for name in NAMES:
        paths.append(tmp_path / name)
        paths[-1].write_bytes((FIELD / name).read_bytes())
    for n, kernels in enumerate(forced_kernels):
        report = tmp_path / f"report{n}.json"
        subprocess.run(
            [sys.executable, "-c", DECODE, str(report), *map(str, paths)],
            env={**os.environ, **kernels},
            check=True,
            timeout=300,
        )
        results = json.loads(report.read_text())
        what = ", ".join(f"{k}={v}" for k, v in kernels.items())
        for name, path in zip(NAMES, paths, strict=True):
            got = results[str(path)]
            assert "error" not in got, f"{name} refused under {what}: {got}"
            with np.load(str(path) + ".out.npz") as out:
                _check_decode(name, out["indices"], out["symbols"], out["pixels"])
