"""Skin groups for ground truth that has none: a CIHP-layout dir (no meta file, like the CIHP
release) of real photos with people whose skin parts are painted in three known tones.

The groups and hues are derived from the ground-truth skin parts by the job's estimator; they
drive ``evaluate``'s per-group table and the balanced sampler ``train`` uses."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from PIL import Image
from skimage import color, data

from m2fp_batch.annotate.palette import CIHP_CLASSES
from m2fp_batch.annotate.skin_tone import hue_degrees, ita_degrees, ita_group
from m2fp_batch.cli import main
from m2fp_batch.data import ParsingDataset
from m2fp_batch.train.run import dataset_groups, open_dataset
from m2fp_batch.train.sampler import SkinBalancedSampler

SIZE = 192
# the drawn skin colours (sRGB) and the group their own ITA puts them in
TONES = {"light": (236, 200, 170), "medium": (196, 146, 104), "dark": (110, 72, 52)}
# per image: the tone of each person (left to right); skewed: 5 light images, 2 medium, 1 dark, 1 mixed
IMAGES = [["light"], ["light", "light"], ["light"], ["medium"], ["light"], ["dark"], ["medium"], ["light"]]
IMAGES.append(["light", "dark"])
C = {name: CIHP_CLASSES.index(name) for name in CIHP_CLASSES}
# (class, y0, y1, x0, x1) of a person's parts relative to its top-left corner (a 56 x 150 figure)
BODY = (
    ("Hair", 0, 10, 14, 42),
    ("Face", 10, 36, 14, 42),
    ("UpperClothes", 36, 90, 10, 46),
    ("Left-arm", 36, 90, 0, 10),
    ("Right-arm", 36, 90, 46, 56),
    ("Pants", 90, 115, 10, 46),
    ("Left-leg", 115, 150, 12, 26),
    ("Right-leg", 115, 150, 30, 44),
)
SKIN = {"Face", "Left-arm", "Right-arm", "Left-leg", "Right-leg"}


def lab_of(rgb) -> np.ndarray:
    return color.rgb2lab(np.asarray([[rgb]], np.float64) / 255.0)[0, 0]


def photos() -> list[np.ndarray]:
    """Real photos (scikit-image and matplotlib's grace_hopper), SIZE x SIZE."""
    import matplotlib.cbook

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        hopper = np.asarray(Image.open(f).convert("RGB"))
    out = []
    for img in (data.astronaut(), data.coffee(), data.chelsea(), hopper, data.rocket()):
        img = img if img.ndim == 3 else np.stack([img] * 3, -1)
        out.append(np.asarray(Image.fromarray(img[..., :3]).resize((SIZE, SIZE), Image.BILINEAR)))
    return out


def scene(photo: np.ndarray, tones: list[str], rng: np.random.Generator):
    """The photo with people drawn in: skin painted in its tone (8-bit noise, sigma 2), hair and
    clothes keep the photo's pixels. Returns (image, semantic, humans, parts)."""
    image, sem = photo.copy(), np.zeros((SIZE, SIZE), np.uint8)
    hum, parts = np.zeros((SIZE, SIZE), np.uint8), np.zeros((SIZE, SIZE), np.uint8)
    for k, tone in enumerate(tones):
        top, left = 20 + 8 * k, 16 + 96 * k
        for name, y0, y1, x0, x1 in BODY:
            box = (slice(top + y0, top + y1), slice(left + x0, left + x1))
            sem[box], hum[box], parts[box] = C[name], k + 1, 20 * (k + 1) + C[name]
            if name in SKIN:
                noise = rng.normal(0.0, 2.0, image[box].shape)
                image[box] = np.clip(np.rint(np.asarray(TONES[tone], np.float64) + noise), 0, 255)
    return image, sem, hum, parts


def write_toned_cihp_dir(root, split: str = "train"):
    """Images + Category_ids + Human_ids + Instance_ids and <split>_id.txt; no meta file."""
    for d in ("Images", "Category_ids", "Human_ids", "Instance_ids"):
        (root / d).mkdir(parents=True)
    rng = np.random.default_rng(0)
    pics = photos()
    names = []
    for i, tones in enumerate(IMAGES):
        image, sem, hum, parts = scene(pics[i % len(pics)], tones, rng)
        name = f"img{i:02d}"
        Image.fromarray(image).save(root / "Images" / f"{name}.jpg", quality=95)
        for d, arr in (("Category_ids", sem), ("Human_ids", hum), ("Instance_ids", parts)):
            Image.fromarray(arr).save(root / d / f"{name}.png")
        names.append(name)
    (root / f"{split}_id.txt").write_text("\n".join(names) + "\n")
    return root


def write_other_tool_coco(root, name: str = "parsing.json"):
    """The same people as a COCO file another tool would write: its own category ids and names
    (``face``, ``left_arm``, ``person``), polygons, parts tied to people only by overlap, no skin
    tone; ``file_name`` relative to the JSON file."""
    names = ["person", *(n.lower().replace("-", "_") for n, *_ in BODY)]
    cats = [{"id": 100 + k, "name": n} for k, n in enumerate(names)]
    cat_id = {n: 100 + k for k, n in enumerate(names)}
    images, anns = [], []
    for i, tones in enumerate(IMAGES):
        images.append({"id": 7 + i, "file_name": f"Images/img{i:02d}.jpg", "width": SIZE, "height": SIZE})
        for k in range(len(tones)):
            top, left = 20 + 8 * k, 16 + 96 * k
            polys = {
                n: [
                    float(v)
                    for v in (left + x0, top + y0, left + x1, top + y0, left + x1, top + y1, left + x0, top + y1)
                ]
                for n, y0, y1, x0, x1 in BODY
            }
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": 7 + i,
                    "category_id": cat_id["person"],
                    "segmentation": list(polys.values()),
                    "iscrowd": 0,
                }
            )
            for n, poly in polys.items():
                cid = cat_id[n.lower().replace("-", "_")]
                anns.append({"id": len(anns) + 1, "image_id": 7 + i, "category_id": cid, "segmentation": [poly]})
    path = root / name
    path.write_text(json.dumps({"images": images, "annotations": anns[::-1], "categories": cats}))
    return path


@pytest.fixture(scope="module")
def toned_dir(tmp_path_factory):
    root = write_toned_cihp_dir(tmp_path_factory.mktemp("toned"))
    write_other_tool_coco(root)
    return root


@pytest.fixture(params=["cihp", "coco"])
def toned_source(request, toned_dir):
    """The CIHP-layout dir, or the COCO file of another tool over the same photos."""
    return str(toned_dir if request.param == "cihp" else toned_dir / "parsing.json")


def test_drawn_tones_are_in_the_groups_they_are_drawn_for():
    for group, rgb in TONES.items():
        lab = lab_of(rgb)
        assert ita_group(float(ita_degrees(lab[0], lab[2]))) == group


def test_groups_and_hue_are_derived_from_the_ground_truth_skin(toned_source):
    ds = ParsingDataset(toned_source)
    assert len(ds) == len(IMAGES) and ds.kind in ("cihp", "coco")
    for i, tones in enumerate(IMAGES):
        s = ds[i]
        # (the COCO file lists its annotations in reverse: the people come in the other order)
        assert sorted(s["skin_tones"]) == sorted(tones) and s["skin_sources"] == ["derived"] * len(tones)
        for tone, detail in zip(s["skin_tones"], s["skin_details"], strict=True):
            drawn = lab_of(TONES[tone])
            assert detail["source"] == "derived" and detail["pixels"] >= 200
            # hue within 3 degrees of the drawn colour, after JPEG, noise, erosion and trimming
            assert abs(detail["hue"] - float(hue_degrees(drawn[1], drawn[2]))) <= 3.0, (i, tone, detail)
            assert abs(detail["ita"] - float(ita_degrees(drawn[0], drawn[2]))) <= 5.0, (i, tone, detail)


def test_train_sampler_draws_the_three_groups_uniformly(toned_source):
    data = dataset_groups(open_dataset([toned_source]))  # what `train` computes before the loop
    assert Counter(data.groups) == {"light": 5, "medium": 2, "dark": 2}  # the mixed image helps the rarer dark
    people = sum(len(t) for t in IMAGES)
    assert data.sources == {"measured": 0, "derived": people, "reviewed": 0}
    shares = {}
    for balanced in (True, False):
        sampler = SkinBalancedSampler(data.groups, seed=0, balanced=balanced)
        # as the loop draws: a global batch of 2 per step, 5,000 steps = 10,000 draws
        drawn = Counter(data.groups[i] for step in range(5000) for i in sampler.draw(2, step))
        assert sum(drawn.values()) == 10_000
        shares[balanced] = {g: n / 10_000 for g, n in drawn.items()}
    for g in ("light", "medium", "dark"):
        assert abs(shares[True][g] - 1 / 3) <= 0.05 / 3, shares  # uniform within 5 % (relative)
    assert shares[False]["light"] > 0.5  # without --skin-balanced the data's skew shows


def test_evaluate_prints_three_group_rows_with_their_gaps(tiny_model_dir, toned_source, tmp_path, capsys):
    report = tmp_path / "eval.json"
    args = ["evaluate", "--model", str(tiny_model_dir), "--data", toned_source, "--short-edge", "96", "--human"]
    assert main([*args, "--json", str(report)]) == 0
    printed = capsys.readouterr().out
    rows = [line for line in printed.splitlines() if line.startswith("group ")]
    assert len(rows) == 3, printed
    assert {r.split()[1] for r in rows} == {"light", "medium", "dark"} and all(" gap " in r for r in rows)
    people = sum(len(t) for t in IMAGES)
    assert f"skin-tone groups of {people} people: 0 measured, {people} derived, 0 reviewed" in printed
    got = json.loads(report.read_text())["models"][str(tiny_model_dir)]
    assert {g["group"] for g in got["by_group"]} == {"light", "medium", "dark"}
    by_group = {g["group"]: g for g in got["by_group"]}
    # a group's region is the union of its people's boxes: every drawn person is a 56 x 150 figure
    # (BODY) and no two overlap, so 7 light, 2 medium and 2 dark people cover 7, 2 and 2 x 8,400 px
    assert {g: r["pixels"] for g, r in by_group.items()} == {"light": 58_800, "medium": 16_800, "dark": 16_800}
    best = max(r["mIoU"] for r in by_group.values())
    for r in by_group.values():  # the gap is the best group's mIoU minus the group's own
        assert 0.0 <= r["mIoU"] <= 1.0 and r["gap"] == pytest.approx(best - r["mIoU"], abs=1e-12)
    assert got["skin_tone_sources"] == {"measured": 0, "derived": people, "reviewed": 0}


@pytest.mark.parametrize(
    "doc, match",
    [
        ("not json", "not a COCO file"),
        ({"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [], "categories": []}, "lacks id"),
        ({"images": [], "categories": []}, "annotations"),
    ],
)
def test_a_broken_coco_file_is_one_sentence(tmp_path, capsys, tiny_model_dir, doc, match):
    path = tmp_path / "bad.json"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    assert main(["evaluate", "--model", str(tiny_model_dir), "--data", str(path)]) == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err


def test_an_unreadable_segmentation_is_one_sentence(toned_dir, tmp_path, capsys, tiny_model_dir):
    doc = json.loads((toned_dir / "parsing.json").read_text())
    doc["annotations"][0]["segmentation"] = {"counts": 12}
    path = toned_dir / "broken_segmentation.json"
    path.write_text(json.dumps(doc))
    assert main(["evaluate", "--model", str(tiny_model_dir), "--data", str(path)]) == 2
    assert "cannot be read" in capsys.readouterr().err
