"""One quality scale over two models: the general model below a quality, a high-rate
model (trained on the top levels only) above it; every file names the model that wrote it."""

import dataclasses

import pytest

from rdcodec.codec import pipeline
from rdcodec.codec.bench.codecs import RdcodecCodec
from rdcodec.errors import CodecError
from rdcodec.models import registry
from rdcodec.models.registry import QualityScale


@pytest.fixture(scope="module")
def high_rate(tiny_context_model):
    """A model that encodes only its top levels, as a high-rate release does."""
    return dataclasses.replace(tiny_context_model, qualities=(8.0, 11.0))


@pytest.fixture(scope="module")
def scale(tiny_exact_model, high_rate):
    return QualityScale(((1.0, tiny_exact_model), (8.0, high_rate)))


def test_a_quality_is_coded_by_the_model_of_its_segment(scale, tiny_exact_model, high_rate, coffee):
    assert scale.quality_range == (1.0, 11.0)
    assert scale.name == "tiny-exact + tiny-context"
    for quality, model in ((1, tiny_exact_model), (7.999, tiny_exact_model), (8, high_rate)):
        data = pipeline.encode(coffee, quality, scale)
        header = pipeline.read_header(data)
        assert (header.model_id, header.quality) == (model.wire_id, quality)
        # the file names its model: the scale decodes it, and so does the model alone
        assert (pipeline.decode_array(data, scale) == pipeline.decode_array(data, model)).all()
    assert pipeline.encode(coffee, 9.5, scale) == pipeline.encode(coffee, 9.5, high_rate)


def test_the_scale_default_is_the_general_models(scale, tiny_exact_model):
    assert scale.default_quality == tiny_exact_model.default_quality
    assert scale.model_for(scale.default_quality) is tiny_exact_model


def test_qualities_outside_the_scale_or_a_models_range_are_refused(scale, high_rate, coffee):
    for quality in (0.5, 11.5):
        with pytest.raises(CodecError, match="between 1 and 11"):
            pipeline.encode(coffee, quality, scale)
    # a high-rate model alone codes only the levels it was trained for
    with pytest.raises(CodecError, match="between 8 and 11"):
        pipeline.encode(coffee, 5, high_rate)
    assert pipeline.quality_range(high_rate) == (8.0, 11.0)


def test_encode_image_reports_the_model_that_coded(scale, high_rate, coffee):
    result = pipeline.encode_image(coffee, 10, scale, compare_jpeg=False)
    assert result.model == high_rate.name and result.quality == 10
    assert result.psnr == pipeline.encode_image(coffee, 10, high_rate, compare_jpeg=False).psnr


def test_target_bpp_searches_across_the_models(scale, high_rate, coffee):
    pixels = coffee.shape[0] * coffee.shape[1]
    for quality in (3, 9, 11):
        target = 8 * len(pipeline.encode(coffee, quality, scale)) / pixels
        found, data = pipeline.encode_at_bpp(coffee, target, scale)
        assert 8 * len(data) / pixels <= target
        header = pipeline.read_header(data)
        assert (header.model_id, header.quality) == (scale.model_for(found).wire_id, found)
    assert found == 11 and header.model_id == high_rate.wire_id  # the top's own file


def test_the_shipped_scale_is_consistent():
    """Each segment's model covers its qualities, up to where the next one starts."""
    segments = registry.scale_entries()
    assert segments[0]["model"] == registry.default_model_name()
    starts = [s["from"] for s in segments]
    assert starts == sorted(set(starts))
    for k, segment in enumerate(segments):
        low, high = registry.find_entry(segment["model"])["qualities"]
        end = segments[k + 1]["from"] if k + 1 < len(segments) else high
        assert low <= segment["from"] and end <= high
    codec = RdcodecCodec()
    assert codec.quality_range() == (float(starts[0]), float(high))
    assert codec.model_name == " + ".join(s["model"] for s in segments)


def test_the_default_scale_is_what_encode_uses_without_a_model(coffee):
    scale = registry.load_scale()
    top = scale.quality_range[1]
    data = pipeline.encode(coffee[:64, :64], top)
    assert pipeline.read_header(data).model_id == scale.model_for(top).wire_id
