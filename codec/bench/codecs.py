"""The codecs ``rdcodec bench`` knows, by ``--codecs`` name: rdcodec models
(``RdcodecCodec``) beside the classical codecs of ``codec/baselines.py`` (the one codec
table), and the parsing of ``--codecs`` and ``--qualities``.

A codec object has ``name``, ``label``, ``quality_meaning``, ``default_qualities``,
``available()``, ``settings_id()`` (what the measurement cache is keyed by),
``description(qualities)``, ``encode(pixels, quality) -> bytes``,
``decode(bytes) -> pixels`` and ``warm_up(pixels, quality)`` (the bench's untimed first
round trip).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ...errors import CodecError, ModelError
from .. import baselines
from .names import is_rdcodec

CODEC_NAMES = ("rdcodec", *baselines.CLASSICAL)
DEFAULT_CODECS = CODEC_NAMES


class RdcodecCodec:
    """A shipped rdcodec model, at its quality levels; or the default quality scale
    (the general model below, the high-rate model above).

    ``name`` is the ``--codecs`` name: ``rdcodec`` for the default scale, or
    ``rdcodec@MODEL`` for any shipped model alone, each with ``+eN`` for encode effort N.
    """

    quality_meaning = "quality level"

    def __init__(self, model_name: str | None = None, name: str = "rdcodec", effort: int = 0):
        from ...models import registry

        if model_name is None:
            segments = registry.scale_entries()
        else:
            low = registry.find_entry(model_name)["qualities"][0]
            segments = [{"from": low, "model": model_name}]
        self._segments = [(float(s["from"]), registry.find_entry(s["model"])) for s in segments]
        self._scale = None
        self.name = name
        self.effort = effort

    @property
    def model_name(self) -> str:
        """The model's name (for the default scale, its models' names joined by ' + ')."""
        return " + ".join(entry["name"] for _, entry in self._segments)

    @property
    def label(self) -> str:
        effort = f", effort {self.effort}" if self.effort else ""
        return f"rdcodec ({self.model_name}{effort})"

    def quality_range(self) -> tuple[float, float]:
        """The qualities it codes, from the manifest (without loading the weights)."""
        return self._segments[0][0], float(self._segments[-1][1]["qualities"][1])

    @property
    def default_qualities(self) -> tuple[int, ...]:
        """Every level of the model."""
        low, high = self.quality_range()
        return tuple(range(math.ceil(low), math.floor(high) + 1))

    def available(self) -> bool:
        return True

    def settings_id(self) -> str:
        # The weights, where the scale hands over, and the code that turns them into
        # bytes and back: different models never share a cache entry.
        from ...models import exact, gaussian, layers, network, registry
        from .. import container, entropy, pipeline, refine

        first = self._segments[0][1]["sha256"]
        digest = hashlib.sha256(first.encode())
        for start, entry in self._segments[1:]:
            digest.update(f"from {start:g}: {entry['sha256']}".encode())
        modules = (pipeline, container, entropy, network, exact, gaussian, layers, registry)
        for module in modules:
            digest.update(Path(module.__file__).read_bytes())
        if self.effort:
            digest.update(f"effort {self.effort}".encode())
            digest.update(Path(refine.__file__).read_bytes())
        return f"{first[:12]}-{digest.hexdigest()[:8]}"

    def description(self, qualities: Sequence[float]) -> str:
        points = ", ".join(f"{q:g}" for q in qualities)
        models = "; ".join(
            f"{entry['name']} (weights sha256 {entry['sha256'][:16]}...)"
            + (f" from quality {start:g}" if k else "")
            for k, (start, entry) in enumerate(self._segments)
        )
        return f"rdcodec model {models}, real bitstreams; levels {points}"

    def loaded_model(self):
        """The model (a ``QualityScale``: the default scale, or one model's), loaded on
        first use, then kept."""
        if self._scale is None:
            from ...models.registry import QualityScale, load_model

            self._scale = QualityScale(
                tuple((start, load_model(entry["name"])) for start, entry in self._segments)
            )
        return self._scale

    def encode(self, image: np.ndarray, quality: float) -> bytes:
        from .. import pipeline

        return pipeline.encode(image, quality, self.loaded_model(), effort=self.effort)

    def decode(self, data: bytes) -> np.ndarray:
        from .. import pipeline

        return pipeline.decode_array(data, self.loaded_model())

    def warm_up(self, image: np.ndarray, quality: float) -> None:
        """One untimed encode and decode at effort 0, which loads everything a refined
        encode uses too (a refinement has no first-call cost worth minutes of warm-up)."""
        from .. import pipeline

        self.decode(pipeline.encode(image, quality, self.loaded_model()))


def make_codec(name: str):
    """The codec object of one ``--codecs`` name (``rdcodec@MODEL``: a shipped model;
    ``+eN``: at encode effort N)."""
    if is_rdcodec(name):
        base, _, effort = name.partition("+")
        model = base.partition("@")[2] or None
        return RdcodecCodec(model, name=name, effort=int(effort[1:]) if effort else 0)
    if name in baselines.CLASSICAL:
        return baselines.CLASSICAL[name]
    raise CodecError(f"unknown codec '{name}'; known: {', '.join(CODEC_NAMES)}, rdcodec@MODEL")


def _parse_codec(raw: str, known: Sequence[str] = CODEC_NAMES) -> str:
    """One ``--codecs`` name, checked; ``""`` for an empty item."""
    raw, plus, effort = raw.strip().partition("+")
    name = _parse_codec_name(raw, known)
    if not plus:
        return name
    from ..refine import EFFORTS

    if not is_rdcodec(name):
        raise CodecError(f"'{raw.strip()}+{effort}': only rdcodec takes +eN (encode effort)")
    level = effort.strip().lower().removeprefix("e")
    if not level.isdigit() or int(level) not in EFFORTS:
        raise CodecError(f"'{raw.strip()}+{effort}': effort must be e0..e{max(EFFORTS)}")
    return name if int(level) == 0 else f"{name}+e{int(level)}"


def _parse_codec_name(raw: str, known: Sequence[str] = CODEC_NAMES) -> str:
    base, at, model = raw.strip().partition("@")
    name = base.strip().lower().replace("-", "").replace(" ", "")
    name = baselines.ALIASES.get(name, name)
    if at:
        # Model names are kept as written: they are hyphenated and matched exactly.
        if name != "rdcodec":
            raise CodecError(f"unknown codec '{raw.strip()}': only rdcodec takes @MODEL")
        if not model.strip():
            raise CodecError(f"'{raw.strip()}': give a model name after @ (see rdcodec models)")
        name = f"rdcodec@{model.strip()}"
        try:
            make_codec(name)
        except ModelError as exc:  # a misspelt --codecs item, like 'heic': exit code 1
            raise CodecError(f"unknown codec '{raw.strip()}': {exc}") from None
        return name
    if name and name not in CODEC_NAMES:
        # The names the option takes (compare and rdplane take the classical ones only).
        listed = ", ".join(known) + (", rdcodec@MODEL" if "rdcodec" in known else "")
        raise CodecError(f"unknown codec '{raw.strip()}'; known: {listed}")
    return name


def parse_codecs(
    text: str, option: str = "--codecs", known: Sequence[str] = CODEC_NAMES
) -> list[str]:
    """``"rdcodec,jpeg,rdcodec@hp-gain-n96m128"`` -> the same names (checked, duplicates
    dropped); ``rdcodec@MODEL`` names a shipped model. ``option`` is what an error
    names; ``known``, the names an unknown one is told to pick from (the caller refuses
    any other it does not take)."""
    names: list[str] = []
    items = text.split(",")
    # "all": rdcodec and every classical codec.
    items = [n for item in items for n in (DEFAULT_CODECS if item.strip() == "all" else [item])]
    for raw in items:
        name = _parse_codec(raw, known)
        if name and name not in names:
            names.append(name)
    if not names:
        raise CodecError(f"{option} names no codec")
    return names


def parse_qualities(spec: str) -> tuple[str, tuple[float, ...]]:
    """``"jpeg=10,50,90"`` -> ``("jpeg", (10, 50, 90))``, checked against the codec's range
    (an rdcodec model's levels from its manifest entry)."""
    name, sep, values = spec.partition("=")
    if not sep:
        raise CodecError(f"--qualities '{spec}': expected CODEC=Q1,Q2,... (e.g. jpeg=10,50,90)")
    names = parse_codecs(name, option=f"--qualities '{spec}'")
    if len(names) != 1:
        raise CodecError(f"--qualities '{spec}': one codec per item (CODEC=Q1,Q2,...)")
    (name,) = names
    try:
        points = tuple(sorted({float(v) for v in values.split(",") if v.strip()}))
    except ValueError:
        raise CodecError(f"--qualities '{spec}': quality points must be numbers") from None
    if not points:
        raise CodecError(f"--qualities '{spec}': no quality points")
    if is_rdcodec(name):
        low, high, integer = (*make_codec(name).quality_range(), False)
    else:
        low, high, step = baselines.CLASSICAL[name].search_grid
        integer = step == 1
    for q in points:
        if not low <= q <= high or (integer and q != int(q)):
            kind = "integers" if integer else "numbers"
            raise CodecError(f"--qualities '{spec}': {name} takes {kind} from {low:g} to {high:g}")
    return name, tuple(int(q) if q == int(q) else q for q in points)
