import hashlib

import numpy as np
import pytest
import torch

from rdcodec.codec import entropy
from rdcodec.errors import BitstreamError
from rdcodec.models.gaussian import tables as gaussian_tables
from rdcodec.models.tables import TABLE_PRECISION, quantize_pmf


@pytest.fixture(scope="module")
def y_tables():
    return entropy.TableSet.from_arrays(gaussian_tables())


def test_quantize_pmf_is_exact_and_positive():
    counts = quantize_pmf(np.array([0.5, 0.25, 1e-12, 0.25]))
    assert counts.sum() == 1 << TABLE_PRECISION
    assert counts.min() >= 1
    assert counts[0] > counts[1] > counts[2]


def test_gaussian_tables_sum_to_precision(y_tables):
    sums = y_tables.counts.sum(axis=1)
    assert np.all(sums == 1 << TABLE_PRECISION)
    assert np.all(y_tables.offsets == -(y_tables.lengths - 2) // 2)


def test_random_symbols_round_trip(y_tables):
    rng = np.random.default_rng(1)
    idx = rng.integers(0, len(y_tables), size=(3, 17, 9))
    scales = np.array([0.11 * (256 / 0.11) ** (k / 63) for k in range(64)])
    values = np.rint(rng.normal(0, scales[idx])).astype(np.int64)
    data = entropy.encode(values, idx, y_tables)
    assert np.array_equal(entropy.decode(data, idx, y_tables), values)


def test_escapes_round_trip(y_tables):
    # Values far outside every table: each is coded through the escape path.
    values = np.array([0, 5000, -5000, 2**29, -(2**29), 1, -1, 123456789])
    idx = np.array([0, 0, 3, 0, 63, 0, 0, 10])
    data = entropy.encode(values, idx, y_tables)
    assert np.array_equal(entropy.decode(data, idx, y_tables), values)


def test_values_beyond_limit_are_refused(y_tables):
    with pytest.raises(ValueError):
        entropy.encode(np.array([2**30]), np.array([0]), y_tables)


def test_empty_input(y_tables):
    data = entropy.encode(np.zeros(0, np.int64), np.zeros(0, np.int64), y_tables)
    assert entropy.decode(data, np.zeros(0, np.int64), y_tables).size == 0


def test_coded_size_is_close_to_information_content(y_tables):
    rng = np.random.default_rng(2)
    idx = rng.integers(20, 40, size=20000)
    scales = np.array([0.11 * (256 / 0.11) ** (k / 63) for k in range(64)])
    values = np.rint(rng.normal(0, scales[idx])).astype(np.int64)
    info = y_tables.bits(values, idx).sum()
    actual = 8 * len(entropy.encode(values, idx, y_tables))
    assert info <= actual <= info * 1.005 + 64


def test_golden_bytes(y_tables):
    """Coder, tables and layout are part of the format: this digest must not change."""
    values = np.arange(-20, 20) % 7 - 3
    idx = np.arange(40) % 64
    data = entropy.encode(values, idx, y_tables)
    assert hashlib.sha256(data).hexdigest()[:16] == GOLDEN_DIGEST


GOLDEN_DIGEST = "272af24e68a0a6d9"


def test_real_latents_round_trip(tiny_model, coffee):
    net = tiny_model.network
    x = torch.from_numpy(coffee[:128, :128]).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        y, z = net.analysis(x, torch.tensor([5.0]))
        means, scales = net.entropy_parameters(torch.round(z))
    from rdcodec.models.gaussian import scale_indices

    idx = scale_indices(scales)
    values = torch.round(y - means).long().numpy()
    data = entropy.encode(values, idx, y_tables_for(tiny_model))
    assert np.array_equal(entropy.decode(data, idx, y_tables_for(tiny_model)), values)


def y_tables_for(model):
    return entropy.TableSet.from_arrays(model.y_tables)


def test_garbage_is_an_error_not_a_crash(y_tables):
    rng = np.random.default_rng(3)
    idx = rng.integers(0, 64, size=500)
    failures = 0
    for _ in range(20):
        data = rng.integers(0, 256, size=4 * int(rng.integers(1, 40)), dtype=np.uint8).tobytes()
        try:
            entropy.decode(data, idx, y_tables)
        except BitstreamError:
            failures += 1
    assert failures > 0
    with pytest.raises(BitstreamError):
        entropy.decode(b"\x00\x01\x02", idx, y_tables)
