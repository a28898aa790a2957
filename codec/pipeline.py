"""Encode and decode pipeline: image <-> bitstream.

Both directions run the same steps in the same order, so that the encoder uses
exactly what the decoder will recompute: z symbols -> z_hat -> h_s(z_hat) -> means
and scale indices -> y symbols -> y_hat -> g_s. The encoder never feeds the coder
anything the decoder cannot rebuild from the file.
"""

from __future__ import annotations

import functools
import math
import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from ..errors import BitstreamError, CodecError, CodecNotice, ImageError, ModelError
from ..models.registry import CodecModel, load_model
from . import container, entropy, refine, repair
from .image_io import DEFAULT_MAX_PIXELS, GRAYSCALE_MODES
from .metrics import JpegPoint, bpp, jpeg_at_size, ms_ssim, psnr

QUALITY_MIN = 1.0  # the top quality is the model's number of levels (quality_range)


@dataclass(frozen=True)
class Rate:
    """Where the bits of a file go (file bits = header + z + y exactly)."""

    header_bits: int
    z_bits: int
    y_bits: int
    estimate_z_bits: float  # the model's -log2 p of the coded z symbols
    estimate_y_bits: float  # the model's -log2 p of the coded y symbols
    metadata_bits: int = 0  # ICC, EXIF and XMP chunks (with the chunk section's framing)
    alpha_bits: int = 0  # the alpha plane's chunk

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
            None if alpha is None else _alpha_plane(alpha, header.height, header.width),
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


def _alpha_plane(chunk: bytes, height: int, width: int) -> np.ndarray:
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


def quality_range(model: CodecModel) -> tuple[float, float]:
    """The qualities a model codes: 1 to its number of trained levels."""
    return QUALITY_MIN, float(model.network.config.levels)


def _check_quality(quality: float, model: CodecModel) -> int:
    lo, hi = quality_range(model)
    if not (isinstance(quality, (int, float)) and lo <= quality <= hi):
        raise CodecError(f"quality must be between {lo:g} and {hi:g}, got {quality}")
    return int(round(quality * 1000))


def _as_array(image) -> np.ndarray:
    if isinstance(image, Image.Image):
        from .image_io import to_rgb

        return to_rgb(image)
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ImageError(f"expected an (H, W, 3) uint8 array, got {arr.dtype} {arr.shape}")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ImageError("image has no pixels")
    return arr


def _to_symbols(values: torch.Tensor) -> np.ndarray:
    v = values.double()  # a fresh tensor: the steps below work in place
    v.nan_to_num_(nan=0.0).round_()
    limit = entropy.VALUE_LIMIT - 1
    return v.clamp_(-limit, limit).to(torch.int32).numpy()


def _channel_indices(shape: tuple[int, ...]) -> np.ndarray:
    return np.broadcast_to(np.arange(shape[1])[None, :, None, None], shape)


def _quality_tensor(quality_milli: int) -> torch.Tensor:
    return torch.tensor([quality_milli / 1000], dtype=torch.float32)


# Large images run the transforms on overlapping tiles whose borders are cropped
# away, so memory stays bounded and no seam shows: the margins cover the transforms'
# receptive fields (g_a: 61 px, i.e. +-30 px; g_s: +-2 latents). Up to WHOLE_LATENTS y
# positions (4 MP) the image is one tile: tiling costs (1 + 2 * margin / tile)^2 more
# pixels, and memory does not need it there. The tiling depends only on the image
# size, so encoder and decoder cut the same tiles.
WHOLE_LATENTS = 4_000_000 // 256  # y positions of a 4 MP image
TILE_LATENTS = 64  # tile side in y positions (1024 px) beyond that
# g_s's tiles are smaller: its float activations at full resolution cost about 0.4 GB
# per 1024 px tile, and the decoded pixels, unlike g_a's latents, are not part of the
# file, so the decoder may cut them as memory asks (any image over one tile).
SYNTHESIS_TILE_LATENTS = 48  # 768 px


def _tiles(size: int, whole: bool, tile: int = TILE_LATENTS):
    """(start, stop) of each tile along one axis of ``size`` y positions."""
    if whole:
        return [(0, size)]
    return [(a, min(a + tile, size)) for a in range(0, size, tile)]


def _analysis_tiled(net, image: np.ndarray) -> torch.Tensor:
    """g_a over overlapping tiles of the uint8 image (before the quality's gain).

    Each tile is cut (with edge replication past the border, the padding to a multiple
    of 64) and converted to float on its own, so no float copy of the whole image exists.
    """
    height, width = image.shape[:2]
    s = net.stride
    h = -(-height // net.multiple) * net.multiple // s
    w = -(-width // net.multiple) * net.multiple // s
    y = torch.empty(1, net.config.M, h, w)
    m, whole = net.margin, h * w <= WHOLE_LATENTS
    for t0, t1 in _tiles(h, whole):
        for l0, l1 in _tiles(w, whole):
            a0, a1, b0, b1 = max(0, t0 - m), min(h, t1 + m), max(0, l0 - m), min(w, l1 + m)
            tile = _padded_crop(image, a0 * s, a1 * s, b0 * s, b1 * s)
            out = net.analysis_transform(tile)
            y[:, :, t0:t1, l0:l1] = out[:, :, t0 - a0 : t1 - a0, l0 - b0 : l1 - b0]
    return y


def _padded_crop(image: np.ndarray, r0: int, r1: int, c0: int, c1: int) -> torch.Tensor:
    """Rows r0..r1 and columns c0..c1 of the uint8 image as a (1, 3, h, w) float tensor
    in [0, 1], the edge replicated past the border (the padding to a multiple of 64)."""
    height, width = image.shape[:2]
    rows = np.minimum(np.arange(r0, r1), height - 1)
    cols = np.minimum(np.arange(c0, c1), width - 1)
    return torch.from_numpy(image[np.ix_(rows, cols)]).permute(2, 0, 1)[None].float().div(255)


def _synthesis_tiled(
    net, y_hat: torch.Tensor, q: torch.Tensor, height: int, width: int
) -> np.ndarray:
    """g_s over overlapping latent tiles, straight into the cropped uint8 image."""
    h, w = y_hat.shape[2:]
    image = np.empty((height, width, 3), dtype=np.uint8)
    m, s, tile = net.margin, net.stride, SYNTHESIS_TILE_LATENTS
    whole = h <= tile + m and w <= tile + m
    for t0, t1 in _tiles(h, whole, tile):
        for l0, l1 in _tiles(w, whole, tile):
            if t0 * s >= height or l0 * s >= width:
                continue  # the tile lies entirely in the padding
            a0, a1, b0, b1 = max(0, t0 - m), min(h, t1 + m), max(0, l0 - m), min(w, l1 + m)
            out = net.decoding_synthesis(y_hat[:, :, a0:a1, b0:b1], q)
            rows = (t0 * s, min(t1 * s, height))
            cols = (l0 * s, min(l1 * s, width))
            crop = out[
                0, :, rows[0] - a0 * s : rows[1] - a0 * s, cols[0] - b0 * s : cols[1] - b0 * s
            ]
            image[rows[0] : rows[1], cols[0] : cols[1]] = _to_uint8(crop)
    return image


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [0, 1] -> (H, W, 3) uint8."""
    return x.clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).contiguous().numpy()


def _coding(fn):
    """Coding never needs gradients, and runs on the kernels its model's files were
    written with (``Hyperprior.coding_kernels``: native convolutions for the float
    model of wire id 1, torch's choice, oneDNN, for the exact models). The first
    argument of a decorated function is the model, or None to use the default."""

    @functools.wraps(fn)
    def wrapper(model, *args, **kwargs):
        with torch.no_grad(), (model or load_model()).network.coding_kernels():
            return fn(model, *args, **kwargs)

    return wrapper


@_coding
def _analyse(model: CodecModel, image: np.ndarray) -> torch.Tensor:
    """The quality-independent part of encoding: g_a of the whole image."""
    return _analysis_tiled(model.network, image)


def _encode(
    model: CodecModel,
    image: np.ndarray,
    quality_milli: int,
    grayscale: bool = False,
    effort: int = refine.DEFAULT_EFFORT,
    chunks: tuple[tuple[bytes, bytes], ...] = (),
) -> tuple[bytes, Rate]:
    height, width = image.shape[:2]
    y_ungained = _analyse(model, image)
    latents = _refined(model, image, y_ungained, quality_milli, effort)
    return _code(model, y_ungained, height, width, quality_milli, grayscale, latents, chunks)


# Refinement backpropagates through g_s over the whole image at once.
REFINE_MAX_PIXELS = 4_000_000


def _refined(
    model: CodecModel, image: np.ndarray, y_ungained: torch.Tensor, quality_milli: int, effort: int
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The latents (gained y, z) refined for this photo at ``effort`` (``codec/refine``);
    None at effort 0, where coding takes g_a's and h_a's outputs as they are."""
    schedule = _effort_schedule(effort)
    if schedule is None:
        return None
    height, width = image.shape[:2]
    if height * width > REFINE_MAX_PIXELS:
        raise CodecError(
            f"--effort {effort} refines images of up to {REFINE_MAX_PIXELS:,} pixels; "
            f"this one has {height * width:,} (use --effort 0)"
        )
    net = model.network
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float().div(255)
    with torch.no_grad():
        y, z = net.hyper_analysis(y_ungained, _quality_tensor(quality_milli))
    with torch.enable_grad():
        return refine.refine(net, x, y, z, quality_milli / 1000, schedule)


def _effort_schedule(effort: int) -> refine.Effort | None:
    try:
        return refine.effort_schedule(effort)
    except ValueError as exc:
        raise CodecError(str(exc)) from None


@_coding
def _code(
    model: CodecModel,
    y_ungained: torch.Tensor,
    height: int,
    width: int,
    quality_milli: int,
    grayscale: bool = False,
    latents: tuple[torch.Tensor, torch.Tensor] | None = None,
    chunks: tuple[tuple[bytes, bytes], ...] = (),
) -> tuple[bytes, Rate]:
    """Everything after g_a, at one quality: gain, hyperprior, entropy coding, container.
    ``latents``: refined (gained y, z) to code instead of g_a's and h_a's."""
    net = model.network
    if latents is None:
        y, z = net.hyper_analysis(y_ungained, _quality_tensor(quality_milli))
    else:
        y, z = latents
    z_sym = _to_symbols(net.z_residual(z))
    z_hat = net.z_hat(z_sym)
    stages = []  # (symbols, table indices) of each slice of y

    def code_slice(channels: slice, means: torch.Tensor, indices: np.ndarray) -> np.ndarray:
        symbols = _to_symbols(y[:, channels].to(means.dtype) - means)
        stages.append((symbols, indices))
        return symbols

    y_sym, y_idx, means, scales = _slice_loop(net, z_sym, code_slice)
    z_tables, y_tables = _table_sets(model)
    z_payload = entropy.encode(z_sym, _channel_indices(z_sym.shape), z_tables)
    y_payload = entropy.encode_stages(stages, y_tables)
    header = container.Header(
        model.wire_id,
        model.hash_prefix,
        height,
        width,
        quality_milli,
        repair.index_crc(y_idx),
        flags=container.FLAG_GRAYSCALE if grayscale else 0,
        chunks=chunks,
    )
    try:
        data = container.pack(header, z_payload, y_payload)
    except BitstreamError as exc:
        raise CodecError(f"cannot store the metadata: {exc}") from None

    y_hat = torch.from_numpy(y_sym).to(means.dtype) + means
    est_y = net.estimate_y_bits(y_hat.float(), scales.float(), means.float())
    est_z = net.estimate_z_bits(z_hat)
    alpha_bits = 8 * len(header.chunk(b"ALPH") or b"")
    rate = Rate(
        8 * container.OVERHEAD_BYTES,
        8 * len(z_payload),
        8 * len(y_payload),
        est_z,
        est_y,
        metadata_bits=8 * header.chunk_bytes - alpha_bits,
        alpha_bits=alpha_bits,
    )
    return data, rate


def _slice_loop(net, z_sym: np.ndarray, code_slice):
    """The y side of coding, slice by slice in the order the decoder needs: each
    slice's means, scales and table indices (from the hyperprior and, with a channel
    context, from the decoded slices before it), then ``code_slice(channels, means,
    indices)`` gives its symbols (the encoder quantises y, the decoder reads the
    stream). Returns the symbols, indices, means and scales of all of y."""
    hyper = net.coding_parameters(z_sym)
    parts: list[tuple] = []
    y_hat: list[torch.Tensor] = []
    slices = net.slice_channels()
    for k, channels in enumerate(slices):
        before = torch.cat(y_hat, dim=1) if y_hat else None
        means, scales, indices = net.slice_parameters(hyper, k, before)
        symbols = code_slice(channels, means, indices)
        if k < len(slices) - 1:
            y_hat.append(torch.from_numpy(symbols).to(means.dtype) + means)
        parts.append((symbols, indices, means, scales))
    if len(parts) == 1:
        return parts[0]
    symbols, indices, means, scales = zip(*parts, strict=True)
    return (
        np.concatenate(symbols, axis=1),
        np.concatenate(indices, axis=1),
        torch.cat(means, dim=1),
        torch.cat(scales, dim=1),
    )


def _model_for(header: container.Header, model: CodecModel | None) -> CodecModel:
    if model is None:
        model = load_model(wire_id=header.model_id)
    if header.model_id != model.wire_id or header.weights_hash != model.hash_prefix:
        raise ModelError(
            f"bitstream needs model id {header.model_id} with weights sha256 "
            f"{header.weights_hash.hex()}..., "
            f"but '{model.name}' (id {model.wire_id}) has {model.sha256[:16]}...; "
            "install the rdcodec version that wrote it"
        )
    return model


@dataclass(frozen=True)
class Latents:
    """What the decoder reconstructs from a file before the synthesis transform."""

    header: container.Header
    model: CodecModel
    z_symbols: np.ndarray  # (1, N, h/4, w/4) int64
    z_hat: torch.Tensor
    y_symbols: np.ndarray  # (1, M, h, w) int64
    y_indices: np.ndarray  # (1, M, h, w) table index of each y symbol
    means: torch.Tensor
    scales: torch.Tensor
    z_payload_bytes: int
    y_payload_bytes: int

    @property
    def y_hat(self) -> torch.Tensor:
        """symbols + means (exact, in the means' precision), as float32."""
        return (torch.from_numpy(self.y_symbols).to(self.means.dtype) + self.means).float()

    def table_bits(self) -> tuple[np.ndarray, np.ndarray]:
        """-log2 p of every z and y symbol under the integer tables the coder used,
        shaped as the symbols."""
        z_tables, y_tables = _table_sets(self.model)
        z_bits = z_tables.bits(self.z_symbols, _channel_indices(self.z_symbols.shape))
        return z_bits, y_tables.bits(self.y_symbols, self.y_indices)

    @torch.no_grad()
    def estimate_bits(self) -> tuple[float, float]:
        """The network's -log2 p of z and of y: the estimate ``Rate`` reports at encode."""
        net = self.model.network
        return net.estimate_z_bits(self.z_hat), net.estimate_y_bits(
            self.y_hat, self.scales.float(), self.means.float()
        )


@functools.lru_cache(maxsize=8)
def _table_sets(model: CodecModel) -> tuple[entropy.TableSet, entropy.TableSet]:
    # Built once per model: constriction models are cached inside each TableSet.
    return entropy.TableSet.from_arrays(model.z_tables), entropy.TableSet.from_arrays(
        model.y_tables
    )


@torch.no_grad()
def decode_latents(
    data: bytes, model: CodecModel | None = None, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Latents:
    """Parse a file and entropy-decode its z and y symbols."""
    header, z_payload, y_payload = container.unpack(bytes(data))
    # An empty payload is a valid stream (all symbols at their table's most likely
    # value), so a 41-byte file may declare any size: bound the work it can demand.
    if header.width * header.height > max_pixels:
        raise BitstreamError(
            f"bitstream declares {header.width}x{header.height} = {header.width * header.height:,} "
            f"pixels, above the limit of {max_pixels:,} (raise it with --max-pixels)"
        )
    model = _model_for(header, model)
    if header.quality_milli > 1000 * quality_range(model)[1]:
        raise BitstreamError(
            f"bitstream declares quality {header.quality_milli / 1000}, above model "
            f"'{model.name}''s {quality_range(model)[1]:g} levels"
        )
    with model.network.coding_kernels():
        return _decode_latents(header, z_payload, y_payload, model)


def _decode_latents(
    header: container.Header, z_payload: bytes, y_payload: bytes, model: CodecModel
) -> Latents:
    net = model.network
    pad_h = -(-header.height // net.multiple) * net.multiple
    pad_w = -(-header.width // net.multiple) * net.multiple
    z_shape = (1, net.config.N, pad_h // net.multiple, pad_w // net.multiple)

    z_tables, y_tables = _table_sets(model)
    z_sym = entropy.decode(z_payload, _channel_indices(z_shape), z_tables)
    z_hat = net.z_hat(z_sym)
    mismatch = BitstreamError(
        "decoder's entropy parameters differ from the encoder's (different weights or "
        "arithmetic on this machine); refusing to decode a wrong image"
    )
    if net.config.slices == 1:
        # The indices are all known before decoding: check them first, and where table
        # choice is not exact, repair indices that moved across a table boundary.
        means, scales, y_idx = net.coding_parameters(z_sym)
        if repair.index_crc(y_idx) != header.index_crc:
            y_idx = _repaired(net, scales, y_idx, header.index_crc)
            if y_idx is None:
                raise mismatch
        y_sym = entropy.decode(y_payload, y_idx, y_tables)
    else:
        # Each slice's indices depend on the slices before it: check them at the end
        # (a channel context needs an exact model, so there is nothing to repair).
        decoder = entropy.StageDecoder(y_payload, y_tables)
        y_sym, y_idx, means, scales = _slice_loop(
            net, z_sym, lambda channels, means, indices: decoder.decode(indices)
        )
        if repair.index_crc(y_idx) != header.index_crc:
            raise mismatch
        decoder.finish()
    return Latents(
        header, model, z_sym, z_hat, y_sym, y_idx, means, scales, len(z_payload), len(y_payload)
    )


def _repaired(net, scales: torch.Tensor, indices: np.ndarray, crc: int) -> np.ndarray | None:
    """The indices whose CRC is the header's, found by moving a few that sit on a table
    boundary (``codec/repair.py``); None where table choice is exact or nothing within
    the repair's budget matches."""
    margins = net.index_margins(scales)
    if margins is None:
        return None
    fixed = repair.repair_indices(indices, *margins, crc)
    if fixed is None:
        return None
    plural = "index" if fixed.flipped == 1 else "indices"
    warnings.warn(
        f"repaired {fixed.flipped} scale {plural} computed differently on this CPU "
        f"({fixed.candidates} near a table boundary, {fixed.tries} tries, CRC-32 confirmed)",
        CodecNotice,
        stacklevel=2,
    )
    return fixed.indices


@torch.no_grad()
def decode_array(
    data: bytes, model: CodecModel | None = None, max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """Decode a bitstream to an (H, W, 3) uint8 array."""
    lat = decode_latents(data, model, max_pixels)
    q = _quality_tensor(lat.header.quality_milli)
    with lat.model.network.coding_kernels():
        return _synthesis_tiled(
            lat.model.network, lat.y_hat, q, lat.header.height, lat.header.width
        )


def encode(
    image,
    quality: float | None = None,
    model: CodecModel | None = None,
    grayscale: bool | None = None,
    effort: int = refine.DEFAULT_EFFORT,
    extras: Extras | None = None,
    strip: bool = False,
) -> bytes:
    """Encode an image (PIL image or (H, W, 3) uint8 array) to bitstream bytes.

    ``grayscale`` marks the file to decode to one channel; by default it is set for
    PIL images of mode L/LA/I;16. ``effort`` > 0 refines the latents for this photo
    (``codec/refine.py``): smaller or better files for more encode time, read by the
    same decoder. A PIL image's ICC profile, EXIF, XMP and transparency are stored
    (``extras`` replaces them; ``strip`` drops the metadata).
    """
    model = model or load_model()
    quality = model.default_quality if quality is None else quality
    if grayscale is None:
        grayscale = isinstance(image, Image.Image) and image.mode in GRAYSCALE_MODES
    array, chunks = _input(image, extras, strip)
    data, _ = _encode(model, array, _check_quality(quality, model), grayscale, effort, chunks)
    return data


def _input(image, extras: Extras | None, strip: bool) -> tuple[np.ndarray, tuple]:
    """The RGB pixels to code and the chunks to store with them."""
    found = None
    if isinstance(image, Image.Image):
        from .image_io import metadata_of, split_alpha

        array, alpha = split_alpha(image)
        icc_profile, exif, xmp, _ = metadata_of(image)
        found = Extras(icc_profile, exif, xmp, alpha)
    else:
        array = _as_array(image)
    extras = extras if extras is not None else found
    if extras is None:
        return array, ()
    if extras.alpha is not None and extras.alpha.shape != array.shape[:2]:
        raise ImageError(f"alpha plane {extras.alpha.shape} does not match the image")
    return array, (extras.stripped() if strip else extras).chunks()


def decode(
    data: bytes, model: CodecModel | None = None, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Image.Image:
    """Decode bitstream bytes to a PIL image (RGB, or L for a greyscale source; RGBA or
    LA with transparency), with the stored ICC profile, EXIF and XMP in ``info``."""
    image = Image.fromarray(decode_array(data, model, max_pixels))
    header = read_header(data)
    if header.grayscale:
        image = image.convert("L")
    extras = Extras.of(header)
    if extras.alpha is not None:
        image.putalpha(Image.fromarray(extras.alpha, "L"))
    for key, value in (("icc_profile", extras.icc_profile), ("exif", extras.exif)):
        if value:
            image.info[key] = value
    if extras.xmp:
        image.info["xmp"] = extras.xmp
    return image


def encode_image(
    image,
    quality: float | None = None,
    model: CodecModel | None = None,
    compare_jpeg: bool = True,
    grayscale: bool = False,
    effort: int = refine.DEFAULT_EFFORT,
    target_bpp: float | None = None,
    extras: Extras | None = None,
    strip: bool = False,
) -> EncodeResult:
    """Encode, decode the bytes just written, and measure everything on the decoded pixels.

    ``target_bpp`` instead of ``quality``: the highest quality whose file at this effort
    stays at or below it (``encode_at_bpp``). At ``effort`` > 0 the result also holds the
    effort-0 file's size and PSNR (``baseline``): the amortisation gap on this photo.
    """
    model = model or load_model()
    array, chunks = _input(image, extras, strip)
    start = time.perf_counter()
    if target_bpp is not None:
        quality, data, rate, effort = _encode_at_bpp(
            model, array, target_bpp, grayscale, effort, chunks
        )
        quality_milli = int(round(quality * 1000))
    else:
        quality = model.default_quality if quality is None else quality
        quality_milli = _check_quality(quality, model)
        data, rate = _encode(model, array, quality_milli, grayscale, effort, chunks)
    encode_seconds = time.perf_counter() - start
    start = time.perf_counter()
    decoded = decode_array(data, model)
    decode_seconds = time.perf_counter() - start
    baseline = None
    if effort:
        single, _ = _encode(model, array, quality_milli, grayscale, 0, chunks)
        baseline = Baseline(len(single), psnr(array, decode_array(single, model)))
    pixels = array.shape[0] * array.shape[1]
    return EncodeResult(
        data=data,
        width=array.shape[1],
        height=array.shape[0],
        quality=quality_milli / 1000,
        model=model.name,
        bpp=bpp(len(data), pixels),
        psnr=psnr(array, decoded),
        ms_ssim=ms_ssim(array, decoded),
        rate=rate,
        encode_seconds=encode_seconds,
        decode_seconds=decode_seconds,
        jpeg=jpeg_at_size(array, len(data)) if compare_jpeg else None,
        effort=effort,
        baseline=baseline,
    )


def read_header(data: bytes) -> container.Header:
    """Parse and validate a bitstream's header (and CRC) without decoding it."""
    header, _, _ = container.unpack(bytes(data))
    return header


def quality_for_bpp(
    image, target_bpp: float, model: CodecModel | None = None, effort: int = 0
) -> float:
    """Highest quality whose real file stays at or below ``target_bpp`` (bisection on
    the file size, to 1/1000 of a quality step)."""
    return encode_at_bpp(image, target_bpp, model, effort)[0]


def encode_at_bpp(
    image,
    target_bpp: float,
    model: CodecModel | None = None,
    effort: int = 0,
    grayscale: bool = False,
    extras: Extras | None = None,
) -> tuple[float, bytes]:
    """``quality_for_bpp``'s quality and the file it found there (at or below the
    target, at every effort; the file's bytes include its metadata)."""
    model = model or load_model()
    array, chunks = _input(image, extras, False)
    quality, data, _, _ = _encode_at_bpp(model, array, target_bpp, grayscale, effort, chunks)
    return quality, data


# Refinement at effort > 0 changes a quality's file size (mostly down): the search for
# the target refines at most this many qualities and keeps the largest file that fits.
_REFINE_TRIES = 3


def _encode_at_bpp(
    model: CodecModel,
    array: np.ndarray,
    target_bpp: float,
    grayscale: bool,
    effort: int,
    chunks: tuple = (),
) -> tuple[float, bytes, Rate, int]:
    """Bisection on the real file size at effort 0; at effort > 0, refined files at the
    quality found, then at the quality whose effort-0 size, scaled by how much
    refinement changed it, meets the target (the effort-0 file where none fits).
    Returns the quality, the file, its rate and the effort that made it.

    g_a does not depend on the quality (the gain comes after it), so it runs once; each
    bisection step only re-runs the hyperprior and the entropy coder, and writes the
    same bytes a full encode at that quality would.
    """
    _effort_schedule(effort)  # an unknown effort fails before any work
    height, width = array.shape[:2]
    pixels = height * width
    y_ungained = _analyse(model, array)
    files: dict[int, tuple[bytes, Rate]] = {}  # effort-0 files by quality

    def coded(quality_milli: int, latents=None) -> tuple[bytes, Rate]:
        if latents is not None:
            return _code(
                model, y_ungained, height, width, quality_milli, grayscale, latents, chunks
            )
        if quality_milli not in files:
            files[quality_milli] = _code(
                model, y_ungained, height, width, quality_milli, grayscale, None, chunks
            )
        return files[quality_milli]

    def file_bpp(quality_milli: int) -> float:
        return bpp(len(coded(quality_milli)[0]), pixels)

    q_min, q_max = quality_range(model)
    bottom, top = int(q_min * 1000), int(q_max * 1000)

    def highest_within(target: float) -> int:
        if file_bpp(top) <= target:
            return top
        lo, hi = bottom, top
        while hi - lo > 1:  # invariant: bpp(lo) <= target < bpp(hi), or lo is the bottom
            mid = (lo + hi) // 2
            if file_bpp(mid) <= target:
                lo = mid
            else:
                hi = mid
        return lo

    lowest = file_bpp(bottom)
    if lowest > target_bpp:
        raise CodecError(
            f"target {target_bpp:g} bpp is below the lowest quality's {lowest:.4f} bpp"
        )
    found = highest_within(target_bpp)
    best: tuple[float, int, tuple[bytes, Rate]] | None = None
    quality_milli, tried = found, set()
    for _ in range(_REFINE_TRIES if effort else 0):
        if quality_milli in tried:
            break
        tried.add(quality_milli)
        refined = coded(quality_milli, _refined(model, array, y_ungained, quality_milli, effort))
        size = bpp(len(refined[0]), pixels)
        if size <= target_bpp and (best is None or size > best[0]):
            best = (size, quality_milli, refined)
        # Where refinement moved the size by a factor, aim the next try at the quality
        # whose effort-0 file is the target over that factor.
        factor = size / file_bpp(quality_milli)
        quality_milli = highest_within(target_bpp / factor)
        if best is not None and best[0] > 0.98 * target_bpp:
            break
    if best is not None:
        return best[1] / 1000, *best[2], effort
    return found / 1000, *coded(found), 0
