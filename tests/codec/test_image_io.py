"""read_image on hostile and unusual files: each refusal is one clear ImageError, each
conversion comes with a notice. Every file is made here, in tmp_path."""

from __future__ import annotations

import io
import os
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from rdcodec.codec import image_io
from rdcodec.codec.image_io import LoadedImage, read_image
from rdcodec.errors import ImageError

ALPHA_REFUSED = (
    "the image has an alpha channel, and this reads colour only "
    "(`rdcodec encode` codes alpha; here, composite it onto white: --drop-alpha)"
)


def _noise(height: int, width: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    array = rng.integers(0, 256, size=(height, width, channels), dtype=np.uint8)
    return array[:, :, 0] if channels == 1 else array


def _save(path: Path, array: np.ndarray, **params) -> Path:
    Image.fromarray(array).save(path, **params)
    return path


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png(
    width: int, height: int, bit_depth: int, color_type: int, idat: bytes, chunks: bytes = b""
) -> bytes:
    """A PNG written by hand, for what Pillow cannot save (16-bit RGB, huge sizes);
    ``chunks`` go before the pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + chunks
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def _refused(path: Path, match: str, **kwargs) -> str:
    with pytest.raises(ImageError, match=match) as info:
        read_image(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path))
    return message


# ---- files that are not images ------------------------------------------------------


def test_missing_file(tmp_path):
    assert (
        _refused(tmp_path / "nope.png", "no such file") == f"{tmp_path / 'nope.png'}: no such file"
    )


def test_directory(tmp_path):
    _refused(tmp_path, "is a directory, not an image")


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    assert _refused(path, "empty file") == f"{path}: empty file (0 bytes)"


def test_text_file_named_png(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("these are not pixels\n" * 20)
    _refused(path, r"not an image file \(unrecognised format, or a damaged header\)")


def test_png_signature_then_nothing(tmp_path):
    path = tmp_path / "stub.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n")
    _refused(path, "not an image file")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
@pytest.mark.parametrize("keep", [0.25, 0.5, 0.9])
def test_truncated_file_is_an_error_not_grey_pixels(tmp_path, fmt, keep):
    buf = io.BytesIO()
    Image.fromarray(_noise(64, 64)).save(buf, format=fmt)
    data = buf.getvalue()
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(data[: int(len(data) * keep)])
    _refused(path, f"cannot decode the {fmt} image, the file is truncated or damaged")


def test_truncation_is_an_error_even_when_pillow_is_set_lenient(tmp_path, monkeypatch):
    # Some other library in the process may have turned this on; we must not follow it.
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    buf = io.BytesIO()
    Image.fromarray(_noise(64, 64)).save(buf, format="JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    _refused(path, "truncated or damaged")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored


def test_corrupted_png_data(tmp_path):
    raw = b"".join(b"\x00" + bytes(range(48)) for _ in range(16))
    data = bytearray(_png(16, 16, 8, 2, zlib.compress(raw)))
    data[45:60] = b"\xff" * 15  # inside the zlib stream of IDAT (CRC left wrong too)
    path = tmp_path / "bad.png"
    path.write_bytes(bytes(data))
    _refused(path, "truncated or damaged")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads any file")
def test_permission_denied(tmp_path):
    path = _save(tmp_path / "secret.png", _noise(4, 4))
    path.chmod(0)
    try:
        assert _refused(path, "permission denied") == f"{path}: permission denied"
    finally:
        path.chmod(0o600)


def test_permission_denied_as_any_user(tmp_path, monkeypatch):
    # The chmod test above cannot run as root: make open() fail the way it would.
    path = _save(tmp_path / "secret.png", _noise(4, 4))

    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "open", refuse)
    assert _refused(path, "permission denied") == f"{path}: permission denied"


@pytest.mark.skipif(not os.path.exists("/dev/null"), reason="needs /dev/null")
def test_not_a_regular_file():
    with pytest.raises(ImageError, match="not a regular file"):
        read_image("/dev/null")


# ---- sizes ------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1, 1), (1, 5000), (5000, 1)])
def test_extreme_shapes_are_accepted(tmp_path, shape):
    array = _noise(*shape)
    loaded = read_image(_save(tmp_path / "thin.png", array))
    assert loaded.pixels.shape == (*shape, 3) and loaded.pixels.dtype == np.uint8
    np.testing.assert_array_equal(loaded.pixels, array.reshape(*shape, 3))
    assert loaded.notices == () and loaded.grayscale is False


def _bomb(path: Path, side: int) -> Path:
    """A real decompression bomb: a 1-bit PNG of side x side black pixels, in ~40 kB."""
    row = b"\x00" * (1 + -(-side // 8))
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    path.write_bytes(_png(side, side, 1, 0, idat))
    return path


def test_decompression_bomb_refused_before_decoding(tmp_path, monkeypatch):
    path = _bomb(tmp_path / "bomb.png", 20000)
    assert path.stat().st_size < 1_000_000

    def no_decoding(self):
        raise AssertionError("pixels were decoded before the size check")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    start = time.perf_counter()
    message = _refused(path, "--max-pixels")
    assert time.perf_counter() - start < 2
    assert message == (
        f"{path}: 20000x20000 is 400,000,000 pixels, above the limit of 100,000,000 "
        "(raise it with --max-pixels)"
    )


def test_max_pixels_is_inclusive(tmp_path):
    path = _save(tmp_path / "a.png", _noise(20, 30))
    assert read_image(path, max_pixels=600).pixels.shape == (20, 30, 3)
    _refused(path, "600 pixels, above the limit of 599 ", max_pixels=599)


def test_our_limit_replaces_pillows_and_is_restored(tmp_path, monkeypatch):
    # Pillow would raise DecompressionBombError at twice this: --max-pixels must win.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    path = _save(tmp_path / "a.png", _noise(40, 40))
    assert read_image(path).pixels.shape == (40, 40, 3)
    assert Image.MAX_IMAGE_PIXELS == 100


# ---- greyscale and bit depth ------------------------------------------------------------


def test_grayscale_is_coded_as_rgb_and_flagged(tmp_path):
    gray = _noise(9, 7, channels=1)
    loaded = read_image(_save(tmp_path / "g.png", gray))
    assert loaded == LoadedImage(loaded.pixels, True, (), None)
    np.testing.assert_array_equal(loaded.pixels, np.repeat(gray[:, :, None], 3, axis=2))


def test_bilevel_is_grayscale(tmp_path):
    bits = _noise(8, 8, channels=1) > 127
    path = tmp_path / "b.png"
    Image.fromarray(bits).save(path)
    loaded = read_image(path)
    assert loaded.grayscale and loaded.notices == ()
    np.testing.assert_array_equal(loaded.pixels[:, :, 1], np.where(bits, 255, 0))


def test_16_bit_grayscale_png(tmp_path):
    rng = np.random.default_rng(1)
    deep = rng.integers(0, 65536, size=(6, 10), dtype=np.uint16)
    deep[0, :4] = [0, 128, 129, 65535]  # rounding edges: 128/257 -> 0, 129/257 -> 1
    path = _save(tmp_path / "g16.png", deep)
    assert Image.open(path).mode == "I;16"
    loaded = read_image(path)
    assert loaded.grayscale is True
    assert loaded.notices == ("16-bit image converted to 8 bits",)
    expected = np.rint(deep / 257).astype(np.uint8)
    np.testing.assert_array_equal(loaded.pixels, np.repeat(expected[:, :, None], 3, axis=2))
    assert list(loaded.pixels[0, :4, 0]) == [0, 0, 1, 255]


def test_16_bit_rgb_png(tmp_path):
    # Pillow cannot write 16-bit RGB: write the PNG by hand. Samples k*257 make the
    # 8-bit value k whichever way the 16 bits are reduced.
    eight = _noise(5, 4, seed=3)
    deep = eight.astype(">u2") * 257
    raw = b"".join(b"\x00" + deep[r].tobytes() for r in range(5))
    path = tmp_path / "rgb16.png"
    path.write_bytes(_png(4, 5, 16, 2, zlib.compress(raw)))
    loaded = read_image(path)
    assert loaded.notices == ("16-bit image converted to 8 bits",) and not loaded.grayscale
    np.testing.assert_array_equal(loaded.pixels, eight)


def test_32_bit_integer_samples_refused(tmp_path):
    path = _save(tmp_path / "i32.tif", np.full((4, 4), 1 << 20, dtype=np.int32))
    _refused(path, "32-bit samples are not supported")


def test_32_bit_integers_are_refused_in_the_8_bit_range_too(tmp_path):
    # Read as 16 bits, 0..255 came out nearly black with a false "16-bit" notice.
    ramp = np.arange(256, dtype=np.int32).reshape(16, 16)
    path = _save(tmp_path / "i32.tif", ramp)
    assert Image.open(path).mode == "I"
    _refused(path, "32-bit samples are not supported")
    with pytest.raises(ImageError, match="32-bit samples are not supported"):
        image_io.to_rgb(Image.fromarray(ramp * 65536))  # no layout, out of 16 bits


def test_16_bit_samples_in_the_32_bit_mode_read_where_the_layout_is_lost(tmp_path):
    # A 16-bit PGM opens in mode I; cropped or copied, Pillow no longer says its file
    # held 16 bits: samples within 16 bits are read as 16-bit, as before.
    deep = np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000
    path = _save(tmp_path / "g16.pgm", deep)
    with Image.open(path) as im:
        whole = read_image(path).pixels
        np.testing.assert_array_equal(image_io.to_rgb(im.copy()), whole)
        np.testing.assert_array_equal(image_io.to_rgb(im.crop((0, 0, 2, 2))), whole[:2, :2])


def test_16_bit_pgm_opened_in_the_32_bit_mode_still_reads(tmp_path):
    deep = np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000
    path = _save(tmp_path / "g16.pgm", deep)
    assert Image.open(path).mode == "I"  # Pillow's 32-bit mode; the file says 16 bits
    loaded = read_image(path)
    assert loaded.grayscale and loaded.notices == ("16-bit image converted to 8 bits",)
    expected = ((deep.astype(int) + 128) // 257).astype(np.uint8)
    np.testing.assert_array_equal(loaded.pixels[..., 0], expected)
    with Image.open(path) as im:
        im.load()  # Pillow forgets the file's 16 bits: its header is read again
        np.testing.assert_array_equal(image_io.to_rgb(im), loaded.pixels)


def test_float_samples_refused(tmp_path):
    path = _save(tmp_path / "f.tif", np.full((4, 4), 0.5, dtype=np.float32))
    _refused(path, "floating-point samples are not supported")


# ---- transparency ---------------------------------------------------------------------


def _rgba(alpha: np.ndarray) -> np.ndarray:
    return np.dstack([_noise(*alpha.shape, seed=5), alpha]).astype(np.uint8)


def test_rgba_with_transparency_refused(tmp_path):
    alpha = np.full((6, 6), 255, np.uint8)
    alpha[2, 3] = 254
    path = _save(tmp_path / "a.png", _rgba(alpha))
    assert _refused(path, "alpha channel") == f"{path}: {ALPHA_REFUSED}"


def test_rgba_with_transparency_composited_onto_white(tmp_path):
    alpha = np.array([[0, 128], [255, 255]], np.uint8)
    rgba = _rgba(alpha)
    rgba[0, 1, :3] = [0, 100, 200]
    loaded = read_image(_save(tmp_path / "a.png", rgba), drop_alpha=True)
    assert loaded.notices == ("alpha channel composited onto white (2 of 4 pixels not opaque)",)
    assert list(loaded.pixels[0, 0]) == [255, 255, 255]  # fully transparent -> white
    assert list(loaded.pixels[0, 1]) == [127, 177, 227]  # (c*128 + 255*127) / 255, rounded
    np.testing.assert_array_equal(loaded.pixels[1], rgba[1, :, :3])  # opaque: untouched


def test_opaque_alpha_is_dropped_silently(tmp_path):
    rgba = _rgba(np.full((7, 5), 255, np.uint8))
    loaded = read_image(_save(tmp_path / "a.png", rgba))
    assert loaded.notices == () and not loaded.grayscale
    np.testing.assert_array_equal(loaded.pixels, rgba[:, :, :3])


def test_gray_alpha_refused_then_composited(tmp_path):
    la = np.dstack([_noise(4, 4, channels=1), np.full((4, 4), 255, np.uint8)])
    la[0, 0, 1] = 0
    path = tmp_path / "la.png"
    Image.fromarray(la).save(path)
    assert Image.open(path).mode == "LA"
    _refused(path, "--drop-alpha")
    loaded = read_image(path, drop_alpha=True)
    assert loaded.grayscale is True
    assert list(loaded.pixels[0, 0]) == [255, 255, 255]
    assert len(loaded.notices) == 1 and "onto white" in loaded.notices[0]


def test_16_bit_gray_alpha_is_still_grayscale(tmp_path):
    # Pillow opens a 16-bit LA PNG as 8-bit RGBA; the flag must still say greyscale.
    raw = b"".join(
        b"\x00" + (np.array([[v * 257, 65535] for v in range(4)], ">u2")).tobytes()
        for _ in range(3)
    )
    path = tmp_path / "la16.png"
    path.write_bytes(_png(4, 3, 16, 4, zlib.compress(raw)))
    loaded = read_image(path)
    assert loaded.grayscale is True and loaded.notices == ("16-bit image converted to 8 bits",)
    assert list(loaded.pixels[0, :, 0]) == [0, 1, 2, 3]


def test_16_bit_grey_transparency_key_is_matched_on_16_bits(tmp_path):
    deep = np.full((4, 6), 40000, np.uint16)
    deep[0, :3] = [1000, 1001, 999]  # one step apart: only the key itself is see-through
    path = _save(tmp_path / "k16.png", deep, transparency=1000)
    loaded = read_image(path, keep_alpha=True)
    expected = np.full((4, 6), 255, np.uint8)
    expected[0, 0] = 0
    np.testing.assert_array_equal(loaded.alpha, expected)
    assert loaded.grayscale and loaded.notices == ("16-bit image converted to 8 bits",)
    _refused(path, "alpha channel")  # transparency, not opaque pixels


@pytest.mark.parametrize("orientation", [1, 6])
def test_16_bit_rgb_transparency_key_is_matched_on_16_bits(tmp_path, orientation):
    # Pillow keeps the high byte of each sample and compares its 16-bit key with those.
    deep = np.full((3, 4, 3), 40000, ">u2")
    deep[0, 0] = deep[2, 1] = [1000, 2000, 3000]  # the key
    deep[0, 1] = [1000, 2000, 3001]  # the same high bytes
    raw = b"".join(b"\x00" + deep[r].tobytes() for r in range(3))
    exif = Image.Exif()
    exif[0x0112] = orientation
    chunks = _png_chunk(b"tRNS", struct.pack(">3H", 1000, 2000, 3000))
    chunks += _png_chunk(b"eXIf", exif.tobytes()[6:])  # without "Exif\0\0"
    path = tmp_path / "k16rgb.png"
    path.write_bytes(_png(4, 3, 16, 2, zlib.compress(raw), chunks))
    stored = np.full((3, 4), 255, np.uint8)
    stored[0, 0] = stored[2, 1] = 0
    loaded = read_image(path, keep_alpha=True)

    def turn(array: np.ndarray) -> np.ndarray:  # what orientation 6 asks of a viewer
        return np.rot90(array, k=-1) if orientation == 6 else array

    np.testing.assert_array_equal(loaded.alpha, turn(stored))
    np.testing.assert_array_equal(loaded.pixels, turn(deep >> 8))  # Pillow's high bytes
    with Image.open(path) as im:  # through the API, which keeps the stored orientation
        np.testing.assert_array_equal(image_io.split_alpha(im)[1], stored)


def test_2_bit_grey_transparency_key_is_scaled_with_the_samples(tmp_path):
    raw = b"\x00" + bytes([0b00_01_10_11])  # samples 0, 1, 2, 3
    path = tmp_path / "k2.png"
    path.write_bytes(_png(4, 1, 2, 0, zlib.compress(raw), _png_chunk(b"tRNS", b"\x00\x01")))
    loaded = read_image(path, keep_alpha=True)
    assert list(loaded.pixels[0, :, 0]) == [0, 85, 170, 255]
    assert list(loaded.alpha[0]) == [255, 0, 255, 255]


def _palette(path: Path, transparency: int | None) -> tuple[Path, np.ndarray]:
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[:, 3:] = [200, 10, 30]
    rgb[0, 0] = [0, 255, 0]
    im = Image.fromarray(rgb).quantize(colors=3)
    im.save(path, **({} if transparency is None else {"transparency": transparency}))
    with Image.open(path) as check:
        assert check.mode == "P"
    return path, np.asarray(im.convert("RGB"))


def test_palette_png_becomes_rgb(tmp_path):
    path, rgb = _palette(tmp_path / "p.png", None)
    loaded = read_image(path)
    assert loaded.notices == () and not loaded.grayscale
    np.testing.assert_array_equal(loaded.pixels, rgb)


def test_palette_png_with_transparency_follows_the_alpha_rule(tmp_path):
    path, rgb = _palette(tmp_path / "p.png", None)
    used = int(np.asarray(Image.open(path))[0, 0])
    path, _ = _palette(tmp_path / "pt.png", used)
    _refused(path, "alpha channel")
    loaded = read_image(path, drop_alpha=True)
    assert list(loaded.pixels[0, 0]) == [255, 255, 255]
    np.testing.assert_array_equal(loaded.pixels[1:], rgb[1:])


def test_palette_png_with_unused_transparent_index_is_opaque(tmp_path):
    path, rgb = _palette(tmp_path / "p.png", 255)  # index 255 is not in a 3-colour palette
    loaded = read_image(path)
    assert loaded.notices == ()
    np.testing.assert_array_equal(loaded.pixels, rgb)


# ---- colour ---------------------------------------------------------------------------


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    cmyk = np.zeros((16, 16, 4), np.uint8)
    cmyk[:, :8, 0] = 255  # cyan on the left, white paper on the right
    path = tmp_path / "c.jpg"
    Image.frombytes("CMYK", (16, 16), cmyk.tobytes()).save(path, quality=95)
    loaded = read_image(path)
    assert loaded.notices == (image_io.NOTICE_CMYK,)
    assert loaded.notices[0] == "CMYK image converted to RGB (plain formula, not colour-managed)"
    assert np.abs(loaded.pixels[:, :8].astype(int) - [0, 255, 255]).max() <= 8
    assert np.abs(loaded.pixels[:, 8:].astype(int) - 255).max() <= 8


def test_icc_profile_is_kept_to_be_stored(tmp_path):
    profile = b"\x00\x00\x01\x00not a real profile, only bytes to carry" * 4
    array = _noise(5, 5)
    loaded = read_image(_save(tmp_path / "icc.png", array, icc_profile=profile))
    assert loaded.icc_profile == profile
    assert loaded.notices == ()  # stored in the file's ICCP chunk: nothing to warn about
    np.testing.assert_array_equal(loaded.pixels, array)


def test_no_icc_profile(tmp_path):
    assert read_image(_save(tmp_path / "a.png", _noise(3, 3))).icc_profile is None


# ---- orientation ----------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["png", "jpg"])
def test_exif_orientation_is_applied(tmp_path, fmt):
    array = _noise(10, 30)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = _save(tmp_path / f"o.{fmt}", array, exif=exif)
    loaded = read_image(path)
    assert loaded.pixels.shape == (30, 10, 3)
    assert loaded.notices == ("EXIF orientation 6 applied (rotated to display orientation)",)
    if fmt == "png":  # lossless: the exact rotation
        np.testing.assert_array_equal(loaded.pixels, np.rot90(array, k=-1))


def test_orientation_1_is_no_change(tmp_path):
    array = _noise(10, 30)
    exif = Image.Exif()
    exif[0x0112] = 1
    loaded = read_image(_save(tmp_path / "o.png", array, exif=exif))
    assert loaded.notices == ()
    np.testing.assert_array_equal(loaded.pixels, array)


# ---- the helpers the CLI keeps using --------------------------------------------------


def test_loaded_image_is_frozen(tmp_path):
    loaded = read_image(_save(tmp_path / "a.png", _noise(3, 4)))
    assert (loaded.height, loaded.width) == (3, 4)
    with pytest.raises(AttributeError):
        loaded.grayscale = True


def test_to_rgb_composites_alpha_without_refusing():
    rgba = Image.fromarray(np.array([[[10, 20, 30, 0]]], np.uint8))
    assert to_list(image_io.to_rgb(rgba)) == [[[255, 255, 255]]]
    gray16 = Image.fromarray(np.array([[65535, 257]], np.uint16))
    assert to_list(image_io.to_rgb(gray16)) == [[[255, 255, 255], [1, 1, 1]]]


def test_api_images_that_cannot_be_coded_are_image_errors(tmp_path, tiny_model):
    from rdcodec.codec import pipeline

    buf = io.BytesIO()
    Image.fromarray(_noise(64, 64)).save(buf, format="PNG")
    path = tmp_path / "cut.png"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with Image.open(path) as im, pytest.raises(ImageError, match="truncated or damaged") as info:
        pipeline.encode(im, 1, tiny_model)
    assert "\n" not in str(info.value)
    with pytest.raises(ImageError, match=r"^image has no pixels \(0x5\)$"):
        pipeline.encode(Image.new("RGB", (0, 5)), 1, tiny_model)


def to_list(array: np.ndarray) -> list:
    assert array.dtype == np.uint8 and array.ndim == 3 and array.shape[2] == 3
    return array.tolist()


def test_save_image_round_trips_and_refuses_overwrite(tmp_path):
    array = _noise(4, 5)
    path = tmp_path / "out.png"
    image_io.save_image(path, array)
    np.testing.assert_array_equal(read_image(path).pixels, array)
    with pytest.raises(image_io.OutputError, match="already exists"):
        image_io.save_image(path, array)
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]  # no temporary left behind


def test_outputs_get_ordinary_file_permissions(tmp_path):
    import os
    import stat

    from rdcodec.codec import image_io

    mask = os.umask(0o022)
    try:
        out = tmp_path / "out.bin"
        image_io.write_bytes(out, b"data")
        assert stat.S_IMODE(out.stat().st_mode) == 0o644  # not mkstemp's 0600
        os.umask(0o077)
        image_io.write_bytes(out, b"more", force=True)
        assert stat.S_IMODE(out.stat().st_mode) == 0o600
    finally:
        os.umask(mask)
