"""Training data: photos decoded once into memory, random crops drawn with numpy.

Decoding JPEGs per step would dominate a 2-core machine, so every image is decoded
once at start-up (680 photos of ~0.15 MP are ~300 MB of uint8) and a step only
slices, flips and stacks. A packed ``.npy`` of crops (``pack_crops``) carries the
same data to a machine without the photo folder (a GPU machine).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ...codec.image_io import list_images, read_rgb


def centre_crops_of(images, size: int) -> list[np.ndarray]:
    """The centre ``size`` square of each image large enough for it."""
    crops = []
    for im in images:
        top, left = (im.shape[0] - size) // 2, (im.shape[1] - size) // 2
        if top >= 0 and left >= 0:
            crops.append(im[top : top + size, left : left + size])
    return crops


def centre_crops(folder: Path, size: int, count: int | None = None) -> list[np.ndarray]:
    """The centre ``size`` square of the first ``count`` images large enough for it."""
    crops = []
    for path in list_images(folder):
        crops += centre_crops_of([read_rgb(path)], size)
        if count is not None and len(crops) == count:
            break
    return crops


class CropSampler:
    """Random ``size`` x ``size`` crops (with horizontal flips) from in-memory images.

    Sampling is driven by its own ``numpy.random.Generator`` so that a resumed run
    draws exactly the batches the uninterrupted run would have drawn.
    """

    def __init__(self, images: list[np.ndarray], size: int, seed: int = 0) -> None:
        self.images = [im for im in images if min(im.shape[:2]) >= size]
        if not self.images:
            raise ValueError(f"no training image is at least {size} px on its short side")
        self.size = size
        self.rng = np.random.default_rng(seed)

    @classmethod
    def from_folder(cls, folder: Path, size: int, seed: int = 0) -> CropSampler:
        paths = list_images(folder)
        if not paths:  # not "no image is large enough": there is none at all
            raise ValueError(f"no images in {folder}")
        return cls([read_rgb(p) for p in paths], size, seed)

    @classmethod
    def from_packed(cls, path: Path, size: int, seed: int = 0) -> CropSampler:
        return cls(list(load_packed(path)), size, seed)

    def batch(self, batch_size: int) -> np.ndarray:
        """A (B, 3, size, size) uint8 batch."""
        s = self.size
        out = np.empty((batch_size, s, s, 3), dtype=np.uint8)
        picks = self.rng.integers(0, len(self.images), batch_size)
        for i, k in enumerate(picks):
            im = self.images[k]
            top = self.rng.integers(0, im.shape[0] - s + 1)
            left = self.rng.integers(0, im.shape[1] - s + 1)
            crop = im[top : top + s, left : left + s]
            out[i] = crop[:, ::-1] if self.rng.random() < 0.5 else crop
        return out.transpose(0, 3, 1, 2)

    def state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state


def load_packed(path: Path, mmap_mode: str | None = None) -> np.ndarray:
    """The crops of a ``pack_crops`` .npy: (K, H, W, 3) uint8, K >= 1; ``ValueError``
    naming the file for anything else (a float array would be cast to black pixels, a
    (K, 3, H, W) one read as images 3 px wide). ``mmap_mode="r"``: only the header is
    read, a check before the work."""
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
    except OSError as exc:
        raise ValueError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if magic != b"\x93NUMPY":
        raise ValueError(f"{path}: not a .npy file")
    try:
        crops = np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:  # truncated, or an object array
        raise ValueError(f"{path}: not an array of crops ({exc})") from None
    if crops.dtype != np.uint8 or crops.ndim != 4 or crops.shape[3] != 3 or not len(crops):
        raise ValueError(
            f"{path}: not a (K, H, W, 3) uint8 array of crops "
            f"(got {crops.dtype} {tuple(crops.shape)})"
        )
    return crops


def available_memory() -> int:
    """Bytes of memory the system can give without swapping (Linux's MemAvailable; free
    pages elsewhere)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def sample_crops(folder: Path, size: int = 128, per_image: int = 1, seed: int = 0) -> np.ndarray:
    """``per_image`` random crops of every image large enough, as one uint8 array
    (K, size, size, 3). Refused (``ValueError``) before it is made where it would not
    fit in the memory available: it is written, and trained on, in memory."""
    sampler = CropSampler.from_folder(folder, size, seed)
    count = len(sampler.images) * per_image
    need = count * size * size * 3
    free = available_memory()
    if need > free:
        raise ValueError(
            f"{count} crops of {size}x{size} need {need / 2**30:.1f} GiB of memory, "
            f"{free / 2**30:.1f} GiB is available: lower --per-image or --size"
        )
    rng = np.random.default_rng(seed)
    crops = np.empty((count, size, size, 3), dtype=np.uint8)
    k = 0
    for image in sampler.images:
        for _ in range(per_image):
            top = rng.integers(0, image.shape[0] - size + 1)
            left = rng.integers(0, image.shape[1] - size + 1)
            crops[k] = image[top : top + size, left : left + size]
            k += 1
    return crops


def save_crops(out: Path, crops: np.ndarray) -> None:
    """Write ``sample_crops``'s array as a .npy."""
    with open(out, "wb") as f:  # a file object: np.save would append .npy to a bare path
        np.save(f, crops)


def pack_crops(folder: Path, out: Path, size: int = 128, per_image: int = 1, seed: int = 0) -> int:
    """Write ``per_image`` random crops of every image large enough as one uint8 .npy
    (K, size, size, 3); returns K."""
    crops = sample_crops(folder, size, per_image, seed)
    save_crops(out, crops)
    return len(crops)
