"""Reading images into uint8 RGB arrays and writing files without partial outputs."""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import ImageError, OutputError

# Pillow's own bomb guard warns at ~89 MP and raises at twice that; we refuse above
# our limit with a clear message instead (the --max-pixels flag raises it).
DEFAULT_MAX_PIXELS = 100_000_000


def read_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image file as an (H, W, 3) uint8 array, EXIF orientation applied."""
    path = Path(path)
    if not path.exists():
        raise ImageError(f"{path}: no such file")
    if path.is_dir():
        raise ImageError(f"{path}: is a directory, not an image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            Image.MAX_IMAGE_PIXELS = None  # our own limit below, checked before decoding
            with Image.open(path) as im:
                if im.width * im.height > max_pixels:
                    raise ImageError(
                        f"{path}: {im.width}x{im.height} is {im.width * im.height / 1e6:.0f} MP, "
                        f"above the limit of {max_pixels / 1e6:.0f} MP (raise it with --max-pixels)"
                    )
                im = ImageOps.exif_transpose(im)
                return to_rgb(im)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image file Pillow can read") from None
    except PermissionError:
        raise ImageError(f"{path}: permission denied") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageError(f"{path}: cannot decode image ({exc})") from None


def to_rgb(im: Image.Image) -> np.ndarray:
    """Any Pillow image as (H, W, 3) uint8 RGB."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit greyscale: keep the top 8 bits.
        arr = np.asarray(im, dtype=np.uint32) >> 8
        im = Image.fromarray(arr.astype(np.uint8), mode="L")
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        # Alpha is not coded: composite onto white so transparent areas look as viewers show them.
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, rgba)
    return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


def check_output(path: str | os.PathLike, force: bool) -> Path:
    """Refuse an existing output without ``force`` and a missing directory."""
    path = Path(path)
    if path.exists() and not force:
        raise OutputError(f"{path}: already exists (use --force to overwrite)")
    if path.is_dir():
        raise OutputError(f"{path}: is a directory")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"{parent}: output directory does not exist")
    return path


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None], force: bool = False) -> None:
    """Call ``write(tmp_path)`` then rename over ``path``: never a partial output."""
    path = check_output(path, force)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent or ".")
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_bytes(path: str | os.PathLike, data: bytes, force: bool = False) -> None:
    atomic_write(path, lambda tmp: tmp.write_bytes(data), force)


def save_image(path: str | os.PathLike, image: np.ndarray | Image.Image, force: bool = False) -> None:
    """Save with the format the extension names (PNG for .png, ...)."""
    path = Path(path)
    pil = image if isinstance(image, Image.Image) else Image.fromarray(image)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise OutputError(f"{path}: unknown image extension '{path.suffix}' (use .png)")

    def write(tmp: Path) -> None:
        try:
            pil.save(tmp, format=fmt)
        except (OSError, ValueError, KeyError) as exc:
            raise OutputError(f"{path}: cannot write as {fmt} ({exc})") from None

    atomic_write(path, write, force)
