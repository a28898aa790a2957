"""Shared fixtures: a tiny model (a handful of channels) and the committed images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

IMAGES = Path(__file__).parent / "images"


# Environments that force other CPU kernels on a fresh process: torch's ATen dispatch
# level, MKL's and oneDNN's instruction sets (oneDNN runs the convolutions; ATen's level
# does not reach it), and the thread count. tests/portability_long.py and
# tests/field_long.py run the same environments.
def _onednn(isa: str) -> dict[str, str]:
    return {"ONEDNN_MAX_CPU_ISA": isa, "DNNL_MAX_CPU_ISA": isa}


KERNELS = [
    {
        "ATEN_CPU_CAPABILITY": "default",
        "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
        **_onednn("SSE41"),
        "OMP_NUM_THREADS": "1",
    },
    {
        "ATEN_CPU_CAPABILITY": "avx2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
        **_onednn("AVX2"),
        "OMP_NUM_THREADS": "2",
    },
    {"ATEN_CPU_CAPABILITY": "avx512", **_onednn("AVX512_CORE"), "OMP_NUM_THREADS": "1"},
]


@pytest.fixture(scope="session")
def forced_kernels() -> list[dict[str, str]]:
    """The forced-kernel environments (SSE, AVX2, AVX-512) for decode subprocesses."""
    return KERNELS


def load_image(name: str) -> np.ndarray:
    with Image.open(IMAGES / name) as im:
        return np.array(im.convert("RGB"))


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """An untrained 8-channel model exported and loaded like shipped weights.

    Untrained weights give poor images but exercise every step of the code path:
    tables, coding, container, synthesis.
    """
    from rdcodec.models.network import ModelConfig
    from rdcodec.models.registry import export_weights, load_weights_file
    from rdcodec.models.trainable import GainedHyperprior

    torch.manual_seed(0)
    net = GainedHyperprior(ModelConfig(N=8, M=12))
    path = tmp_path_factory.mktemp("tiny") / "tiny.rdw"
    export_weights(net, path)
    return load_weights_file(path, "tiny", 250)


def _tiny_weights(tmp_path_factory, name: str, seed: int, arch: dict, prepare=None) -> Path:
    """Export an untrained tiny network of ``arch`` (after ``prepare(net)``) as a weight file."""
    from rdcodec.models.registry import build_network, export_weights

    torch.manual_seed(seed)
    net = build_network(arch, trainable=True)
    if prepare is not None:
        with torch.no_grad():
            prepare(net)
    path = tmp_path_factory.mktemp(name) / f"{name}.rdw"
    export_weights(net, path)
    return path


@pytest.fixture(scope="session")
def tiny_exact_weights(tmp_path_factory) -> Path:
    """Weight file of a tiny model with exact (integer) entropy parameters, 11 levels."""
    return _tiny_weights(
        tmp_path_factory, "tiny_exact", 1, {"N": 8, "M": 12, "levels": 11, "exact": True}
    )


@pytest.fixture(scope="session")
def tiny_exact_model(tiny_exact_weights):
    from rdcodec.models.registry import load_weights_file

    return load_weights_file(tiny_exact_weights, "tiny-exact", 251)


def _wake_context(net) -> None:
    # A fresh context is zero (it would change nothing): give it something to do.
    for module in [*net.context, *net.spatial]:
        module[-1].weight.normal_(0, 0.05)
        module[-1].bias.normal_(0, 0.5)
        module.calibrate()


@pytest.fixture(scope="session")
def tiny_context_weights(tmp_path_factory) -> Path:
    """Weight file of a tiny exact model with a 3-slice channel context that is not zero."""
    arch = {"N": 8, "M": 12, "levels": 11, "exact": True, "slices": 3}
    return _tiny_weights(tmp_path_factory, "tiny_context", 2, arch, _wake_context)


@pytest.fixture(scope="session")
def tiny_context_model(tiny_context_weights):
    from rdcodec.models.registry import load_weights_file

    return load_weights_file(tiny_context_weights, "tiny-context", 252)


@pytest.fixture(scope="session")
def tiny_checkerboard_weights(tmp_path_factory) -> Path:
    """Weight file of a tiny exact model with 3 slices, each coded in two checkerboard
    halves, whose channel and spatial contexts are not zero."""
    arch = {"N": 8, "M": 12, "levels": 11, "exact": True, "slices": 3, "checkerboard": True}
    return _tiny_weights(tmp_path_factory, "tiny_checkerboard", 3, arch, _wake_context)


@pytest.fixture(scope="session")
def tiny_checkerboard_model(tiny_checkerboard_weights):
    from rdcodec.models.registry import load_weights_file

    return load_weights_file(tiny_checkerboard_weights, "tiny-checkerboard", 248)


@pytest.fixture(scope="session")
def coffee() -> np.ndarray:
    return load_image("coffee.png")


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    return load_image("astronaut.png")


class _RunsCode:
    """A pickle that, loaded with weights_only=False, creates ``path`` (as a payload of
    os.system would run a command)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture
def evil_checkpoint(tmp_path) -> tuple[Path, Path]:
    """A checkpoint-shaped file whose pickle would create the marker file (second) if
    loaded unsafely (first: its path)."""
    marker, evil = tmp_path / "ran", tmp_path / "evil.ckpt"
    torch.save({"opt": {}, "config": {"arch": {}}, "model": _RunsCode(marker)}, evil)
    return evil, marker
