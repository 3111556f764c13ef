"""The fairness report built from a real job output (tiny model), and against ground truth
made from the job's own parse with a known perturbation (expected mIoU computed exactly)."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from m2fp_batch.cli import main as cli_main
from m2fp_batch.report import ReportError, build_report


def _rows(out):
    return [r for f in sorted(out.glob("shard-*.parquet")) for r in pq.read_table(f).to_pylist()]


def _decode(rle) -> np.ndarray:
    return mask_utils.decode({"size": list(rle["size"]), "counts": rle["counts"].encode()}).astype(bool)


def _pred(row) -> np.ndarray:
    pred = np.zeros((row["height"], row["width"]), np.uint8)
    for e in row["semantic"]:
        pred[_decode(e["mask"])] = e["label_id"]
    return pred


def test_report_numbers_match_the_job_output(job_output, tmp_path):
    rows = _rows(job_output)
    persons = [p for r in rows for p in (r["persons"] or [])]
    assert len(persons) > 0
    report = build_report(job_output, tmp_path / "r" / "report.html")
    n = report.numbers
    assert n["images"] == len(rows) == 4
    assert n["status"] == {"ok": 3, "error": 1}
    assert n["people"] == len(persons) == sum(r["num_persons"] or 0 for r in rows)
    for g in ("light", "medium", "dark", "unknown"):
        assert n["group_counts"][g] == sum(p["skin_tone"]["group"] == g for p in persons)
    assert sum(n["ita_category_counts"].values()) == len(persons)
    assert n["unknown_rate"] == pytest.approx(n["group_counts"]["unknown"] / len(persons))
    # the darkened photo (mean V < 50) is the only brightened one: x1.5
    factors = {Path(r["uri"]).stem: r["brightness_factor"] for r in rows}
    assert factors["astronaut_dark"] == 1.5 and factors["astronaut"] == 1.0
    assert n["low_light"]["images"] == pytest.approx(1 / 3)
    assert n["low_light"]["factors"] == {1.0: 2, 1.5: 1}
    assert n["adaptive_brightness"] is True  # read from the job's _config.json
    assert sum(k * v for k, v in n["people_per_image"].items()) == len(persons)
    # part areas per group: mean fraction over the group's people, recomputed from the rows
    frac = report.tables["part_fraction"]
    for g in frac.columns:
        people = [p for p in persons if p["skin_tone"]["group"] == g]
        for label in frac.index:
            expected = sum(pt["fraction"] for p in people for pt in p["parts"] if pt["label"] == label) / len(people)
            assert frac.loc[label, g] == pytest.approx(expected, rel=1e-5)

    html = report.html_path.read_text()
    assert not re.search(r"""(src|href)=["'](?!data:|#)""", html), "the HTML must be self-contained"
    imgs = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(imgs) == len(report.plot_paths) >= 6
    for b64 in imgs:
        im = Image.open(io.BytesIO(base64.b64decode(b64)))
        assert im.format == "PNG" and im.width >= 600 and im.height >= 350
    for p in report.plot_paths.values():
        assert p.is_file() and p.parent == tmp_path / "r" / "report_plots"
    md = report.markdown_path.read_text()
    assert f"{n['people']} people" in md and "](report_plots/groups.png)" in md


def test_ground_truth_miou_per_group_is_exact(job_output, tmp_path):
    """Ground truth = the job's own semantic map with one class relabelled background, so for a
    group with N0 background and Nc relabelled pixels among K classes in its regions:
    IoU(c) = 0, IoU(background) = N0 / (N0 + Nc), every other IoU = 1."""
    rows = [r for r in _rows(job_output) if r["status"] == "ok" and r["num_persons"]]
    assert len(rows) >= 2
    preds = {r["image_id"]: _pred(r) for r in rows}
    counts = np.bincount(np.concatenate([p.ravel() for p in preds.values()]), minlength=20)
    c = int(np.argmax(counts[1:]) + 1)  # the most frequent predicted class is relabelled
    gt_dir = tmp_path / "gt"
    gt_dir.mkdir()
    missing = rows[-1]["image_id"]  # the last image has no ground truth
    per_group: dict[str, np.ndarray] = {}
    for r in rows:
        if r["image_id"] == missing:
            continue
        pred = preds[r["image_id"]]
        gt = np.where(pred == c, 0, pred).astype(np.uint8)
        Image.fromarray(gt).save(gt_dir / f"{r['image_id']}.png")
        regions: dict[str, np.ndarray] = {}
        for p in r["persons"]:
            x0, y0, x1, y1 = p["bbox"]
            regions.setdefault(p["skin_tone"]["group"], np.zeros(pred.shape, bool))[y0:y1, x0:x1] = True
        for g, region in regions.items():
            per_group[g] = per_group.get(g, 0) + np.bincount(pred[region], minlength=20)

    report = build_report(job_output, tmp_path / "gt_report.html", gt_dir)
    res = report.ground_truth
    assert res.images_evaluated == len(rows) - 1 and res.images_without_gt == [missing]
    summary = res.summary.set_index("group")
    assert set(summary.index) == set(per_group)
    expected = {}
    for g, n in per_group.items():
        k = int((n > 0).sum())
        if n[c] == 0:
            expected[g] = 1.0
        else:
            expected[g] = (n[0] / (n[0] + n[c]) + (k - 2)) / k
            assert res.ious.loc[res.ious.index[c], g] == 0.0
        assert summary.loc[g, "mIoU"] == pytest.approx(expected[g], abs=1e-12)
        assert summary.loc[g, "pixels"] == n.sum()
    known = [g for g in expected if g != "unknown"] or list(expected)
    best = max(expected[g] for g in known)
    for g in expected:
        assert summary.loc[g, "gap"] == pytest.approx(best - expected[g], abs=1e-12)
    html = report.html_path.read_text()
    assert "Accuracy per group (ground truth)" in html and "mIoU per group" in html
    assert "## Accuracy per group (ground truth)" in report.markdown_path.read_text()


def test_brightness_off_means_low_light_not_measured(job_output, tmp_path):
    """The same rows with the job's setting off: every factor would be 1.0, so no share is shown."""
    off = tmp_path / "off"
    off.mkdir()
    for f in job_output.glob("shard-*.parquet"):
        shutil.copy(f, off / f.name)
    config = json.loads((job_output / "_config.json").read_text())
    config["settings"]["adaptive_brightness"] = False
    (off / "_config.json").write_text(json.dumps(config))
    report = build_report(off, tmp_path / "off.html")
    assert report.numbers["low_light"] is None and "low_light" not in report.plot_paths
    assert "low-light share is not measured" in report.html_path.read_text()


def test_cli_report_and_clear_errors(job_output, tmp_path, capsys):
    out = tmp_path / "cli" / "fair.html"
    assert cli_main(["report", str(job_output), "--out", str(out)]) == 0
    assert out.is_file() and out.with_suffix(".md").is_file() and (out.parent / "fair_plots" / "groups.png").is_file()
    assert str(out) in capsys.readouterr().out
    assert cli_main(["report", str(tmp_path / "nowhere")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert cli_main(["report", str(tmp_path / "empty")]) == 2
    assert "no shard-NNNNN.parquet" in capsys.readouterr().err
    with pytest.raises(ReportError, match="ground-truth directory"):
        build_report(job_output, tmp_path / "x.html", tmp_path / "no_gt")
    rgb_gt = tmp_path / "rgb_gt"
    rgb_gt.mkdir()
    for r in (r for r in _rows(job_output) if r["status"] == "ok"):
        Image.new("RGB", (r["width"], r["height"])).save(rgb_gt / f"{r['image_id']}.png")
    with pytest.raises(ReportError, match="single-channel"):
        build_report(job_output, tmp_path / "y.html", rgb_gt)
