"""The App in a real browser: `m2fp-batch review --launch` on 127.0.0.1, headless Chromium via
Playwright, and the parse overlays asserted on the grid screenshot's pixels.

The App opens the ``review-queue`` saved view (the 3 labelled photos). The grid is shot with the
``parsing`` overlay on and again with it off (its sidebar checkbox); where the two differ the App
painted the overlay. Each tile is matched to its photo and compared with the parse mask PNG:
the class pixels must be painted, each towards the project's palette colour of its own class
(``on - off`` parallel to ``colour - off``, as alpha blending gives), background not.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from chromium import CHROMIUM, CHROMIUM_ARGS
from PIL import Image
from scipy import ndimage

from m2fp_batch.annotate.palette import PALETTE
from m2fp_batch.review.masks import mask_folder

from .fo_helpers import M2FP_BATCH, REPO, fo_env

pytestmark = pytest.mark.browser


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            assert proc.poll() is None, f"the App command exited:\n{log.read_text()[-3000:]}"
            assert time.time() < deadline, f"no App on {url} after {timeout} s:\n{log.read_text()[-3000:]}"
            time.sleep(0.5)


@contextlib.contextmanager
def launched_app(job_output: Path, tmp_path: Path, *args: str) -> Iterator[tuple[str, Path]]:
    """`m2fp-batch review OUT --launch --port P ARGS` on a copy of ``job_output`` (own HOME and
    bundled DB): (the App's url, the copy); the App server must end with the command."""
    out = tmp_path / "out"
    shutil.copytree(job_output, out)
    home = tmp_path / "home"
    home.mkdir()
    port = _free_port()
    log = tmp_path / "app.log"
    cmd = [*M2FP_BATCH, "review", str(out), "--launch", "--port", str(port), *args]
    proc = subprocess.Popen(cmd, env=fo_env(home), cwd=REPO, stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        _wait_http(f"http://127.0.0.1:{port}/", proc, log)
        yield f"http://127.0.0.1:{port}/", out
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0, "the App server outlived `m2fp-batch review --launch`"


@pytest.fixture()
def app(job_output, tmp_path):
    with launched_app(job_output, tmp_path, "--dataset", "rv-browser", "--view", "review-queue") as served:
        yield served


def _tile_check(
    on: np.ndarray, off: np.ndarray, box: list[float], mask: np.ndarray, palette: np.ndarray, edge: int = 5
) -> dict:
    """Compare one grid tile with the parse mask it shows, pixel by pixel.

    Only pixels whose ``edge`` x ``edge`` neighbourhood has one class (no edges after the resize: a
    mask drawn enlarged blurs over about one mask pixel, so ``edge`` grows with the zoom) and whose
    class colour differs clearly from the photo underneath are judged.
    """
    x, y, w, h = box
    x0, y0, tw, th = round(x), round(y), round(w), round(h)
    m = np.asarray(Image.fromarray(mask).resize((tw, th), Image.NEAREST))
    uniform = ndimage.maximum_filter(m, edge) == ndimage.minimum_filter(m, edge)
    a, b = on[y0 : y0 + th, x0 : x0 + tw], off[y0 : y0 + th, x0 : x0 + tw]
    d = a - b
    towards = palette[m].astype(np.float64) - b
    fg = uniform & (m != 0) & (np.linalg.norm(towards, axis=2) > 80)
    bg = uniform & (m == 0)
    changed = np.abs(d).max(axis=2) > 20
    cos = (d * towards).sum(axis=2) / (np.linalg.norm(d, axis=2) * np.linalg.norm(towards, axis=2) + 1e-9)
    return {
        "judged": int(fg.sum()),
        "covered": float(changed[fg].mean()),  # class pixels the overlay painted
        "colour_ok": float((cos[fg & changed] > 0.9).mean()),  # painted towards the class's palette colour
        "background_painted": float(changed[bg].mean()) if bg.sum() > 50 else 0.0,
    }


def test_app_grid_shows_parse_overlays(app, tmp_path):
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).is_file(), "Chromium missing: `make browser-deps` (apt-get install chromium)"
    url, out = app
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(url, wait_until="domcontentloaded")
            page.wait_for_selector("canvas", timeout=120_000)  # the grid's tiles
            page.wait_for_timeout(2000)
            dismiss = page.get_by_text("Dismiss", exact=True)  # the App's promotional popover
            if dismiss.count():
                dismiss.first.click()
            for field in ("parsing", "people"):  # both visible by default (dataset app config)
                assert page.locator(f"[data-cy='checkbox-{field}'] input").is_checked()
            page.click("[data-cy='checkbox-people']")  # leave only the parse overlay on
            page.wait_for_timeout(3000)
            boxes = page.eval_on_selector_all(
                "canvas",
                "els => els.map(e => { const r = e.getBoundingClientRect(); return [r.x, r.y, r.width, r.height]; })",
            )
            on = tmp_path / "grid_parsing_on.png"
            page.screenshot(path=str(on))
            page.click("[data-cy='checkbox-parsing']")
            page.wait_for_timeout(3000)
            off = tmp_path / "grid_parsing_off.png"
            page.screenshot(path=str(off))
        finally:
            browser.close()

    assert len(boxes) == 3, f"expected the 3 labelled images of the review queue as canvases, got {boxes}"
    (tmp_path / "boxes.json").write_text(json.dumps(boxes))
    a = np.asarray(Image.open(on).convert("RGB")).astype(np.float64)
    b = np.asarray(Image.open(off).convert("RGB")).astype(np.float64)
    rows = pq.read_table(out / "shard-00000.parquet", columns=["image_id", "width", "height", "status"]).to_pylist()
    wrong_palette = PALETTE.copy()
    wrong_palette[1:20] = np.roll(PALETTE[1:20], 3, axis=0)
    for row in (r for r in rows if r["status"] == "ok"):
        # the tile of this image: the canvas with its aspect ratio (the three photos differ)
        aspect = row["width"] / row["height"]
        box = min(boxes, key=lambda bx: abs(bx[2] / bx[3] - aspect))
        assert abs(box[2] / box[3] - aspect) < 0.03 * aspect, (row, boxes)
        mask = np.asarray(Image.open(mask_folder(out / "_review" / "masks", row["image_id"]) / "parsing.png"))
        got = _tile_check(a, b, box, mask, PALETTE)
        with (tmp_path / "tiles.jsonl").open("a") as f:
            f.write(json.dumps({"image_id": row["image_id"], "box": box, **got}) + "\n")
        assert got["judged"] > 500, got
        assert got["covered"] > 0.8, got
        assert got["colour_ok"] > 0.9, got
        assert got["background_painted"] < 0.1, got
        # the same check with the palette shifted by three classes fails: it does tell colours apart
        assert _tile_check(a, b, box, mask, wrong_palette)["colour_ok"] < 0.5
