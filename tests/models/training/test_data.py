"""Training photos are read as the codec and validation read them."""

import numpy as np
from PIL import Image

from rdcodec.codec import image_io
from rdcodec.models.training.data import CropSampler


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
