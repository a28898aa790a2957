"""Write the golden files of a shipped model (run once, when the model ships):

    python tests/golden/make_golden.py MODEL_NAME [--efforts]

For each quality: ``MODEL_qQ.rdc`` (the bitstream) and ``MODEL_qQ.npz`` (the weights'
sha256, the y table indices and symbols, and the pixels this machine decoded). The
test ``tests/codec/test_golden.py`` decodes the files on whatever machine runs it.
``--efforts``: instead, ``MODEL_qD_eE`` at the default quality D and every effort E > 0
(files written with refined latents, which the same decoder reads).
"""

import sys
from pathlib import Path

import numpy as np
from PIL import Image

from rdcodec.codec import pipeline
from rdcodec.models.registry import load_model

HERE = Path(__file__).parent
QUALITIES = {"hp-gain-n96m128": (2.0, 7.0)}


def default_qualities(model) -> tuple[float, ...]:
    """The bottom, the default and the top of the qualities the model encodes (1, 5, 11
    for the general models; a high-rate model's own range, with its middle)."""
    low, high = model.quality_range
    middle = model.default_quality if low < model.default_quality < high else (low + high) // 2
    return (low, float(middle), high)


def golden_image() -> np.ndarray:
    """A 64x64 crop of the committed astronaut test image."""
    with Image.open(HERE.parent / "images" / "astronaut.png") as im:
        return np.array(im.convert("RGB"))[32:96, 32:96]


def main(name: str, efforts: bool = False) -> None:
    from rdcodec.codec.refine import EFFORTS

    model = load_model(name)
    if efforts:
        q = model.default_quality
        jobs = [(q, e, f"{name}_q{q:g}_e{e}") for e in sorted(EFFORTS) if e]
    else:
        qualities = QUALITIES.get(name) or default_qualities(model)
        jobs = [(q, 0, f"{name}_q{q:g}") for q in qualities]
    for q, effort, stem in jobs:
        data = pipeline.encode(golden_image(), q, model, effort=effort)
        lat = pipeline.decode_latents(data, model)
        stem = HERE / stem
        stem.with_suffix(".rdc").write_bytes(data)
        np.savez_compressed(
            stem.with_suffix(".npz"),
            sha256=np.array(model.sha256),
            indices=lat.y_indices,
            symbols=lat.y_symbols.astype(np.int16),
            pixels=pipeline.decode_array(data, model),
        )
        print(stem.with_suffix(".rdc"), len(data), "bytes")


if __name__ == "__main__":
    main(sys.argv[1], "--efforts" in sys.argv[2:])
