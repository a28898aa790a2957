"""What the integer h_s costs (a long run, not collected by pytest).

The shipped exact model's estimated rate and PSNR at every level on val crops, once with its
integer h_s (the fake-quantised training face, which computes what the coder's integers do)
and once with the same weights in float; prints both and the BD-rate between them.

    python tests/exact_cost_long.py [MODEL] [VAL_FOLDER] [CROPS]
"""

import sys

import torch
from torch import nn

from rdcodec.codec.bench.bdrate import bd_rate
from rdcodec.codec.bench.sweep import load_images
from rdcodec.models import registry
from rdcodec.models.training.objective import measure_level
from rdcodec.models.training.train import load_initial_weights


def main(name: str, folder: str, count: int) -> None:
    torch.set_num_threads(1)
    path = registry.weights_path(registry.find_entry(name))
    net = registry.build_network(registry.config_of(path), trainable=True)
    load_initial_weights(net, str(path))
    net.eval()
    crops = load_images(folder, count, max_side=512)
    levels = range(1, net.config.levels + 1)
    curves = {}
    with torch.no_grad():
        curves["integer"] = [measure_level(net, crops, q) for q in levels]
        quantised = net.h_s
        net.h_s.forward = lambda z: nn.Sequential.forward(quantised, z)  # the float face
        curves["float"] = [measure_level(net, crops, q) for q in levels]
    for mode, points in curves.items():
        print(f"{mode:8} bpp ", " ".join(f"{p.bpp:.4f}" for p in points))
        print(f"{mode:8} PSNR", " ".join(f"{p.psnr:.3f}" for p in points))
    (integer, floating) = (curves["integer"], curves["float"])
    bd = bd_rate(
        [p.bpp for p in floating],
        [p.psnr for p in floating],
        [p.bpp for p in integer],
        [p.psnr for p in integer],
    )
    print(f"BD-rate of the integer h_s against the float one (estimated rate, PSNR): {bd:+.3f}%")


if __name__ == "__main__":
    args = sys.argv[1:]
    main(
        args[0] if args else registry.default_model_name(),
        args[1] if len(args) > 1 else "../shared/data/val",
        int(args[2]) if len(args) > 2 else 6,
    )
