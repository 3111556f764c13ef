"""Regenerate the sample report in this folder from a REAL job run.

    .venv/bin/python docs/sample_report/make_sample.py [--model MODEL_DIR]

1. writes five photos that ship with scikit-image / matplotlib (astronaut, coffee, chelsea,
   Grace Hopper, and the astronaut darkened to 25 % so adaptive brightness fires);
2. runs ``m2fp-batch run`` on them with adaptive brightness on (default model: the tiny
   random-weight test model, so the numbers show the report's layout, not M2FP's accuracy);
3. writes ground truth = the job's own semantic maps with the most frequent predicted class
   relabelled background (a known perturbation, so the per-group mIoU table is not empty);
4. runs ``m2fp-batch report --ground-truth`` into ``report.html`` / ``report.md`` /
   ``report_plots/`` here, and screenshots the HTML in headless Chromium (``screenshot.png``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from matplotlib import cbook
from PIL import Image
from pycocotools import mask as mask_utils
from skimage import data

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def write_images(d: Path) -> None:
    d.mkdir(parents=True)
    Image.fromarray(data.astronaut()).save(d / "astronaut.png")
    Image.fromarray(data.coffee()).save(d / "coffee.png")
    Image.fromarray(data.chelsea()).save(d / "chelsea.png")
    with cbook.get_sample_data("grace_hopper.jpg") as f:
        Image.open(f).convert("RGB").save(d / "grace_hopper.png")
    Image.fromarray((data.astronaut() * 0.25).astype(np.uint8)).save(d / "astronaut_dark.png")


def write_ground_truth(job: Path, gt: Path) -> None:
    gt.mkdir(parents=True)
    rows = [r for f in sorted(job.glob("shard-*.parquet")) for r in pq.read_table(f).to_pylist() if r["status"] == "ok"]
    preds = {}
    for r in rows:
        pred = np.zeros((r["height"], r["width"]), np.uint8)
        for e in r["semantic"]:
            pred[mask_utils.decode({"size": list(e["mask"]["size"]), "counts": e["mask"]["counts"].encode()}) > 0] = e[
                "label_id"
            ]
        preds[r["image_id"]] = pred
    counts = np.bincount(np.concatenate([p.ravel() for p in preds.values()]), minlength=20)
    c = int(np.argmax(counts[1:]) + 1)
    for image_id, pred in preds.items():
        Image.fromarray(np.where(pred == c, 0, pred).astype(np.uint8)).save(gt / f"{image_id}.png")


def screenshot(html: Path, png: Path) -> None:
    from playwright.sync_api import sync_playwright

    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"]
    flags += ["--disable-background-networking", "--disable-component-update", "--disable-sync"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=flags)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(html.as_uri(), wait_until="load")
        page.screenshot(path=str(png), full_page=True)
        browser.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="model dir (default: a fresh tiny test model)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="m2fp_sample_"))
    model = args.model
    if model is None:
        sys.path.insert(0, str(REPO / "tests"))
        from tiny_model import write_tiny_model

        model = str(write_tiny_model(work / "tiny_model"))
    write_images(work / "images")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    m2fp = [sys.executable, "-m", "m2fp_batch.cli"]
    subprocess.run(
        [*m2fp, "run", "--input", str(work / "images"), "--out", str(work / "out"), "--model", model]
        + ["--num-cpus", "2", "--set", "adaptive_brightness=true"],
        check=True,
        env=env,
    )
    write_ground_truth(work / "out", work / "gt")
    html = HERE / "report.html"
    subprocess.run(
        [*m2fp, "report", str(work / "out"), "--ground-truth", str(work / "gt"), "--out", str(html)], check=True
    )
    screenshot(html, HERE / "screenshot.png")
    print(f"sample report in {HERE} (job output in {work})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
