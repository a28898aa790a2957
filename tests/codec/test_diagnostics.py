import numpy as np
import pytest

from rdcodec.codec import diagnostics, pipeline


@pytest.fixture(scope="module")
def diag(tiny_model, coffee):
    return diagnostics.diagnose(pipeline.encode(coffee, 6, tiny_model), tiny_model)


def test_bits_add_up_exactly(diag, tiny_model, coffee):
    data = pipeline.encode(coffee, 6, tiny_model)
    assert diag.file_bits == 8 * len(data)
    assert diag.header_bits + diag.z_bits + diag.y_bits == diag.file_bits


def test_metadata_and_alpha_are_counted_in_the_file(tiny_model, coffee):
    from rdcodec.codec.extras import Extras

    mask = (coffee[..., 0] > 128).astype(np.uint8) * 255
    extras = Extras(xmp=b"<x/>" * 50, alpha=mask)
    data = pipeline.encode(coffee, 6, tiny_model, extras=extras)
    diag = diagnostics.diagnose(data, tiny_model)
    rate = pipeline.encode_image(coffee, 6, tiny_model, compare_jpeg=False, extras=extras).rate
    assert diag.file_bits == 8 * len(data) == rate.file_bits
    assert (diag.metadata_bits, diag.alpha_bits) == (rate.metadata_bits, rate.alpha_bits)
    assert diag.metadata_bits > 8 * 200 and diag.alpha_bits > 0
    parts = diag.header_bits + diag.metadata_bits + diag.alpha_bits + diag.z_bits + diag.y_bits
    assert parts == diag.file_bits
    # The overhead is the coded picture's: metadata and alpha are not the model's to estimate.
    plain = diagnostics.diagnose(pipeline.encode(coffee, 6, tiny_model), tiny_model)
    assert diag.overhead_percent == pytest.approx(plain.overhead_percent)


def test_channel_rates_sum_to_the_y_rate(diag):
    assert sum(diag.y_channel_bits) == pytest.approx(diag.table_y_bits, rel=1e-9)
    # The coder writes the tables' information content plus at most a flush word
    # and rounding to whole 32-bit words.
    assert diag.table_y_bits <= diag.y_bits <= diag.table_y_bits * 1.01 + 64


def test_estimate_matches_encoder_report(diag, tiny_model, coffee):
    result = pipeline.encode_image(coffee, 6, tiny_model, compare_jpeg=False)
    assert diag.estimate_y_bits == pytest.approx(result.rate.estimate_y_bits, rel=1e-5)
    assert diag.estimate_z_bits == pytest.approx(result.rate.estimate_z_bits, rel=1e-5)


def test_inactive_channels_follow_the_threshold(diag):
    rates = diag.channel_rates
    expected = [c for c, r in enumerate(rates) if r < diagnostics.INACTIVE_BITS_PER_LOCATION]
    assert diag.inactive_channels == expected
    info = diag.to_dict()
    assert info["active_channels"] + len(info["inactive_channels"]) == len(rates)


def test_heatmap_covers_the_latent_grid(diag, tmp_path):
    h, w = diag.heatmap.shape
    assert (h, w) == (-(-160 // 64) * 4, -(-240 // 64) * 4)
    assert diag.heatmap.sum() == pytest.approx(diag.table_y_bits + diag.table_z_bits, rel=1e-6)
    out = tmp_path / "heat.png"
    diagnostics.save_heatmap(diag, out)
    from PIL import Image

    with Image.open(out) as im:
        assert im.size == (240, 160)
        assert np.asarray(im).std() > 0
