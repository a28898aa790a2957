"""Classical codecs for ``rdcodec bench``, all through Pillow.

Each codec turns an (H, W, 3) uint8 array into file bytes and back at one quality
point. Settings follow common practice in learned-compression papers: JPEG with
Pillow's defaults, WebP at its slowest/best method, AVIF in 4:4:4, JPEG 2000 with the
irreversible wavelet and the colour transform on. Encoders run single-threaded so
that their timings compare with rdcodec's (one torch thread per worker).
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field

import numpy as np
import PIL
from PIL import Image, features

from ..errors import CodecError


@dataclass(frozen=True)
class PillowCodec:
    """One Pillow format with fixed save options; ``quality`` is passed per point."""

    name: str
    label: str  # for plots and tables
    pillow_format: str
    feature: str  # Pillow feature name, for availability and version
    default_qualities: tuple[float, ...]
    options: dict = field(default_factory=dict)
    quality_meaning: str = "quality"
    # The quality grid that at_size searches and --qualities accepts: lowest, highest, step
    # (a step of 1: integer qualities).
    search_grid: tuple[float, float, float] = (1, 100, 1)
    aliases: tuple[str, ...] = ()  # other names --codecs accepts
    cost: int = 1  # relative encode time: the bench schedules the slowest first

    def available(self) -> bool:
        return bool(features.check(self.feature))

    def library_version(self) -> str:
        return str(features.version(self.feature) or "unknown")

    def settings_id(self) -> str:
        """Changes whenever the bytes this codec writes could change (cache key)."""
        key = json.dumps(
            [self.pillow_format, self.options, PIL.__version__, self.library_version()],
            sort_keys=True,
        )
        return hashlib.sha256(key.encode()).hexdigest()[:12]

    def description(self, qualities: tuple[float, ...]) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items()) or "default settings"
        points = ", ".join(f"{q:g}" for q in qualities)
        library = f"{self.feature} {self.library_version()}"
        codec = f"Pillow {PIL.__version__} {self.pillow_format} ({library})"
        return f"{codec}, {opts}; {self.quality_meaning} {points}"

    def _save_options(self, quality: float) -> dict:
        return {**self.options, "quality": int(quality)}

    def encode(self, image: np.ndarray, quality: float) -> bytes:
        buffer = io.BytesIO()
        try:
            Image.fromarray(image).save(
                buffer, format=self.pillow_format, **self._save_options(quality)
            )
        except (OSError, ValueError) as exc:
            raise CodecError(f"{self.label} encoder failed at quality {quality:g}: {exc}") from None
        return buffer.getvalue()

    def decode(self, data: bytes) -> np.ndarray:
        try:
            with Image.open(io.BytesIO(data)) as im:
                # A writable copy: torch (MS-SSIM) warns about read-only arrays.
                return np.array(im.convert("RGB"))
        except (OSError, ValueError) as exc:
            raise CodecError(f"{self.label} decoder failed: {exc}") from None

    def warm_up(self, image: np.ndarray, quality: float) -> None:
        """One untimed round trip (``rdcodec bench`` times every point after it)."""
        self.decode(self.encode(image, quality))


@dataclass(frozen=True)
class Jpeg2000Codec(PillowCodec):
    """OpenJPEG in "rates" mode: a quality point is the target bits per pixel."""

    def _save_options(self, quality: float) -> dict:
        # One quality layer whose compression ratio is raw 24 bpp over the target.
        return {**self.options, "quality_mode": "rates", "quality_layers": [24.0 / quality]}


JPEG = PillowCodec(
    name="jpeg",
    label="JPEG",
    pillow_format="JPEG",
    feature="jpg",
    default_qualities=(5, 10, 20, 35, 50, 70, 85, 95),
    aliases=("jpg",),
)
WEBP = PillowCodec(
    name="webp",
    label="WebP",
    pillow_format="WEBP",
    feature="webp",
    default_qualities=(0, 10, 25, 45, 65, 80, 90, 95),
    options={"method": 6},
    search_grid=(0, 100, 1),
    cost=3,
)
AVIF = PillowCodec(
    name="avif",
    label="AVIF",
    pillow_format="AVIF",
    feature="avif",
    default_qualities=(5, 20, 35, 50, 62, 72, 82, 90),
    options={"subsampling": "4:4:4", "speed": 6, "max_threads": 1},
    search_grid=(0, 100, 1),
    cost=4,
)
JPEG2000 = Jpeg2000Codec(
    name="jpeg2000",
    label="JPEG 2000",
    pillow_format="JPEG2000",
    feature="jpg_2000",
    default_qualities=(0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0),
    # no_jp2: the bare codestream, without the JP2 box wrapper.
    options={"irreversible": True, "mct": 1, "no_jp2": True},
    quality_meaning="target bpp",
    search_grid=(0.001, 24.0, 0.001),
    aliases=("j2k", "jp2"),
    cost=2,
)

# The one table of classical codecs: the bench, compare, rdplane and --codecs read it, so
# a new codec is one entry here.
CLASSICAL = {codec.name: codec for codec in (JPEG, WEBP, AVIF, JPEG2000)}
ALIASES = {alias: codec.name for codec in CLASSICAL.values() for alias in codec.aliases}


def at_size(codec: PillowCodec, image: np.ndarray, max_bytes: int) -> tuple[float, bytes] | None:
    """The quality of ``codec.search_grid`` whose file is the largest without exceeding
    ``max_bytes``, and that file; None when even the lowest quality is larger.

    File size is not strictly monotonic in quality, so the bisection's answer is
    checked against its neighbours (two grid steps each side).
    """
    low, high, step = codec.search_grid
    last = round((high - low) / step)
    files: dict[int, bytes] = {}

    def quality(i: int) -> float:
        value = round(low + i * step, 6)
        return int(value) if value == int(value) else value

    def size(i: int) -> int:
        if i not in files:
            files[i] = codec.encode(image, quality(i))
        return len(files[i])

    if size(0) > max_bytes:
        return None
    lo, hi = 0, last  # size(lo) <= max_bytes
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if size(mid) <= max_bytes:
            lo = mid
        else:
            hi = mid
    candidates = [i for i in range(max(0, lo - 2), min(last, lo + 2) + 1) if size(i) <= max_bytes]
    best = max(candidates, key=lambda i: (size(i), i))
    return quality(best), files[best]
