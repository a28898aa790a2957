"""Metrics in bounded memory: tiled MS-SSIM and banded PSNR equal the whole-image ones."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pytorch_msssim import ms_ssim as reference_ms_ssim

from rdcodec.codec import metrics


def _pair(height: int, width: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A smooth random picture and a noisy copy of it."""
    rng = np.random.default_rng(seed)
    noise = torch.from_numpy(rng.uniform(0, 255, (1, 3, height, width)).astype(np.float32))
    smooth = F.avg_pool2d(noise, 7, 1, 3).mul(2.5).sub(190).clamp(0, 255).round()
    a = smooth[0].permute(1, 2, 0).numpy().astype(np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-9, 10, a.shape), 0, 255).astype(np.uint8)
    return a, b


def _reference(a: np.ndarray, b: np.ndarray) -> float:
    def t(x):
        return torch.from_numpy(x).permute(2, 0, 1)[None].double()

    return float(reference_ms_ssim(t(a), t(b), data_range=255))


# Odd and even sides at every scale (the pooling pads odd ones), tiles that do and do not
# divide the image, and a tile larger than the image.
@pytest.mark.parametrize(
    ("height", "width", "tile"),
    [
        (161, 170, (16, 16)),
        (161, 170, (1000, 1000)),
        (203, 331, (45, 7)),
        (256, 192, (16, 64)),
        (256, 192, None),
    ],
)
def test_tiled_ms_ssim_equals_pytorch_msssim(height, width, tile):
    a, b = _pair(height, width)
    expected = _reference(a, b)
    assert 0.5 < expected < 0.999  # a picture with something to measure
    assert metrics.ms_ssim(a, b, tile) == pytest.approx(expected, abs=1e-9)


def test_read_only_and_flipped_arrays_measure_the_same():
    a, b = _pair(170, 161, seed=1)
    expected = _reference(a, b)
    a.flags.writeable = b.flags.writeable = False  # as np.asarray of a decoded image
    assert metrics.ms_ssim(a, b) == pytest.approx(expected, abs=1e-9)
    flipped = metrics.ms_ssim(np.flipud(a), np.flipud(b))  # negative strides
    assert flipped == pytest.approx(_reference(np.flipud(a).copy(), np.flipud(b).copy()), abs=1e-9)
    assert metrics.ms_ssim(a[:160], b[:160]) is None  # too small for five scales
    with pytest.raises(ValueError, match="different shapes"):
        metrics.ms_ssim(a, b[1:])
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        metrics.ms_ssim(a[..., 0], b[..., 0])


def test_read_only_arrays_print_no_torch_warning():
    # torch warns about a read-only array once per process: a fresh one sees it.
    code = (
        "import numpy as np\n"
        "from rdcodec.codec import metrics\n"
        "a = np.zeros((170, 170, 3), np.uint8); a.flags.writeable = False\n"
        "print(metrics.ms_ssim(a, a))\n"
    )
    done = subprocess.run(
        [sys.executable, "-W", "error::UserWarning", "-c", code], capture_output=True, text=True
    )
    assert done.returncode == 0 and done.stdout.strip() == "1.0", done.stderr


def test_banded_mse_is_exact(monkeypatch):
    monkeypatch.setattr(metrics, "BAND_VALUES", 1000)  # many bands
    a, b = _pair(97, 65, seed=2)
    diff = a.astype(np.int64) - b.astype(np.int64)
    assert metrics.mse(a, b) == np.mean(diff**2)
    assert metrics.psnr(a, a) == float("inf")
    with pytest.raises(ValueError, match="different shapes"):
        metrics.mse(a, b[1:])
