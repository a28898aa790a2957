"""Training photos are read as the codec and validation read them."""

import numpy as np
import pytest
from PIL import Image

from rdcodec.codec import image_io
from rdcodec.models.training.data import CropSampler, load_packed


def test_training_applies_exif_orientation_like_validation(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (70, 90, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown rotated 90 degrees clockwise
    Image.fromarray(pixels).save(tmp_path / "rotated.png", exif=exif)
    (tmp_path / "notes.txt").write_text("not an image")
    sampler = CropSampler.from_folder(tmp_path, 64)
    (photo,) = sampler.images
    assert photo.shape == (90, 70, 3)
    assert np.array_equal(photo, image_io.read_image(tmp_path / "rotated.png").pixels)
    assert np.array_equal(photo, np.rot90(pixels, k=-1))


def test_one_image_listing(tmp_path):
    for name in ("b.PNG", "a.jpg", "c.txt", "d.webp"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in image_io.list_images(tmp_path)] == ["a.jpg", "b.PNG", "d.webp"]


def test_a_folder_without_images_says_so(tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match="no images in"):
        CropSampler.from_folder(tmp_path, 64)


def test_packed_crops_must_be_uint8_hwc(tmp_path):
    path = tmp_path / "crops.npy"
    np.save(path, np.zeros((2, 64, 64, 3), np.uint8))
    assert load_packed(path).shape == (2, 64, 64, 3)
    assert load_packed(path, mmap_mode="r").shape == (2, 64, 64, 3)
    np.save(path, np.ones((2, 64, 64, 3), np.float32))  # cast, it would be black
    with pytest.raises(ValueError, match=r"not a \(K, H, W, 3\) uint8 array .*float32"):
        CropSampler.from_packed(path, 64)
