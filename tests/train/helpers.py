"""Training samples for tests: real photos (scikit-image, matplotlib) with simple drawn labels."""

from __future__ import annotations

import numpy as np
from PIL import Image

SIZE = 128


def _square(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    s = min(h, w)
    y0, x0 = (h - s) // 2, (w - s) // 2
    crop = img[y0 : y0 + s, x0 : x0 + s]
    if crop.ndim == 2:
        crop = np.stack([crop] * 3, -1)
    return np.asarray(Image.fromarray(crop[..., :3]).resize((SIZE, SIZE), Image.BILINEAR))


def photos() -> list[np.ndarray]:
    """Four real photos, square, SIZE x SIZE."""
    import matplotlib.cbook
    from skimage import data

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        hopper = np.asarray(Image.open(f).convert("RGB"))
    return [_square(x) for x in (data.astronaut(), data.coffee(), data.chelsea(), hopper)]


def drawn_labels(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Simple per-photo labels: one or two people made of a face, hair, upper clothes and pants
    rectangles, shifted per photo. Returns (semantic, humans)."""
    sem = np.zeros((SIZE, SIZE), np.int64)
    hum = np.zeros((SIZE, SIZE), np.int64)
    people = [(10 + 12 * k, 20)] if k % 2 == 0 else [(8 + 4 * k, 8), (70, 30)]
    for pid, (x, y) in enumerate(people, start=1):
        w = 40
        for cls, (y0, y1) in ((2, (y, y + 12)), (13, (y + 12, y + 30)), (5, (y + 30, y + 70)), (9, (y + 70, y + 95))):
            sem[y0:y1, x : x + w] = cls
            hum[y0:y1, x : x + w] = pid
    return sem, hum


def samples(groups=("light", "medium", "dark", "dark")) -> list[dict]:
    """ParsingDataset-style dicts for the four photos."""
    out = []
    for k, img in enumerate(photos()):
        sem, hum = drawn_labels(k)
        n = int(hum.max())
        out.append(
            {
                "image": img,
                "semantic": sem,
                "humans": hum,
                "parts": hum * 100 + sem * (hum > 0),
                "image_id": f"photo{k}",
                "skin_tones": [groups[k]] * n,
            }
        )
    return out


def write_cihp_dir(root, recs: list[dict], split: str = "train"):
    """A CIHP-layout dir (Images, Category_ids, Human_ids, Instance_ids, ids and meta files)."""
    import json
    from pathlib import Path

    root = Path(root)
    for d in ("Images", "Category_ids", "Human_ids", "Instance_ids"):
        (root / d).mkdir(parents=True, exist_ok=True)
    ids, meta = [], []
    for r in recs:
        name = r["image_id"]
        Image.fromarray(r["image"]).save(root / "Images" / f"{name}.jpg", quality=95)
        Image.fromarray(r["semantic"].astype(np.uint8)).save(root / "Category_ids" / f"{name}.png")
        Image.fromarray(r["humans"].astype(np.uint8)).save(root / "Human_ids" / f"{name}.png")
        parts = np.unique(r["parts"], return_inverse=True)[1].reshape(r["parts"].shape)
        Image.fromarray(parts.astype(np.uint8)).save(root / "Instance_ids" / f"{name}.png")
        persons = [{"human_id": k + 1, "skin_tone": {"group": g}} for k, g in enumerate(r["skin_tones"])]
        ids.append(name)
        meta.append(json.dumps({"id": name, "image_id": name, "persons": persons}))
    (root / f"{split}_id.txt").write_text("\n".join(ids) + "\n")
    (root / f"{split}_meta.jsonl").write_text("\n".join(meta) + "\n")
    return root
