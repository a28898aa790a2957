"""The Pillow face of the format (codec/pillow_plugin.py): Image.open, load, verify, save.

Round trips use the shipped default model on small crops; option checks and the
"model not installed" case use the tiny model.
"""

from __future__ import annotations

import gc
import io
import struct
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, UnidentifiedImageError

from rdcodec.codec import container, pillow_plugin, pipeline
from rdcodec.codec.metrics import psnr
from rdcodec.errors import CodecError
from rdcodec.models.registry import default_model_name, find_entry

IMAGES = Path(__file__).parents[1] / "images"


@pytest.fixture(scope="module", autouse=True)
def registered():
    """Register for this module's tests, then put Pillow's tables back as they were, so
    that other tests see Pillow without the plugin."""
    Image.init()
    saved = (
        list(Image.ID),
        dict(Image.OPEN),
        dict(Image.SAVE),
        dict(Image.EXTENSION),
        dict(Image.MIME),
    )
    pillow_plugin.register_pillow()
    yield
    Image.ID[:] = saved[0]
    for table, before in zip(
        (Image.OPEN, Image.SAVE, Image.EXTENSION, Image.MIME), saved[1:], strict=True
    ):
        table.clear()
        table.update(before)


@pytest.fixture(scope="module")
def crop() -> Image.Image:
    """A 96x64 RGB crop of coffee.png: fast to code with the shipped model."""
    with Image.open(IMAGES / "coffee.png") as im:
        return im.convert("RGB").crop((64, 48, 160, 112))


@pytest.fixture(scope="module")
def rdc_file(tmp_path_factory, crop) -> Path:
    """``crop`` saved through Pillow at quality 5."""
    path = tmp_path_factory.mktemp("rdc") / "crop.rdc"
    crop.save(path, quality=5)
    return path


@pytest.fixture(scope="module")
def tiny_file(tiny_model, crop) -> bytes:
    """A file from the tiny model (wire id 250), which no install ships."""
    return pipeline.encode(crop, 1, tiny_model)


# ---- registration -------------------------------------------------------------------
def _run(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_register_is_idempotent_and_does_not_import_torch(rdc_file):
    code = (
        "import sys, rdcodec\n"
        "from PIL import Image\n"
        "rdcodec.register_pillow(); rdcodec.register_pillow()\n"
        f"with Image.open({str(rdc_file)!r}) as im:\n"
        "    print(im.format, im.size, im.mode, Image.ID.count('RDC'), 'torch' in sys.modules)\n"
    )
    assert _run(code) == "RDC (96, 64) RGB 1 False"


def test_importing_pillow_register_registers():
    code = (
        "import rdcodec.codec.pillow_register\n"
        "from PIL import Image\n"
        "print(Image.registered_extensions()['.rdc'], Image.MIME['RDC'], 'RDC' in Image.SAVE)\n"
    )
    assert _run(code) == "RDC image/x-rdc True"


# ---- opening and loading ---------------------------------------------------------------
def test_open_reads_the_header_without_decoding(rdc_file, monkeypatch):
    calls = []
    monkeypatch.setattr(pillow_plugin, "_decode", lambda data: calls.append(data))
    with Image.open(rdc_file) as im:
        assert isinstance(im, pillow_plugin.RdcImageFile)
        assert (im.format, im.size, im.mode) == ("RDC", (96, 64), "RGB")
        assert im.get_format_mimetype() == "image/x-rdc"
        default = find_entry(default_model_name())
        assert im.info == {"model": default["name"], "model_id": default["wire_id"], "quality": 5.0}
        im.verify()  # checks lengths and CRC, decodes nothing
    assert calls == []


def test_load_decodes_once_to_the_pipelines_pixels(rdc_file, monkeypatch):
    calls = []
    decode = pillow_plugin._decode
    monkeypatch.setattr(pillow_plugin, "_decode", lambda data: calls.append(1) or decode(data))
    with Image.open(rdc_file) as im:
        im.load()
        im.load()
        pixels = np.asarray(im)
        assert im.fp is None  # the file was closed after loading
    assert len(calls) == 1
    np.testing.assert_array_equal(pixels, pipeline.decode_array(rdc_file.read_bytes()))


def test_round_trip_quality(rdc_file, crop):
    with Image.open(rdc_file) as im:
        decoded = np.asarray(im.convert("RGB"))
    assert decoded.shape == (64, 96, 3)
    assert psnr(np.asarray(crop), decoded) > 26
    assert rdc_file.stat().st_size < 96 * 64 * 3 / 10  # and well compressed


def test_same_file_pointer_opened_twice(rdc_file):
    with open(rdc_file, "rb") as fp:
        first = Image.open(fp)
        second = Image.open(fp)
        first.load()
        second.load()
        assert not fp.closed  # Pillow closes only the files it opened
        np.testing.assert_array_equal(np.asarray(first), np.asarray(second))


def test_open_at_an_offset_in_a_stream(rdc_file):
    data = rdc_file.read_bytes()
    stream = io.BytesIO(data)
    with Image.open(stream) as im:
        stream.seek(17)  # someone else moved the shared pointer before load()
        im.load()
        assert im.size == (96, 64)


def test_no_resource_warning(rdc_file):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Image.open(rdc_file) as im:
            im.load()
        with Image.open(rdc_file) as im:
            assert im.size == (96, 64)  # never loaded, closed by the with
        im = Image.open(rdc_file)
        im.load()  # load() closes a file Pillow opened itself
        del im
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


def test_thumbnail(rdc_file):
    with Image.open(rdc_file) as im:
        im.thumbnail((32, 32))
        assert im.size == (32, 21) and im.mode == "RGB"


# ---- files Pillow must not take for .rdc, and broken ones -------------------------------
def test_non_rdc_files_are_unidentified(tmp_path):
    text = tmp_path / "notes.rdc"
    text.write_text("not an image at all\n")
    with pytest.raises(UnidentifiedImageError):
        Image.open(text)
    with pytest.raises(UnidentifiedImageError):
        Image.open(IMAGES / "coffee.png", formats=["RDC"])


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: d[:20],  # the header cut short
        lambda d: d[:4] + b"\x07" + d[5:],  # a format version we do not read
        lambda d: d[:6] + b"\x80" + d[7:],  # unknown flags
        lambda d: d[:15] + bytes(4) + d[19:],  # height 0
    ],
    ids=["short-header", "version", "flags", "zero-height"],
)
def test_damaged_header_is_unidentified(rdc_file, damage):
    with pytest.raises(UnidentifiedImageError):
        Image.open(io.BytesIO(damage(rdc_file.read_bytes())))


def _broken(data: bytes, how: str) -> bytes:
    if how == "truncated":
        return data[:-30]
    flipped = bytearray(data)
    flipped[container.HEADER_BYTES + 3] ^= 0x10  # a payload byte: the CRC no longer matches
    return bytes(flipped)


@pytest.mark.parametrize(("how", "says"), [("truncated", "truncated"), ("corrupt", "CRC")])
def test_broken_file_raises_oserror_on_load(rdc_file, how, says):
    with Image.open(io.BytesIO(_broken(rdc_file.read_bytes(), how))) as im:
        assert im.size == (96, 64)  # the header alone is fine
        with pytest.raises(OSError, match=says) as info:
            im.load()
    assert not isinstance(info.value, CodecError)
    assert info.value.__cause__ is None and info.value.__suppress_context__


@pytest.mark.parametrize("how", ["truncated", "corrupt"])
def test_verify_refuses_a_broken_file(rdc_file, how):
    with Image.open(io.BytesIO(_broken(rdc_file.read_bytes(), how))) as im:
        with pytest.raises(SyntaxError, match="broken RDC file"):
            im.verify()


def test_file_of_a_model_not_installed(tiny_file):
    with Image.open(io.BytesIO(tiny_file)) as im:
        assert im.info["model"] is None and im.info["model_id"] == 250
        assert im.size == (96, 64)
        with pytest.raises(OSError, match="no installed model"):
            im.load()


# ---- saving ----------------------------------------------------------------------------
def test_save_to_a_path_and_to_a_stream(tmp_path, crop):
    path = tmp_path / "out.rdc"
    crop.save(path, quality=3)  # format from the extension
    stream = io.BytesIO()
    crop.save(stream, format="RDC", quality=3)
    assert path.read_bytes() == stream.getvalue() == pipeline.encode(np.asarray(crop), 3)


def test_save_with_a_model_object_and_effort_0(tmp_path, crop, tiny_model):
    stream = io.BytesIO()
    crop.save(stream, format="RDC", model=tiny_model, quality=1.5, effort=0)
    header = pipeline.read_header(stream.getvalue())
    assert (header.model_id, header.quality, header.grayscale) == (250, 1.5, False)


def test_save_at_a_target_bpp(crop):
    stream = io.BytesIO()
    crop.convert("L").crop((0, 0, 48, 32)).save(stream, format="RDC", target_bpp=0.8)
    data = stream.getvalue()
    assert 8 * len(data) / (48 * 32) <= 0.8
    assert pipeline.read_header(data).grayscale


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"quality": 0}, "between 1 and"),
        ({"quality": 99}, "between 1 and"),
        ({"quality": "5"}, "must be a number"),
        ({"quality": True}, "must be a number"),
        ({"quality": float("nan")}, "must be a number"),
        ({"quality": 3, "target_bpp": 0.5}, "not both"),
        ({"target_bpp": -1}, "positive"),
        ({"target_bpp": 0.0001}, "below the lowest"),
        ({"model": "no-such-model"}, "no installed model"),
        ({"model": 3}, "model must be"),
        ({"effort": -1}, "effort must be"),
        ({"effort": 99}, "effort must be"),
        ({"effort": 1.5}, "effort must be"),
    ],
)
def test_save_refuses_bad_options(crop, options, says):
    with pytest.raises(ValueError, match=says):
        crop.crop((0, 0, 16, 16)).save(io.BytesIO(), format="RDC", **options)


def test_greyscale_stays_greyscale(crop):
    grey = crop.convert("L")
    stream = io.BytesIO()
    grey.save(stream, format="RDC", quality=6)
    with Image.open(stream) as im:
        assert im.mode == "L"  # before load, from the header's flag
        im.load()
        assert im.mode == "L" and im.size == (96, 64)
        decoded = np.asarray(im)
    assert decoded.shape == (64, 96)
    assert psnr(np.asarray(grey)[..., None], decoded[..., None]) > 26


def _with_alpha(crop: Image.Image, mode: str, see_through: bool) -> Image.Image:
    im = crop.convert("RGBA")
    alpha = np.full((64, 96), 255, np.uint8)
    if see_through:
        alpha[:, :20] = 0
    im.putalpha(Image.fromarray(alpha))
    return im.convert(mode)


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_transparency_round_trips_exactly(crop, mode):
    source = _with_alpha(crop, mode, True)
    stream = io.BytesIO()
    source.save(stream, format="RDC", quality=5)
    with Image.open(stream) as im:
        assert im.mode == mode  # known from the header, before decoding
        im.load()
        assert im.mode == mode
        assert np.array_equal(np.asarray(im.getchannel("A")), np.asarray(source.getchannel("A")))


def _la16_png(path: Path, grey: np.ndarray, alpha: np.ndarray) -> Path:
    """A 16-bit grey-alpha PNG, written by hand (Pillow cannot save one)."""
    samples = np.dstack([grey, alpha]).astype(">u2") * 257
    raw = b"".join(b"\x00" + row.tobytes() for row in samples)
    height, width = grey.shape

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 16, 4, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )
    return path


def test_16_bit_grey_alpha_png_stays_grey_as_on_the_command_line(tmp_path, crop):
    # Pillow opens it as RGBA, and save() loads it first, which forgets the file's layout.
    grey = np.asarray(crop.convert("L"))[:32, :48]
    alpha = np.full(grey.shape, 255, np.uint8)
    alpha[:, :10] = 0
    path = _la16_png(tmp_path / "la16.png", grey, alpha)
    with Image.open(path) as im:
        assert im.mode == "RGBA"
        stream = io.BytesIO()
        im.save(stream, format="RDC", quality=5)
    with Image.open(stream) as im:
        assert im.mode == "LA"
        assert np.array_equal(np.asarray(im.getchannel("A")), alpha)
    with Image.open(path) as im:  # the API decides as the plugin does
        assert pipeline.decode(pipeline.encode(im, 5)).mode == "LA"
    with Image.open(path) as im:  # coloured in since it was opened: colour is kept
        im.load()
        im.putpixel((20, 5), (255, 0, 0, 255))
        stream = io.BytesIO()
        im.save(stream, format="RDC", quality=5)
    with Image.open(stream) as im:
        assert im.mode == "RGBA"


def test_what_was_converted_is_said_as_notices(crop):
    from rdcodec.errors import CodecNotice

    cmyk = crop.convert("CMYK")
    with pytest.warns(CodecNotice, match="CMYK"):
        cmyk.save(io.BytesIO(), format="RDC", quality=5)
    with pytest.warns(CodecNotice, match="CMYK"):
        pipeline.encode(cmyk, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CodecNotice)
        pipeline.encode(crop, 5)  # nothing to say


def test_numpy_numbers_are_options(crop):
    plain, numpy_options = io.BytesIO(), io.BytesIO()
    crop.save(plain, format="RDC", quality=5)
    crop.save(numpy_options, format="RDC", quality=np.float32(5))
    assert numpy_options.getvalue() == plain.getvalue()
    with pytest.raises(ValueError, match="quality must be a number"):
        crop.save(io.BytesIO(), format="RDC", quality=True)


def test_palette_transparency_is_coded(crop):
    palette = crop.convert("P")
    palette.info["transparency"] = 0
    stream = io.BytesIO()
    palette.save(stream, format="RDC", quality=3)
    with Image.open(stream) as im:
        expected = np.asarray(palette.convert("RGBA").getchannel("A"))
        assert im.mode == "RGBA" and np.array_equal(np.asarray(im.getchannel("A")), expected)


def test_icc_exif_and_xmp_come_back_in_info(crop):
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x010F] = "TestCam"
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF/></x:xmpmeta>'
    stream = io.BytesIO()
    crop.save(stream, format="RDC", quality=3, icc_profile=icc, exif=exif, xmp=xmp)
    with Image.open(stream) as im:
        assert im.info["icc_profile"] == icc and im.info["xmp"] == xmp
        assert im.getexif()[0x010F] == "TestCam"
    stripped = io.BytesIO()
    crop.save(stripped, format="RDC", quality=3, icc_profile=icc, xmp=xmp, strip=True)
    with Image.open(stripped) as im:
        assert "icc_profile" not in im.info and "xmp" not in im.info


def test_drop_alpha_composites_onto_white(crop):
    stream = io.BytesIO()
    _with_alpha(crop, "RGBA", True).save(stream, format="RDC", quality=5, drop_alpha=True)
    with Image.open(stream) as im:
        decoded = np.asarray(im)
    assert decoded[:, :16].mean() > 240  # the see-through columns came out white
    assert decoded[:, 40:].mean() < 200


def test_opaque_alpha_loses_nothing_and_is_accepted(crop):
    opaque, plain = io.BytesIO(), io.BytesIO()
    _with_alpha(crop, "RGBA", False).save(opaque, format="RDC", quality=3)
    crop.save(plain, format="RDC", quality=3)
    assert opaque.getvalue() == plain.getvalue()


def test_unsupported_mode_is_an_oserror(crop):
    floats = crop.convert("L").convert("F")
    with pytest.raises(OSError, match="mode F"):
        floats.save(io.BytesIO(), format="RDC", quality=3)
