import io
from pathlib import Path

import numpy as np
import pytest

from rdcodec.codec import container, pipeline, tiles
from rdcodec.codec.metrics import psnr
from rdcodec.errors import BitstreamError, CodecError, ImageError, ModelError


def test_round_trip_measures_the_decoded_image(tiny_model, coffee):
    result = pipeline.encode_image(coffee, 3.0, tiny_model, compare_jpeg=False)
    decoded = pipeline.decode_array(result.data, tiny_model)
    assert decoded.shape == coffee.shape and decoded.dtype == np.uint8
    assert result.bpp == 8 * len(result.data) / (coffee.shape[0] * coffee.shape[1])
    assert result.psnr == psnr(coffee, decoded)
    assert result.rate.file_bits == 8 * len(result.data)
    assert result.rate.header_bits == 8 * container.OVERHEAD_BYTES


def test_encoding_is_deterministic(tiny_model, astronaut):
    assert pipeline.encode(astronaut, 5.5, tiny_model) == pipeline.encode(
        astronaut, 5.5, tiny_model
    )


def test_decode_returns_rgb_pil_image(tiny_model, astronaut):
    image = pipeline.decode(pipeline.encode(astronaut, 2, tiny_model), tiny_model)
    assert image.mode == "RGB" and image.size == (128, 128)


@pytest.mark.parametrize("shape", [(1, 1), (1, 70), (65, 3), (64, 64), (130, 67)])
def test_any_image_size(tiny_model, shape):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(*shape, 3), dtype=np.uint8)
    decoded = pipeline.decode_array(pipeline.encode(image, 8, tiny_model), tiny_model)
    assert decoded.shape == image.shape


def test_quality_changes_the_rate(tiny_model, coffee):
    header = pipeline.read_header(pipeline.encode(coffee, 7.25, tiny_model))
    assert header.quality == 7.25
    # The gains scale the latents, so a higher level writes more bits (the untrained tiny
    # model decodes noise at every level; the shipped one must also decode closer).
    low, high = (pipeline.encode(coffee, q, tiny_model) for q in (1.0, 8.0))
    assert len(low) < len(high)


def test_shipped_levels_trade_bits_for_quality(coffee):
    from rdcodec.models.registry import load_model

    model = load_model()
    crop = coffee[:64, :96]
    top = model.network.config.levels
    files = [pipeline.encode(crop, q, model) for q in (1.0, (1 + top) // 2, float(top))]
    assert len(files[0]) < len(files[1]) < len(files[2])
    scores = [psnr(crop, pipeline.decode_array(f, model)) for f in files]
    assert scores[0] < scores[1] < scores[2] and scores[-1] - scores[0] > 5


def test_a_flipped_array_view_encodes_and_measures(tiny_model, astronaut):
    # np.flipud gives negative strides, which torch cannot view: the pipeline copies.
    flipped = np.flipud(np.tile(astronaut, (2, 2, 1)))  # 256 x 256: MS-SSIM too
    result = pipeline.encode_image(flipped, 4, tiny_model, compare_jpeg=False, effort=1)
    assert result.ms_ssim is not None
    assert result.data == pipeline.encode(flipped.copy(), 4, tiny_model, effort=1)


@pytest.mark.parametrize("quality", [0.5, 8.01, float("nan")])
def test_quality_out_of_range(tiny_model, coffee, quality):
    with pytest.raises(CodecError, match="quality"):
        pipeline.encode(coffee, quality, tiny_model)


def test_every_byte_flip_is_detected(tiny_model, astronaut):
    data = pipeline.encode(astronaut, 4, tiny_model)
    for i in range(len(data)):
        corrupted = bytearray(data)
        corrupted[i] ^= 0x5A
        with pytest.raises(BitstreamError):
            pipeline.decode_array(bytes(corrupted), tiny_model)


def test_every_truncation_is_detected(tiny_model, astronaut):
    data = pipeline.encode(astronaut, 4, tiny_model)
    for n in range(len(data)):
        with pytest.raises(BitstreamError):
            pipeline.decode_array(data[:n], tiny_model)


def test_other_weights_are_named(tiny_model, astronaut):
    from dataclasses import replace

    data = pipeline.encode(astronaut, 4, tiny_model)
    other = replace(tiny_model, sha256="00" * 32)
    with pytest.raises(ModelError, match="needs model id 250"):
        pipeline.decode_array(data, other)


def test_unknown_wire_id_is_a_model_error(tiny_model, astronaut):
    data = pipeline.encode(astronaut, 4, tiny_model)
    with pytest.raises(ModelError, match="wire id 250"):
        pipeline.decode_array(data)


def test_bad_array_is_an_image_error(tiny_model):
    with pytest.raises(ImageError):
        pipeline.encode(np.zeros((4, 4), np.uint8), 4, tiny_model)


def test_target_bpp_lands_at_or_below(tiny_model, coffee):
    pixels = coffee.shape[0] * coffee.shape[1]
    low = 8 * len(pipeline.encode(coffee, 1, tiny_model)) / pixels
    high = 8 * len(pipeline.encode(coffee, 8, tiny_model)) / pixels
    target = (low + high) / 2
    quality = pipeline.quality_for_bpp(coffee, target, tiny_model)
    achieved = 8 * len(pipeline.encode(coffee, quality, tiny_model)) / pixels
    assert achieved <= target
    if quality < 8:
        assert 8 * len(pipeline.encode(coffee, quality + 0.001, tiny_model)) / pixels > target
    # The file the bisection found is the file a plain encode at that quality writes.
    found, data = pipeline.encode_at_bpp(coffee, target, tiny_model)
    assert found == quality and data == pipeline.encode(coffee, quality, tiny_model)


def test_grayscale_source_decodes_to_one_channel(tiny_model, astronaut):
    from PIL import Image

    gray = Image.fromarray(astronaut).convert("L")
    data = pipeline.encode(gray, 4, tiny_model)
    assert pipeline.read_header(data).grayscale
    assert pipeline.decode(data, tiny_model).mode == "L"
    assert pipeline.decode(pipeline.encode(astronaut, 4, tiny_model), tiny_model).mode == "RGB"
    # Every encoding function decides it the same way.
    result = pipeline.encode_image(gray, 4, tiny_model, compare_jpeg=False)
    assert result.data == data
    _, found = pipeline.encode_at_bpp(gray, 50.0, tiny_model)
    assert pipeline.decode(found, tiny_model).mode == "L"


@pytest.mark.parametrize("quality", [True, "4", None, [4]])
def test_a_quality_that_is_not_a_number_is_refused(tiny_model, coffee, quality):
    if quality is None:  # None is the default quality, not an error
        pipeline.encode(coffee, quality, tiny_model)
        return
    with pytest.raises(CodecError, match="quality must be a number"):
        pipeline.encode(coffee, quality, tiny_model)


def test_numpy_numbers_are_qualities_and_targets(tiny_model, coffee):
    data = pipeline.encode(coffee, 4, tiny_model)
    assert pipeline.encode(coffee, np.float32(4), tiny_model) == data
    assert pipeline.encode(coffee, np.int64(4), tiny_model) == data
    assert pipeline.encode_at_bpp(coffee, np.float64(50), tiny_model)[0] == 8


@pytest.mark.parametrize("target", [float("nan"), float("inf"), 0.0, -1.0, True, "1"])
def test_a_target_bpp_that_is_no_rate_is_refused(tiny_model, coffee, target):
    with pytest.raises(CodecError, match="target bpp must be a positive finite number"):
        pipeline.encode_at_bpp(coffee, target, tiny_model)
    with pytest.raises(CodecError, match="target bpp"):
        pipeline.encode_image(coffee, model=tiny_model, target_bpp=target, compare_jpeg=False)


@pytest.mark.parametrize("data", ["x.rdc", Path("x.rdc"), 123, None, io.BytesIO(b"RDC")])
def test_decoding_something_that_is_not_bytes_says_so(tiny_model, data):
    with pytest.raises(CodecError, match="decoding takes the file's bytes") as info:
        pipeline.decode(data, tiny_model)
    assert ("read the file first" in str(info.value)) == isinstance(data, str | Path)
    with pytest.raises(CodecError, match="decoding takes the file's bytes"):
        pipeline.decode_array(data, tiny_model)


def test_bytes_like_files_decode(tiny_model, astronaut):
    data = pipeline.encode(astronaut, 4, tiny_model)
    expected = pipeline.decode_array(data, tiny_model)
    for view in (bytearray(data), memoryview(data), np.frombuffer(data, np.uint8)):
        np.testing.assert_array_equal(pipeline.decode_array(view, tiny_model), expected)
        assert pipeline.decode(view, tiny_model).size == astronaut.shape[1::-1]


def test_encoding_a_path_or_another_model_type_says_what_is_wanted(tiny_model, astronaut):
    with pytest.raises(ImageError, match="got a path .*PIL.Image.open"):
        pipeline.encode("photo.png", 4, tiny_model)
    with pytest.raises(ModelError, match="model must be a shipped model's name"):
        pipeline.encode(astronaut, 4, 123)


def test_a_shipped_model_by_name(coffee):
    from rdcodec.models.registry import load_model

    name = "hp-exact-n96m128"
    small = coffee[:64, :64]
    data = pipeline.encode(small, 4, name)
    assert data == pipeline.encode(small, 4, load_model(name))
    assert pipeline.quality_range(name) == (1, 11)
    assert pipeline.decode(data, name).size == (64, 64)
    with pytest.raises(ModelError, match="no-such-model"):
        pipeline.encode(small, 4, "no-such-model")


def test_tiles_compute_what_the_whole_image_does(tiny_exact_model, astronaut, monkeypatch):
    # Small images are one tile; force many small ones and compare with the whole image.
    whole_data = pipeline.encode(astronaut, 4, tiny_exact_model)
    whole = pipeline.decode_array(whole_data, tiny_exact_model)
    monkeypatch.setattr(tiles, "WHOLE_LATENTS", 0)
    monkeypatch.setattr(tiles, "TILE_LATENTS", 4)
    crops = []
    real_crop = tiles.padded_crop
    monkeypatch.setattr(tiles, "padded_crop", lambda *a: crops.append(a) or real_crop(*a))
    tiled_data = pipeline.encode(astronaut, 4, tiny_exact_model)
    assert len(crops) == 4  # really in tiles (2 x 2)
    tiled = pipeline.decode_array(tiled_data, tiny_exact_model)
    a = pipeline.decode_latents(whole_data, tiny_exact_model)
    b = pipeline.decode_latents(tiled_data, tiny_exact_model)
    # g_a's float sums may round differently per tile, so symbols may differ in rare
    # ties; the picture may not: within 1 everywhere.
    assert (a.y_symbols != b.y_symbols).mean() < 1e-3
    assert np.abs(whole.astype(int) - tiled.astype(int)).max() <= 1
    # The decoder cuts g_s's tiles on its own (smaller ones): the same picture.
    monkeypatch.setattr(tiles, "SYNTHESIS_TILE_LATENTS", 3)
    calls = []
    real_synthesis = tiny_exact_model.network.decoding_synthesis
    monkeypatch.setattr(
        tiny_exact_model.network,
        "decoding_synthesis",
        lambda *a: calls.append(1) or real_synthesis(*a),
    )
    retiled = pipeline.decode_array(whole_data, tiny_exact_model)
    assert len(calls) > 4
    assert np.abs(whole.astype(int) - retiled.astype(int)).max() <= 1
    monkeypatch.undo()
    again = pipeline.decode_array(whole_data, tiny_exact_model)
    assert np.array_equal(again, whole)  # the same machine decodes the same pixels


def test_a_round_trip_imports_no_tools_or_training_code():
    """The encode/decode path is the codec core: no compressai (seconds of imports),
    matplotlib, pytorch-msssim, bench or training code (checked in a fresh process)."""
    import subprocess
    import sys

    code = (
        "import sys, numpy as np, rdcodec\n"
        "data = rdcodec.encode(np.zeros((40, 56, 3), np.uint8), quality=3)\n"
        "rdcodec.decode(data)\n"
        "banned = ('compressai', 'matplotlib', 'pytorch_msssim', 'rdcodec.codec.bench',\n"
        "          'rdcodec.models.training', 'rdcodec.models.trainable', 'bjontegaard')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in banned or\n"
        "             any(m.startswith(b) for b in banned)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
