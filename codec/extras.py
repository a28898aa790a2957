"""What a photo carries besides its RGB pixels: ICC profile, EXIF, XMP and the alpha
plane, stored as chunks of the file (container format version 2)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..errors import BitstreamError, ImageError
from . import container


@dataclass(frozen=True)
class Extras:
    """What a photo carries besides its RGB pixels, stored as chunks of the file
    (container format version 2): ICC profile, EXIF (orientation 1: the pixels are
    upright), XMP, and the alpha plane, coded losslessly (see ``alpha_chunk``)."""

    icc_profile: bytes | None = None
    exif: bytes | None = None
    xmp: bytes | None = None
    alpha: np.ndarray | None = None  # (H, W) uint8

    def chunks(self) -> tuple[tuple[bytes, bytes], ...]:
        metadata = ((b"ICCP", self.icc_profile), (b"EXIF", self.exif), (b"XMP_", self.xmp))
        out = [(tag, bytes(value)) for tag, value in metadata if value]
        if self.alpha is not None:
            out.append((b"ALPH", alpha_chunk(self.alpha)))
        return tuple(out)

    def stripped(self) -> Extras:
        """Without the metadata (``--strip``); transparency is pixels, so it stays."""
        return Extras(alpha=self.alpha)

    @classmethod
    def of_loaded(cls, loaded) -> Extras:
        """What ``image_io.read_image`` found in a file (a ``LoadedImage``)."""
        return cls(loaded.icc_profile, loaded.exif, loaded.xmp, loaded.alpha)

    @classmethod
    def of(cls, header: container.Header) -> Extras:
        alpha = header.chunk(b"ALPH")
        return cls(
            header.chunk(b"ICCP"),
            header.chunk(b"EXIF"),
            header.chunk(b"XMP_"),
            None if alpha is None else alpha_plane(alpha, header.height, header.width),
        )


def alpha_chunk(alpha: np.ndarray) -> bytes:
    """The alpha plane as a lossless greyscale PNG (deflate). Lossless because masks
    are mostly 0 and 255 with thin edges, which deflate codes in a few bytes per row
    while a lossy transform codec would blur the edges and spend its bits there."""
    import io

    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(alpha, dtype=np.uint8), "L").save(
        out, format="PNG", optimize=True
    )
    return out.getvalue()


def alpha_plane(chunk: bytes, height: int, width: int) -> np.ndarray:
    import io

    try:
        with Image.open(io.BytesIO(chunk), formats=["PNG"]) as im:
            if im.size != (width, height) or im.mode != "L":
                raise BitstreamError(
                    f"corrupted bitstream: the alpha plane is {im.mode} {im.size[0]}x{im.size[1]}"
                )
            return np.asarray(im, dtype=np.uint8).copy()
    except BitstreamError:
        raise
    except Exception as exc:
        raise BitstreamError(f"corrupted bitstream: unreadable alpha plane ({exc})") from None


def as_array(image) -> np.ndarray:
    """The RGB pixels of a PIL image or an (H, W, 3) uint8 array (checked)."""
    if isinstance(image, Image.Image):
        from .image_io import to_rgb

        return to_rgb(image)
    if isinstance(image, str | os.PathLike):
        raise ImageError(
            f"expected a PIL image or an (H, W, 3) uint8 array, got a path ({image}): "
            "open it with PIL.Image.open first"
        )
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ImageError(f"expected an (H, W, 3) uint8 array, got {arr.dtype} {arr.shape}")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ImageError("image has no pixels")
    if any(stride < 0 for stride in arr.strides):  # np.flipud: torch cannot view it
        arr = np.ascontiguousarray(arr)
    return arr


def pixels_and_chunks(
    image, extras: Extras | None, strip: bool, grayscale: bool | None = None
) -> tuple[np.ndarray, tuple[tuple[bytes, bytes], ...]]:
    """The RGB pixels to code and the chunks to store with them; ``grayscale``: whether
    they are coded as greyscale, where the caller has decided it (``metadata_of``)."""
    found = None
    if isinstance(image, Image.Image):
        from .image_io import metadata_of, split_alpha, warn_notices

        array, alpha = split_alpha(image)
        icc_profile, exif, xmp, notices = metadata_of(image, grayscale=grayscale)
        warn_notices(notices)
        found = Extras(icc_profile, exif, xmp, alpha)
    else:
        array = as_array(image)
    extras = extras if extras is not None else found
    if extras is None:
        return array, ()
    if extras.alpha is not None and extras.alpha.shape != array.shape[:2]:
        raise ImageError(f"alpha plane {extras.alpha.shape} does not match the image")
    return array, (extras.stripped() if strip else extras).chunks()
