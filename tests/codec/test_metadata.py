"""What a photo carries besides its pixels: ICC profile, EXIF, XMP and transparency,
stored as chunks (container format version 2) and given back on decode."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageCms, PngImagePlugin
from PIL.PngImagePlugin import PngInfo

from rdcodec.cli.main import main
from rdcodec.codec import container, image_io, pipeline
from rdcodec.errors import BitstreamError

IMAGES = Path(__file__).parents[1] / "images"
XMP = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><rdf:Description/></rdf:RDF></x:xmpmeta>'


def _icc() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _icc_of(space: bytes) -> bytes:
    """The sRGB profile with another colour space in its header (bytes 16:20)."""
    return _icc()[:16] + space + _icc()[20:]


def _crop(size: int = 32) -> Image.Image:
    with Image.open(IMAGES / "coffee.png") as im:
        return im.convert("RGB").crop((0, 0, size, size))


def _alpha(height: int, width: int) -> np.ndarray:
    yy, xx = np.mgrid[:height, :width]
    alpha = np.where((yy - height / 2) ** 2 + (xx - width / 2) ** 2 < (height / 3) ** 2, 255, 0)
    alpha[: height // 4] = 128  # a soft band too
    return alpha.astype(np.uint8)


@pytest.fixture
def tagged_png(tmp_path) -> Path:
    """A 96x64 RGBA PNG with an ICC profile, EXIF (orientation 6, a camera name) and XMP."""
    with Image.open(IMAGES / "coffee.png") as im:
        rgba = im.convert("RGB").crop((0, 0, 96, 64))
    rgba.putalpha(Image.fromarray(_alpha(64, 96)))
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "TestCam"
    info = PngInfo()
    info.add_itxt("XML:com.adobe.xmp", XMP.decode())
    path = tmp_path / "tagged.png"
    rgba.save(path, icc_profile=_icc(), exif=exif, pnginfo=info)
    return path


def test_metadata_and_alpha_round_trip_through_the_commands(tagged_png, tmp_path):
    rdc, png = tmp_path / "t.rdc", tmp_path / "back.png"
    result = CliRunner().invoke(main, ["encode", str(tagged_png), str(rdc), "--no-jpeg"])
    assert result.exit_code == 0, result.output
    assert "metadata " in result.output and "alpha " in result.output  # in the rate line
    assert CliRunner().invoke(main, ["decode", str(rdc), str(png)]).exit_code == 0
    with Image.open(tagged_png) as source, Image.open(png) as back:
        upright = image_io.read_image(tagged_png, keep_alpha=True)
        assert back.mode == "RGBA" and back.size == (64, 96)  # rotated upright
        assert np.array_equal(np.asarray(back.getchannel("A")), upright.alpha)
        assert back.info["icc_profile"] == source.info["icc_profile"]
        assert back.info["xmp"] == XMP
        tags = back.getexif()
        assert tags[0x010F] == "TestCam" and tags[0x0112] == 1  # no viewer rotates twice


def test_strip_drops_the_metadata_but_keeps_alpha(tagged_png, tmp_path):
    rdc = tmp_path / "s.rdc"
    result = CliRunner().invoke(main, ["encode", str(tagged_png), str(rdc), "--no-jpeg", "--strip"])
    assert result.exit_code == 0, result.output
    header, _, _ = container.unpack(rdc.read_bytes())
    assert [tag for tag, _ in header.chunks] == [b"ALPH"]


def test_target_bpp_keeps_the_chunks_and_counts_them(coffee):
    extras = pipeline.Extras(icc_profile=_icc(), xmp=XMP, alpha=_alpha(160, 240))
    for effort in (0, 1):
        quality, data = pipeline.encode_at_bpp(coffee, 0.8, effort=effort, extras=extras)
        header, _, _ = container.unpack(data)
        assert [tag for tag, _ in header.chunks] == [b"ICCP", b"XMP_", b"ALPH"]
        assert 8 * len(data) / (160 * 240) <= 0.8  # the metadata's bytes are in the file


def test_a_photo_without_metadata_is_a_version_1_file(coffee):
    data = pipeline.encode(coffee, 5)
    assert data[4] == container.FORMAT_VERSION
    assert data == pipeline.encode(coffee, 5, extras=pipeline.Extras())


def test_lossless_alpha_is_smaller_than_coding_it_as_a_picture():
    """Why alpha is coded losslessly: a typical mask (a shape with a soft band) costs
    less as a deflated PNG than as a greyscale rdcodec picture, which also blurs it."""
    alpha = _alpha(160, 240)
    lossless = len(pipeline.alpha_chunk(alpha))
    lossy = pipeline.encode(np.repeat(alpha[..., None], 3, axis=2), 5, grayscale=True)
    assert lossless < len(lossy)
    decoded = pipeline.decode_array(lossy)[..., 0]
    assert np.abs(decoded.astype(int) - alpha).max() > 16


def test_oversized_and_malformed_metadata_are_dropped_with_a_notice(tmp_path, monkeypatch):
    monkeypatch.setattr(image_io, "MAX_METADATA_BYTES", 100)
    with Image.open(IMAGES / "coffee.png") as im:
        rgb = im.convert("RGB").crop((0, 0, 64, 64))
    big = tmp_path / "big.png"
    rgb.save(big, icc_profile=_icc())  # a few hundred bytes: over the patched limit
    loaded = image_io.read_image(big)
    assert loaded.icc_profile is None and any("ICC profile" in n for n in loaded.notices)
    bad = tmp_path / "bad.jpg"
    rgb.save(bad, exif=b"Exif\x00\x00MM\x00*garbage")
    loaded = image_io.read_image(bad)
    assert loaded.exif is None and "malformed EXIF dropped" in loaded.notices
    result = CliRunner().invoke(main, ["encode", str(bad), str(tmp_path / "b.rdc"), "--no-jpeg"])
    assert result.exit_code == 0, result.output
    assert "malformed EXIF dropped" in result.stderr


def test_png_metadata_over_pillows_1_mib_is_kept_and_pillow_left_as_it_was(tmp_path):
    # Pillow alone refuses the whole file (PngImagePlugin.MAX_TEXT_CHUNK, 1 MiB).
    icc = _icc() + bytes(2 << 20)
    info = PngInfo()
    xmp = XMP + b" " * (2 << 20)
    info.add_itxt("XML:com.adobe.xmp", xmp.decode(), zip=True)
    big = tmp_path / "big.png"
    _crop().save(big, icc_profile=icc, pnginfo=info)
    before = PngImagePlugin.MAX_TEXT_CHUNK
    loaded = image_io.read_image(big)
    assert loaded.icc_profile == icc and loaded.xmp == xmp and loaded.notices == ()
    assert PngImagePlugin.MAX_TEXT_CHUNK == before
    huge = tmp_path / "huge.png"
    _crop().save(huge, icc_profile=_icc() + bytes(5 << 20))  # over 4 MiB: dropped
    loaded = image_io.read_image(huge)
    assert loaded.icc_profile is None
    assert loaded.notices == ("ICC profile of 5,243,468 bytes dropped (over the limit)",)


def test_a_tiff_carries_exif_only_where_it_has_some(tmp_path):
    plain = tmp_path / "plain.tif"
    _crop().save(plain)
    assert image_io.read_image(plain).exif is None  # its sizes, strip offsets: not EXIF
    tagged = tmp_path / "tagged.tif"
    _crop().save(tagged, tiffinfo={0x010F: "TestCam", 0x8769: {0x9003: "2020:01:02 03:04:05"}})
    exif = Image.Exif()
    exif.load(image_io.read_image(tagged).exif)
    assert exif[0x010F] == "TestCam" and exif.get_ifd(0x8769) == {0x9003: "2020:01:02 03:04:05"}
    assert not set(exif) & {256, 257, 258, 273, 279}


def test_a_profile_of_another_colour_space_than_the_pixels_is_dropped(tmp_path):
    cmyk = tmp_path / "cmyk.jpg"
    _crop().convert("CMYK").save(cmyk, icc_profile=_icc_of(b"CMYK"))
    loaded = image_io.read_image(cmyk)
    assert loaded.icc_profile is None
    assert "ICC profile for CMYK dropped (the pixels are coded as RGB)" in loaded.notices
    _, chunks = pipeline.pixels_and_chunks(Image.open(cmyk), None, False)
    assert chunks == ()  # the same through the API
    lab_profile = ImageCms.createProfile("LAB")
    to_lab = ImageCms.buildTransform(ImageCms.createProfile("sRGB"), lab_profile, "RGB", "LAB")
    lab = tmp_path / "lab.tif"
    icc_lab = ImageCms.ImageCmsProfile(lab_profile).tobytes()
    ImageCms.applyTransform(_crop(), to_lab).save(lab, icc_profile=icc_lab)
    loaded = image_io.read_image(lab)
    assert loaded.icc_profile is None
    assert "ICC profile for Lab dropped (the pixels are coded as RGB)" in loaded.notices
    grey, grey_rgb = tmp_path / "grey.png", tmp_path / "grey_rgb.png"
    _crop().convert("L").save(grey, icc_profile=_icc_of(b"GRAY"))
    _crop().convert("L").save(grey_rgb, icc_profile=_icc())
    assert image_io.read_image(grey).icc_profile == _icc_of(b"GRAY")
    loaded = image_io.read_image(grey_rgb)
    assert loaded.icc_profile is None
    assert loaded.notices == ("ICC profile for RGB dropped (the pixels are coded as greyscale)",)


@pytest.mark.parametrize(
    "orientation",
    [b'<rdf:Description tiff:Orientation="%d"/>', b"<tiff:Orientation>%d</tiff:Orientation>"],
)
def test_xmp_orientation_is_set_to_1_with_the_exif(tmp_path, orientation):
    def xmp(value: int) -> bytes:
        return XMP.replace(b"<rdf:Description/>", orientation % value)

    exif = Image.Exif()
    exif[0x0112] = 6
    info = PngInfo()
    info.add_itxt("XML:com.adobe.xmp", xmp(6).decode())
    path = tmp_path / "o.png"
    _crop().crop((0, 0, 32, 16)).save(path, exif=exif, pnginfo=info)
    loaded = image_io.read_image(path)
    assert loaded.pixels.shape == (32, 16, 3)  # rotated upright
    assert loaded.xmp == xmp(1)  # so that no XMP reader rotates it again
    tags = Image.Exif()
    tags.load(loaded.exif)
    assert tags[0x0112] == 1


def test_chunks_round_trip_and_damage_is_refused():
    header = container.Header(4, bytes(8), 16, 16, 5000, 0, chunks=((b"ICCP", b"icc"),))
    data = container.pack(header, b"", b"")
    assert data[4] == container.FORMAT_VERSION_CHUNKS
    assert container.unpack(data)[0].chunk(b"ICCP") == b"icc"
    for chunks in (((b"NEW!", b"x"),), ((b"EXIF", b"a"), (b"EXIF", b"b"))):
        with pytest.raises(BitstreamError):
            container.pack(container.Header(4, bytes(8), 16, 16, 5000, 0, chunks=chunks), b"", b"")
    with pytest.raises(BitstreamError):
        container.read_chunks(b"ICCP\x00\x00\x00\x09abc")  # runs past its section
    with pytest.raises(BitstreamError):
        container.read_chunks(b"ICC")
