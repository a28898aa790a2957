"""The .rdc format as a Pillow image plugin: ``Image.open``, ``im.save(..., format="RDC")``.

>>> import rdcodec
>>> rdcodec.register_pillow()                  # or: import rdcodec.codec.pillow_register
>>> im = Image.open("photo.rdc")               # reads the 37-byte header only
>>> im.size, im.mode, im.info["model"]         # no decoding yet
>>> im.load()                                  # decodes (imports torch, loads the model)
>>> im.save("small.rdc", quality=3)            # options: quality | target_bpp, model, effort

Opening reads the header alone, and this module imports neither torch nor the
pipeline: size and mode of a folder of files come without loading a model. The
first ``load()`` (or anything needing pixels) decodes the whole file.

Errors follow Pillow's conventions: a file that is not .rdc, or whose header is
damaged, is not identified (``UnidentifiedImageError``); a file that cannot be
decoded raises ``OSError`` on ``load()`` and ``SyntaxError`` on ``verify()``; bad
save options raise ``ValueError``.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import IO

from PIL import Image, ImageFile

from ..errors import CodecError, ImageError, ModelError
from . import container

FORMAT = "RDC"
EXTENSION = ".rdc"
MIME_TYPE = "image/x-rdc"


def _accept(prefix: bytes) -> bool:
    return prefix[:4] == container.MAGIC


def _parse_header(head: bytes) -> container.Header:
    """The header fields of a file's first bytes, checked as far as they can be without
    the payloads (``container.unpack`` checks the rest, and the CRC, on load)."""
    try:
        return container.parse_header(head)
    except CodecError as exc:
        raise SyntaxError(f"not a readable RDC file: {exc}") from None


@functools.lru_cache(maxsize=1)
def _model_names() -> dict[int, str]:
    # The manifest read directly: models.registry imports torch, which opening a file
    # must not need.
    text = resources.files("rdcodec.weights").joinpath("manifest.json").read_text()
    return {entry["wire_id"]: entry["name"] for entry in json.loads(text)["models"]}


def model_name(wire_id: int) -> str | None:
    """The shipped model with this wire id, None where none is installed."""
    return _model_names().get(wire_id)


class RdcImageFile(ImageFile.ImageFile):
    """An .rdc file opened by Pillow: header on open, pixels on the first ``load()``.

    ``info`` holds ``model`` (the model's name, None where it is not installed),
    ``model_id`` (its wire id) and ``quality``; ``header`` is the parsed
    ``container.Header`` (payload lengths as declared, unchecked until ``load()``).
    """

    format = FORMAT
    format_description = "rdcodec learned image"

    def _open(self) -> None:
        assert self.fp is not None
        self._start = self.fp.tell()
        head = self.fp.read(container.HEADER_BYTES)
        header = _parse_header(head)
        if head[4] == container.FORMAT_VERSION_CHUNKS:  # metadata and alpha, before the pixels
            try:
                section = container.chunk_section_length(head + self.fp.read(4))
                chunks = container.read_chunks(self.fp.read(section))
            except CodecError as exc:
                raise SyntaxError(f"not a readable RDC file: {exc}") from None
            header = container.Header(**{**header.__dict__, "chunks": chunks})
        self.header = header
        self._size = (header.width, header.height)
        alpha = header.chunk(b"ALPH") is not None
        self._mode = ("LA" if alpha else "L") if header.grayscale else ("RGBA" if alpha else "RGB")
        self.info["model"] = model_name(header.model_id)
        self.info["model_id"] = header.model_id
        self.info["quality"] = header.quality
        for key, tag in (("icc_profile", b"ICCP"), ("exif", b"EXIF"), ("xmp", b"XMP_")):
            if header.chunk(tag):
                self.info[key] = header.chunk(tag)

    def _read_file(self) -> bytes:
        if self.fp is None:
            raise ValueError("the RDC file is closed (load() before closing it)")
        self.fp.seek(self._start)
        return self.fp.read()

    def verify(self) -> None:
        """Check lengths and the CRC-32 without decoding (and close the file, as Pillow's
        ``verify`` does); ``SyntaxError`` for a broken file."""
        try:
            container.unpack(self._read_file())
        except CodecError as exc:
            raise SyntaxError(f"broken RDC file: {exc}") from None
        super().verify()

    def load(self):
        if self._im is None:
            data = self._read_file()
            self.im = _decode(data).im
            self.readonly = 0
            if self._exclusive_fp and self._close_exclusive_fp_after_loading:
                self.fp.close()
            self.fp = None
        return Image.Image.load(self)


def _decode(data: bytes) -> Image.Image:
    from . import pipeline  # torch and the model come with the first decode

    try:
        # The header may declare any size (an empty payload is a valid stream): the
        # pipeline's limit bounds the work, and Pillow's own limit where it is lower.
        limit = min(pipeline.DEFAULT_MAX_PIXELS, Image.MAX_IMAGE_PIXELS or container.MAX_PIXELS)
        return pipeline.decode(data, max_pixels=limit)
    except CodecError as exc:
        raise OSError(f"cannot decode RDC file: {exc}") from None


def _save(im: Image.Image, fp: IO[bytes], filename: str | bytes) -> None:
    """Encode ``im`` into ``fp``; options from ``im.encoderinfo``: ``quality`` or
    ``target_bpp``, ``model`` (a shipped model's name), ``effort``, ``drop_alpha``
    (composite transparency onto white instead of coding it), ``strip`` (no metadata),
    and ``icc_profile``, ``exif``, ``xmp`` (instead of ``im.info``'s)."""
    options = im.encoderinfo
    quality = options.get("quality")
    target_bpp = options.get("target_bpp")
    effort = options.get("effort", 0)
    if quality is not None and target_bpp is not None:
        raise ValueError("give quality or target_bpp, not both")
    drop_alpha = bool(options.get("drop_alpha", False))

    from . import image_io, pipeline, refine

    refine.effort_schedule(effort)  # ValueError for an unknown effort
    model = _model_option(options.get("model"))
    try:
        # The API's own checks, before the image is read.
        if quality is not None:
            pipeline.check_quality(quality, model)
        if target_bpp is not None:
            pipeline.check_target_bpp(target_bpp)
        grayscale = image_io.is_grayscale(im)  # a 16-bit grey-alpha PNG opens as RGBA
        if drop_alpha:
            pixels, alpha = image_io.to_rgb(im), None
        else:
            pixels, alpha = image_io.split_alpha(im)
        icc_profile, exif, xmp, notices = image_io.metadata_of(im, grayscale=grayscale)
        image_io.warn_notices(notices)
        exif = options.get("exif", exif)
        if isinstance(exif, Image.Exif):
            exif = exif.tobytes()
        extras = pipeline.Extras(
            options.get("icc_profile", icc_profile) or None,
            exif or None,
            options.get("xmp", xmp) or None,
            alpha,
        )
        if options.get("strip"):
            extras = extras.stripped()
        if target_bpp is None:
            data = pipeline.encode(pixels, quality, model, grayscale, effort, extras)
        else:
            data = pipeline.encode_at_bpp(pixels, target_bpp, model, effort, grayscale, extras)[1]
    except ImageError as exc:
        raise OSError(f"cannot write mode {im.mode} as RDC: {exc}") from None
    except ModelError as exc:
        raise OSError(str(exc)) from None
    except CodecError as exc:  # a target below the lowest quality, an effort too big...
        raise ValueError(str(exc)) from None
    fp.write(data)


def _model_option(model):
    """The ``model`` save option: None (the default scale of models), a shipped model's
    name, or an already loaded ``CodecModel`` or ``QualityScale``."""
    from ..models.registry import CodecModel, QualityScale, find_entry, load_scale

    if isinstance(model, (CodecModel, QualityScale)):
        return model
    if model is not None and not isinstance(model, str):
        raise ValueError(f"model must be a shipped model's name, got {model!r}")
    if model is not None:
        try:
            find_entry(name=model)
        except ModelError as exc:
            raise ValueError(str(exc)) from None
    try:
        return load_scale(model)
    except ModelError as exc:
        raise OSError(str(exc)) from None


def register_pillow() -> None:
    """Make Pillow open and save .rdc files (``Image.open``, ``im.save("x.rdc")``).

    Safe to call more than once; imports neither torch nor a model.
    """
    Image.register_open(FORMAT, RdcImageFile, _accept)
    Image.register_save(FORMAT, _save)
    Image.register_extension(FORMAT, EXTENSION)
    Image.register_mime(FORMAT, MIME_TYPE)


__all__ = ["RdcImageFile", "model_name", "register_pillow"]
