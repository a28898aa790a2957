"""``rdcodec compare``'s page: the size rule, the numbers, self-containment, and a real
browser (headless Chromium over the DevTools protocol) drawing it and moving the slider."""

from __future__ import annotations

import base64
import io
import json
import math
import os
import re
import select
import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rdcodec.codec import baselines, pipeline
from rdcodec.codec.bench import compare
from rdcodec.codec.metrics import jpeg_at_size
from rdcodec.models.registry import load_model

CHROMIUM = shutil.which("chromium")
IMAGES = Path(__file__).parents[2] / "images"


@pytest.fixture(scope="module")
def chelsea():
    with Image.open(IMAGES / "chelsea.png") as im:  # 168x164: large enough for MS-SSIM
        return np.array(im.convert("RGB"))


@pytest.fixture(scope="module")
def comparison(chelsea):
    return compare.compare_image(chelsea, "chelsea.png", codecs=("jpeg", "webp", "avif"))


@pytest.fixture(scope="module")
def page(comparison):
    return compare.render_page([comparison], "chelsea.png")


def _page_data(page: str) -> dict:
    match = re.search(r'<script type="application/json" id="data">(.*?)</script>', page, re.S)
    return json.loads(match.group(1))


def _decode_uri(uri: str) -> np.ndarray:
    header, payload = uri.split(",", 1)
    assert header in ("data:image/webp;base64", "data:image/png;base64")
    with Image.open(io.BytesIO(base64.b64decode(payload))) as im:
        return np.array(im.convert("RGB"))


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


# ---- the size rule -------------------------------------------------------------------
def test_every_codec_is_at_most_rdcodecs_bytes(comparison):
    ours = comparison.rows[0]
    assert ours.codec == "rdcodec"
    others = {r.codec: r for r in comparison.rows[1:]}
    assert set(others) | {label.lower() for label, _ in comparison.skipped} >= {"jpeg", "webp"}
    for row in others.values():
        assert row.num_bytes <= ours.num_bytes
        codec = baselines.CLASSICAL[row.codec]
        low, high, step = codec.search_grid
        # No quality near the one chosen gives a file that fits and is larger.
        for q in np.arange(row.quality - 2 * step, row.quality + 2.5 * step, step):
            if low <= q <= high:
                size = len(codec.encode(comparison.original, float(q)))
                assert size > ours.num_bytes or size <= row.num_bytes, (row.codec, q)


def test_jpeg_follows_the_rule_encode_uses(comparison):
    jpeg = next(r for r in comparison.rows if r.codec == "jpeg")
    point = jpeg_at_size(comparison.original, comparison.rows[0].num_bytes)
    assert (jpeg.quality, jpeg.num_bytes, jpeg.psnr) == (point.quality, point.num_bytes, point.psnr)


def test_at_size_searches_each_codecs_grid(chelsea):
    for codec in (baselines.WEBP, baselines.JPEG2000):
        if not codec.available():
            continue
        quality, data = baselines.at_size(codec, chelsea, 3000)
        assert len(data) <= 3000 and data == codec.encode(chelsea, quality)
        assert len(codec.encode(chelsea, quality + 3 * codec.search_grid[2])) > 3000
    assert baselines.at_size(baselines.JPEG, chelsea, 10) is None  # smaller than any JPEG


# ---- the numbers -------------------------------------------------------------------
def test_numbers_equal_an_independent_measurement(comparison, chelsea):
    import torch
    from pytorch_msssim import ms_ssim

    def tensor(x):
        return torch.from_numpy(x).permute(2, 0, 1)[None].double()

    pixels = chelsea.shape[0] * chelsea.shape[1]
    for row in comparison.rows:
        if row.codec == "rdcodec":
            model = load_model()
            data = pipeline.encode(chelsea, row.quality, model)
            threads = torch.get_num_threads()
            torch.set_num_threads(1)  # as compare ran it (pixels may differ by thread count)
            try:
                decoded = pipeline.decode_array(data, model)
            finally:
                torch.set_num_threads(threads)
        else:  # Pillow directly, with the settings the codec table documents
            buffer = io.BytesIO()
            codec = baselines.CLASSICAL[row.codec]
            Image.fromarray(chelsea).save(
                buffer, codec.pillow_format, quality=int(row.quality), **codec.options
            )
            data = buffer.getvalue()
            with Image.open(io.BytesIO(data)) as im:
                decoded = np.array(im.convert("RGB"))
        assert row.num_bytes == len(data), row.codec
        assert row.bpp == 8 * len(data) / pixels
        assert row.psnr == pytest.approx(_psnr(chelsea, decoded), abs=1e-9), row.codec
        expected = float(ms_ssim(tensor(chelsea), tensor(decoded), data_range=255))
        assert row.ms_ssim == pytest.approx(expected, abs=1e-9), row.codec
        assert np.array_equal(comparison.decoded[row.codec], decoded)
        assert row.encode_seconds > 0 and row.decode_seconds > 0


def test_target_bpp_picks_rdcodecs_quality(chelsea):
    result = compare.compare_image(chelsea, "chelsea.png", target_bpp=1.0, codecs=("jpeg",))
    ours = result.rows[0]
    assert ours.bpp <= 1.0
    assert ours.quality == pipeline.quality_for_bpp(chelsea, 1.0, load_model())


# ---- the page ----------------------------------------------------------------------
class _Resources(HTMLParser):
    """Every URL-like attribute and every tag of a page."""

    def __init__(self):
        super().__init__()
        self.urls, self.tags = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.urls += [v for k, v in attrs if k in ("src", "href", "srcset", "poster", "data")]


def test_page_is_self_contained(page):
    parser = _Resources()
    parser.feed(page)
    assert "link" not in parser.tags and "iframe" not in parser.tags
    assert all(u.startswith("data:") for u in parser.urls), parser.urls
    assert not re.search(r"https?:|//cdn|@import|url\((?!data:)|fetch\(|XMLHttpRequest", page)
    data = _page_data(page)
    for view in data["images"][0]["views"]:
        uris = [*view["sources"].values(), *view["heat"].values()]
        assert uris and all(u.startswith("data:image/") for u in uris)


def test_placeholders_in_a_file_name_stay_text(comparison):
    # The template's fields are filled in one pass: a name holding "{{data}}" is not filled.
    name = "{{data}} & {{limits}} <{{extra}}>.png"
    page = compare.render_page([comparison], name, extra_html="<p>{{title}}</p>")
    title = re.search(r"<title>(.*?)</title>", page, re.S).group(1)
    assert title == "{{data}} &amp; {{limits}} &lt;{{extra}}&gt;.png"
    plain = compare.render_page([comparison], "x")
    assert "<p>{{title}}</p>" in page and len(page) < 2 * len(plain)  # the data is in once
    assert _page_data(page)["title"] == name


def test_page_shows_the_decoded_pixels_and_the_table(page, comparison):
    image = _page_data(page)["images"][0]
    assert image["rows"] == [r.to_dict() for r in comparison.rows]
    [view] = image["views"]  # small: the whole image, at full resolution
    assert (view["width"], view["height"]) == (comparison.width, comparison.height)
    assert np.array_equal(_decode_uri(view["sources"]["original"]), comparison.original)
    for codec, decoded in comparison.decoded.items():
        assert np.array_equal(_decode_uri(view["sources"][codec]), decoded), codec


def test_large_images_get_an_overview_and_full_resolution_crops(comparison):
    limits = compare.PageLimits(full_side=150, overview_side=100, crop_side=64, crops=3)
    data = _page_data(compare.render_page([comparison], "x", limits))
    overview, *crops = data["images"][0]["views"]
    assert max(overview["width"], overview["height"]) == 100
    assert len(crops) == 3 and len(overview["crops"]) == 3
    for view in crops:
        x, y, w, h = view["region"]
        assert (w, h) == (view["width"], view["height"]) == (64, 64)
        for codec, decoded in comparison.decoded.items():
            assert np.array_equal(
                _decode_uri(view["sources"][codec]), decoded[y : y + h, x : x + w]
            )
    text = limits.describe()
    assert (
        "up to 150 px" in text
        and "downscaled to 100 px plus 3 full-resolution crops of 64x64" in text
    )


def test_page_size_is_capped_for_large_images():
    rng = np.random.default_rng(0)
    big = rng.integers(0, 256, (2000, 3000, 3), dtype=np.uint8)  # 6 MP of noise
    result = compare.Comparison("noise.png", big, (), {})
    data = _page_data(compare.render_page([result], "noise"))
    limits = compare.PAGE_LIMITS
    embedded = sum(v["width"] * v["height"] for v in data["images"][0]["views"])
    assert embedded <= limits.overview_side**2 + limits.crops * limits.crop_side**2
    assert embedded <= limits.full_side**2  # never more than the largest image shown whole


def test_crops_go_where_the_detail_is():
    image = np.full((300, 400, 3), 128, np.uint8)
    image[200:260, 300:380] = np.random.default_rng(1).integers(0, 256, (60, 80, 3))
    crops = compare.choose_crops(image, 100, 3)
    x, y, w, h = crops[0]
    assert x <= 300 and x + w >= 380 and y <= 200 and y + h >= 260
    for i, (ax, ay, aw, ah) in enumerate(crops):
        assert 0 <= ax and ax + aw <= 400 and 0 <= ay and ay + ah <= 300
        for bx, by, bw, bh in crops[i + 1 :]:
            assert ax + aw <= bx or bx + bw <= ax or ay + ah <= by or by + bh <= ay


def test_error_maps_share_one_scale(comparison):
    data = _page_data(compare.render_page([comparison], "x"))
    view = data["images"][0]["views"][0]
    assert set(view["heat"]) == set(comparison.decoded) and view["heat_block"] == 4
    height, width = comparison.height // 4, comparison.width // 4  # 168x164: whole blocks
    rmse = {}
    for codec, decoded in comparison.decoded.items():
        squared = ((comparison.original.astype(float) - decoded) ** 2).mean(axis=2)
        rmse[codec] = np.sqrt(squared.reshape(height, 4, width, 4).mean(axis=(1, 3)))
    top = max(np.percentile(r, 99.5) for r in rmse.values())
    assert view["heat_max"] == pytest.approx(top, rel=1e-4)
    for codec, r in rmse.items():  # at or above the top: the last colour; none: the first
        colours = _decode_uri(view["heat"][codec])
        assert colours.shape == (height, width, 3)
        assert (colours[r >= top * 1.001] == compare.HEATMAP_STOPS[-1]).all()
    black = compare._heatmap_rgb(np.zeros((2, 2)), 1.0)
    assert (black == compare.HEATMAP_STOPS[0]).all()


# ---- a real browser ----------------------------------------------------------------
class Browser:
    """Headless Chromium driven over the DevTools protocol on a pipe
    (``--remote-debugging-pipe``): no extra package, no network port."""

    def __init__(self, binary: str, profile: str):
        to_child, self._send = os.pipe()
        self._receive, from_child = os.pipe()
        args = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                "--no-first-run", "--remote-debugging-pipe", f"--user-data-dir={profile}",
                "about:blank"]  # fmt: skip
        # Chromium reads commands on fd 3 and answers on fd 4; bash puts the pipes there.
        closes = " ".join(f"{fd}<&-" for fd in (to_child, from_child) if fd not in (3, 4))
        script = f"exec 100<&{to_child} 101>&{from_child} {closes}; "
        script += 'exec "$@" 3<&100 4>&101 100<&- 101>&-'
        self.process = subprocess.Popen(
            ["bash", "-c", script, "bash", *args],
            pass_fds=(to_child, from_child),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_child)
        os.close(from_child)
        self._buffer, self._id, self.session = b"", 0, None
        self.events: list[dict] = []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]
        for domain in ("Runtime", "Page", "Log", "Network"):
            self.call(f"{domain}.enable")

    def _message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._receive], [], [], left)[0]:
                raise TimeoutError("chromium did not answer")
            chunk = os.read(self._receive, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method: str, timeout: float = 60, **params) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params}
        if self.session:
            message["sessionId"] = self.session
        os.write(self._send, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._message(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    def open(self, url: str, width: int = 1400, height: int = 900) -> None:
        self.events.clear()
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height,
                  deviceScaleFactor=1, mobile=False)  # fmt: skip
        self.call("Page.navigate", url=url)
        deadline = time.monotonic() + 60
        while self.evaluate("document.readyState") != "complete" or not self.evaluate(
            "document.documentElement.dataset.ready === '1' || !!window.__loaded"
        ):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not finish drawing")
            time.sleep(0.05)
        self.evaluate("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")

    def screenshot(self) -> np.ndarray:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        with Image.open(io.BytesIO(base64.b64decode(data))) as im:
            return np.array(im.convert("RGB"))

    def problems(self) -> list[str]:
        """Console errors and warnings, uncaught exceptions, logged errors."""
        found = []
        for e in self.events:
            method, p = e.get("method"), e.get("params", {})
            if method == "Runtime.consoleAPICalled" and p["type"] in ("error", "warning", "assert"):
                found.append(f"console.{p['type']}: {p['args']}")
            elif method == "Runtime.exceptionThrown":
                found.append(f"exception: {p['exceptionDetails']}")
            elif method == "Log.entryAdded" and p["entry"]["level"] == "error":
                found.append(f"log: {p['entry']['text']}")
        return found

    def requests(self) -> list[str]:
        return [
            e["params"]["request"]["url"]
            for e in self.events
            if e.get("method") == "Network.requestWillBeSent"
        ]

    def mouse(self, kind: str, x: float, y: float) -> None:
        self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left",
                  buttons=1 if kind != "mouseReleased" else 0, clickCount=1)  # fmt: skip

    def key(self, key: str, code: str) -> None:
        for kind in ("keyDown", "keyUp"):
            self.call("Input.dispatchKeyEvent", type=kind, key=key, code=code,
                      text=key if kind == "keyDown" and len(key) == 1 else "")  # fmt: skip

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=10)
        except (OSError, RuntimeError, TimeoutError):
            pass
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._send)
        os.close(self._receive)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if CHROMIUM is None:
        pytest.skip("no chromium binary on PATH (Debian package chromium; .ci/run installs it)")
    chromium = Browser(CHROMIUM, str(tmp_path_factory.mktemp("chromium-profile")))
    yield chromium
    chromium.close()


def test_the_harness_sees_console_errors(browser, tmp_path):
    path = tmp_path / "broken.html"
    path.write_text("<script>console.error('boom'); window.__loaded = 1; nope();</script>")
    browser.open(path.as_uri())
    problems = browser.problems()
    assert any("boom" in p for p in problems) and any("nope" in p for p in problems)


def test_page_in_a_real_browser(browser, page, tmp_path):
    path = tmp_path / "page.html"
    path.write_text(page, "utf-8")
    browser.open(path.as_uri())
    assert browser.problems() == []
    assert all(u.startswith(("file:", "data:")) for u in browser.requests()), browser.requests()

    shot = browser.screenshot()
    viewer = browser.evaluate(
        "(() => { const r = document.getElementById('viewer').getBoundingClientRect();"
        " return [r.left, r.top, r.width, r.height]; })()"
    )
    left, top, width, height = (int(v) for v in viewer)
    region = shot[top : top + height, left : left + width]
    assert shot.std() > 20 and len(np.unique(region.reshape(-1, 3), axis=0)) > 1000  # not blank
    rows = browser.evaluate("document.querySelectorAll('#results tbody tr').length")
    assert rows == 4

    # Drag the divider's handle from the middle to 20% of the viewer's width.
    handle = browser.evaluate(
        "(() => { const r = document.getElementById('handle').getBoundingClientRect();"
        " return [r.left + r.width / 2, r.top + r.height / 2]; })()"
    )
    x0, y0 = handle
    assert abs(x0 - (left + width / 2)) < 3
    target = left + 0.2 * width
    browser.mouse("mousePressed", x0, y0)
    for x in np.linspace(x0, target, 8)[1:]:
        browser.mouse("mouseMoved", float(x), y0)
    browser.mouse("mouseReleased", target, y0)
    moved = browser.screenshot()[top : top + height, left : left + width]
    band = (slice(height // 4, 3 * height // 4), slice(int(0.25 * width), int(0.45 * width)))
    changed = np.abs(moved[band].astype(int) - region[band].astype(int)).mean()
    assert changed > 5, changed  # that band now shows side B instead of side A
    split = browser.evaluate("parseFloat(document.getElementById('divider').style.left)")
    assert split == pytest.approx(0.2 * width, abs=3)

    # The keyboard flips between the sides: Space shows A alone, again B alone (which the
    # middle of the viewer already showed with the divider at 20%).
    browser.key(" ", "Space")
    only_a = browser.screenshot()[top : top + height, left : left + width]
    browser.key(" ", "Space")
    only_b = browser.screenshot()[top : top + height, left : left + width]
    assert browser.evaluate("window.scrollY") == 0  # the key went to the page, not the scroll
    middle = (slice(height // 4, 3 * height // 4), slice(width // 3, 2 * width // 3))

    def difference(a, b):
        return np.abs(a[middle].astype(int) - b[middle].astype(int)).mean()

    assert difference(only_a, moved) > 5 and difference(only_b, moved) < 0.5
    assert browser.problems() == []


def test_page_fits_a_laptop_and_a_narrow_window(browser, page, tmp_path):
    path = tmp_path / "page.html"
    path.write_text(page, "utf-8")
    # 1280 px wide: the controls stay on one row above the viewer.
    browser.open(path.as_uri(), width=1280, height=800)
    tops = browser.evaluate(
        "[...document.querySelectorAll('.controls > :not([hidden])')]"
        ".map((e) => Math.round(e.getBoundingClientRect().top))"
    )
    assert len(tops) >= 6 and len(set(tops)) == 1, tops
    # Narrow: only the table scrolls sideways, not the page (and with it the viewer).
    browser.open(path.as_uri(), width=640, height=800)
    widths = browser.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth,"
        " document.getElementById('results').parentElement.scrollWidth,"
        " document.getElementById('results').parentElement.clientWidth]"
    )
    page_scroll, page_width, table_scroll, table_width = widths
    assert page_scroll <= page_width, widths
    assert table_scroll > table_width, widths  # the table is wider: its box scrolls
    assert browser.problems() == []


def test_a_page_without_images_shows_only_the_report(browser, tmp_path):
    # rdcodec bench --html without rdcodec: no viewer, no controls, no keys button.
    path = tmp_path / "empty.html"
    path.write_text(compare.render_page([], "bench", compare.BENCH_LIMITS, extra_html="<p>RD</p>"))
    browser.open(path.as_uri())
    assert browser.evaluate("document.getElementById('viewer')") is None
    assert browser.evaluate("document.getElementById('help-button').hidden") is True
    assert browser.evaluate("document.body.innerText.includes('RD')") is True
    assert browser.problems() == []
