"""Encode and decode pipeline: image <-> bitstream.

Both directions run the same steps in the same order, so that the encoder uses
exactly what the decoder will recompute: z symbols -> z_hat -> h_s(z_hat) -> means
and scale indices -> y symbols -> y_hat -> g_s. The encoder never feeds the coder
anything the decoder cannot rebuild from the file.
"""

from __future__ import annotations

import functools
import math
import numbers
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import BitstreamError, CodecError, CodecNotice, ModelError
from ..models.registry import CodecModel, QualityScale, load_model, load_scale
from . import allocator, container, entropy, image_io, refine, repair, tiles
from .extras import Extras, alpha_chunk, pixels_and_chunks  # noqa: F401  (the API's names)
from .image_io import DEFAULT_MAX_PIXELS
from .metrics import bpp, jpeg_at_size, ms_ssim, psnr
from .results import Baseline, EncodeResult, Rate, chunk_bytes  # noqa: F401  (the API's)

QUALITY_MIN = 1.0  # the top quality is the model's number of levels (quality_range)

# What the encoding functions take as ``model``: one model, the qualities of several
# (the default scale: the general model below, the high-rate model above), or None for
# the default scale.
# A model, a scale of models, a shipped model's name (as `rdcodec models` lists it), or
# None for the default scale.
Models = CodecModel | QualityScale | str | None


def quality_range(model: Models = None) -> tuple[float, float]:
    """The qualities a model (or a scale of models) encodes: 1 to its number of levels,
    or the levels it was trained for."""
    return _scale(model).quality_range


def _scale(model: Models) -> QualityScale:
    if model is None or isinstance(model, str):
        return load_scale(model)  # ModelError for a name that is not shipped
    if isinstance(model, CodecModel):
        return QualityScale.single(model)
    if not isinstance(model, QualityScale):
        raise ModelError(
            "model must be a shipped model's name (see `rdcodec models`), a CodecModel or "
            f"a QualityScale, got {type(model).__name__}"
        )
    return model


def _bitstream(data) -> bytes:
    """A file's bytes from anything with the buffer protocol; a ``CodecError`` that says
    what is wanted for anything else (a path: read the file first)."""
    if isinstance(data, bytes):
        return data  # no copy: decode passes its bytes on to decode_array
    try:
        return bytes(memoryview(data))  # bytearray, mmap, a numpy uint8 array...
    except TypeError:
        hint = (
            " (read the file first: Path(p).read_bytes())" if isinstance(data, str | Path) else ""
        )
        raise CodecError(
            f"decoding takes the file's bytes, got {type(data).__name__}{hint}"
        ) from None


def _real_number(value) -> float | None:
    """``value`` as a float where it is a finite real number (numpy's scalars too); None
    for anything else: True and False, NaN and the infinities included."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def check_quality(quality: float, model: Models = None) -> int:
    """``quality`` in thousandths, or a ``CodecError`` where ``model`` does not code it."""
    lo, hi = quality_range(model)
    value = _real_number(quality)
    if value is None:
        raise CodecError(f"quality must be a number from {lo:g} to {hi:g}, got {quality!r}")
    if not lo <= value <= hi:
        raise CodecError(f"quality must be between {lo:g} and {hi:g}, got {value:g}")
    return int(round(value * 1000))


def check_target_bpp(target_bpp: float) -> float:
    """``target_bpp`` as a float, or a ``CodecError`` where it is no rate."""
    value = _real_number(target_bpp)
    if value is None or value <= 0:
        raise CodecError(f"target bpp must be a positive finite number, got {target_bpp!r}")
    return value


def _to_symbols(values: torch.Tensor) -> np.ndarray:
    v = values.double()  # a fresh tensor: the steps below work in place
    v.nan_to_num_(nan=0.0).round_()
    limit = entropy.VALUE_LIMIT - 1
    return v.clamp_(-limit, limit).to(torch.int32).numpy()


def _channel_indices(shape: tuple[int, ...]) -> np.ndarray:
    return np.broadcast_to(np.arange(shape[1])[None, :, None, None], shape)


def _quality_tensor(quality_milli: int) -> torch.Tensor:
    return torch.tensor([quality_milli / 1000], dtype=torch.float32)


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
    return tiles.analysis_tiled(model.network, image)


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


def _refined(
    model: CodecModel, image: np.ndarray, y_ungained: torch.Tensor, quality_milli: int, effort: int
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The latents (gained y, z) refined for this photo at ``effort`` (``codec/refine``);
    None at effort 0, where coding takes g_a's and h_a's outputs as they are."""
    schedule = effort_schedule(effort)
    if schedule is None:
        return None
    allocator.keep_large_blocks()  # every step makes and frees tensors of tens of MB
    net = model.network
    # torch.tensor copies (np.asarray of a PIL image is read-only, and from_numpy warns).
    x = torch.tensor(image).permute(2, 0, 1)[None].float().div(255)
    with torch.no_grad():
        y, z = net.hyper_analysis(y_ungained, _quality_tensor(quality_milli))
    with torch.enable_grad():
        return refine.refine(net, x, y, z, quality_milli / 1000, schedule)


def effort_schedule(effort: int) -> refine.Effort | None:
    """``refine.effort_schedule`` with a ``CodecError`` (one line for the CLI) for an
    unknown effort."""
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

    def code_slice(channels: slice, means: torch.Tensor, indices: np.ndarray, part=None):
        symbols = _to_symbols(y[:, channels].to(means.dtype) - means)
        stages.append((symbols, indices) if part is None else (symbols[part], indices[part]))
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
    metadata_bytes, alpha_bytes = chunk_bytes(header)
    rate = Rate(
        8 * container.OVERHEAD_BYTES,
        8 * len(z_payload),
        8 * len(y_payload),
        est_z,
        est_y,
        metadata_bits=8 * metadata_bytes,
        alpha_bits=8 * alpha_bytes,
    )
    return data, rate


def _slice_loop(net, z_sym: np.ndarray, code_slice):
    """The y side of coding, slice by slice in the order the decoder needs: each
    slice's means, scales and table indices (from the hyperprior and, with a channel
    context, from the decoded slices before it), then ``code_slice(channels, means,
    indices, part)`` gives its symbols (the encoder quantises y, the decoder reads the
    stream) where the boolean array ``part`` is true (None: everywhere; a checkerboard
    model codes each slice in two parts, the anchors, then the rest from parameters
    that the decoded anchors corrected). Returns the symbols, indices, means and scales
    of all of y."""
    hyper = net.coding_parameters(z_sym)
    parts: list[tuple] = []
    y_hat: list[torch.Tensor] = []
    slices = net.slice_channels()
    for k, channels in enumerate(slices):
        before = torch.cat(y_hat, dim=1) if y_hat else None
        means, scales, indices = net.slice_parameters(hyper, k, before)
        if net.config.checkerboard:
            anchor = np.broadcast_to(net.anchors(*indices.shape[2:]).numpy(), indices.shape)
            first = code_slice(channels, means, indices, anchor)
            decoded = torch.from_numpy(first).to(means.dtype) + means
            means, scales, indices = net.anchor_parameters(k, decoded, (means, scales, indices))
            symbols = np.where(anchor, first, code_slice(channels, means, indices, ~anchor))
        else:
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


def _model_for(header: container.Header, model: Models) -> CodecModel:
    if isinstance(model, str):
        model = load_scale(model)
    if isinstance(model, QualityScale):  # any of its models, else the file's own
        model = model.model_with(header.model_id, header.weights_hash)
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
    data: bytes, model: Models = None, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Latents:
    """Parse a file and entropy-decode its z and y symbols."""
    header, z_payload, y_payload = container.unpack(_bitstream(data))
    # An empty payload is a valid stream (all symbols at their table's most likely
    # value), so a 41-byte file may declare any size: bound the work it can demand.
    if header.width * header.height > max_pixels:
        raise BitstreamError(
            f"bitstream declares {header.width}x{header.height} = {header.width * header.height:,} "
            f"pixels, above the limit of {max_pixels:,} (raise it with --max-pixels)"
        )
    model = _model_for(header, model)
    levels = model.network.config.levels
    if header.quality_milli > 1000 * levels:
        raise BitstreamError(
            f"bitstream declares quality {header.quality_milli / 1000}, above model "
            f"'{model.name}''s {levels} levels"
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
    if net.config.slices == 1 and not net.config.checkerboard:
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

        def read_slice(channels, means, indices: np.ndarray, part=None) -> np.ndarray:
            if part is None:
                return decoder.decode(indices)
            symbols = np.zeros(indices.shape, dtype=np.int64)
            symbols[part] = decoder.decode(indices[part])
            return symbols

        y_sym, y_idx, means, scales = _slice_loop(net, z_sym, read_slice)
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
    data: bytes, model: Models = None, max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """Decode a bitstream to an (H, W, 3) uint8 array."""
    lat = decode_latents(data, model, max_pixels)
    q = _quality_tensor(lat.header.quality_milli)
    with lat.model.network.coding_kernels():
        return tiles.synthesis_tiled(
            lat.model.network, lat.y_hat, q, lat.header.height, lat.header.width
        )


def encode(
    image,
    quality: float | None = None,
    model: Models = None,
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
    (``extras`` replaces them; ``strip`` drops the metadata). ``model``: one model, a
    ``QualityScale``, or None for the default scale (``models/registry.py``).
    """
    effort_schedule(effort)  # an unknown effort fails before any work
    scale = _scale(model)
    quality_milli = check_quality(scale.default_quality if quality is None else quality, scale)
    if grayscale is None:
        grayscale = _is_grayscale(image)
    array, chunks = pixels_and_chunks(image, extras, strip, grayscale)
    coder = scale.model_for(quality_milli / 1000)
    data, _ = _encode(coder, array, quality_milli, grayscale, effort, chunks)
    return data


def _is_grayscale(image) -> bool:
    """Whether a file of ``image`` decodes to one channel by default: PIL images of a
    grey mode (L, LA, I;16), or of a grey file that Pillow opens in colour."""
    return isinstance(image, Image.Image) and image_io.is_grayscale(image)


def decode(data: bytes, model: Models = None, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode bitstream bytes to a PIL image (RGB, or L for a greyscale source; RGBA or
    LA with transparency), with the stored ICC profile, EXIF and XMP in ``info``."""
    data = _bitstream(data)
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
    model: Models = None,
    compare_jpeg: bool = True,
    grayscale: bool | None = None,
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
    effort_schedule(effort)  # an unknown effort fails before any work
    scale = _scale(model)
    if grayscale is None:
        grayscale = _is_grayscale(image)
    array, chunks = pixels_and_chunks(image, extras, strip, grayscale)
    start = time.perf_counter()
    if target_bpp is not None:
        quality, data, rate, effort = _encode_at_bpp(
            scale, array, target_bpp, grayscale, effort, chunks
        )
        quality_milli = int(round(quality * 1000))
        model = scale.model_for(quality)
    else:
        quality = scale.default_quality if quality is None else quality
        quality_milli = check_quality(quality, scale)
        model = scale.model_for(quality_milli / 1000)
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


def quality_for_bpp(image, target_bpp: float, model: Models = None, effort: int = 0) -> float:
    """Highest quality whose real file stays at or below ``target_bpp`` (bisection on
    the file size, to 1/1000 of a quality step)."""
    return encode_at_bpp(image, target_bpp, model, effort)[0]


def encode_at_bpp(
    image,
    target_bpp: float,
    model: Models = None,
    effort: int = 0,
    grayscale: bool | None = None,
    extras: Extras | None = None,
) -> tuple[float, bytes]:
    """``quality_for_bpp``'s quality and the file it found there (at or below the
    target, at every effort; the file's bytes include its metadata). Over a scale of
    models the search spans all of them. At ``effort`` > 0 the file is the effort-0 one
    where no refined file fits (rare): keep this file rather than encode the quality
    again at ``effort``, whose file would be over the target. ``grayscale`` as for
    ``encode``."""
    if grayscale is None:
        grayscale = _is_grayscale(image)
    array, chunks = pixels_and_chunks(image, extras, False, grayscale)
    quality, data, _, _ = _encode_at_bpp(
        _scale(model), array, target_bpp, grayscale, effort, chunks
    )
    return quality, data


# Refinement at effort > 0 changes a quality's file size (mostly down): the search for
# the target refines at most this many qualities and keeps the largest file that fits.
_REFINE_TRIES = 3


def _encode_at_bpp(
    scale: QualityScale,
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

    g_a does not depend on the quality (the gain comes after it), so it runs once per
    model of the scale; each bisection step only re-runs the hyperprior and the entropy
    coder, and writes the same bytes a full encode at that quality would. File sizes
    rise with the quality across the scale's models too (a high-rate model starts above
    where the model below it stops).
    """
    effort_schedule(effort)  # an unknown effort fails before any work
    target_bpp = check_target_bpp(target_bpp)
    height, width = array.shape[:2]
    pixels = height * width
    analysed: dict[CodecModel, torch.Tensor] = {}  # g_a's output, by model (hashed by identity)
    files: dict[int, tuple[bytes, Rate]] = {}  # effort-0 files by quality

    def model_and_y(quality_milli: int) -> tuple[CodecModel, torch.Tensor]:
        model = scale.model_for(quality_milli / 1000)
        if model not in analysed:
            analysed[model] = _analyse(model, array)
        return model, analysed[model]

    def coded(quality_milli: int, refined: bool = False) -> tuple[bytes, Rate]:
        model, y_ungained = model_and_y(quality_milli)
        if refined:
            latents = _refined(model, array, y_ungained, quality_milli, effort)
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

    q_min, q_max = quality_range(scale)
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
        refined = coded(quality_milli, refined=True)
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
