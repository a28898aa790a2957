"""Write the golden files of a shipped model (run once, when the model ships):

    python tests/golden/make_golden.py MODEL_NAME [--efforts]

For each quality: ``MODEL_qQ.rdc`` (the bitstream) and ``MODEL_qQ.npz`` (the weights'
sha256, the y table indices and symbols, and the pixels this machine decoded). The
test ``tests/codec/test_golden.py`` decodes the files on whatever machine runs it.
``--efforts``: instead, ``MODEL_q5_eE`` at every encode effort E > 0 (files written
with refined latents, which the same decoder reads).
"""

import sys
from pathlib import Path

import numpy as np
from PIL import Image

from rdcodec.codec import pipeline
from rdcodec.models.registry import load_model

HERE = Path(__file__).parent
QUALITIES = {"hp-gain-n96m128": (2.0, 7.0)}
DEFAULT_QUALITIES = (1.0, 5.0, 11.0)


def golden_image() -> np.ndarray:
    """A 64x64 crop of the committed astronaut test image."""
    with Image.open(HERE.parent / "images" / "astronaut.png") as im:
        return np.array(im.convert("RGB"))[32:96, 32:96]


def main(name: str, efforts: bool = False) -> None:
    from rdcodec.codec.refine import EFFORTS

    model = load_model(name)
    if efforts:
        jobs = [(5.0, e, f"{name}_q5_e{e}") for e in sorted(EFFORTS) if e]
    else:
        jobs = [(q, 0, f"{name}_q{q:g}") for q in QUALITIES.get(name, DEFAULT_QUALITIES)]
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
