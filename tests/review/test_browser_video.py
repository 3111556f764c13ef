"""The video dataset in a real browser: `m2fp-batch review OUT --launch` on a job output with videos,
headless Chromium (Debian's, which plays H.264) opening ``<name>-videos`` in the FiftyOne App.

What the App itself serves is checked (its GraphQL lists the four video samples; for the opened
video, its ``/video-labels/index`` has the parse on frames 1, 11 and 21 and one track per
``track_id`` on the frames where that person is), and the video's modal is shot at frame 1 with the
``frames.parsing`` overlay on and off: the painted pixels are compared with the frame's parse mask,
each towards the palette colour of its own class, as ``test_browser.py`` does for photos.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from chromium import CHROMIUM, CHROMIUM_ARGS
from PIL import Image

from m2fp_batch.annotate.palette import PALETTE
from m2fp_batch.labels import row_pixels
from m2fp_batch.review.masks import mask_folder
from m2fp_batch.storage import Filesystems

from .test_browser import _tile_check, launched_app

pytestmark = pytest.mark.browser
NAME = "rv-vbrowser"


@pytest.fixture()
def video_app(video_job_output, tmp_path):
    with launched_app(video_job_output, tmp_path, "--dataset", NAME) as served:
        yield served


def _clip_rows(out: Path) -> list[dict]:
    rows = [r for f in sorted(out.glob("shard-*.parquet")) for r in pq.read_table(f).to_pylist()]
    return sorted((r for r in rows if r["uri"].endswith("clip.mp4")), key=lambda r: r["frame_index"])


def _json_responses(page, marker: str) -> list:
    """The JSON bodies of the App's responses whose URL contains ``marker``, as they come."""
    got = []

    def keep(response):
        if marker in response.url and response.ok:
            try:
                got.append(response.json())
            except ValueError:
                pass

    page.on("response", keep)
    return got


def _open_modal(page, url: str, tmp_path: Path) -> tuple[dict, dict, list[float], Path, Path]:
    """Open the video dataset, then clip.mp4's modal; shoot it with the parse overlay on and off."""
    listed, index = _json_responses(page, "/graphql"), _json_responses(page, "/video-labels/index")
    page.goto(f"{url}datasets/{NAME}-videos", wait_until="domcontentloaded")
    page.wait_for_selector("canvas", timeout=120_000)  # the grid's tiles
    page.wait_for_timeout(3000)
    dismiss = page.get_by_text("Dismiss", exact=True)  # the App's promotional popover
    if dismiss.count():
        dismiss.first.click()
    samples = {
        Path(e["node"]["sample"]["filepath"]).name: e["node"]
        for body in listed
        for e in ((body.get("data") or {}).get("samples") or {}).get("edges", [])
    }
    page.goto(f"{url}datasets/{NAME}-videos?id={samples['clip.mp4']['id']}", wait_until="domcontentloaded")
    page.wait_for_selector("[data-cy='checkbox-frames.people']", timeout=120_000)
    page.wait_for_timeout(5000)
    modal = page.locator("[data-cy='checkbox-frames.people'] input").last  # the modal's sidebar
    assert modal.is_checked() and page.locator("[data-cy='checkbox-frames.parsing'] input").last.is_checked()
    modal.click()  # leave only the parse overlay on
    page.wait_for_timeout(3000)
    rect = page.eval_on_selector_all(
        "canvas", "els => els.map(e => { const r = e.getBoundingClientRect(); return [r.x, r.y, r.width, r.height]; })"
    )
    on, off = tmp_path / "modal_parsing_on.png", tmp_path / "modal_parsing_off.png"
    page.screenshot(path=str(on))
    page.locator("[data-cy='checkbox-frames.parsing'] input").last.click()
    page.wait_for_timeout(3000)
    page.screenshot(path=str(off))
    full = [i for i in index if {"parsing", "people"} <= set(i)]  # before the people overlay was turned off
    assert full, f"the App served no /video-labels/index of both fields for the opened video: {index}"
    return samples, full[0], max(rect, key=lambda r: r[2] * r[3]), on, off


def _media_box(canvas: list[float], width: int, height: int) -> list[float]:
    """Where a width x height frame is drawn in the modal's canvas (fitted, centred)."""
    x, y, w, h = canvas
    scale = min(w / width, h / height)
    return [x + (w - width * scale) / 2, y + (h - height * scale) / 2, width * scale, height * scale]


def test_app_shows_the_video_frame_masks(video_app, tmp_path):
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).is_file(), "Chromium missing: `make browser-deps` (apt-get install chromium ffmpeg)"
    url, out = video_app
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            samples, index, canvas, on, off = _open_modal(page, url, tmp_path)
        finally:
            browser.close()
    (tmp_path / "index.json").write_text(json.dumps(index))
    assert sorted(samples) == ["clip.mp4", "phone.mp4", "truncated.mkv", "vfr.mkv"]
    assert all(n["__typename"] == "VideoSample" for n in samples.values())
    rows = _clip_rows(out)
    numbers = [[r["frame_index"] + 1] * 2 for r in rows]
    assert index["parsing"]["instances"][0]["segments"] == numbers == [[1, 1], [11, 11], [21, 21]]
    tracks = {}
    for r in rows:
        for person in r["persons"]:
            tracks.setdefault(f"track-{person['track_id']}", []).append([r["frame_index"] + 1] * 2)
    assert {i["instanceId"]: sorted(i["segments"]) for i in index["people"]["instances"]} == tracks

    first = rows[0]  # frame 1, where the modal opens
    mask = np.asarray(Image.open(mask_folder(out / "_review" / "masks", first["image_id"]) / "parsing.png"))
    a = np.asarray(Image.open(on).convert("RGB")).astype(np.float64)
    b = np.asarray(Image.open(off).convert("RGB")).astype(np.float64)
    box = _media_box(canvas, first["width"], first["height"])
    edge = 2 * math.ceil(box[2] / first["width"]) + 3  # the mask is drawn enlarged (~2.9x): its edges blur wider
    got = _tile_check(a, b, box, mask, PALETTE, edge)
    (tmp_path / "modal.json").write_text(json.dumps({"canvas": canvas, "box": box, **got}))
    assert got["judged"] > 500, got
    assert got["covered"] > 0.8, got
    assert got["colour_ok"] > 0.9, got
    assert got["background_painted"] < 0.1, got
    # under the overlay, the browser played the H.264 video: frame 1's pixels, as the job decoded them
    x, y, w, h = (round(v) for v in box)
    shown = np.asarray(
        Image.fromarray(b[y : y + h, x : x + w].astype(np.uint8)).resize((first["width"], first["height"]))
    )
    diff, later = (np.abs(shown - row_pixels(r, Filesystems()).astype(np.float64)).mean() for r in (first, rows[-1]))
    assert diff < 12 and later > 2 * diff, (diff, later)  # and not the frame 2 s later
    wrong_palette = PALETTE.copy()
    wrong_palette[1:20] = np.roll(PALETTE[1:20], 3, axis=0)
    assert _tile_check(a, b, box, mask, wrong_palette, edge)["colour_ok"] < 0.5
