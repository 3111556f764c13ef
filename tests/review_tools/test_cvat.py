"""CVAT Segmentation mask 1.1 through Datumaro (the library CVAT uses), in its own venv: pixel-exact both ways.

``export --format cvat-mask`` -> Datumaro loads every instance exactly as our maps draw it -> Datumaro
rewrites the export with one part fixed (as CVAT's export would) -> ``cvat pull``: the fix arrives
pixel-exact, every other mask is the job's, pixel-exact.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from m2fp_batch.formats import cvat
from m2fp_batch.labels import class_name, decode_mask, open_labels, part_instance_map, part_instances
from m2fp_batch.labels.layout import safe_name

from .test_label_studio import cli

# the first test of the package starts Label Studio (~55 s on its first start) and runs a job
pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(1200)]

REPO = Path(__file__).resolve().parents[2]
DM_PYTHON = REPO / ".venv-dm" / "bin" / "python"
TOOL = Path(__file__).with_name("datumaro_tool.py")


def datumaro(*args: str) -> None:
    assert DM_PYTHON.exists(), f"{DM_PYTHON} is missing: run `make review-tools` (make test does)"
    done = subprocess.run([str(DM_PYTHON), str(TOOL), *args], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


def expected_instances(row: dict) -> list[tuple[str, np.ndarray]]:
    """(class name, visible mask) per part instance, in instance order, as the export draws them."""
    index = part_instance_map(row)
    out = [(class_name(q.label_id), index == q.instance_id) for q in part_instances(row)]
    return [(n, m) for n, m in out if m.any()]


def _loaded(npz: Path) -> tuple[dict, dict]:
    data = np.load(npz)
    return json.loads(str(data["labels"])), {k: data[k] for k in data.files if k != "labels"}


def _fix(mask: np.ndarray, free: np.ndarray) -> np.ndarray:
    """A reviewer's fix: drop the part's top half, add a 4x4 block of unlabelled pixels."""
    out = mask.copy()
    rows = np.flatnonzero(mask.any(axis=1))
    out[: rows[0] + (rows[-1] - rows[0] + 1) // 2] = False
    ys, xs = np.nonzero(free)
    out[ys[0] : ys[0] + 4, xs[0] : xs[0] + 4] |= free[ys[0] : ys[0] + 4, xs[0] : xs[0] + 4]
    assert not np.array_equal(out, mask)
    return out


def test_cvat_mask_round_trip_through_datumaro(job_output, tmp_path):
    rows = {r["image_id"]: r for _, r in open_labels(job_output).iter_rows()}
    ok = {i: r for i, r in rows.items() if r["status"] == "ok"}
    export_dir = tmp_path / "cvat"
    done = cli("export", str(job_output), "--format", "cvat-mask", "--out", str(export_dir))
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)["images"] == len(ok)
    for f in ("labelmap.txt", "ImageSets/Segmentation/default.txt"):
        assert (export_dir / f).is_file()

    # Datumaro reads our export: every instance, its class and its pixels exactly
    datumaro("read", str(export_dir), str(tmp_path / "ours.npz"))
    labels, arrays = _loaded(tmp_path / "ours.npz")
    assert sorted(labels) == sorted(safe_name(i) for i in ok)
    for iid, row in ok.items():
        name = safe_name(iid)
        want = expected_instances(row)
        assert labels[name] == [n for n, _ in want]
        for k, (_, m) in enumerate(want):
            assert np.array_equal(arrays[f"{name}/{k}"], m)

    # Datumaro writes it back with one part fixed; we read that back
    iid = next(i for i in ok if expected_instances(ok[i]))
    name, row = safe_name(iid), ok[iid]
    index = part_instance_map(row)
    persons = np.logical_or.reduce([decode_mask(p["mask"]) for p in row["persons"]])
    fixed = _fix(arrays[f"{name}/0"], (index == 0) & persons if ((index == 0) & persons).any() else index == 0)
    np.savez(tmp_path / "edits.npz", **{f"{name}/0": fixed})
    written = tmp_path / "cvat_fixed"
    datumaro("edit", str(export_dir), str(written), str(tmp_path / "edits.npz"))
    reviewed = tmp_path / "reviewed"
    done = cli("cvat", "pull", str(job_output), "--cvat", str(written), "--out", str(reviewed))
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert summary["by_status"] == {"reviewed": len(ok), "not_in_dataset": len(rows) - len(ok)}
    assert summary["edited"] == 1 and summary["errors"] == []
    out = {r["image_id"]: r for _, r in open_labels(reviewed).iter_rows()}
    _check_fix(out[iid], row, fixed, cvat.visible_parts(row)[0])
    for other in set(ok) - {iid}:
        assert out[other]["persons"] == ok[other]["persons"] and out[other]["review_edited"] is False


def _check_fix(got: dict, row: dict, fixed: np.ndarray, first: tuple) -> None:
    person, label_id, _ = first
    assert got["review_edited"] is True
    for k, (p, q) in enumerate(zip(got["persons"], row["persons"], strict=True)):
        parts = {x["label_id"]: x for x in p["parts"]}
        for old in q["parts"]:
            new = parts[old["label_id"]]
            if (k, old["label_id"]) == (person, label_id):
                assert np.array_equal(decode_mask(new["mask"]), fixed) and new["score"] is None
            else:
                assert new["mask"] == old["mask"] and new["score"] == old["score"]


def test_foreign_label_is_one_error_row(job_output, tmp_path):
    """An export whose labelmap names a class we do not have: the items that draw it are error rows,
    the rest is read. The renamed class is one the export does draw (chosen from the job's rows), so
    the foreign-label path always runs."""
    rows = {r["image_id"]: r for _, r in open_labels(job_output).iter_rows()}
    ok = {i: r for i, r in rows.items() if r["status"] == "ok"}
    drawn = {i: {n for n, _ in expected_instances(r)} for i, r in ok.items()}
    # the class the fewest images draw (at least one): some items fail, the others are read
    renamed = min(set().union(*drawn.values()), key=lambda n: (sum(n in d for d in drawn.values()), n))
    hit = {i for i, names in drawn.items() if renamed in names}
    assert hit, drawn
    export_dir = tmp_path / "cvat"
    assert cli("export", str(job_output), "--format", "cvat-mask", "--out", str(export_dir)).returncode == 0
    lm = export_dir / "labelmap.txt"
    lines = lm.read_text().splitlines()
    assert sum(ln.startswith(f"{renamed}:") for ln in lines) == 1
    lm.write_text(
        "\n".join(f"Tail:{ln.split(':', 1)[1]}" if ln.startswith(f"{renamed}:") else ln for ln in lines) + "\n"
    )
    reviewed = tmp_path / "reviewed"
    done = cli("cvat", "pull", str(job_output), "--cvat", str(export_dir), "--out", str(reviewed))
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert sorted(e["image_id"] for e in summary["errors"]) == sorted(hit)
    assert all("Tail" in e["error"] for e in summary["errors"])
    assert sum(summary["by_status"].values()) == summary["rows"] == len(rows) == 4
    assert summary["by_status"]["reviewed"] == len(ok) - len(hit)
