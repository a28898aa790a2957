"""Where a file's bits go, read through the ELBO.

The training loss lmbda * D + R is the negative ELBO of a VAE up to constants; R,
the KL term, is -log2 p of the quantised latents, which is exactly what the entropy
coder writes. So a file's bits split into header + z (the hyper-latents' KL) + y (the
latents' KL given z), and y further into latent channels. A channel whose rate is ~0
carries no information about the image: its posterior has collapsed onto the prior.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from . import container
from .pipeline import Latents, decode_latents
from .results import chunk_bytes

# A channel is inactive below this rate, in bits per latent location, over the image.
INACTIVE_BITS_PER_LOCATION = 1e-3


@dataclass(frozen=True)
class Diagnostics:
    """Rate split of one file, per-channel rates of y, and the bits heatmap."""

    header: container.Header
    model: str
    file_bits: int  # header + metadata + alpha + z + y
    header_bits: int
    z_bits: int  # the z payload's actual bits
    y_bits: int  # the y payload's actual bits
    estimate_z_bits: float  # the network's -log2 p of the z symbols (continuous model)
    estimate_y_bits: float  # the network's -log2 p of the y symbols
    table_z_bits: float  # -log2 p under the integer tables the coder used
    table_y_bits: float
    y_channel_bits: tuple[
        float, ...
    ]  # per y channel, under the coder's tables (sums to table_y_bits)
    y_locations: int  # latent positions per channel (h x w of y)
    heatmap: (
        np.ndarray
    )  # (h, w) bits per y location (all channels, plus z spread over its 4x4 area)
    metadata_bits: int = 0  # ICC, EXIF and XMP chunks (``results.chunk_bytes``)
    alpha_bits: int = 0  # the alpha plane's chunk

    @property
    def pixels(self) -> int:
        return self.header.height * self.header.width

    @property
    def overhead_percent(self) -> float:
        """The coded picture's bits (header, z and y: the file without its metadata and
        alpha) over the network's estimate, in % (tables + coder + header)."""
        coded = self.header_bits + self.z_bits + self.y_bits
        return 100 * (coded / (self.estimate_z_bits + self.estimate_y_bits) - 1)

    @property
    def channel_rates(self) -> np.ndarray:
        """Bits per latent location of each y channel."""
        return np.asarray(self.y_channel_bits) / self.y_locations

    @property
    def inactive_channels(self) -> list[int]:
        return [int(c) for c in np.flatnonzero(self.channel_rates < INACTIVE_BITS_PER_LOCATION)]

    def to_dict(self) -> dict:
        h = self.header
        return {
            "header": {
                "model_id": h.model_id,
                "model": self.model,
                "weights_sha256_prefix": h.weights_hash.hex(),
                "width": h.width,
                "height": h.height,
                "quality": h.quality,
                "grayscale": h.grayscale,
                "z_payload_bytes": h.len_z,
                "y_payload_bytes": h.len_y,
            },
            "bits": {
                "file": self.file_bits,
                "header": self.header_bits,
                "metadata": self.metadata_bits,
                "alpha": self.alpha_bits,
                "z": self.z_bits,
                "y": self.y_bits,
            },
            "bpp": self.file_bits / self.pixels,
            "estimate_bits": {"z": self.estimate_z_bits, "y": self.estimate_y_bits},
            "table_bits": {"z": self.table_z_bits, "y": self.table_y_bits},
            "overhead_percent": self.overhead_percent,
            "y_channel_bits": list(self.y_channel_bits),
            "y_channel_bits_per_location": self.channel_rates.tolist(),
            "inactive_threshold_bits_per_location": INACTIVE_BITS_PER_LOCATION,
            "inactive_channels": self.inactive_channels,
            "active_channels": len(self.y_channel_bits) - len(self.inactive_channels),
        }


@torch.no_grad()
def diagnose(data: bytes, model=None) -> Diagnostics:
    """Decode a file's latents and account for every bit."""
    lat: Latents = decode_latents(data, model)
    z_info, y_info = lat.table_bits()  # (1, N, hz, wz) and (1, M, h, w)
    estimate_z, estimate_y = lat.estimate_bits()

    h, w = lat.y_symbols.shape[2:]
    heat = y_info[0].sum(axis=0)
    # Each z location covers 4x4 y locations: spread its bits evenly over them.
    z_heat = np.repeat(np.repeat(z_info[0].sum(axis=0), 4, axis=0), 4, axis=1)[:h, :w] / 16
    metadata, alpha = chunk_bytes(lat.header)
    coded = container.OVERHEAD_BYTES + lat.z_payload_bytes + lat.y_payload_bytes
    return Diagnostics(
        header=lat.header,
        model=lat.model.name,
        file_bits=8 * (coded + metadata + alpha),
        header_bits=8 * container.OVERHEAD_BYTES,
        z_bits=8 * lat.z_payload_bytes,
        y_bits=8 * lat.y_payload_bytes,
        estimate_z_bits=estimate_z,
        estimate_y_bits=estimate_y,
        table_z_bits=float(z_info.sum()),
        table_y_bits=float(y_info.sum()),
        y_channel_bits=tuple(float(v) for v in y_info[0].sum(axis=(1, 2))),
        y_locations=h * w,
        heatmap=heat + z_heat,
        metadata_bits=8 * metadata,
        alpha_bits=8 * alpha,
    )


@dataclass(frozen=True)
class AmortisationGap:
    """What encode-time refinement changed for one photo: the same quality coded by g_a's
    single pass and by refined latents, both files measured (the gap between the
    amortised posterior and this photo's better one, in bits and in distortion)."""

    bits_single: int  # the effort-0 file
    bits: int  # the refined file
    psnr_single: float
    psnr: float
    channel_bits_saved: tuple[float, ...]  # per y channel, under the coder's tables

    @property
    def bits_saved(self) -> int:
        return self.bits_single - self.bits

    def to_dict(self) -> dict:
        return {
            "bits_effort0": self.bits_single,
            "bits": self.bits,
            "bits_saved": self.bits_saved,
            "psnr_effort0": self.psnr_single,
            "psnr": self.psnr,
            "y_channel_bits_saved": list(self.channel_bits_saved),
        }


def amortisation_gap(
    pixels: np.ndarray, single: bytes, refined: bytes, refined_diagnostics: Diagnostics
) -> AmortisationGap:
    """Compare the effort-0 file ``single`` of ``pixels`` with a refined one (and its
    ``diagnose``), channel by channel (both must be of the same model and quality)."""
    from .metrics import psnr
    from .pipeline import decode_array

    a, b = diagnose(single), refined_diagnostics
    return AmortisationGap(
        8 * len(single),
        8 * len(refined),
        psnr(pixels, decode_array(single)),
        psnr(pixels, decode_array(refined)),
        tuple(x - y for x, y in zip(a.y_channel_bits, b.y_channel_bits, strict=True)),
    )


def save_heatmap(diag: Diagnostics, path, force: bool = False) -> None:
    """Bits per y location as a colour image at the picture's size (16 px per latent)."""
    import matplotlib

    matplotlib.use("Agg")
    from PIL import Image

    from .image_io import save_image

    heat = diag.heatmap
    top = max(float(np.percentile(heat, 99.5)), 1e-9)
    rgba = matplotlib.colormaps["inferno"](np.clip(heat / top, 0, 1))
    small = Image.fromarray((rgba[:, :, :3] * 255).astype(np.uint8))
    big = small.resize((heat.shape[1] * 16, heat.shape[0] * 16), Image.NEAREST)
    big = big.crop((0, 0, diag.header.width, diag.header.height))
    save_image(path, big, force)
