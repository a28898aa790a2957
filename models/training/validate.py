"""Validation on real files, for training: RD points of a model and its BD-rate vs JPEG.

Training only ever estimates rates; this module writes real bitstreams, decodes them
and measures, so a model is kept (exported) only when its *file* BD-rate improved.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ...codec.baselines import JPEG
from ...codec.bench.bdrate import bd_rate
from ...codec.bench.sweep import JPEG_QUALITIES, RdPoints, load_images, rdcodec_sweep, sweep
from ..registry import CodecModel


def rdcodec_points(model: CodecModel, images: list[np.ndarray], qualities=None) -> RdPoints:
    return rdcodec_sweep(model, images, qualities).points()


def jpeg_points(images: list[np.ndarray], qualities=JPEG_QUALITIES) -> RdPoints:
    return sweep(JPEG.encode, JPEG.decode, images, qualities).points()


def bd_rate_vs(anchor: RdPoints, test: RdPoints) -> float:
    """BD-rate (PSNR) of ``test`` against ``anchor`` in percent; NaN without overlap."""
    return bd_rate(anchor.bpp, anchor.psnr, test.bpp, test.psnr)


def improved(new: float, best: float | None) -> bool:
    """Whether a BD-rate is better than the best so far (NaN never is)."""
    return not math.isnan(new) and (best is None or math.isnan(best) or new < best)


class Validator:
    """Real-file validation after training checkpoints (``rdcodec train --val-every``).

    Every ``every`` steps: export the checkpoint, encode the validation crops at every
    quality, measure the BD-rate against JPEG on the real files, log the row to
    ``out/val.jsonl``, and keep the weights as ``best.rdw`` only when the BD-rate beats
    the best so far. The first bar to clear is the model shipped when the run started.
    Shipping is a separate, deliberate step (``rdcodec release``): a release never changes.
    """

    def __init__(
        self,
        out: Path,
        val: str | Path,
        count: int,
        every: int,
        report: Callable[[dict], None] = lambda row: None,
        qualities: list[int] | None = None,
    ) -> None:
        from .. import registry

        self.out, self.every, self.report = out, every, report
        # A model trained on part of the scale is validated on that part.
        self.qualities = None if qualities is None else list(range(qualities[0], qualities[1] + 1))
        self.last = 0  # the last validated step (of this run folder, across resumptions)
        log = out / "val.jsonl"
        if log.exists():
            steps = [json.loads(line).get("step") for line in log.read_text().splitlines()]
            self.last = max([s for s in steps if s is not None], default=0)
        self.images = load_images(val, count, max_side=512)
        self.jpeg = jpeg_points(self.images)
        best_file = out / "val_best.json"
        if best_file.exists():
            self.best = json.loads(best_file.read_text())["bd_rate_vs_jpeg"]
        else:
            shipped = registry.load_model()
            self.best = bd_rate_vs(self.jpeg, rdcodec_points(shipped, self.images, self.qualities))
            self._log(
                {"step": None, "model": shipped.name, "bd_rate_vs_jpeg": self.best, "shipped": True}
            )

    def _log(self, row: dict) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        with open(self.out / "val.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        self.report(row)

    def due(self, step: int) -> bool:
        """Whether to validate at this checkpoint: the first one at or past each multiple
        of ``every`` (checkpoints after a resume need not fall on the multiples)."""
        if step // self.every <= self.last // self.every:
            return False
        self.last = step
        return True

    def __call__(self, checkpoint: Path, step: int, seconds: float) -> None:
        from .. import registry

        if not self.due(step):
            return
        candidate = self.out / "candidate.rdw"
        digest = registry.export_checkpoint(checkpoint, candidate)
        model = registry.load_weights_file(candidate, "candidate", 0, digest)
        points = rdcodec_points(model, self.images, self.qualities)
        bd = bd_rate_vs(self.jpeg, points)
        better = improved(bd, self.best)
        hours = seconds / 3600  # cumulative training time, over every resumed run
        row = {"step": step, "train_hours": round(hours, 3), "bd_rate_vs_jpeg": bd}
        self._log({**row, "improved": better, **points.to_dict()})
        if self.qualities:  # what `rdcodec release --run` ships it for
            row["qualities"] = [self.qualities[0], self.qualities[-1]]
        if not better:
            return
        self.best = bd
        candidate.replace(self.out / "best.rdw")
        (self.out / "val_best.json").write_text(json.dumps(row))
