"""``rdcodec compare``: rdcodec beside classical codecs at the same file size, on one page.

rdcodec codes the image; every other codec codes it at the largest quality whose file
is at most rdcodec's bytes (``baselines.at_size``, the rule ``encode`` uses for JPEG).
All files are decoded and measured on the decoded 8-bit RGB pixels, and the page shows
them with a swipe slider, zoom and error maps. The page is one HTML file with the
images inside it as data URIs (lossless WebP, so the pixels shown are the decoded
pixels), its script and style inline: it opens offline, from a file, with no server.

Large images would make that file huge, so what is embedded is capped (``PageLimits``):
an image whose long side is above ``full_side`` is shown as a downscaled overview
plus ``crops`` full-resolution crops of ``crop_side`` pixels, chosen where the original
has the most detail. ``rdcodec bench --html`` uses the same page, with one small crop
per image, after its RD plot and BD-rate tables.

A tool above the codec: the encode/decode path never imports it.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image, features

from ...errors import CodecError
from .. import baselines
from .codecs import RdcodecCodec, make_codec
from .measure import BenchImage, Measurement, measure_point, one_torch_thread
from .report import json_safe

DEFAULT_CODECS = ("jpeg", "webp", "avif")
HEATMAP_BLOCK = 4  # error maps: one value per 4x4 block of the view (RMSE, 8-bit levels)
# The error maps' colours (inferno-like, dark = no error); the page's legend uses them too.
HEATMAP_STOPS = (
    (0, 0, 4), (40, 11, 84), (101, 21, 110), (159, 42, 99),
    (212, 72, 66), (245, 125, 21), (250, 193, 39), (252, 255, 164),
)  # fmt: skip


@dataclass(frozen=True)
class PageLimits:
    """What a page embeds per image and version (the page size cap)."""

    full_side: int  # up to this long side: the whole image at full resolution (0: never)
    overview_side: int  # larger: an overview downscaled to this long side (0: none) ...
    crop_side: int  # ... and full-resolution crops of at most crop_side x crop_side pixels
    crops: int

    def describe(self) -> str:
        crops = f"{self.crops} full-resolution crop{'s' * (self.crops != 1)}"
        crops += f" of {self.crop_side}x{self.crop_side} px"
        if not self.full_side:
            return f"{crops} per image"
        return (
            f"the whole image at full resolution up to {self.full_side} px on the long side; "
            f"a larger one as an overview downscaled to {self.overview_side} px plus {crops}"
        )


PAGE_LIMITS = PageLimits(full_side=1600, overview_side=1024, crop_side=512, crops=4)
BENCH_LIMITS = PageLimits(full_side=0, overview_side=0, crop_side=256, crops=1)


# ---- coding ------------------------------------------------------------------------
@dataclass(frozen=True)
class Coded(Measurement):
    """One codec's file of the image, measured on its decoded pixels (``sha256`` is that
    of the pixels), and how the page names it."""

    label: str
    setting: str  # the quality in words: "quality 2", "q13", "0.62 bpp target"

    def to_dict(self) -> dict:
        """The row of the table (what ``--json`` prints)."""
        row = {"codec": self.codec, "label": self.label, "quality": self.quality}
        row |= {"setting": self.setting, "bytes": self.num_bytes, "bpp": self.bpp}
        row["psnr"] = None if math.isinf(self.psnr) else self.psnr  # lossless: no number
        row |= {"ms_ssim": self.ms_ssim, "encode_seconds": self.encode_seconds}
        return row | {"decode_seconds": self.decode_seconds}


@dataclass(frozen=True, eq=False)
class Comparison:
    """An image, rdcodec's file of it, and every other codec's at the same or lower size."""

    name: str
    original: np.ndarray  # (H, W, 3) uint8
    rows: tuple[Coded, ...]  # rdcodec first
    decoded: dict[str, np.ndarray]  # by codec name
    skipped: tuple[tuple[str, str], ...] = ()  # (codec label, why)

    @property
    def width(self) -> int:
        return self.original.shape[1]

    @property
    def height(self) -> int:
        return self.original.shape[0]

    def to_dict(self) -> dict:
        return {
            "image": self.name,
            "width": self.width,
            "height": self.height,
            "rows": [r.to_dict() for r in self.rows],
            "skipped": [{"codec": c, "reason": why} for c, why in self.skipped],
        }


def _setting(codec, quality: float) -> str:
    if codec.name == "rdcodec":
        return f"quality {quality:g}"
    if codec.quality_meaning == "target bpp":
        return f"{quality:g} bpp target"
    return f"q{quality:g}"


def _measured(codec, image: BenchImage, pixels: np.ndarray, quality: float):
    """``measure_point``'s measurement as a row of the table, and the decoded pixels."""
    point, decoded = measure_point(codec, image, pixels, quality)
    return Coded(**point.to_dict(), label=codec.label, setting=_setting(codec, quality)), decoded


def compare_image(
    pixels: np.ndarray,
    name: str,
    quality: float | None = None,
    target_bpp: float | None = None,
    codecs: Sequence[str] = DEFAULT_CODECS,
    model_name: str | None = None,
    effort: int = 0,
) -> Comparison:
    """Code ``pixels`` with rdcodec (at ``quality``, or the highest quality within
    ``target_bpp``; at encode ``effort``), then with each of ``codecs`` at the largest
    quality whose file is at most rdcodec's bytes; decode and measure them all.

    Times follow ``rdcodec bench``'s rule: one thread per codec, after a warm-up.
    """
    from .. import pipeline

    if quality is not None and target_bpp is not None:
        raise CodecError("give --quality or --target-bpp, not both")
    ours = RdcodecCodec(model_name, effort=effort)  # checks the name
    model = ours.loaded_model()  # the model, or the default scale, ``ours`` codes with
    if target_bpp is not None:
        with one_torch_thread():  # refinement repeats its bytes on one thread
            quality, data = pipeline.encode_at_bpp(pixels, target_bpp, model, effort)
            if effort and data != pipeline.encode(pixels, quality, model, effort=effort):
                # No refined file fitted: the search kept the single pass's.
                ours = RdcodecCodec(model_name)
    quality = model.default_quality if quality is None else quality
    rows, decoded, skipped = [], {}, []
    sha256 = hashlib.sha256(pixels.tobytes()).hexdigest()
    image = BenchImage(Path(name), sha256, pixels.shape[1], pixels.shape[0])
    with one_torch_thread():
        ours.decode(ours.encode(pixels[:64, :64], quality))  # warm-up: model, kernels
        row, decoded["rdcodec"] = _measured(ours, image, pixels, quality)
        rows.append(row)
        for codec in (make_codec(n) for n in codecs if n != "rdcodec"):
            if not codec.available():
                skipped.append((codec.label, "not available in this Pillow build"))
                continue
            found = baselines.at_size(codec, pixels, rows[0].num_bytes)
            if found is None:
                skipped.append((codec.label, f"cannot get down to {rows[0].num_bytes} bytes"))
                continue
            # The search warmed the codec up; this encode is the timed one (same bytes).
            row, decoded[codec.name] = _measured(codec, image, pixels, found[0])
            rows.append(row)
    return Comparison(name, pixels, tuple(rows), decoded, tuple(skipped))


# ---- the page ----------------------------------------------------------------------
def _data_uri(pixels: np.ndarray) -> str:
    """Lossless WebP (PNG where Pillow has no WebP): the page shows these exact pixels."""
    buffer = io.BytesIO()
    if features.check("webp"):
        Image.fromarray(pixels).save(buffer, "WEBP", lossless=True, quality=50, method=2)
        kind = "webp"
    else:
        Image.fromarray(pixels).save(buffer, "PNG")
        kind = "png"
    return f"data:image/{kind};base64,{base64.b64encode(buffer.getvalue()).decode()}"


def choose_crops(pixels: np.ndarray, side: int, count: int) -> list[tuple[int, int, int, int]]:
    """Up to ``count`` non-overlapping (x, y, w, h) crops of ``side`` px where the image has
    the most detail (mean gradient magnitude of its luma), the most detailed first."""
    height, width = pixels.shape[:2]
    w, h = min(side, width), min(side, height)
    luma = pixels.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    detail = np.zeros((height + 1, width + 1), np.float64)
    gradient = np.abs(np.diff(luma, axis=0, append=luma[-1:])) + np.abs(
        np.diff(luma, axis=1, append=luma[:, -1:])
    )
    detail[1:, 1:] = gradient.cumsum(0).cumsum(1)  # integral image: any window's sum in O(1)
    step = max(1, side // 4)
    xs = sorted({*range(0, width - w + 1, step), width - w})
    ys = sorted({*range(0, height - h + 1, step), height - h})
    scored = sorted(
        ((detail[y + h, x + w] - detail[y, x + w] - detail[y + h, x] + detail[y, x], x, y)
         for y in ys for x in xs),
        reverse=True,
    )  # fmt: skip
    chosen: list[tuple[int, int, int, int]] = []
    for _, x, y in scored:
        if all(x + w <= cx or cx + cw <= x or y + h <= cy or cy + ch <= y
               for cx, cy, cw, ch in chosen):  # fmt: skip
            chosen.append((int(x), int(y), w, h))
            if len(chosen) == count:
                break
    return chosen


def _heatmap_rgb(rmse: np.ndarray, top: float) -> np.ndarray:
    stops = np.array(HEATMAP_STOPS, np.float64)
    t = np.clip(rmse / top, 0, 1) * (len(stops) - 1)
    i = np.minimum(t.astype(int), len(stops) - 2)
    f = (t - i)[..., None]
    return np.round(stops[i] * (1 - f) + stops[i + 1] * f).astype(np.uint8)


def _block_rmse(original: np.ndarray, decoded: np.ndarray, region, size) -> np.ndarray:
    """RMSE (8-bit levels, over the channels) of ``region`` averaged down to ``size``."""
    x, y, w, h = region
    a = original[y : y + h, x : x + w].astype(np.float32)
    b = decoded[y : y + h, x : x + w].astype(np.float32)
    squared = Image.fromarray(((a - b) ** 2).mean(axis=2), mode="F")
    return np.sqrt(np.asarray(squared.resize(size, Image.Resampling.BOX), dtype=np.float64))


def _view(c: Comparison, label: str, region, size, heatmaps: bool) -> dict:
    """One view of every version: ``region`` (x, y, w, h) of the image at ``size`` (w, h)."""
    x, y, w, h = region
    versions = {"original": c.original, **c.decoded}

    def shown(pixels: np.ndarray) -> np.ndarray:
        part = pixels[y : y + h, x : x + w]
        if (w, h) == size:
            return part
        return np.asarray(Image.fromarray(part).resize(size, Image.Resampling.LANCZOS))

    view = {
        "label": label,
        "width": size[0],
        "height": size[1],
        "region": [x, y, w, h],
        "sources": {key: _data_uri(shown(p)) for key, p in versions.items()},
        "crops": [],
    }
    if heatmaps and c.decoded:
        small = (max(1, size[0] // HEATMAP_BLOCK), max(1, size[1] // HEATMAP_BLOCK))
        rmse = {k: _block_rmse(c.original, d, region, small) for k, d in c.decoded.items()}
        # One scale for every codec of the view, so that colours compare across codecs.
        top = max(float(np.percentile(r, 99.5)) for r in rmse.values()) or 1.0
        view["heat"] = {k: _data_uri(_heatmap_rgb(r, top)) for k, r in rmse.items()}
        view["heat_max"] = top
        view["heat_block"] = w / small[0]
    return view


def _views(c: Comparison, limits: PageLimits, heatmaps: bool) -> list[dict]:
    width, height = c.width, c.height
    long_side = max(width, height)
    if long_side <= limits.full_side:
        return [_view(c, "Whole image, full resolution", (0, 0, width, height),
                      (width, height), heatmaps)]  # fmt: skip
    views = []
    crops = choose_crops(c.original, limits.crop_side, limits.crops)
    if limits.overview_side:
        scale = limits.overview_side / long_side
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        overview = _view(
            c, f"Whole image, downscaled to {size[0]}x{size[1]} (1:{1 / scale:.2f})",
            (0, 0, width, height), size, heatmaps,
        )  # fmt: skip
        overview["crops"] = [[x * scale, y * scale, w * scale, h * scale] for x, y, w, h in crops]
        views.append(overview)
    for i, (x, y, w, h) in enumerate(crops, 1):
        label = f"Crop {i}: {w}x{h} at ({x}, {y}), full resolution"
        views.append(_view(c, label, (x, y, w, h), (w, h), heatmaps))
    return views


def _json_for_script(value) -> str:
    """JSON that can sit inside <script>: no "</" can close the element early."""
    text = json.dumps(json_safe(value), separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_page(
    comparisons: Sequence[Comparison],
    title: str,
    limits: PageLimits = PAGE_LIMITS,
    heatmaps: bool = True,
    extra_html: str = "",
) -> str:
    """The self-contained HTML page of ``comparisons`` (``extra_html`` goes above the
    viewer: ``rdcodec bench --html`` puts its RD plot and BD-rate tables there)."""
    data = {
        "title": title,
        "limits": limits.describe(),
        "heat_stops": [list(s) for s in HEATMAP_STOPS],
        "images": [{**c.to_dict(), "views": _views(c, limits, heatmaps)} for c in comparisons],
    }
    template = (
        resources.files("rdcodec.codec.bench").joinpath("compare_page.html").read_text("utf-8")
    )
    fields = {
        "title": html.escape(title),
        "extra": extra_html,
        "limits": html.escape(limits.describe()),
        "data": _json_for_script(data),
    }
    # One pass: a file name or report that itself contains "{{data}}" is left as text.
    return re.sub(r"\{\{(title|extra|limits|data)\}\}", lambda m: fields[m[1]], template)


# ---- rdcodec bench --html ----------------------------------------------------------
def _markdown_html(text: str) -> str:
    """The little markdown that bench writes (headings, paragraphs, pipe tables) as HTML."""
    out: list[str] = []
    blocks = re.split(r"\n\s*\n", text.strip())
    for block in blocks:
        lines = block.strip().splitlines()
        if lines[0].startswith("#"):
            level = min(len(lines[0]) - len(lines[0].lstrip("#")) + 1, 4)
            out.append(f"<h{level}>{html.escape(lines[0].lstrip('#').strip())}</h{level}>")
            lines = lines[1:]
        if not lines:
            continue
        if all(line.startswith("|") for line in lines):
            cells = [[html.escape(c.strip()) for c in line.strip("|").split("|")] for line in lines]
            head, body = cells[0], [r for r in cells[1:] if not set("".join(r)) <= set("-: ")]
            out.append(
                "<table class='bd'><thead><tr>" + "".join(f"<th>{c}</th>" for c in head)
                + "</tr></thead><tbody>"
                + "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in body)
                + "</tbody></table>"
            )  # fmt: skip
        else:
            paragraph = html.escape(" ".join(lines))
            out.append("<p>" + re.sub(r"`([^`]+)`", r"<code>\1</code>", paragraph) + "</p>")
    return "\n".join(out)


def bench_page(
    folder_name: str,
    image_paths: Sequence,
    codecs: Sequence[str],
    rdcodec_quality: float | None,
    figure,
    bd_text: str,
    progress: bool = True,
    effort: int = 0,
) -> str:
    """``rdcodec bench --html``: the RD plot, the BD-rate tables and, when rdcodec ran,
    each image compared at ``rdcodec_quality`` and ``effort`` (one crop per image,
    ``BENCH_LIMITS``)."""
    from tqdm import tqdm

    from ..image_io import read_image

    svg = io.BytesIO()
    figure.savefig(svg, format="svg")
    plot = f"data:image/svg+xml;base64,{base64.b64encode(svg.getvalue()).decode()}"
    comparisons = []
    if rdcodec_quality is not None:
        others = [n for n in codecs if n != "rdcodec"]
        for path in tqdm(image_paths, unit="image", desc="html", disable=not progress):
            pixels = read_image(path).pixels
            comparisons.append(
                compare_image(pixels, path.name, rdcodec_quality, codecs=others, effort=effort)
            )
        what = (
            f"<h2>Each image at rdcodec quality {rdcodec_quality:g}"
            f"{f', effort {effort}' if effort else ''}</h2><p>Every other codec "
            "at its largest quality whose file is at most rdcodec's bytes.</p>"
        )
    else:
        what = "<p>rdcodec was not part of this run, so there are no per-image comparisons.</p>"
    extra = (
        f"<section class='report'><h2>Rate-distortion</h2><img class='rd' alt='RD curves' "
        f"src='{plot}'>{_markdown_html(bd_text)}{what}</section>"
    )
    title = f"rdcodec bench: {folder_name}"
    return render_page(comparisons, title, BENCH_LIMITS, extra_html=extra)


def page_summary(page: str) -> str:
    """How big a page is, for the command's last line."""
    size = len(page.encode())
    return f"{size / 1e6:.1f} MB" if size >= 1e5 else f"{size / 1e3:.0f} kB"
