"""What a training run is: its configuration (``TrainConfig``, stored in checkpoints) and
the plan of its architecture from a warm start (``plan_architecture``).

Torch-free, so that ``rdcodec train --help`` shows these defaults without importing
torch; the training loop is ``train.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# ModelConfig(96, 128).to_dict(): the shipped models' transforms.
DEFAULT_ARCH = {"N": 96, "M": 128, "levels": 8, "exact": False}


@dataclass
class TrainConfig:
    """Everything a run needs; stored in its checkpoints."""

    data: str = "../shared/data/train"
    val: str | None = "../shared/data/val"
    out: str = "runs/default"
    init: str | None = None  # shipped weights or a checkpoint to start from
    steps: int = 10_000  # stop at this global step
    time_budget: float | None = None  # seconds; stop earlier when spent
    batch_size: int = 8
    crop: int = 128
    lr: float = 1e-4
    # The per-level gain vectors get this many times ``lr``: at the transforms' lr they
    # moved < 0.15 (log) from their initial values in 24k steps, so quality 1 stayed
    # near 0.5 bpp instead of finding its own rate.
    gain_lr_scale: float = 20.0
    # A new channel context starts at zero inside a trained model: it learns at this
    # many times ``lr`` (the trained transforms keep ``lr``).
    context_lr_scale: float = 4.0
    aux_lr: float = 1e-3
    clip: float = 1.0
    seed: int = 0
    threads: int | None = None
    log_every: int = 10
    ckpt_every: int = 250
    # Steps between the model-estimate rows of the log (R and D on centre crops of the
    # validation photos); the real-file validation is the CLI's --val-every.
    estimate_every: int = 1000
    arch: dict = field(default_factory=lambda: dict(DEFAULT_ARCH))
    packed: str | None = None  # a .npy of uint8 crops instead of the data folder
    device: str = "cpu"  # "cuda" on a GPU machine
    channels_last: bool = False  # NHWC activations (see ``rdcodec train-speed``)
    compile: bool = False  # torch.compile the forward pass
    bf16: bool = False  # bfloat16 autocast for the transforms (CPUs with AVX512-BF16/AMX, GPUs)
    # Exponential moving average of the weights (validated and shipped instead of the
    # raw weights); 0 disables. 0.999 averages over ~1000 steps.
    ema_decay: float = 0.999
    # "lambda": every sample's loss as it is, R + lmbda D (the top levels dominate);
    # "balanced": each divided by a running mean of its level's loss (LevelBalance).
    level_weighting: str = "lambda"
    # A rate warm-up for y channels from ``rate_warmup_from`` on (those a --widen added):
    # their bits are free for the first ``rate_warmup`` steps, then charged on a ramp that
    # reaches the full cost at step 2 * rate_warmup, so g_s learns to read them before the
    # rate term can close them (free bits, then a KL warm-up). A ramp from step 0 was not
    # enough: the new channels closed within 1,000 steps.
    rate_warmup: int = 0
    rate_warmup_from: int | None = None
    # How a --widen's new y channels start: "zero" (g_a's new rows zero, g_s reading them
    # through small random filters: the same bytes and picture) or "projections" (g_a's
    # new rows random projections of its features at the old rows' spread, g_s reading
    # them through zeros: the same picture, new information from step 0, which lifted the
    # top levels' ceiling where "zero" never opened; model card, 2026-12-05).
    widen_start: str = "zero"
    # Train only these quality levels (1-based, inclusive [lo, hi]): a model for one end
    # of the scale (the high-rate model); None trains them all.
    qualities: list[int] | None = None

    def level_range(self, levels: int) -> tuple[int, int]:
        """The 0-based levels [lo, hi) that training samples from ``levels`` levels."""
        if self.qualities is None:
            return 0, levels
        lo, hi = self.qualities
        if not 1 <= lo <= hi <= levels:
            raise ValueError(f"qualities {lo}-{hi} are not within the model's 1-{levels}")
        return lo - 1, hi


@dataclass(frozen=True)
class ArchitecturePlan:
    """The architecture a run trains, and the first y channel whose rate warms up."""

    arch: dict
    rate_warmup_from: int | None = None


def plan_architecture(
    start: dict,
    *,
    from_scratch: bool = False,
    exact: bool = False,
    levels: int | None = None,
    widen: int | None = None,
    widen_transforms: int | None = None,
    slices: int | None = None,
    checkerboard: bool = False,
    rate_warmup: int = 0,
    resumed: dict | None = None,
) -> ArchitecturePlan:
    """The architecture grown from ``start`` (the warm start's, or from scratch) by the
    run's options; ``resumed``: the architecture of the run folder's own checkpoint,
    which the plan must equal. ``load_initial_weights`` carries the weights over to
    it function-preservingly. Raises ValueError for an impossible combination."""
    arch = {**start, **({"exact": True} if exact else {})}
    if levels:
        arch["levels"] = levels
    old_m, old_slices = arch["M"], arch.get("slices", 1)
    if widen is not None:
        if from_scratch or widen < old_m:
            raise ValueError(f"--widen {widen}: give more channels than the warm start's M")
        arch["M"] = widen
    if widen_transforms:
        old_g = arch.get("G") or arch["N"]
        if from_scratch:
            raise ValueError("--widen-transforms grows a warm start: leave out --from-scratch")
        if widen_transforms < old_g:
            raise ValueError(
                f"--widen-transforms {widen_transforms}: give at least the warm start's "
                f"g_a/g_s channels ({old_g})"
            )
        # Equal to the start's G: a resumed run, no change; equal to N: no G at all (as
        # ModelConfig has it), so the plan equals the start's architecture.
        if widen_transforms > arch["N"]:
            arch["G"] = widen_transforms
    if slices:
        arch["slices"] = slices
    if checkerboard:
        arch["checkerboard"] = True
    if widen and old_slices > 1:
        # A channel context carries over slice by slice: the slices keep their width, and
        # a wider latent gets whole new slices after the old ones.
        width = old_m // old_slices
        if widen % width:
            raise ValueError(f"--widen {widen}: not a multiple of the slice width {width}")
        if slices and slices != widen // width:
            raise ValueError(
                f"--slices {slices}: the context's slices are {width} channels wide, so "
                f"--widen {widen} needs --slices {widen // width} (or leave it out)"
            )
        arch["slices"] = widen // width
    warmup_from = None
    if rate_warmup:
        if not widen:
            raise ValueError("--rate-warmup warms up the channels --widen adds: give --widen")
        warmup_from = old_m  # a resumed run keeps its own (see train.train)
    if not from_scratch and resumed is not None and arch != resumed:
        raise ValueError(
            "the --out folder holds a run of another architecture; give --widen/"
            "--widen-transforms/--slices/--checkerboard/"
            "--levels a new --out (with --init of that run's checkpoint)"
        )
    return ArchitecturePlan(arch, warmup_from)
