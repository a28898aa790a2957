"""What is guaranteed across machines, tested as such.

- Exact models (integer h_s): the table indices, the y symbols and the means are
  identical on every instruction set, thread count and convolution backend, so a
  file written anywhere decodes everywhere. Tested by encoding in one process and
  decoding in processes forced onto other CPU kernels.
- Pixels (floating-point g_s): within +-1 of the encoder machine's decode.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rdcodec.codec import pipeline
from rdcodec.models.registry import load_model, load_scale

IMAGES = Path(__file__).parent.parent / "images"

# Decoded in a fresh process, so that the environment picks torch's CPU kernels.
DECODE = """
import sys
import numpy as np
from PIL import Image
from rdcodec.codec import pipeline
from rdcodec.models.registry import load_model, load_weights_file

weights, wire_id, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if weights.startswith("shipped"):
    model = load_model(weights.partition(":")[2] or None)
else:
    model = load_weights_file(weights, "m", wire_id)
quality = max(4.0, model.quality_range[0])  # a high-rate model codes from its lowest level
image = np.array(Image.open(sys.argv[4]).convert("RGB"))
results = {}
for i, path in enumerate(sys.argv[5:]):
    if path == "encode":
        data = pipeline.encode(image, quality, model)
        results["data"] = np.frombuffer(data, dtype=np.uint8)
    else:
        data = open(path, "rb").read()
    lat = pipeline.decode_latents(data, model)
    results[f"indices{i}"] = lat.y_indices
    results[f"symbols{i}"] = lat.y_symbols
    results[f"means{i}"] = lat.means.numpy()
    results[f"pixels{i}"] = pipeline.decode_array(data, model)
np.savez(out, **results)
"""


def _run(env_extra: dict, args: list[str], tmp_path, name: str) -> dict:
    out = tmp_path / f"{name}.npz"
    env = {**os.environ, **env_extra}
    subprocess.run(
        [sys.executable, "-c", DECODE, *args[:2], str(out), *args[2:]],
        env=env,
        check=True,
        timeout=300,
    )
    with np.load(out) as f:
        return dict(f)


def _weights_args(which: str, request) -> list[str]:
    if which == "shipped":
        if not load_model().network.config.exact:
            pytest.skip("the shipped default model is not an exact model")
        return ["shipped", "0"]
    if which == "shipped-top":  # the model that codes the top of the default scale
        return [f"shipped:{load_scale().names[-1]}", "0"]
    prefix = {
        "tiny": "tiny_exact",
        "tiny-context": "tiny_context",
        "tiny-checkerboard": "tiny_checkerboard",
    }[which]
    model = request.getfixturevalue(f"{prefix}_model")
    return [str(request.getfixturevalue(f"{prefix}_weights")), str(model.wire_id)]


@pytest.mark.parametrize(
    "which", ["tiny", "tiny-context", "tiny-checkerboard", "shipped", "shipped-top"]
)
def test_files_decode_identically_on_other_cpu_kernels(which, request, tmp_path, forced_kernels):
    weights = _weights_args(which, request)
    image = str(IMAGES / "coffee.png")
    # Encode (and decode) under the default kernels, in a process of its own.
    ref = _run({}, [*weights, image, "encode"], tmp_path, "encoder")
    stream = tmp_path / "file.rdc"
    stream.write_bytes(ref["data"].tobytes())
    for n, kernels in enumerate(forced_kernels):
        got = _run(kernels, [*weights, image, str(stream)], tmp_path, f"decoder{n}")
        what = ", ".join(f"{k}={v}" for k, v in kernels.items())
        assert np.array_equal(got["indices0"], ref["indices0"]), f"table indices differ ({what})"
        assert np.array_equal(got["symbols0"], ref["symbols0"]), f"symbols differ ({what})"
        assert np.array_equal(got["means0"], ref["means0"]), f"means differ ({what})"
        diff = np.abs(got["pixels0"].astype(int) - ref["pixels0"].astype(int))
        assert diff.max() <= 1, f"pixels differ by {diff.max()} ({what})"


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("which", ["tiny", "tiny-exact", "tiny-context", "shipped"])
def test_threads_and_onednn_keep_pixels_within_one(
    which, tiny_model, tiny_exact_model, tiny_context_model, coffee, restore_threads
):
    models = {"tiny": tiny_model, "tiny-exact": tiny_exact_model}
    model = {**models, "tiny-context": tiny_context_model}.get(which) or load_model()
    data = pipeline.encode(coffee, 4, model)
    decoded = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        decoded.append(pipeline.decode_array(data, model))
        if model.network.config.exact:
            # The same bytes decode to the same latents on every thread count (an encode
            # is not compared: g_a is floating point, so only decoding is exact).
            lat = pipeline.decode_latents(data, model)
            if threads == 1:
                ref = lat
            assert np.array_equal(lat.y_indices, ref.y_indices)
            assert np.array_equal(lat.y_symbols, ref.y_symbols)
            assert torch.equal(lat.means, ref.means)
    with torch.backends.mkldnn.flags(enabled=False):
        decoded.append(pipeline.decode_array(data, model))
    for d in decoded[1:]:
        assert np.abs(decoded[0].astype(int) - d.astype(int)).max() <= 1
