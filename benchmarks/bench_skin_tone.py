"""Cost of the per-person skin-tone estimate (what the job adds per person), on 1 thread.

    .venv/bin/python benchmarks/bench_skin_tone.py

A synthetic face scene (benchmarks/skin_tone_confusion.py) is resized to person crops of
several sizes; the skin covers ~37 % of the crop. Reports the median of 20 runs per size.
"""

from __future__ import annotations

import sys
import time

import numpy as np
from skimage.transform import resize

from m2fp_batch.annotate.brightness import adaptive_brightness
from m2fp_batch.annotate.skin_tone import MONK_RGB, estimate_skin_tone

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from skin_tone_confusion import render_face  # noqa: E402


def main() -> int:
    image, _, mask = render_face(MONK_RGB[6])
    print("| person crop (px) | skin pixels | estimate_skin_tone (ms) | adaptive_brightness on the crop (ms) |")
    print("|---|---|---|---|")
    for h in (160, 320, 640, 1280):
        w = int(h * 0.8)
        img = (resize(image, (h, w), order=1, preserve_range=True)).astype(np.uint8)
        m = resize(mask.astype(float), (h, w), order=0) > 0.5
        dark = (img * 0.3).astype(np.uint8)
        t_skin, t_bright = [], []
        for _ in range(20):
            t0 = time.perf_counter()
            estimate_skin_tone(img, m)
            t1 = time.perf_counter()
            adaptive_brightness(dark)
            t2 = time.perf_counter()
            t_skin.append(t1 - t0)
            t_bright.append(t2 - t1)
        print(f"| {w}x{h} | {int(m.sum())} | {1e3 * np.median(t_skin):.1f} | {1e3 * np.median(t_bright):.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
