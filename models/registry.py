"""Shipped models: the manifest, weight files, and their hand-assigned wire ids.

A wire id is written into every bitstream and never reassigned; together with the
first 8 bytes of the weights' sha256 it tells the decoder exactly which weights a
file needs.

Weight file (``.rdw``): a ``torch.save`` dict read with ``weights_only=True`` (as every
file here is, checkpoints too: a pickle may name any callable, and loading it runs it)::

    {"format": 1, "config": {"N", "M", "levels", "exact", "slices", "G"},
     "state_dict": {name: tensor},    # convolution kernels fp16, the rest fp32
     "z_tables": {"counts", "lengths", "offsets"},
     "y_tables": {"counts", "lengths", "offsets"},
     "exact_h_s": {"weight0".., "bias0".., "exponents", "medians", "thresholds"},
     "exact_context": {"1.weight0".., "1.bias0".., "1.exponents", "2.weight0", ...},
     "exact_spatial": {"0.weight0".., "0.bias0".., "0.exponents", "1.weight0", ...}}

``exact_h_s`` (exact models only) holds the integer ``h_s`` (see ``models/exact.py``),
``exact_context`` (models with channel slices) the integer context network of each
slice after the first, ``exact_spatial`` (checkerboard models) the integer spatial
context of every slice; the state dict then has no float ``h_s`` or context kernels.
The config's ``slices`` is absent (1) in files written before the channel context, and
``G`` (the hidden channels of g_a and g_s) is absent where they are N wide.

The manifest's ``scale`` (when present) maps the default quality scale onto models:
``[{"from": 1, "model": general}, {"from": 8, "model": high_rate}]``; a model's
``qualities`` are the levels it was trained for, the only ones it encodes.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import json
import math
import pickle
import re
import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from .. import atomic
from ..errors import ModelError
from . import gaussian
from .exact import ExactHyperSynthesis, ExactSliceContext
from .network import Hyperprior, ModelConfig

WEIGHTS_FORMAT = 1
DEFAULT_QUALITY = 2.0
# Where releases are written: the package's weights folder (a source checkout's, for a
# release that is committed).
WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


@dataclass(frozen=True, eq=False)  # hashed by identity: caches key on it
class CodecModel:
    """A network in eval mode with the integer tables it was exported with."""

    name: str
    wire_id: int
    sha256: str
    network: Hyperprior
    z_tables: dict[str, np.ndarray]
    y_tables: dict[str, np.ndarray]
    default_quality: float = DEFAULT_QUALITY
    # The qualities it was trained for (a manifest's ``qualities``); None: every level.
    qualities: tuple[float, float] | None = None

    @property
    def hash_prefix(self) -> bytes:
        return bytes.fromhex(self.sha256[:16])

    @property
    def quality_range(self) -> tuple[float, float]:
        """The qualities it encodes: the range it was trained for (a high-rate model's
        top levels), else 1 to its number of levels."""
        return self.qualities or (1.0, float(self.network.config.levels))


@dataclass(frozen=True, eq=False)
class QualityScale:
    """One quality scale over several models: a quality from a segment's start up to
    the next segment's start is coded by that segment's model (the general model below,
    the high-rate model above). A file names its model, so decoding never needs the
    scale. A segment holds a loaded model or a shipped model's name, loaded when first
    coded with."""

    segments: tuple[tuple[float, CodecModel | str], ...]

    @classmethod
    def single(cls, model: CodecModel) -> QualityScale:
        return cls(((model.quality_range[0], model),))

    def _model(self, k: int) -> CodecModel:
        model = self.segments[k][1]
        return load_model(model) if isinstance(model, str) else model

    def _entry_or_model(self, k: int) -> tuple[tuple[float, float], float]:
        # A segment's qualities and default without loading its weights.
        model = self.segments[k][1]
        if isinstance(model, CodecModel):
            return model.quality_range, model.default_quality
        entry = find_entry(model)
        low, high = entry["qualities"]
        return (float(low), float(high)), float(entry.get("default_quality", DEFAULT_QUALITY))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(m if isinstance(m, str) else m.name for _, m in self.segments)

    @property
    def name(self) -> str:
        return " + ".join(self.names)

    @property
    def default_quality(self) -> float:
        return self._entry_or_model(0)[1]

    @property
    def quality_range(self) -> tuple[float, float]:
        return self.segments[0][0], self._entry_or_model(len(self.segments) - 1)[0][1]

    def model_for(self, quality: float) -> CodecModel:
        """The model that codes ``quality`` (in range: see ``quality_range``)."""
        k = max(i for i, (start, _) in enumerate(self.segments) if quality >= start or i == 0)
        return self._model(k)

    def model_with(self, wire_id: int, hash_prefix: bytes) -> CodecModel | None:
        """The scale's model of a file's wire id and weights hash, if it has one
        (loading nothing else)."""
        for k, (_, model) in enumerate(self.segments):
            if isinstance(model, CodecModel):
                if (model.wire_id, model.hash_prefix) == (wire_id, hash_prefix):
                    return model
            elif find_entry(model)["wire_id"] == wire_id:
                return self._model(k)
        return None


def build_network(arch: dict, trainable: bool = False) -> Hyperprior:
    """The network of an architecture entry (a manifest's, a weight file's or a
    checkpoint's ``config``): the one place a network is built from a description.
    ``trainable``: with compressai's training modules (``models/trainable.py``)."""
    try:
        config = ModelConfig(**{k: v for k, v in arch.items() if k != "type"})
    except (TypeError, ValueError) as exc:
        raise ModelError(f"unknown architecture {arch}: {exc}") from None
    if trainable:
        from .trainable import GainedHyperprior

        return GainedHyperprior(config)
    return Hyperprior(config)


def architecture_type(config: ModelConfig) -> str:
    """The architecture's name, as the manifest says it."""
    kind = "gained mean-scale hyperprior"
    if config.slices > 1:
        kind += f" with a {config.slices}-slice channel context"
    if config.checkerboard:
        kind += (" and" if config.slices > 1 else " with") + " a checkerboard context"
    return kind


def _compact_state_dict(network: Hyperprior) -> dict[str, torch.Tensor]:
    # Kernels dominate the size and lose nothing measurable in fp16; GDN, gains and
    # the entropy bottleneck keep fp32 (small, and GDN's reparametrisation needs it).
    # An exact model's h_s is stored as its integers instead.
    return {
        k: (v.half() if v.dim() >= 4 else v.float()).contiguous()
        for k, v in network.state_dict().items()
        if not k.startswith("gaussian_conditional")
        and not k.endswith(("_offset", "_quantized_cdf", "_cdf_length"))
        and not (network.config.exact and k.startswith(("h_s.", *(f"{n}." for n, _ in CONTEXTS))))
    }


def _int_tensors(arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}


def set_exact_h_s(network: Hyperprior, exact: ExactHyperSynthesis) -> None:
    """Make ``exact`` the network's coding-path h_s, and set its float h_s (used by
    training and the probe) to the same numbers."""
    network.exact_h_s = exact
    network.load_state_dict(exact.float_weights("h_s."), strict=False)


# The integer context networks of a model, by the name of their module list (stored as
# ``exact_<name>``, coded through the network's ``exact_<name>``) and the slice the first
# one serves: the channel contexts of slices 1, 2, ... and the checkerboard's of 0, 1, ...
CONTEXTS = (("context", 1), ("spatial", 0))


def set_exact_contexts(network: Hyperprior, name: str, contexts: list[ExactSliceContext]) -> None:
    """The same for one kind of context network (``CONTEXTS``)."""
    setattr(network, f"exact_{name}", contexts)
    for k, exact in enumerate(contexts):
        network.load_state_dict(exact.float_weights(f"{name}.{k}."), strict=False)


def context_arrays(blob_part: dict, slices: int, first: int = 1) -> list[ExactSliceContext]:
    """The integer context networks of a weight file's ``exact_context`` entry (slices
    ``first`` to ``slices - 1``; ``exact_spatial``'s: from 0)."""
    out = []
    for k in range(first, slices):
        arrays = {
            name.split(".", 1)[1]: v.numpy()
            for name, v in blob_part.items()
            if name.split(".", 1)[0] == str(k)
        }
        out.append(ExactSliceContext.from_arrays(arrays))
    return out


def export_weights(network: Hyperprior, path: Path) -> str:
    """Write a shipped weight file for ``network``; returns its sha256 (hex).

    Tables are computed from the weights as they will be loaded (after the fp16
    rounding), so encoder, decoder and tables all see the same numbers.
    """
    from .tables import bottleneck_tables  # training-side (compressai)

    state = _compact_state_dict(network)
    rounded = build_network(network.config.to_dict(), trainable=True)
    rounded.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    # The aux loss fits the tail quantiles slowly; bisection on the learned CDF gives
    # the exact medians and table ranges.
    with torch.no_grad():
        rounded.entropy_bottleneck._update_quantiles()
        # Tables are built around the medians the coder uses (an exact model's are on
        # its input grid).
        rounded.entropy_bottleneck.quantiles[:, 0, 1] = rounded.z_medians()
    state["entropy_bottleneck.quantiles"] = (
        rounded.entropy_bottleneck.quantiles.detach().float().clone()
    )

    def as_tensors(tables: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        return {k: torch.from_numpy(v.astype(np.int32)) for k, v in tables.items()}

    blob = {
        "format": WEIGHTS_FORMAT,
        "config": network.config.to_dict(),
        "state_dict": state,
        "z_tables": as_tensors(bottleneck_tables(rounded)),
        "y_tables": as_tensors(gaussian.tables()),
    }
    if network.config.exact:
        exact = ExactHyperSynthesis.from_module(
            network.h_s, rounded.z_medians(), gaussian.scale_table()
        )
        blob["exact_h_s"] = _int_tensors(exact.arrays())
    for kind, first in CONTEXTS:
        modules = getattr(network, kind)
        if len(modules):
            blob[f"exact_{kind}"] = _int_tensors(
                {
                    f"{k}.{name}": v
                    for k, module in enumerate(modules, start=first)
                    for name, v in ExactSliceContext.from_module(module).arrays().items()
                }
            )
    buffer = io.BytesIO()
    torch.save(blob, buffer)
    data = buffer.getvalue()
    atomic.write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


# Shipped weight files are stored gzip-compressed (``NAME.rdw.gz``, about 0.7-0.8 of the
# size, 0.07 s to inflate): the package and the repository grow by less per release. A
# model's sha256 is that of the ``.rdw`` inside, so files keep naming the same weights.
STORED_SUFFIX = ".gz"


def weight_bytes(path: str | Path) -> bytes:
    """The ``.rdw`` bytes of a weight file, inflated where it is stored compressed."""
    data = Path(path).read_bytes()
    if str(path).endswith(STORED_SUFFIX):
        try:
            return gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise ModelError(f"cannot inflate weights {path}: {exc}") from None
    return data


# What a file that torch.save did not write is, by its first bytes: an error then says
# what was given as well as what was wanted.
_FOREIGN_MAGICS = (
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"\x89RDC", "an rdcodec bitstream"),  # codec/container.py's MAGIC
    (b"\x1f\x8b", "gzip data; name a compressed weight file .rdw.gz"),
)


def _foreign_kind(data: bytes) -> str | None:
    """What ``data`` is when torch.save cannot have written it; None when it may have
    (its zip format, or the legacy pickle of torch before 1.6)."""
    if not data:
        return "an empty file"
    for magic, kind in _FOREIGN_MAGICS:
        if data.startswith(magic):
            return kind
    if data.startswith((b"PK\x03\x04", b"\x80")):
        return None
    try:
        data[:4096].decode("utf-8")
    except UnicodeDecodeError:
        return "a file torch.save did not write"
    return "a text file"


def _torch_load(path: str | Path, data: bytes, wanted: str) -> dict:
    """``torch.load`` of a file's bytes as a dict, tensors and plain values only: a
    pickle may name any Python callable, and loading it would run it (weights_only).
    Anything else is a ``ModelError`` that says what the file is and what was wanted."""
    kind = _foreign_kind(data)
    if kind is not None:
        raise ModelError(f"{path}: not {wanted} ({kind})")
    try:
        with warnings.catch_warnings():  # about a foreign pickle's protocol: noise here
            warnings.simplefilter("ignore")
            blob = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "global" in str(exc).lower():  # "unsupported GLOBAL os.system": a callable
            raise ModelError(
                f"{path}: refused: it holds Python objects other than tensors and plain "
                "values, and loading them could run code (not a file rdcodec wrote)"
            ) from None
        raise ModelError(f"{path}: not {wanted} (damaged: {_first_line(exc)})") from None
    except Exception as exc:  # a damaged zip or pickle can fail in many ways inside torch
        raise ModelError(f"{path}: not {wanted} (damaged: {_first_line(exc)})") from None
    if not isinstance(blob, dict):
        raise ModelError(f"{path}: not {wanted} (a saved {type(blob).__name__})")
    return blob


def _first_line(exc: BaseException) -> str:
    """An exception as one line (torch's messages run to paragraphs; some are empty)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def load_blob(path: str | Path, wanted: str = "a weight file or checkpoint") -> dict:
    """``torch.load`` of a weight file (stored compressed or not) or a checkpoint, as
    ``_torch_load`` (``wanted``: what the caller takes, for its errors)."""
    try:
        data = weight_bytes(path)
    except OSError as exc:
        raise ModelError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return _torch_load(path, data, wanted)


def load_weights_file(
    path: Path, name: str, wire_id: int, expected_sha256: str | None = None
) -> CodecModel:
    """Load a weight file; with ``expected_sha256`` refuse one that differs."""
    try:
        data = weight_bytes(path)
    except OSError as exc:
        raise ModelError(f"cannot read weights {path}: {exc.strerror}") from None
    digest = hashlib.sha256(data).hexdigest()
    if expected_sha256 and digest != expected_sha256:
        raise ModelError(f"weights {path} do not match the manifest's sha256 (corrupted install?)")
    blob = _torch_load(path, data, "a weight file")
    if is_checkpoint(blob):
        raise ModelError(
            f"{path}: a training checkpoint, not a weight file (make one with `rdcodec export`)"
        )
    if "format" not in blob or "state_dict" not in blob:
        raise ModelError(f"{path}: not a weight file (a torch file without a format number)")
    try:
        if blob.get("format") != WEIGHTS_FORMAT:
            raise ModelError(
                f"weights {path} have format {blob.get('format')}, expected {WEIGHTS_FORMAT}"
            )
        network = build_network(blob["config"])
        network.load_state_dict({k: v.float() for k, v in blob["state_dict"].items()}, strict=False)
        if network.config.exact:
            arrays = {k: v.numpy() for k, v in blob["exact_h_s"].items()}
            set_exact_h_s(network, ExactHyperSynthesis.from_arrays(arrays))
        for kind, first in CONTEXTS:  # those the architecture has must be in the file
            if len(getattr(network, kind)):
                stored = blob[f"exact_{kind}"]
                set_exact_contexts(
                    network, kind, context_arrays(stored, network.config.slices, first)
                )
    except ModelError:
        raise
    except Exception as exc:  # a damaged file can fail in many ways inside torch
        raise ModelError(f"cannot load weights {path}: {_first_line(exc)}") from None
    network.eval()
    for p in network.parameters():
        p.requires_grad_(False)

    def as_arrays(tables: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
        return {k: v.numpy() for k, v in tables.items()}

    return CodecModel(
        name, wire_id, digest, network, as_arrays(blob["z_tables"]), as_arrays(blob["y_tables"])
    )


# ---- the manifest of shipped models ----------------------------------------------
def manifest() -> dict:
    """The parsed ``weights/manifest.json``."""
    text = resources.files("rdcodec.weights").joinpath("manifest.json").read_text()
    return json.loads(text)


def model_entries() -> list[dict]:
    return manifest()["models"]


def default_model_name() -> str:
    return manifest()["default"]


def find_entry(name: str | None = None, wire_id: int | None = None) -> dict:
    for entry in model_entries():
        if (name is not None and entry["name"] == name) or (
            wire_id is not None and entry["wire_id"] == wire_id
        ):
            return entry
    known = ", ".join(f"{e['name']} (id {e['wire_id']})" for e in model_entries())
    what = f"'{name}'" if name is not None else f"with wire id {wire_id}"
    raise ModelError(f"no installed model {what}; installed: {known}")


@functools.lru_cache(maxsize=4)
def load_model(name: str | None = None, wire_id: int | None = None) -> CodecModel:
    """Load a shipped model by name or wire id (the default model if neither)."""
    entry = find_entry(name if name or wire_id is not None else default_model_name(), wire_id)
    path = resources.files("rdcodec.weights").joinpath(entry["file"])
    with resources.as_file(path) as real_path:
        model = load_weights_file(real_path, entry["name"], entry["wire_id"], entry["sha256"])
    low, high = entry.get("qualities", (1, model.network.config.levels))
    return CodecModel(
        model.name,
        model.wire_id,
        model.sha256,
        model.network,
        model.z_tables,
        model.y_tables,
        float(entry.get("default_quality", DEFAULT_QUALITY)),
        (float(low), float(high)),
    )


def _entry_in(data: dict, name: str) -> dict:
    for entry in data["models"]:
        if entry["name"] == name:
            return entry
    raise ModelError(f"the manifest's scale names '{name}', which it does not list")


def scale_entries(manifest_data: dict | None = None) -> list[dict]:
    """The default quality scale as the manifest says it: ``[{"from": q, "model": name},
    ...]`` with rising starts; without a ``scale`` entry, the default model alone."""
    data = manifest_data or manifest()
    return data.get("scale") or [
        {"from": _entry_in(data, data["default"])["qualities"][0], "model": data["default"]}
    ]


@functools.lru_cache(maxsize=4)
def load_scale(name: str | None = None) -> QualityScale:
    """A shipped model's qualities as a scale of one model; without a name, the default
    scale (``scale_entries``, its names checked here), whose models load when first
    coded with."""
    if name is not None:
        # Checked against the manifest now, loaded when first coded with: a folder run
        # checks its model in the parent, which must not start torch's threads before
        # the worker processes fork.
        entry = find_entry(name)
        return QualityScale(((float(entry["qualities"][0]), entry["name"]),))
    data = manifest()
    segments = scale_entries(data)
    for segment in segments:
        _entry_in(data, segment["model"])
    return QualityScale(tuple((float(s["from"]), s["model"]) for s in segments))


def weights_path(entry: dict) -> Path:
    """Filesystem path of a manifest entry's weight file."""
    return Path(str(resources.files("rdcodec.weights").joinpath(entry["file"])))


def is_checkpoint(blob: dict) -> bool:
    """Whether a loaded file is a training checkpoint (it holds optimiser state) rather
    than a shipped weight file."""
    return isinstance(blob, dict) and "opt" in blob


def config_of(path: str | Path) -> dict:
    """The architecture (N, M, levels) of a weight file or a training checkpoint."""
    blob = load_blob(path)
    try:
        config = blob["config"]["arch"] if is_checkpoint(blob) else blob["config"]
    except (KeyError, TypeError):
        config = None
    if not isinstance(config, dict):
        raise ModelError(f"{path}: not a weight file or checkpoint (it names no architecture)")
    return config


def export_checkpoint(checkpoint: str | Path, out: str | Path) -> str:
    """Export a training checkpoint's model as a shipped weight file; returns sha256."""
    ckpt = load_blob(checkpoint, "a training checkpoint")
    if not is_checkpoint(ckpt):
        kind = (
            "a weight file (.rdw)"
            if "state_dict" in ckpt
            else "a torch file without optimiser state"
        )
        raise ModelError(f"{checkpoint}: {kind}, not a training checkpoint")
    try:
        network = build_network(ckpt["config"]["arch"], trainable=True)
        # The weight average is what validation measures and what ships, when kept.
        network.load_state_dict(ckpt.get("ema") or ckpt["model"])
    except Exception as exc:
        raise ModelError(f"cannot read checkpoint {checkpoint}: {_first_line(exc)}") from None
    # A diverged run (NaN or inf) has no probability tables to build: say so, not assert.
    weights = [v for v in network.state_dict().values() if v.is_floating_point()]
    bad = sum(int((~torch.isfinite(v)).sum()) for v in weights)
    if bad:
        total = sum(v.numel() for v in weights)
        raise ModelError(
            f"{checkpoint}: {bad} of {total} weights are not finite (NaN or inf): not exported"
        )
    return export_weights(network, Path(out))


def _default_quality_for(manifest_data: dict, config: ModelConfig) -> float:
    """The level of ``config`` trained at the default model's default operating point."""
    for e in manifest_data["models"]:
        if e["name"] == manifest_data["default"]:
            arch = {k: v for k, v in e["architecture"].items() if k != "type"}
            default = ModelConfig(**arch)
            try:
                return config.quality_of(default.lambda_of(float(e["default_quality"])))
            except ValueError:  # no level at that lambda
                break
    return DEFAULT_QUALITY


def _scale_after_release(
    data: dict,
    name: str,
    config: ModelConfig,
    qualities: tuple[int, int],
    make_default: bool,
    scale_from: float | None,
) -> list[dict]:
    """The manifest's default scale once ``name`` is released: a new default codes the
    lowest segment, a high-rate model (``scale_from``) the qualities from there up. The
    scale never shrinks, and its models share one quality ladder (a quality is the same
    lambda on both sides of a hand-over)."""
    low, high = qualities
    scale = [dict(s) for s in scale_entries(data)]
    top = _entry_in(data, scale[-1]["model"])["qualities"][1]
    ladder = _entry_in(data, data["default"])["architecture"]["levels"]
    if make_default and scale_from is not None:
        raise ModelError(
            "--default and --scale-from: a release is the default or its top, not both"
        )
    if (make_default and len(scale) > 1) or scale_from is not None:
        if config.levels != ladder:
            raise ModelError(
                f"the default scale's models have {ladder} levels and this one {config.levels}: "
                "a quality would mean another lambda on each side of the hand-over"
            )
    if make_default and len(scale) > 1:
        end = scale[1]["from"]
        if not (low <= scale[0]["from"] and high >= end):
            raise ModelError(
                f"as the default it codes qualities {scale[0]['from']:g} to {end:g} of the "
                f"scale, but it was trained for {low}-{high}"
            )
    if make_default:
        scale[0]["model"] = name
    if scale_from is not None:
        if not math.isfinite(scale_from):  # round() of nan or inf raises
            raise ModelError(f"--scale-from {scale_from}: give a quality such as 8")
        if scale_from * 1000 != round(scale_from * 1000):
            raise ModelError(f"--scale-from {scale_from}: give a quality in steps of 0.001")
        if not (low <= scale_from <= high and scale[0]["from"] < scale_from):
            raise ModelError(
                f"--scale-from {scale_from:g}: outside its qualities {low}-{high}, or at or "
                f"below the scale's first quality {scale[0]['from']:g}"
            )
        if high < top:
            raise ModelError(
                f"its top quality {high} is below the scale's {top}: the scale would shrink"
            )
        covered = [s for s in scale if s["from"] < scale_from]
        below = _entry_in(data, covered[-1]["model"])["qualities"][1]
        if below < scale_from:
            raise ModelError(
                f"--scale-from {scale_from:g} leaves a gap above '{covered[-1]['model']}''s "
                f"top quality {below}"
            )
        scale = [*covered, {"from": scale_from, "model": name}]
    return scale


def release(
    weights: str | Path,
    name: str,
    description: str,
    training: dict | None = None,
    make_default: bool = False,
    default_quality: float | None = None,
    folder: Path | None = None,
    qualities: tuple[int, int] | None = None,
    scale_from: float | None = None,
) -> dict:
    """Add a weight file to the shipped models as a new release and return its entry.

    A release is for ever: a name or wire id already in the manifest is refused (files
    written by a model must keep decoding to the same picture), the next free wire id
    is assigned, and the file is copied into the package's weights folder.

    ``qualities``: the levels it was trained for (a high-rate model's top levels; default
    all). ``scale_from``: it codes the default scale's qualities from this one up (the
    default model keeps those below).
    """
    folder = folder or WEIGHTS_DIR
    path = folder / "manifest.json"
    data = json.loads(path.read_text())
    if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{0,62}", name):
        raise ModelError(f"release name '{name}': use lower-case letters, digits, '.' and '-'")
    if any(e["name"] == name for e in data["models"]):
        raise ModelError(f"release '{name}' exists; a shipped model never changes, pick a new name")
    wire_id = max(e["wire_id"] for e in data["models"]) + 1
    if wire_id > 255:
        raise ModelError("no free wire id (1..255) is left")
    model = load_weights_file(Path(weights), name, wire_id)
    target = folder / f"{name}.rdw{STORED_SUFFIX}"
    if target.exists():
        raise ModelError(f"{target} exists; a shipped weight file never changes")
    config = model.network.config
    low, high = qualities or (1, config.levels)
    if not 1 <= low <= high <= config.levels:
        raise ModelError(f"qualities {low}-{high}: the model has levels 1 to {config.levels}")
    default_quality = default_quality or _default_quality_for(data, config)
    default_quality = min(max(default_quality, low), high)
    scale = _scale_after_release(data, name, config, (low, high), make_default, scale_from)
    raw = weight_bytes(weights)  # the .rdw, which the release stores compressed
    entry = {
        "name": name,
        "wire_id": wire_id,
        "file": target.name,
        "sha256": model.sha256,
        "bytes": len(raw),
        "qualities": [low, high],
        "default_quality": default_quality,
        "architecture": {"type": architecture_type(config), **config.to_dict()},
        "parameters": sum(p.numel() for p in model.network.parameters()),
        "description": description,
        "training": training or {},
    }
    data["models"].append(entry)
    if make_default:
        data["default"] = name
    if "scale" in data or scale_from is not None:
        data["scale"] = scale
    try:  # the weights first, the manifest last: an interrupted release adds nothing
        atomic.write_bytes(target, gzip.compress(raw, compresslevel=9, mtime=0))
        atomic.write_bytes(path, (json.dumps(data, indent=2) + "\n").encode())
    except OSError as exc:
        raise ModelError(
            f"cannot write the release into {folder} ({exc.strerror}); run release from a "
            "source checkout"
        ) from None
    load_model.cache_clear()
    load_scale.cache_clear()
    return entry
