"""The transforms over tiles: g_a and g_s of large images in bounded memory."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

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


def tiles(size: int, whole: bool, tile: int | None = None):
    """(start, stop) of each tile along one axis of ``size`` y positions (tiles of
    ``tile``, by default TILE_LATENTS, positions)."""
    if whole:
        return [(0, size)]
    tile = TILE_LATENTS if tile is None else tile
    return [(a, min(a + tile, size)) for a in range(0, size, tile)]


def analysis_tiled(net, image: np.ndarray) -> torch.Tensor:
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
    for t0, t1 in tiles(h, whole):
        for l0, l1 in tiles(w, whole):
            a0, a1, b0, b1 = max(0, t0 - m), min(h, t1 + m), max(0, l0 - m), min(w, l1 + m)
            tile = padded_crop(image, a0 * s, a1 * s, b0 * s, b1 * s)
            out = net.analysis_transform(tile)
            y[:, :, t0:t1, l0:l1] = out[:, :, t0 - a0 : t1 - a0, l0 - b0 : l1 - b0]
    return y


def padded_crop(image: np.ndarray, r0: int, r1: int, c0: int, c1: int) -> torch.Tensor:
    """Rows r0..r1 and columns c0..c1 of the uint8 image as a (1, 3, h, w) float tensor
    in [0, 1], the edge replicated past the border (the padding to a multiple of 64)."""
    height, width = image.shape[:2]
    rows = np.minimum(np.arange(r0, r1), height - 1)
    cols = np.minimum(np.arange(c0, c1), width - 1)
    return torch.from_numpy(image[np.ix_(rows, cols)]).permute(2, 0, 1)[None].float().div(255)


def synthesis_windows(
    h: int, w: int, height: int, width: int, margin: int, stride: int, tile: int, whole: bool
) -> Iterator[tuple[tuple[slice, slice], tuple[slice, slice], tuple[slice, slice]]]:
    """g_s over tiles of ``tile`` y positions of an (h, w) latent grid for a height x
    width image: for each tile that holds image pixels, the latent window (the tile and
    ``margin`` positions of context each side), the part of the window's output that the
    tile decodes, and where those pixels go in the image (rows, columns each)."""
    m, s = margin, stride
    for t0, t1 in tiles(h, whole, tile):
        for l0, l1 in tiles(w, whole, tile):
            if t0 * s >= height or l0 * s >= width:
                continue  # the tile lies entirely in the padding
            a0, a1, b0, b1 = max(0, t0 - m), min(h, t1 + m), max(0, l0 - m), min(w, l1 + m)
            r0, r1, c0, c1 = t0 * s, min(t1 * s, height), l0 * s, min(l1 * s, width)
            yield (
                (slice(a0, a1), slice(b0, b1)),
                (slice(r0 - a0 * s, r1 - a0 * s), slice(c0 - b0 * s, c1 - b0 * s)),
                (slice(r0, r1), slice(c0, c1)),
            )


def synthesis_tiled(
    net, y_hat: torch.Tensor, q: torch.Tensor, height: int, width: int
) -> np.ndarray:
    """g_s over overlapping latent tiles, straight into the cropped uint8 image."""
    h, w = y_hat.shape[2:]
    image = np.empty((height, width, 3), dtype=np.uint8)
    m, tile = net.margin, SYNTHESIS_TILE_LATENTS
    whole = h <= tile + m and w <= tile + m
    for (rows, cols), (out_rows, out_cols), (img_rows, img_cols) in synthesis_windows(
        h, w, height, width, m, net.stride, tile, whole
    ):
        out = net.decoding_synthesis(y_hat[:, :, rows, cols], q)
        image[img_rows, img_cols] = to_uint8(out[0, :, out_rows, out_cols])
    return image


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [0, 1] -> (H, W, 3) uint8."""
    return x.clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).contiguous().numpy()
