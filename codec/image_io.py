"""Reading images into uint8 RGB arrays and writing files without partial outputs.

``read_image`` is where untrusted files meet Pillow, so it decides what rdcodec
accepts: it refuses what it cannot code faithfully (transparency, floating-point and
32-bit integer samples, images above a pixel limit) with one clear line, and converts
what it can (greyscale, 16 bits, CMYK, palettes, EXIF orientation) with a notice saying
so.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import stat
import struct
import threading
import warnings
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageFile, ImageOps, PngImagePlugin, UnidentifiedImageError

from ..atomic import atomic_write_all
from ..errors import BitstreamError, CodecError, CodecNotice, ImageError, OutputError

# Pillow's own bomb guard warns at ~89 MP and raises at twice that; we refuse above
# our limit with a clear message instead (the --max-pixels flag raises it).
DEFAULT_MAX_PIXELS = 100_000_000

NOTICE_16_BIT = "16-bit image converted to 8 bits"
NOTICE_CMYK = "CMYK image converted to RGB (plain formula, not colour-managed)"

GRAYSCALE_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N"})
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_ORIENTATION_TAG = 0x0112
# What a hostile file can make Pillow raise while it parses or decodes.
_DECODE_ERRORS = (
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    IndexError,
    KeyError,
    TypeError,
    struct.error,
    zlib.error,
    Image.DecompressionBombError,
)
# Pillow's limits are module globals: swap them under a lock while we read.
_PILLOW_GLOBALS = threading.Lock()
# Pillow refuses a whole PNG whose ICC profile or text (XMP) inflates past 1 MiB; we
# read metadata up to this (Pillow's own cap on all of a PNG's text) and drop what is
# over MAX_METADATA_BYTES with a notice, so the pixels still code.
_MAX_PNG_METADATA = 64 << 20
# Grey PNGs of 2 and 4 bits: Pillow scales the samples to 8 bits but not the tRNS key.
_LOW_BIT_GREY = {"L;2": 3, "L;4": 15}


@dataclass(frozen=True)
class LoadedImage:
    """An input image as rdcodec codes it, and what was done to get there."""

    pixels: np.ndarray  # (H, W, 3) uint8 RGB, EXIF orientation applied
    grayscale: bool  # the source had one channel: decode back to one
    notices: tuple[str, ...] = ()  # conversions a user should hear about
    icc_profile: bytes | None = None  # the source's ICC profile
    exif: bytes | None = None  # its EXIF block, orientation set to 1 (pixels are upright)
    xmp: bytes | None = None  # its XMP packet
    alpha: np.ndarray | None = None  # (H, W) uint8, with keep_alpha and see-through pixels

    @property
    def height(self) -> int:
        return self.pixels.shape[0]

    @property
    def width(self) -> int:
        return self.pixels.shape[1]


# The image files a folder command (bench, training, validation, rdplane) picks up.
IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".webp", ".avif", ".bmp", ".tif", ".tiff"}
    | {".ppm", ".pnm", ".pgm", ".gif", ".jp2", ".j2k"}
)


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly in ``folder`` (by suffix; hidden files skipped), by name."""
    return sorted(
        p
        for p in Path(folder).iterdir()
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()
    )


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """A photo for training or measurement: (H, W, 3) writable uint8 RGB in display
    orientation (EXIF applied), read exactly as ``read_image`` reads what it codes."""
    return read_image(path, drop_alpha=True).pixels


def read_image(
    path: str | os.PathLike,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    drop_alpha: bool = False,
    keep_alpha: bool = False,
) -> LoadedImage:
    """Read an image file for coding, or raise ``ImageError`` with the reason.

    The size is checked against ``max_pixels`` from the file's header, before any
    pixel is decoded. Transparency is kept as an alpha plane with ``keep_alpha``,
    composited onto white with ``drop_alpha``, and refused otherwise; an alpha channel
    that is opaque everywhere is dropped silently, since nothing is lost. The ICC
    profile, EXIF (orientation set to 1) and XMP come along for the file's chunks.
    """
    path = Path(path)
    with open_input(path, ImageError, "an image") as fp:
        info = os.fstat(fp.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ImageError(f"{path}: not a regular file")
        if info.st_size == 0:
            raise ImageError(f"{path}: empty file (0 bytes)")
        with _pillow_limits_ours(), warnings.catch_warnings(record=True) as problems:
            warnings.simplefilter("always")  # Pillow warns about corrupt EXIF, among others
            loaded = _read(fp, path, max_pixels, drop_alpha, keep_alpha)
    for problem in problems:
        if "EXIF" in str(problem.message) and loaded.exif is None:
            notices = (*loaded.notices, "malformed EXIF dropped")
            return dataclasses.replace(loaded, notices=notices)
    for problem in problems:  # anything else is not ours to judge: pass it on
        warnings.warn_explicit(problem.message, problem.category, problem.filename, problem.lineno)
    return loaded


def open_input(path: Path, error: type[CodecError], kind: str) -> BinaryIO:
    """``path`` opened for binary reading, or ``error`` with a one-line reason (``kind``
    names what the file should have been, for the directory case)."""
    try:
        return path.open("rb")
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except IsADirectoryError:
        raise error(f"{path}: is a directory, not {kind}") from None
    except PermissionError:
        raise error(f"{path}: permission denied") from None
    except OSError as exc:
        raise error(f"{path}: cannot open ({exc.strerror or exc})") from None


def read_bitstream(path: str | os.PathLike) -> bytes:
    """A bitstream file's bytes, or ``BitstreamError`` with a one-line reason."""
    with open_input(Path(path), BitstreamError, "a bitstream") as fp:
        return fp.read()


@contextlib.contextmanager
def _pillow_limits_ours() -> Iterator[None]:
    """Turn off Pillow's bomb guard (we check ``max_pixels`` ourselves, and it would
    refuse what --max-pixels allows) and its leniency for truncated files, and let PNG
    metadata past Pillow's 1 MiB through (``metadata_of`` judges its size)."""
    with _PILLOW_GLOBALS, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        saved = (
            Image.MAX_IMAGE_PIXELS,
            ImageFile.LOAD_TRUNCATED_IMAGES,
            PngImagePlugin.MAX_TEXT_CHUNK,
        )
        Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = None, False
        PngImagePlugin.MAX_TEXT_CHUNK = max(saved[2], _MAX_PNG_METADATA)
        try:
            yield
        finally:
            (
                Image.MAX_IMAGE_PIXELS,
                ImageFile.LOAD_TRUNCATED_IMAGES,
                PngImagePlugin.MAX_TEXT_CHUNK,
            ) = saved


def _read(fp, path: Path, max_pixels: int, drop_alpha: bool, keep_alpha: bool) -> LoadedImage:
    try:
        im = Image.open(fp)
    except UnidentifiedImageError:
        raise ImageError(
            f"{path}: not an image file (unrecognised format, or a damaged header)"
        ) from None
    except _DECODE_ERRORS as exc:
        raise ImageError(f"{path}: cannot read the image header ({exc})") from None
    with im:
        width, height = im.size
        if width * height > max_pixels:
            raise ImageError(
                f"{path}: {width}x{height} is {width * height:,} pixels, above the limit of "
                f"{max_pixels:,} (raise it with --max-pixels)"
            )
        if width < 1 or height < 1:
            raise ImageError(f"{path}: image has no pixels ({width}x{height})")
        notices = []
        kind = f"{im.format} " if im.format else ""
        rawmode = _rawmode(im)  # the file's sample layout; gone after load()
        try:
            if getattr(im, "is_animated", False):
                notices.append("animated image: only the first frame is coded")
            im.load()  # a full decode here, so that truncation is an error, not grey pixels
            orientation = _orientation(im)  # after load(): PNG keeps EXIF after the pixels
            grayscale = _grayscale(im.mode, rawmode)
            icc_profile, exif, xmp, meta_notices = metadata_of(im, True, grayscale)
            notices.extend(meta_notices)
            deep_key = _has_deep_colour_key(im, rawmode)
            if orientation > 1:
                im = ImageOps.exif_transpose(im)
            if deep_key:
                fp.seek(0)
                with Image.open(fp, formats=["PNG"]) as again:
                    im = _with_deep_colour_key(im, again, orientation)
        except MemoryError:
            raise ImageError(
                f"{path}: not enough memory to decode a {width}x{height} image"
            ) from None
        except _DECODE_ERRORS as exc:
            raise ImageError(
                f"{path}: cannot decode the {kind}image, the file is truncated or damaged ({exc})"
            ) from None
        if orientation > 1:
            notices.append(
                f"EXIF orientation {orientation} applied (rotated to display orientation)"
            )
        pixels, grayscale, converted, alpha = _convert(
            im, rawmode, drop_alpha, str(path), keep_alpha
        )
    notices.extend(converted)
    return LoadedImage(pixels, grayscale, tuple(notices), icc_profile, exif, xmp, alpha)


# Each of ICC, EXIF and XMP is kept up to this size; a larger one is dropped with a
# notice (real profiles and EXIF blocks are kilobytes; 4 MiB is generous).
MAX_METADATA_BYTES = 4 << 20


def metadata_of(
    im: Image.Image, upright: bool = False, grayscale: bool | None = None
) -> tuple[bytes | None, bytes | None, bytes | None, list[str]]:
    """The ICC profile, EXIF block and XMP packet of an opened image (each up to
    MAX_METADATA_BYTES), and notices for what had to be dropped. ``upright``: the pixels
    will be stored rotated to display orientation, so the stored EXIF and XMP say
    orientation 1 (no viewer rotates twice). ``grayscale``: whether the pixels are coded
    as greyscale (by default, ``is_grayscale(im)``); an ICC profile of another colour
    space (CMYK, Lab: the pixels were converted) is dropped."""
    notices = []
    exif = None
    if im.info.get("exif") or _has_exif(im):
        try:
            tags = im.getexif()  # Pillow's cached object: changed only for the bytes
            if im.format == "TIFF":  # getexif() is the TIFF's own directory
                tags = _tiff_exif(tags)
            original = tags.get(_ORIENTATION_TAG) if tags is not None else None
            if upright and original is not None:
                tags[_ORIENTATION_TAG] = 1
            try:
                exif = tags.tobytes() if tags and (len(tags) or tags.get_ifd(0x8769)) else None
            finally:
                if original is not None:
                    tags[_ORIENTATION_TAG] = original
        except Exception as exc:  # malformed EXIF of any kind: the pixels still code
            notices.append(f"malformed EXIF dropped ({type(exc).__name__})")
            exif = None
    xmp = im.info.get("xmp") or im.info.get("XML:com.adobe.xmp")
    if isinstance(xmp, str):
        xmp = xmp.encode("utf-8")
    if upright and xmp:
        for pattern in _XMP_ORIENTATION:
            xmp = pattern.sub(rb"\g<1>1\g<2>", xmp)
    icc_profile = im.info.get("icc_profile")
    if icc_profile:
        if grayscale is None:
            grayscale = is_grayscale(im)
        space = icc_profile[16:20]
        if space in _ICC_SPACES and space != (b"GRAY" if grayscale else b"RGB "):
            notices.append(
                f"ICC profile for {space.decode().strip()} dropped "
                f"(the pixels are coded as {'greyscale' if grayscale else 'RGB'})"
            )
            icc_profile = None
    kept = []
    for name, value in (("ICC profile", icc_profile), ("EXIF", exif), ("XMP", xmp)):
        if value and len(value) > MAX_METADATA_BYTES:
            notices.append(f"{name} of {len(value):,} bytes dropped (over the limit)")
            value = None
        kept.append(value or None)
    return (*kept, notices)


# The colour spaces an ICC profile's header names (bytes 16:20).
_ICC_SPACES = frozenset(
    {b"XYZ ", b"Lab ", b"Luv ", b"YCbr", b"Yxy ", b"RGB ", b"GRAY", b"HSV ", b"HLS "}
    | {b"CMYK", b"CMY "}
    | {f"{n:X}CLR".encode() for n in range(2, 16)}
)
# XMP's orientation, as an attribute (tiff:Orientation="6") or an element.
_XMP_ORIENTATION = (
    re.compile(rb"""(tiff:Orientation\s*=\s*["'])[0-9]+(["'])"""),
    re.compile(rb"(<tiff:Orientation>\s*)[0-9]+(\s*</tiff:Orientation>)"),
)


def _has_exif(im: Image.Image) -> bool:
    try:
        return bool(im.getexif())
    except Exception:
        return False


# A TIFF's own directory, as Pillow's getexif() gives it, holds how the file lays out
# its pixels (sizes, strip offsets: wrong for any other file) and what rdcodec stores
# apart (ICC, XMP) or not at all (IPTC, Photoshop's resources and layers).
_TIFF_NOT_EXIF = frozenset(
    {254, 255, 256, 257, 258, 259, 262, 263, 264, 265, 266, 273, 277, 278, 279, 280, 281}
    | {284, 290, 291, 292, 293, 317, 320, 322, 323, 324, 325, 330, 332, 338, 339, 340, 341}
    | {347, *range(512, 522), 530, 700, 33723, 34377, 34675, 37724}
)
# What every TIFF writer may add: alone, they are not EXIF.
_TIFF_PLAIN = frozenset({_ORIENTATION_TAG, 282, 283, 296})
_EXIF_IFD, _GPS_IFD = 0x8769, 0x8825


def _tiff_exif(tags: Image.Exif) -> Image.Exif | None:
    """The EXIF of a TIFF: its directory's tags less ``_TIFF_NOT_EXIF``, with its Exif
    and GPS directories; None where nothing but ``_TIFF_PLAIN`` is left."""
    exif = Image.Exif()
    for tag, value in tags.items():
        if tag not in _TIFF_NOT_EXIF:
            exif[tag] = value
    for pointer in (_EXIF_IFD, _GPS_IFD):
        if pointer in exif:  # an offset into the TIFF: carry the directory itself
            exif[pointer] = dict(tags.get_ifd(pointer))
    return exif if set(exif) - _TIFF_PLAIN else None


def _grayscale(mode: str, rawmode: str) -> bool:
    """Whether a file stores one channel (a 16-bit grey-alpha PNG opens as RGBA)."""
    return mode in GRAYSCALE_MODES or rawmode.split(";")[0] in ("1", "L", "LA")


def is_grayscale(im: Image.Image) -> bool:
    """Whether ``im`` is coded as greyscale (decodes to L or LA): one-channel modes, and
    one-channel files that Pillow opens in colour (a 16-bit grey-alpha PNG as RGBA)."""
    if im.mode in GRAYSCALE_MODES:
        return True
    if not _grayscale(im.mode, _source_rawmode(im)):
        return False
    # The file may have been read again (``_reopened``): believe it while the pixels
    # are still grey, so that an image changed since it was opened keeps its colour.
    rgb = np.asarray(im.convert("RGB"))
    return bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())


def _rawmode(im: Image.Image) -> str:
    """How samples are stored in the file, e.g. 'RGB;16B' for a 16-bit RGB PNG
    (Pillow opens that as 8-bit 'RGB'); '' where Pillow does not say."""
    tile = getattr(im, "tile", None)
    if not tile:
        return ""
    args = tile[0][3]
    if isinstance(args, tuple):
        args = args[0] if args else ""
    return args if isinstance(args, str) else ""


def _source_rawmode(im: Image.Image) -> str:
    """``_rawmode``, also for an image already loaded (Pillow then forgets how its file
    stores samples), by reading its file's header again where that matters: mode I
    (16 or 32 bits), RGBA (a 16-bit grey-alpha PNG) and a 16-bit RGB colour key."""
    deep = im.mode in ("I", "RGBA") or isinstance(im.info.get("transparency"), tuple)
    if getattr(im, "tile", None) or not deep:
        return _rawmode(im)
    again = _reopened(im)
    if again is None:
        return ""
    with again:
        return _rawmode(again)


def _reopened(im: Image.Image) -> Image.Image | None:
    """The file ``im`` was opened from, opened again (header read, nothing decoded), or
    None where there is no such file or it no longer matches ``im``."""
    filename = getattr(im, "filename", None)
    if not isinstance(im, ImageFile.ImageFile) or not filename or not im.format:
        return None
    try:
        again = Image.open(filename, formats=[im.format])
    except Exception:  # gone, replaced, or over Pillow's limits: go without
        return None
    if (again.size, again.mode) != (im.size, im.mode):
        again.close()
        return None
    return again


def _has_deep_colour_key(im: Image.Image, rawmode: str) -> bool:
    """Whether ``im`` is a 16-bit RGB PNG with a tRNS colour key. Pillow keeps the high
    byte of each sample and compares its 16-bit key with those, which matches the wrong
    pixels or none: ``_with_deep_colour_key`` matches it at full depth."""
    key = im.info.get("transparency")
    return im.format == "PNG" and rawmode == "RGB;16B" and isinstance(key, tuple)


def _with_deep_colour_key(im: Image.Image, again: Image.Image, orientation: int = 1) -> Image.Image:
    """``im`` (loaded: the high bytes) as RGBA, transparent where its 16 bits equal the
    key; ``again``, the same file opened anew, gives the low bytes. ``orientation``: the
    EXIF orientation ``im`` was rotated by."""
    # Big-endian samples read as little-endian: the "high" byte kept is the low one.
    again.tile = [(*tile[:3], "RGB;16L") for tile in again.tile]
    again.load()
    if orientation > 1:
        again = ImageOps.exif_transpose(again)
    deep = np.asarray(im, np.uint16) << 8 | np.asarray(again, np.uint16)
    see_through = (deep == np.array(im.info["transparency"])).all(axis=2)
    return Image.fromarray(
        np.dstack([np.asarray(im), np.where(see_through, 0, 255)]).astype(np.uint8)
    )


def _orientation(im: Image.Image) -> int:
    """The EXIF orientation (1..8), 1 where there is none or it cannot be read."""
    try:
        value = im.getexif().get(_ORIENTATION_TAG, 1)
    except _DECODE_ERRORS:
        return 1  # unreadable EXIF: show the pixels as stored
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _convert(
    im: Image.Image, rawmode: str, drop_alpha: bool, name: str, keep_alpha: bool = False
) -> tuple[np.ndarray, bool, list[str], np.ndarray | None]:
    """(H, W, 3) uint8 RGB, whether the source was greyscale, notices, and the alpha
    plane where ``keep_alpha`` and some pixel is see-through."""
    notices = []
    mode = im.mode
    grayscale = _grayscale(mode, rawmode)
    key = im.info.get("transparency")
    refused_32 = f"{name}: 32-bit samples are not supported (save as 8 or 16 bits)"
    if mode == "F":
        raise ImageError(f"{name}: floating-point samples are not supported (save as 8 or 16 bits)")
    if mode == "I" and rawmode and not rawmode.startswith("I;16"):
        # Pillow's 32-bit mode from a file that stores 32 bits: no range says how to
        # reduce it (0..255 read as 32 bits, or as 16, is black). Where the layout is not
        # known (cropped, copied, made in memory), samples within 16 bits are 16-bit.
        raise ImageError(refused_32)
    if mode.startswith("I"):  # I;16*, and I where the file stores 16 bits
        samples = np.asarray(im).astype(np.int64)
        if samples.min() < 0 or samples.max() > 0xFFFF:
            raise ImageError(refused_32)
        grey = ((samples + 128) // 257).astype(np.uint8)  # rounded 65535 -> 255
        if isinstance(key, int):  # a tRNS key: matched on the 16 bits, before reducing
            grey = np.dstack([grey, np.where(samples == key, 0, 255).astype(np.uint8)])
        im = Image.fromarray(grey)
        notices.append(NOTICE_16_BIT)
    elif ";16" in rawmode:  # Pillow already kept the high byte of each sample
        notices.append(NOTICE_16_BIT)
    if rawmode in _LOW_BIT_GREY and isinstance(key, int):
        # Pillow scales 2- and 4-bit samples to 8 bits, but not the tRNS key.
        samples = np.asarray(im)
        key *= 255 // _LOW_BIT_GREY[rawmode]
        im = Image.fromarray(
            np.dstack([samples, np.where(samples == key, 0, 255)]).astype(np.uint8)
        )
    elif mode == "RGB" and isinstance(key, tuple) and (";16" in rawmode or max(key) > 255):
        # A 16-bit colour key on 8-bit pixels, where the file could not be read again
        # for its low bytes (read_image always reads them): match the high bytes.
        rgb = np.asarray(im)
        see_through = (rgb == np.array(key) >> 8).all(axis=2)
        im = Image.fromarray(np.dstack([rgb, np.where(see_through, 0, 255)]).astype(np.uint8))
        notices.append("16-bit transparency key matched on the high 8 bits of each sample")
    if mode == "CMYK":
        notices.append(NOTICE_CMYK)
    elif mode in ("LAB", "HSV"):
        notices.append(f"{mode} image converted to RGB")

    has_alpha = im.mode in _ALPHA_MODES or "transparency" in im.info
    try:
        rgba = np.asarray(im.convert("RGBA" if has_alpha else "RGB"), dtype=np.uint8)
    except ValueError:
        raise ImageError(f"{name}: pixel mode {mode} is not supported") from None
    if not has_alpha:
        return rgba.copy(), grayscale, notices, None
    rgb, alpha = rgba[..., :3], rgba[..., 3:]
    see_through = int(np.count_nonzero(alpha < 255))
    if see_through == 0:
        return rgb.copy(), grayscale, notices, None  # opaque everywhere: nothing is lost
    if keep_alpha and not drop_alpha:
        return rgb.copy(), grayscale, notices, alpha[..., 0].copy()
    if not drop_alpha:
        raise ImageError(
            f"{name}: the image has an alpha channel, and this reads colour only "
            "(`rdcodec encode` codes alpha; here, composite it onto white: --drop-alpha)"
        )
    notices.append(
        f"alpha channel composited onto white ({see_through} of {alpha.size} pixels not opaque)"
    )
    return _onto_white(rgb, alpha), grayscale, notices, None


def _onto_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """What viewers show for straight (not premultiplied) alpha on a white page."""
    a = alpha.astype(np.uint32)
    return ((rgb * a + 255 * (255 - a) + 127) // 255).astype(np.uint8)


def to_rgb(im: Image.Image) -> np.ndarray:
    """Any Pillow image as (H, W, 3) uint8 RGB; transparency composited onto white. What
    was converted is said as ``CodecNotice`` warnings (the API's notices)."""
    im, rawmode = _decoded(im)
    pixels, _, notices, _ = _convert(im, rawmode, drop_alpha=True, name="image")
    warn_notices(notices)
    return pixels


def split_alpha(im: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """Any Pillow image as (H, W, 3) uint8 RGB and its alpha plane (None where every
    pixel is opaque); notices as ``to_rgb``'s."""
    im, rawmode = _decoded(im)
    pixels, _, notices, alpha = _convert(im, rawmode, False, "image", keep_alpha=True)
    warn_notices(notices)
    return pixels, alpha


def warn_notices(notices: Iterable[str]) -> None:
    """Each notice as a ``CodecNotice`` warning: how the API and the Pillow plugin say
    what the command line prints as ``rdcodec: notice:`` lines."""
    for notice in notices:
        warnings.warn(notice, CodecNotice, stacklevel=3)


def _decoded(im: Image.Image) -> tuple[Image.Image, str]:
    """A caller's Pillow image decoded, and how its file stores samples; ``ImageError``
    for one without pixels or whose file cannot be decoded (``read_image``'s checks,
    for images the API is handed already opened)."""
    width, height = im.size
    if width < 1 or height < 1:
        raise ImageError(f"image has no pixels ({width}x{height})")
    try:
        rawmode = _source_rawmode(im)  # before load(): the tile says it
        deep_key = _has_deep_colour_key(im, rawmode)
        im.load()
        again = _reopened(im) if deep_key else None
        if again is not None:
            with again:
                im = _with_deep_colour_key(im, again)
    except MemoryError:
        raise ImageError(f"not enough memory to decode a {width}x{height} image") from None
    except _DECODE_ERRORS as exc:
        raise ImageError(
            f"cannot decode the image, the file is truncated or damaged ({exc})"
        ) from None
    return im, rawmode


def check_output(path: str | os.PathLike, force: bool) -> Path:
    """Refuse an existing output without ``force`` and a missing directory.

    Commands call it before any work, so a refused output costs nothing;
    ``atomic_write`` checks again before it writes (a file that appears while the
    temporary file is written is still replaced).
    """
    path = Path(path)
    if path.exists() and not force:
        raise OutputError(f"{path}: already exists (use --force to overwrite)")
    if path.is_dir():
        raise OutputError(f"{path}: is a directory")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"{parent}: output directory does not exist")
    return path


def atomic_write(
    path: str | os.PathLike, write: Callable[[Path], None], force: bool = False
) -> None:
    """Call ``write(tmp_path)`` then rename over ``path``: never a partial output."""
    atomic_write_all({check_output(path, force): write})


def write_bytes(path: str | os.PathLike, data: bytes, force: bool = False) -> None:
    atomic_write(path, lambda tmp: tmp.write_bytes(data), force)


def save_image(
    path: str | os.PathLike, image: np.ndarray | Image.Image, force: bool = False
) -> None:
    """Save with the format the extension names (PNG for .png, ...), with the ICC
    profile, EXIF and XMP of ``image.info``."""
    path = Path(path)
    pil = image if isinstance(image, Image.Image) else Image.fromarray(image)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise OutputError(f"{path}: unknown image extension '{path.suffix}' (use .png)")

    options = {k: pil.info[k] for k in ("icc_profile", "exif") if pil.info.get(k)}
    xmp = pil.info.get("xmp")
    if xmp and fmt == "PNG":
        from PIL.PngImagePlugin import PngInfo

        options["pnginfo"] = PngInfo()
        text = xmp.decode("utf-8", "replace") if isinstance(xmp, bytes) else xmp
        options["pnginfo"].add_itxt("XML:com.adobe.xmp", text)
    elif xmp:
        options["xmp"] = xmp

    def write(tmp: Path) -> None:
        try:
            pil.save(tmp, format=fmt, **options)
        except (OSError, ValueError, KeyError) as exc:
            raise OutputError(f"{path}: cannot write as {fmt} ({exc})") from None

    atomic_write(path, write, force)
