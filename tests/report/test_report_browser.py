"""The report renders in headless Chromium: every plot loads, is shown large enough to read, and
the page screenshot is not blank."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from chromium import CHROMIUM, CHROMIUM_ARGS
from PIL import Image
from pycocotools import mask as mask_utils

from m2fp_batch.report import build_report

FLAGS = ["--headless", *CHROMIUM_ARGS]

pytestmark = pytest.mark.browser


def _ground_truth(job_output, gt_dir):
    """Label PNGs = the job's own semantic maps (so the report has its ground-truth section)."""
    gt_dir.mkdir()
    for f in sorted(job_output.glob("shard-*.parquet")):
        for r in pq.read_table(f).to_pylist():
            if r["status"] != "ok":
                continue
            gt = np.zeros((r["height"], r["width"]), np.uint8)
            for e in r["semantic"]:
                m = mask_utils.decode({"size": list(e["mask"]["size"]), "counts": e["mask"]["counts"].encode()})
                gt[m.astype(bool)] = e["label_id"]
            Image.fromarray(gt).save(gt_dir / f"{r['image_id']}.png")


def test_report_renders_in_chromium(job_output, tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed (make browser-deps)")
    from playwright.sync_api import sync_playwright

    _ground_truth(job_output, tmp_path / "gt")
    report = build_report(job_output, tmp_path / "report.html", tmp_path / "gt")
    shot = tmp_path / "report.png"
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)  # Playwright makes a fresh profile
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
            page.goto(report.html_path.as_uri(), wait_until="load")
            imgs = page.evaluate(
                """Array.from(document.images).map(i => ({alt: i.alt, ok: i.complete && i.naturalWidth > 0,
                    shown: i.getBoundingClientRect().width, natural: i.naturalWidth}))"""
            )
            headings = page.locator("h2").all_inner_texts()
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert errors == []
    assert len(imgs) == len(report.plot_paths)
    for im in imgs:
        assert im["ok"], im
        # readable: shown at >= 450 px and never blown up past 1.5x its pixels
        assert 450 <= im["shown"] <= 1.5 * im["natural"], im
    for h in ("Skin-tone groups", "Low light", "Parts per group", "People per image", "Accuracy per group"):
        assert any(h in t for t in headings), (h, headings)
    px = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert px.shape[1] == 1280 and px.shape[0] > 2500
    assert px.std() > 20 and (px < 60).mean() > 0.005  # text, bars and axes, not a blank page
