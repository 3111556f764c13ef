"""The web page in headless Chromium (Playwright, the Debian package): upload a real photo through the
file input, wait for the parse, move the opacity slider and check the overlay's pixels: at opacity 1
every parsed pixel shows its class's palette colour, at 0 the photo, in between the blend; the screenshot
of the page changes where the parse is."""

from __future__ import annotations

import base64
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from chromium import CHROMIUM, CHROMIUM_ARGS
from PIL import Image
from skimage import data

from m2fp_batch.annotate.palette import PALETTE

pytestmark = [pytest.mark.browser, pytest.mark.cluster]

READ_CANVAS = "id => document.getElementById(id).toDataURL('image/png')"  # lossless: the canvas's pixels


def _set_alpha(page, value: int) -> None:
    page.eval_on_selector("#alpha", "(el, v) => { el.value = v; el.dispatchEvent(new Event('input')); }", value)


def _canvas(page, canvas_id: str, shape) -> np.ndarray:
    url = page.evaluate(READ_CANVAS, canvas_id)
    px = np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB"))
    assert px.shape[:2] == tuple(shape)
    return px.astype(np.int16)


def test_upload_slider_overlay_pixels(server, tmp_path):
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).is_file(), "Chromium missing: `make browser-deps` (apt-get install chromium)"
    photo = tmp_path / "astronaut.png"
    Image.fromarray(data.astronaut()).save(photo)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(server.url, wait_until="load")
            page.set_input_files("#file", str(photo))
            page.wait_for_selector("#result:not([hidden])", timeout=120_000)
            page.wait_for_function("document.getElementById('people').children.length > 0", timeout=30_000)
            body = page.evaluate("state.body")
            shape = (body["height"], body["width"])
            shots, canvases = {}, {}
            for alpha in (0, 50, 100):
                _set_alpha(page, alpha)
                assert page.inner_text("#alpha-value") == f"{alpha / 100:.2f}"
                canvases[alpha] = _canvas(page, "overlay", shape)
                shots[alpha] = np.asarray(Image.open(io.BytesIO(page.locator("#overlay").screenshot())).convert("RGB"))
            photo_px = _canvas(page, "photo", shape)
            legend = page.inner_text("#legend")
            people = page.inner_text("#people")
            timing = page.inner_text("#timing")
            if os.environ.get("M2FP_SCREENSHOT"):  # docs/serve.png
                _set_alpha(page, 60)
                page.screenshot(path=os.environ["M2FP_SCREENSHOT"], full_page=True)
        finally:
            browser.close()

    status, _, png = server.get(body["result_url"])
    sem = np.asarray(Image.open(io.BytesIO(png)))  # palette PNG: the class ids
    fg = sem > 0
    assert status == 200 and fg.mean() > 0.05
    colours = PALETTE[sem].astype(np.int16)
    np.testing.assert_array_equal(photo_px, np.asarray(data.astronaut(), np.int16))  # the original, as uploaded
    # opacity 0: the photo; 1: the palette colour of every parsed pixel, the photo elsewhere; 0.5: the blend
    assert np.abs(canvases[0] - photo_px).max() <= 1
    assert np.abs(canvases[100][fg] - colours[fg]).max() <= 1
    assert np.abs(canvases[100][~fg] - photo_px[~fg]).max() <= 1
    blend = (photo_px[fg] + colours[fg]) / 2
    assert np.abs(canvases[50][fg] - blend).max() <= 2
    # the page itself shows it: the displayed overlay moves towards the palette colour as the slider moves
    on, off = shots[100].astype(np.float64), shots[0].astype(np.float64)
    small = np.asarray(Image.fromarray(sem).resize(on.shape[1::-1], Image.NEAREST))
    towards = PALETTE[small].astype(np.float64) - off
    judged = (small > 0) & (np.linalg.norm(towards, axis=2) > 80)
    d = on - off
    cos = (d * towards).sum(axis=2) / (np.linalg.norm(d, axis=2) * np.linalg.norm(towards, axis=2) + 1e-9)
    assert judged.sum() > 1000 and (cos[judged] > 0.9).mean() > 0.9
    assert np.abs(d[small == 0]).max(axis=1).mean() < 10
    # legend in palette colours, people with score and skin group, inference time
    for m in body["masks"]:
        assert m["label"] in legend
    assert "score" in people and "skin tone" in people and "inference" in timing
    assert json.loads(server.get("healthz")[2])["status"] == "ok"
