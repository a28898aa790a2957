import numpy as np
import pytest

from rdcodec.codec.bench import rdplane
from rdcodec.models.network import LAMBDAS


def test_plane_points_are_measured_per_level(tiny_model, astronaut, tmp_path):
    points = rdplane.rdcodec_plane(tiny_model, [astronaut[:64, :64]])
    assert [p.label for p in points] == [f"q{i}" for i in range(1, 9)]
    assert [p.lmbda for p in points] == list(LAMBDAS)
    assert all(p.rate > 0 and p.distortion >= 0 for p in points)
    # Each point is that level's real file: its rate is 8 * bytes / pixels of an encode.
    from rdcodec.codec import pipeline

    crop = astronaut[:64, :64]
    for level, p in zip((1, 8), (points[0], points[-1]), strict=True):
        data = pipeline.encode(crop, float(level), tiny_model)
        assert p.rate == pytest.approx(8 * len(data) / crop[..., 0].size, rel=1e-9)
    jpeg = rdplane.classical_plane("jpeg", [astronaut[:64, :64]])
    assert (
        len(jpeg) == 8 and jpeg[0].rate < jpeg[-1].rate and jpeg[0].distortion > jpeg[-1].distortion
    )
    out = tmp_path / "plane.png"
    rdplane.plot_plane(points, {"JPEG": jpeg}, [out])
    assert out.stat().st_size > 10_000


def test_synthetic_photo_is_deterministic():
    from rdcodec.codec.bench.speed import synthetic_photo

    a, b = synthetic_photo(100, 60), synthetic_photo(100, 60)
    assert a.shape == (60, 100, 3) and np.array_equal(a, b) and a.std() > 10
