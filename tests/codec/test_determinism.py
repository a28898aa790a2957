"""A file decodes to the same pixels whatever the thread count or CPU backend."""

import numpy as np
import pytest
import torch

from rdcodec.codec import pipeline
from rdcodec.models.registry import load_model


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("which", ["tiny", "shipped"])
def test_threads_and_onednn_do_not_change_pixels(which, tiny_model, coffee, restore_threads):
    model = tiny_model if which == "tiny" else load_model()
    data = pipeline.encode(coffee, 4, model)
    decoded = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        decoded.append(pipeline.decode_array(data, model))
        assert pipeline.encode(coffee, 4, model) == data, f"encoding changed with {threads} threads"
    with torch.backends.mkldnn.flags(enabled=False):
        decoded.append(pipeline.decode_array(data, model))
        assert pipeline.encode(coffee, 4, model) == data, "encoding changed without oneDNN"
    assert all(np.array_equal(decoded[0], d) for d in decoded[1:])
