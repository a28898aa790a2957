"""What an encode reports: the file's bits against the model's estimate (``Rate``), and
every measurement of one encode and the decode of its own bytes (``EncodeResult``)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from .container import Header
from .metrics import JpegPoint


@dataclass(frozen=True)
class Rate:
    """Where the bits of a file go (file bits = header + z + y exactly)."""

    header_bits: int
    z_bits: int
    y_bits: int
    estimate_z_bits: float  # the model's -log2 p of the coded z symbols
    estimate_y_bits: float  # the model's -log2 p of the coded y symbols
    metadata_bits: int = 0  # ICC, EXIF and XMP chunks (see ``chunk_bytes``)
    alpha_bits: int = 0  # the alpha plane's chunk (see ``chunk_bytes``)

    @property
    def file_bits(self) -> int:
        return self.header_bits + self.metadata_bits + self.alpha_bits + self.z_bits + self.y_bits

    @property
    def estimate_bits(self) -> float:
        return self.estimate_z_bits + self.estimate_y_bits

    @property
    def overhead_percent(self) -> float:
        """How much larger the coded picture (header, z and y: the file without its
        metadata and alpha) is than the model's estimate, in %."""
        coded = self.header_bits + self.z_bits + self.y_bits
        return 100 * (coded / self.estimate_bits - 1) if self.estimate_bits else math.inf


def chunk_bytes(header: Header) -> tuple[int, int]:
    """The bytes of a file's chunk section as (metadata, alpha): each chunk with its own
    tag and length, and the section's length field with the metadata, or with the alpha
    where the file carries no metadata (so a file without metadata shows none)."""
    others = tuple((tag, data) for tag, data in header.chunks if tag != b"ALPH")
    metadata = dataclasses.replace(header, chunks=others).chunk_bytes
    return metadata, header.chunk_bytes - metadata


@dataclass(frozen=True)
class Baseline:
    """The same photo at the same quality with effort 0 (the single pass): what
    refinement is measured against."""

    num_bytes: int
    psnr: float


@dataclass(frozen=True)
class EncodeResult:
    """Everything measured about one encode (and the decode of its own bytes)."""

    data: bytes
    width: int
    height: int
    quality: float
    model: str
    bpp: float
    psnr: float
    ms_ssim: float | None
    rate: Rate
    encode_seconds: float
    decode_seconds: float
    jpeg: JpegPoint | None
    effort: int = 0
    baseline: Baseline | None = None  # the effort-0 file, at effort > 0

    @property
    def num_bytes(self) -> int:
        return len(self.data)

    def to_dict(self) -> dict:
        jpeg = None
        if self.jpeg is not None:
            jpeg = {
                "quality": self.jpeg.quality,
                "bytes": self.jpeg.num_bytes,
                "bpp": self.jpeg.bpp,
                "psnr": self.jpeg.psnr,
                "psnr_gain_db": self.psnr - self.jpeg.psnr,
            }
        r = self.rate
        return {
            "width": self.width,
            "height": self.height,
            "quality": self.quality,
            "model": self.model,
            "bytes": self.num_bytes,
            "bpp": self.bpp,
            "psnr": self.psnr,
            "ms_ssim": self.ms_ssim,
            "bits": {
                "header": r.header_bits,
                "metadata": r.metadata_bits,
                "alpha": r.alpha_bits,
                "z": r.z_bits,
                "y": r.y_bits,
                "file": r.file_bits,
            },
            "estimate_bits": {
                "z": r.estimate_z_bits,
                "y": r.estimate_y_bits,
                "total": r.estimate_bits,
            },
            "overhead_percent": r.overhead_percent,
            "encode_seconds": self.encode_seconds,
            "decode_seconds": self.decode_seconds,
            "jpeg_same_bpp": jpeg,
            "effort": self.effort,
            "effort0": None
            if self.baseline is None
            else {"bytes": self.baseline.num_bytes, "psnr": self.baseline.psnr},
        }
