"""``m2fp-batch parse``: the PNGs a user looks at, and the raw layout."""

import json
import subprocess
import sys

import numpy as np
from PIL import Image
from tiny_model import REFERENCE

from m2fp_batch.annotate.palette import PALETTE
from m2fp_batch.cli import main


def _people(out) -> list[dict]:
    return json.loads((out / "summary.json").read_text())["images"][0]["people"]


def test_parse_writes_pngs_and_raw(tiny_model_dir, tmp_path):
    photo = REFERENCE / "images" / "grace_hopper.jpg"
    raw = tmp_path / "raw.npz"
    rc = main(
        [
            "parse",
            str(photo),
            "--model",
            str(tiny_model_dir),
            "--out",
            str(tmp_path),
            "--raw",
            str(raw),
            "--alpha",
            "0.7",
        ]
    )
    assert rc == 0
    img = np.asarray(Image.open(photo).convert("RGB"))
    parse = np.asarray(Image.open(tmp_path / "grace_hopper_parse.png").convert("RGB"))  # a palette PNG
    over = np.asarray(Image.open(tmp_path / "grace_hopper_overlay.png"))
    people = np.asarray(Image.open(tmp_path / "grace_hopper_people.png"))
    d = np.load(raw)
    label = d["img0_semantic_label"]
    assert parse.shape == over.shape == img.shape and people.shape == img.shape[:2] + (4,)
    np.testing.assert_array_equal(parse, PALETTE[label])  # every pixel is its class colour
    fg = label > 0
    assert fg.any()
    expect = np.rint(0.3 * img[fg].astype(np.float32) + 0.7 * PALETTE[label][fg]).astype(np.uint8)
    assert np.abs(over[fg].astype(int) - expect.astype(int)).max() <= 1
    np.testing.assert_array_equal(over[~fg], img[~fg])
    n_parts = int((d["img0_labels"] != "Human").sum())
    union = np.zeros(label.shape, bool)
    for i in np.flatnonzero(d["img0_labels"] == "Human"):
        union |= np.unpackbits(d["img0_masks_packed"][i], count=label.size).reshape(label.shape).astype(bool)
    # the official post-processing keeps a part at score >= 0.1 (PART_SCORE_THR); the seeded tiny
    # model finds 21 parts on this photo: every one a part class (never Background or Human), non-empty
    parts = d["img0_labels"] != "Human"
    assert n_parts > 0 and n_parts == len(d["img0_labels"]) - len(summary_people := _people(tmp_path))
    assert set(d["img0_labels"][parts]) <= set(d["classes"][1:]) - {"Human"}
    assert (d["img0_scores"][parts] >= 0.1).all() and (d["img0_scores"] <= 1.0).all()
    assert all(np.unpackbits(m).any() for m in d["img0_masks_packed"][parts])
    assert [round(float(s), 4) for s in d["img0_scores"][~parts]] == [p["score"] for p in summary_people]
    np.testing.assert_array_equal(people[..., 3] == 255, union)  # transparent outside the people
    np.testing.assert_array_equal(people[union][:, :3], img[union])
    assert list(d["paths"]) == ["grace_hopper.jpg"]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["model"]["checkpoint_sha256"] and summary["images"][0]["size"] == list(img.shape[:2])


def test_parse_bad_model_dir_is_a_clear_error(tmp_path):
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "m2fp_batch.cli",
            "parse",
            str(REFERENCE / "images" / "astronaut.png"),
            "--model",
            str(tmp_path),
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "configuration.json" in r.stderr
