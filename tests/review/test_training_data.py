"""Labels into training, on the review tests' REAL job output (tiny model; 3 photos + 1 corrupt
file): CIHP and COCO exports, and ParsingDataset over the job output, an export-reviewed dir and
the CIHP export. Lives here to share that job and the isolated FiftyOne the reviewed dir needs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from m2fp_batch.formats import cihp
from m2fp_batch.formats.coco import PERSON_CATEGORY_ID

KEYS = ("semantic", "humans", "parts")


def _rows(out: Path) -> dict[str, dict]:
    return {r["image_id"]: r for r in pq.read_table(out / "shard-00000.parquet").to_pylist()}


def _coco_decode(rle: dict) -> np.ndarray:
    return mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(bool)


def _semantic(row: dict) -> np.ndarray:
    """The Parquet semantic map, decoded independently of the reader (pycocotools per class)."""
    m = np.zeros((row["height"], row["width"]), np.uint8)
    for c in row["semantic"]:
        m[_coco_decode(c["mask"])] = c["label_id"]
    return m


@pytest.fixture(scope="module")
def exports(job_output, tmp_path_factory) -> dict[str, Path]:
    from m2fp_batch.cli import main

    root = tmp_path_factory.mktemp("exports")
    assert main(["export", str(job_output), "--format", "cihp", "--out", str(root / "cihp")]) == 0
    assert main(["export", str(job_output), "--format", "coco", "--out", str(root / "coco"), "--split", "val"]) == 0
    return {"cihp": root / "cihp", "coco": root / "coco"}


def test_cihp_export_is_the_parquet_semantic_map(job_output, exports):
    rows = _rows(job_output)
    ok = {i: r for i, r in rows.items() if r["status"] == "ok"}
    root = exports["cihp"]
    assert cihp.read_ids(root, "train") == sorted(ok, key=list(rows).index)  # error rows never appear
    assert len(list((root / cihp.IMAGE_DIR).iterdir())) == len(ok)
    summary = json.loads((root / "export.json").read_text())
    assert (summary["images"], summary["skipped_errors"], summary["rows"]) == (len(ok), 1, len(rows))
    for iid, row in ok.items():
        cat = np.asarray(Image.open(root / cihp.CATEGORY_DIR / f"{iid}.png"))
        assert cat.dtype == np.uint8
        np.testing.assert_array_equal(cat, _semantic(row))
        humans = np.asarray(Image.open(root / cihp.HUMAN_DIR / f"{iid}.png"))
        for k, p in enumerate(row["persons"]):  # the last person owns what it covers
            assert np.all(humans[_coco_decode(p["mask"])] >= k + 1)
        assert set(np.unique(humans)) <= set(range(len(row["persons"]) + 1))
        if row["uri"].endswith(".jpg"):  # a JPEG without EXIF rotation is copied, not re-encoded
            assert (root / cihp.IMAGE_DIR / f"{iid}.jpg").read_bytes() == Path(row["uri"]).read_bytes()


def test_coco_export_loads_in_pycocotools_and_masks_equal_the_parquet(job_output, exports):
    from pycocotools.coco import COCO

    rows = _rows(job_output)
    coco = COCO(str(exports["coco"] / "val.json"))
    by_image = {img["m2fp_image_id"]: img for img in coco.dataset["images"]}
    assert set(by_image) == {i for i, r in rows.items() if r["status"] == "ok"}  # error rows never appear
    cats = {c["id"]: c["name"] for c in coco.dataset["categories"]}
    assert cats[PERSON_CATEGORY_ID] == "person" and cats[2] == "Hair" and 0 not in cats
    for iid, img in by_image.items():
        row = rows[iid]
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[img["id"]]))
        persons = [a for a in anns if a["category_id"] == PERSON_CATEGORY_ID]
        assert len(persons) == len(row["persons"])
        assert len(anns) == len(persons) + sum(len(p["parts"]) for p in row["persons"])
        for a in anns:
            person = row["persons"][a["person_id"]]
            entry = person
            if a["category_id"] != PERSON_CATEGORY_ID:
                assert coco.anns[a["person_annotation_id"]]["person_id"] == a["person_id"]
                entry = next(q for q in person["parts"] if q["label_id"] == a["category_id"])
            else:
                assert a["attributes"]["skin_tone"] == person["skin_tone"]["group"]
            assert isinstance(a["segmentation"]["counts"], str) and a["iscrowd"] == 0
            np.testing.assert_array_equal(coco.annToMask(a).astype(bool), _coco_decode(entry["mask"]))
            assert a["area"] == entry["area"] == int(coco.annToMask(a).sum())
            x0, y0, x1, y1 = entry["bbox"]
            assert a["bbox"] == [x0, y0, x1 - x0, y1 - y0]


def _reviewed_dir(job_output: Path, tmp_path: Path) -> Path:
    from m2fp_batch.review.build import build_review_dataset
    from m2fp_batch.review.export import export_reviewed

    build_review_dataset(job_output, "rv-training", mask_dir=tmp_path / "masks", workers=1)
    export_reviewed("rv-training", tmp_path / "reviewed")
    return tmp_path / "reviewed"


def test_dataset_gives_the_same_arrays_from_job_reviewed_and_cihp(job_output, exports, tmp_path):
    from m2fp_batch.data import ParsingDataset

    rows = _rows(job_output)
    sources = {
        "job": ParsingDataset(job_output),
        "reviewed": ParsingDataset(_reviewed_dir(job_output, tmp_path)),
        "cihp": ParsingDataset(exports["cihp"]),
        "coco": ParsingDataset(exports["coco"] / "val.json"),
    }
    ok = sorted(i for i, r in rows.items() if r["status"] == "ok")
    for name, ds in sources.items():
        assert sorted(ds.image_ids) == ok, name  # error rows never appear
    job = sources["job"]
    for i, iid in enumerate(job.image_ids):
        ref = job[i]
        row = rows[iid]
        h, w = row["height"], row["width"]
        assert ref["image"].shape == (h, w, 3) and ref["image"].dtype == np.uint8
        assert all(ref[k].shape == (h, w) and ref[k].dtype == np.int64 for k in KEYS)
        np.testing.assert_array_equal(ref["semantic"], _semantic(row))
        assert ref["humans"].max() == len(row["persons"])
        assert ref["parts"].max() == sum(len(p["parts"]) for p in row["persons"])
        assert ref["skin_tones"] == [p["skin_tone"]["group"] for p in row["persons"]]
        assert ref["skin_sources"] == ["measured"] * len(row["persons"])  # the job's tones, none derived
        coco = sources["coco"][sources["coco"].image_ids.index(iid)]
        for k in ("humans", "parts"):  # COCO has no semantic map of its own: only the people's parts
            np.testing.assert_array_equal(coco[k], ref[k], err_msg=f"coco {k} {iid}")
        assert coco["skin_tones"] == ref["skin_tones"] and coco["skin_sources"] == ref["skin_sources"]
        for name in ("reviewed", "cihp"):
            ds = sources[name]
            other = ds[ds.image_ids.index(iid)]
            for k in KEYS:
                np.testing.assert_array_equal(other[k], ref[k], err_msg=f"{name} {k} {iid}")
            assert other["skin_tones"] == ref["skin_tones"] and other["image_id"] == iid
            assert ds.refs[ds.image_ids.index(iid)].skin_tone_counts == row["skin_tone_counts"]
            if name == "reviewed" or row["uri"].endswith(".jpg"):
                np.testing.assert_array_equal(other["image"], ref["image"])
            else:  # a PNG photo is stored as JPEG in the CIHP layout
                assert np.abs(other["image"].astype(int) - ref["image"]).mean() < 3


def test_dataset_transform_and_loader(job_output):
    import torch

    from m2fp_batch.data import ParsingDataset

    def crop(s: dict) -> dict:
        return {k: torch.as_tensor(np.ascontiguousarray(s[k][:64, :64])) for k in ("image", *KEYS)}

    ds = ParsingDataset(job_output, transform=crop)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=len(ds), num_workers=1)))
    assert batch["image"].shape == (len(ds), 64, 64, 3) and batch["semantic"].dtype == torch.int64


def test_export_rerun_replaces_and_bad_inputs_are_one_sentence(job_output, tmp_path, capsys):
    from m2fp_batch.cli import main

    out = tmp_path / "cihp"
    assert main(["export", str(job_output), "--format", "cihp", "--out", str(out)]) == 0
    (out / "stale.txt").write_text("from an older export")
    assert main(["export", str(job_output), "--format", "cihp", "--out", str(out), "--split", "val"]) == 0
    assert not (out / "stale.txt").exists() and cihp.find_splits(out) == ["val"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left
    capsys.readouterr()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    cases = [
        (["export", str(tmp_path / "nowhere"), "--format", "coco", "--out", str(tmp_path / "c")], "does not exist"),
        (["export", str(job_output), "--format", "coco", "--out", str(mine)], "not an m2fp-batch export"),
        (["export", str(job_output), "--format", "coco", "--out", str(job_output / "x")], "inside the source"),
        (["export", str(job_output), "--format", "coco", "--out", str(tmp_path / "c"), "--split", "a/b"], "split"),
        (
            ["export", str(job_output), "--format", "coco", "--out", str(tmp_path / "c"), "--include-errors", "yes"],
            "'no'",
        ),
    ]
    for argv, words in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert words in err and "Traceback" not in err and len(err.splitlines()) == 1, err
    assert (mine / "notes.txt").read_text() == "keep me"


def test_readme_training_loop_runs(job_output):
    """docs/training.md's "Your own trainer" loop, as written, over the real job output."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "training.md").read_text()
    section = doc[doc.index("## Your own trainer: `ParsingDataset`") :]
    code = section[section.index("```python") + len("```python") : section.index("```", section.index("```python") + 9)]
    assert code.count('"OUT/"') == 1
    namespace: dict = {}
    exec(compile(code.replace('"OUT/"', repr(str(job_output))), "docs/training.md", "exec"), namespace)  # noqa: S102
    assert namespace["loss"].item() > 0
