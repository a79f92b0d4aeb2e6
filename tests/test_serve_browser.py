"""The page in a real headless browser: Debian's Chromium driven by Playwright (Python) through
`executable_path`. Load the page, upload a photo, draw a box with mouse events, enrol, upload a query photo and
check what is drawn; the screenshot goes to $MOCHA_SCREENSHOT when set (docs/img/serve.png in the README).

Needs /usr/bin/chromium (`apt-get install -y chromium`; scripts/setup.sh installs it) and playwright (the dev
extra). Without them the test fails saying so; MOCHA_SKIP_BROWSER=1 skips it instead."""

from __future__ import annotations

import base64
import colorsys
import io
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mocha.personalize.gallery import Gallery
from mocha.serve.app import create_app
from tests.fixtures_serve import live_server, make_bundle, open_personalizer, scene, write_photos

pytestmark = pytest.mark.slow

# as root in a container, on a machine whose network is closed (see docs/serve.md)
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]  # a fake webcam, allowed


def chromium_or_fail() -> str:
    if os.environ.get("MOCHA_SKIP_BROWSER") == "1":
        pytest.skip("MOCHA_SKIP_BROWSER=1")
    path = os.environ.get("MOCHA_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        pytest.fail("the browser test needs Chromium: `apt-get install -y chromium` (Debian; scripts/setup.sh does "
                    "it), or set MOCHA_CHROMIUM=/path/to/chromium, or MOCHA_SKIP_BROWSER=1 to skip this test")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.fail("the browser test needs playwright: pip install playwright==1.65.2 (the dev extra); "
                    "or MOCHA_SKIP_BROWSER=1 to skip this test")
    return path


def canvas_pixels(page, selector: str) -> np.ndarray:
    url = page.eval_on_selector(selector, "c => c.toDataURL('image/png')")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB"))


def page_colour(name: str) -> np.ndarray:
    """The RGB colour app.js gives an instance name: hsl(hash % 360, 80%, 45%)."""
    h = 0
    for ch in name:
        h = (h * 31 + ord(ch)) % 2**32
    return np.array(colorsys.hls_to_rgb((h % 360) / 360, 0.45, 0.8)) * 255


def test_page_enrol_by_drawing_then_detect(tmp_path):
    from playwright.sync_api import expect, sync_playwright

    chromium = chromium_or_fail()
    bundle = make_bundle(tmp_path / "bundle")
    photos = write_photos(tmp_path / "photos")
    gpath = tmp_path / "me.gallery"
    p = open_personalizer(bundle, gpath, max_det=5)
    with live_server(create_app(p)) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)  # a fresh profile each launch
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
        page.goto(url)
        expect(page.locator("#health")).to_contain_text("instance(s)")
        expect(page.locator("#instances")).to_contain_text("nothing enrolled yet")

        # upload a photo, draw a box on it with the mouse
        page.set_input_files("#enroll-file", str(photos[0]))
        canvas = page.locator("#enroll-canvas")
        expect(canvas).to_have_attribute("width", "240")  # shown 1:1 (scale 1), so mouse px = image px
        bb = canvas.bounding_box()
        page.mouse.move(bb["x"] + 20, bb["y"] + 30)
        page.mouse.down()
        page.mouse.move(bb["x"] + 80, bb["y"] + 90, steps=5)
        page.mouse.move(bb["x"] + 120, bb["y"] + 150, steps=5)
        page.mouse.up()
        text = page.locator("#enroll-box").inner_text()
        drawn_box = [float(v) for v in re.findall(r"[\d.]+", text)]
        assert text.startswith("your box:") and np.allclose(drawn_box, [20, 30, 120, 150], atol=1.5), text
        shown = canvas_pixels(page, "#enroll-canvas")
        assert tuple(shown[int(drawn_box[1]) + 1, 70]) != tuple(scene(0)[int(drawn_box[1]) + 1, 70])  # the red edge

        # name it, pick its class, enrol
        page.fill("#enroll-name", "my mug")
        page.select_option("#enroll-coarse", "mug")
        page.click("#enroll-btn")
        expect(page.locator("#enroll-msg")).to_contain_text('enrolled "my mug" (mug, 1 shot(s)) with your box')
        item = page.locator('#instances li[data-name="my mug"]')
        expect(item).to_contain_text("mug · 1 shot(s)")
        assert item.locator("img").get_attribute("src").startswith("data:image/jpeg;base64,")
        with Gallery(gpath) as g:  # what the page sent is what the gallery holds
            support = g.get("my mug").supports[0]
            assert support.box_source == "user" and np.allclose(support.box, drawn_box, atol=0.11)

        # a query photo: the boxes, names and scores are drawn over it
        page.set_input_files("#detect-file", str(photos[0]))
        fig = page.locator("figure.result").first
        expect(fig.locator('li[data-name="my mug"]').first).to_contain_text("my mug — score")
        expect(page.locator("#detect-msg")).to_contain_text("photo0.png: 5 box(es)")
        result = canvas_pixels(page, "figure.result canvas")
        assert result.shape == (180, 240, 3)
        named = [d for d in p.detect(scene(0)).to_json()["detections"] if d["instance"] == "my mug"]
        assert named
        # the named box's left and bottom edges are stroked in the instance's colour (labels sit above boxes)
        x1, y1, x2, y2 = (int(round(v)) for v in named[0]["box"])
        col, row = min(max(x1, 0), 239), min(max(y2 - 1, 0), 179)
        edge = np.concatenate([result[y1 + 20: y2 - 2, col], result[row, x1 + 2: x2 - 2]])
        assert len(edge) > 20
        assert (np.abs(edge.astype(int) - page_colour("my mug")).max(1) < 40).mean() > 0.9
        page.screenshot(path=str(tmp_path / "serve.png"), full_page=True)
        if os.environ.get("MOCHA_SCREENSHOT"):
            page.screenshot(path=os.environ["MOCHA_SCREENSHOT"], full_page=True)

        # a photo dropped on the drop area (a real drop event carrying a File)
        page.evaluate("""async (b64) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], "dropped.png", { type: "image/png" }));
            document.getElementById("drop").dispatchEvent(new DragEvent("drop", { dataTransfer: dt, bubbles: true }));
        }""", base64.b64encode(photos[1].read_bytes()).decode())
        expect(page.locator('figure.result[data-source="dropped.png"]')).to_have_count(1)

        # no box drawn: the detector's best box, and the page says so
        page.set_input_files("#enroll-file", str(photos[2]))
        expect(page.locator("#enroll-box")).to_contain_text("no box drawn")
        page.fill("#enroll-name", "ball thing")
        page.select_option("#enroll-coarse", "ball")
        page.click("#enroll-btn")
        expect(page.locator("#enroll-msg")).to_contain_text('enrolled "ball thing" (ball, 1 shot(s)) with the detector')
        expect(page.locator('#instances li[data-name="ball thing"]')).to_have_count(1)

        # a webcam snapshot (Chromium's fake camera) goes to detection
        page.click("#detect-webcam")
        expect(page.locator('figure.result[data-source^="webcam-"]')).to_have_count(1)

        # remove from the page
        page.locator('#instances li[data-name="ball thing"] button.remove').click()
        expect(page.locator('#instances li[data-name="ball thing"]')).to_have_count(0)
        item.locator("button.remove").click()
        expect(page.locator("#instances")).to_contain_text("nothing enrolled yet")
        # the API reference, rendered in the page from /openapi.json
        page.goto(f"{url}/docs")
        expect(page.locator("#ops")).to_contain_text("POST /detect — Detect and name")
        expect(page.locator("#ops")).to_contain_text("DELETE /instances/{name}")
        expect(page.locator("#ops")).to_contain_text("boxes (form, string | null)")
        assert errors == []
        browser.close()
    assert len(p.gallery) == 0
    p.close()
