"""``m2fp-batch train`` and ``evaluate`` end to end on a CIHP-layout dir of real photos."""

from __future__ import annotations

import json

import numpy as np
import pytest

from m2fp_batch.cli import main
from m2fp_batch.data import ParsingDataset
from m2fp_batch.report.metrics import NUM_CLASSES, confusion, iou_from_confusion

from .helpers import samples, write_cihp_dir


@pytest.fixture(scope="module")
def cihp_dir(tmp_path_factory):
    return write_cihp_dir(tmp_path_factory.mktemp("cihp"), samples())


@pytest.mark.cluster
def test_train_cli_then_evaluate_agrees_with_parse_raw(tiny_model_dir, cihp_dir, tmp_path, capsys):
    import ray

    out = tmp_path / "new"
    args = [
        "train",
        "--data",
        str(cihp_dir),
        "--model",
        str(tiny_model_dir),
        "--out",
        str(out),
        "--steps",
        "2",
        "--batch",
        "2",
        "--crop",
        "96",
        "--num-points",
        "256",
        "--skin-balanced",
        "--skin-weights",
        "light=1.0,medium=1.2,dark=1.5",
        "--checkpoint-every",
        "1",
    ]
    try:
        assert main(args) == 0
    finally:
        ray.shutdown()
    record = json.loads((out / "training.json").read_text())
    assert record["steps"] == 2 and record["data"] == [str(cihp_dir)]
    assert record["settings"]["skin"] == {"balanced": True, "weights": {"light": 1.0, "medium": 1.2, "dark": 1.5}}
    assert record["sampling_groups"] == {"dark": 2, "light": 1, "medium": 1}
    assert record["skin_tone_sources"] == {"measured": 6, "derived": 0, "reviewed": 0}  # the meta file's tones
    assert main(["train", "--data", str(cihp_dir), "--model", str(tiny_model_dir), "--out", str(out)]) == 2
    assert "--resume" in capsys.readouterr().err  # an existing run is never overwritten silently

    report = tmp_path / "eval.json"
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(out),
                "--data",
                str(cihp_dir),
                "--short-edge",
                "96",
                "--json",
                str(report),
                "--compare",
                str(tiny_model_dir),
            ]
        )
        == 0
    )
    printed = json.loads(capsys.readouterr().out)  # stdout is the JSON summary, the --json file's numbers
    assert printed == json.loads(report.read_text()) and set(printed["models"]) == {str(out), str(tiny_model_dir)}
    got = printed["models"][str(out)]
    assert got["skin_tone_sources"] == {"measured": 6, "derived": 0, "reviewed": 0}

    # the same number from `parse --raw` outputs and the ground-truth label maps
    ds = ParsingDataset(cihp_dir)
    paths = [str(cihp_dir / "Images" / f"{ds[i]['image_id']}.jpg") for i in range(len(ds))]
    raw = tmp_path / "raw.npz"
    assert (
        main(
            [
                "parse",
                *paths,
                "--model",
                str(out),
                "--out",
                str(tmp_path / "p"),
                "--raw",
                str(raw),
                "--short-edge",
                "96",
            ]
        )
        == 0
    )
    arrays = np.load(raw)
    conf = sum(
        confusion(arrays[f"img{i}_semantic_label"], ds[i]["semantic"], np.ones(ds[i]["semantic"].shape, bool))
        for i in range(len(ds))
    )
    assert conf.shape == (NUM_CLASSES, NUM_CLASSES)
    assert got["mIoU"] == pytest.approx(float(np.nanmean(iou_from_confusion(conf))), abs=1e-9)
    assert {g["group"] for g in got["by_group"]} == {"light", "medium", "dark"}
