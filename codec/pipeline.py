"""Encode and decode pipeline: image <-> bitstream.

Both directions run the same steps in the same order, so that the encoder uses
exactly what the decoder will recompute: z symbols -> z_hat -> h_s(z_hat) -> means
and scale indices -> y symbols -> y_hat -> g_s. The encoder never feeds the coder
anything the decoder cannot rebuild from the file.
"""

from __future__ import annotations

import math
import time
import zlib
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from ..errors import BitstreamError, CodecError, ImageError, ModelError
from ..models.network import SCALE_LEVELS, SCALE_MAX, SCALE_MIN
from ..models.registry import CodecModel, load_model
from . import container, entropy
from .metrics import JpegPoint, bpp, jpeg_at_size, ms_ssim, psnr

QUALITY_MIN, QUALITY_MAX = 1.0, 8.0
_LOG_SCALE_STEP = (math.log(SCALE_MAX) - math.log(SCALE_MIN)) / (SCALE_LEVELS - 1)


@dataclass(frozen=True)
class Rate:
    """Where the bits of a file go (file bits = header + z + y exactly)."""

    header_bits: int
    z_bits: int
    y_bits: int
    estimate_z_bits: float  # the model's -log2 p of the coded z symbols
    estimate_y_bits: float  # the model's -log2 p of the coded y symbols

    @property
    def file_bits(self) -> int:
        return self.header_bits + self.z_bits + self.y_bits

    @property
    def estimate_bits(self) -> float:
        return self.estimate_z_bits + self.estimate_y_bits

    @property
    def overhead_percent(self) -> float:
        """How much larger the real file is than the model's estimate, in %."""
        return 100 * (self.file_bits / self.estimate_bits - 1) if self.estimate_bits else math.inf


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
            "bits": {"header": r.header_bits, "z": r.z_bits, "y": r.y_bits, "file": r.file_bits},
            "estimate_bits": {"z": r.estimate_z_bits, "y": r.estimate_y_bits, "total": r.estimate_bits},
            "overhead_percent": r.overhead_percent,
            "encode_seconds": self.encode_seconds,
            "decode_seconds": self.decode_seconds,
            "jpeg_same_bpp": jpeg,
        }


def _check_quality(quality: float) -> int:
    if not (isinstance(quality, (int, float)) and QUALITY_MIN <= quality <= QUALITY_MAX):
        raise CodecError(f"quality must be between {QUALITY_MIN:g} and {QUALITY_MAX:g}, got {quality}")
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


def scale_indices(scales: torch.Tensor) -> np.ndarray:
    """Table index of each predicted scale: nearest table scale in the log domain."""
    s = np.clip(scales.double().numpy(), SCALE_MIN, SCALE_MAX)
    idx = np.rint((np.log(s) - math.log(SCALE_MIN)) / _LOG_SCALE_STEP)
    return np.clip(idx, 0, SCALE_LEVELS - 1).astype(np.int64)


def _index_crc(indices: np.ndarray) -> int:
    return zlib.crc32(indices.astype(np.uint8).tobytes())


def _to_symbols(values: torch.Tensor) -> np.ndarray:
    v = torch.nan_to_num(values.double(), nan=0.0).round()
    limit = entropy.VALUE_LIMIT - 1
    return v.clamp(-limit, limit).long().numpy()


def _channel_indices(shape: tuple[int, ...]) -> np.ndarray:
    return np.broadcast_to(np.arange(shape[1])[None, :, None, None], shape)


def _quality_tensor(quality_milli: int) -> torch.Tensor:
    return torch.tensor([quality_milli / 1000], dtype=torch.float32)


def _pad(x: torch.Tensor, multiple: int) -> torch.Tensor:
    h, w = x.shape[2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        x = torch.nn.functional.pad(x, (0, pw, 0, ph), mode="replicate")
    return x


def _to_image(x_hat: torch.Tensor, height: int, width: int) -> np.ndarray:
    x = x_hat[0, :, :height, :width].clamp(0, 1).mul(255).round()
    return x.byte().permute(1, 2, 0).contiguous().numpy()


@torch.no_grad()
def _encode(model: CodecModel, image: np.ndarray, quality_milli: int) -> tuple[bytes, Rate]:
    net = model.network
    height, width = image.shape[:2]
    q = _quality_tensor(quality_milli)
    x = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float().div(255)
    y, z = net.analysis(_pad(x, net.multiple), q)

    medians = net.z_medians()[None, :, None, None]
    z_sym = _to_symbols(z - medians)
    z_hat = torch.from_numpy(z_sym).float() + medians
    means, scales = net.entropy_parameters(z_hat)
    y_idx = scale_indices(scales)
    y_sym = _to_symbols(y - means)

    z_tables = entropy.TableSet.from_arrays(model.z_tables)
    y_tables = entropy.TableSet.from_arrays(model.y_tables)
    z_payload = entropy.encode(z_sym, _channel_indices(z_sym.shape), z_tables)
    y_payload = entropy.encode(y_sym, y_idx, y_tables)
    header = container.Header(
        model.wire_id, model.hash_prefix, height, width, quality_milli, _index_crc(y_idx)
    )
    data = container.pack(header, z_payload, y_payload)

    y_hat = torch.from_numpy(y_sym).float() + means
    est_y = -torch.log2(net.gaussian_conditional._likelihood(y_hat, scales, means)).sum().item()
    est_z = -torch.log2(net.entropy_bottleneck._likelihood(_per_channel(z_hat))[0]).sum().item()
    rate = Rate(8 * container.OVERHEAD_BYTES, 8 * len(z_payload), 8 * len(y_payload), est_z, est_y)
    return data, rate


def _per_channel(z: torch.Tensor) -> torch.Tensor:
    """(1, C, H, W) -> (C, 1, H*W), the layout the entropy bottleneck expects."""
    return z.permute(1, 0, 2, 3).reshape(z.shape[1], 1, -1)


def _model_for(header: container.Header, model: CodecModel | None) -> CodecModel:
    if model is None:
        model = load_model(wire_id=header.model_id)
    if header.model_id != model.wire_id or header.weights_hash != model.hash_prefix:
        raise ModelError(
            f"bitstream needs model id {header.model_id} with weights sha256 {header.weights_hash.hex()}..., "
            f"but '{model.name}' (id {model.wire_id}) has {model.sha256[:16]}...; "
            "install the rdcodec version that wrote it"
        )
    return model


@torch.no_grad()
def decode_array(data: bytes, model: CodecModel | None = None) -> np.ndarray:
    """Decode a bitstream to an (H, W, 3) uint8 array."""
    header, z_payload, y_payload = container.unpack(bytes(data))
    model = _model_for(header, model)
    net = model.network
    q = _quality_tensor(header.quality_milli)
    pad_h = -(-header.height // net.multiple) * net.multiple
    pad_w = -(-header.width // net.multiple) * net.multiple
    z_shape = (1, net.config.N, pad_h // net.multiple, pad_w // net.multiple)

    z_tables = entropy.TableSet.from_arrays(model.z_tables)
    z_sym = entropy.decode(z_payload, _channel_indices(z_shape), z_tables)
    medians = net.z_medians()[None, :, None, None]
    z_hat = torch.from_numpy(z_sym).float() + medians
    means, scales = net.entropy_parameters(z_hat)
    y_idx = scale_indices(scales)
    if _index_crc(y_idx) != header.index_crc:
        raise BitstreamError(
            "decoder's entropy parameters differ from the encoder's (different weights or "
            "arithmetic on this machine); refusing to decode a wrong image"
        )
    y_sym = entropy.decode(y_payload, y_idx, entropy.TableSet.from_arrays(model.y_tables))
    y_hat = torch.from_numpy(y_sym).float() + means
    x_hat = net.synthesis(y_hat, q)
    return _to_image(x_hat, header.height, header.width)


def encode(image, quality: float | None = None, model: CodecModel | None = None) -> bytes:
    """Encode an image (PIL image or (H, W, 3) uint8 array) to bitstream bytes."""
    model = model or load_model()
    quality = model.default_quality if quality is None else quality
    data, _ = _encode(model, _as_array(image), _check_quality(quality))
    return data


def decode(data: bytes, model: CodecModel | None = None) -> Image.Image:
    """Decode bitstream bytes to an RGB PIL image."""
    return Image.fromarray(decode_array(data, model))


def encode_image(
    image, quality: float | None = None, model: CodecModel | None = None, compare_jpeg: bool = True
) -> EncodeResult:
    """Encode, decode the bytes just written, and measure everything on the decoded pixels."""
    model = model or load_model()
    quality = model.default_quality if quality is None else quality
    array = _as_array(image)
    quality_milli = _check_quality(quality)
    start = time.perf_counter()
    data, rate = _encode(model, array, quality_milli)
    encode_seconds = time.perf_counter() - start
    start = time.perf_counter()
    decoded = decode_array(data, model)
    decode_seconds = time.perf_counter() - start
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
    )


def read_header(data: bytes) -> container.Header:
    """Parse and validate a bitstream's header (and CRC) without decoding it."""
    header, _, _ = container.unpack(bytes(data))
    return header


def quality_for_bpp(image, target_bpp: float, model: CodecModel | None = None) -> float:
    """Highest quality whose real file stays at or below ``target_bpp`` (bisection on
    the file size, to 1/1000 of a quality step)."""
    model = model or load_model()
    array = _as_array(image)
    pixels = array.shape[0] * array.shape[1]

    def file_bpp(quality_milli: int) -> float:
        return bpp(len(_encode(model, array, quality_milli)[0]), pixels)

    lo, hi = int(QUALITY_MIN * 1000), int(QUALITY_MAX * 1000)
    lowest = file_bpp(lo)
    if lowest > target_bpp:
        raise CodecError(f"target {target_bpp:g} bpp is below the lowest quality's {lowest:.4f} bpp")
    if file_bpp(hi) <= target_bpp:
        return QUALITY_MAX
    while hi - lo > 1:  # invariant: bpp(lo) <= target < bpp(hi)
        mid = (lo + hi) // 2
        if file_bpp(mid) <= target_bpp:
            lo = mid
        else:
            hi = mid
    return lo / 1000
