"""The report's second skin axis and its honesty: tone x hue, how each group was obtained and on
how many skin pixels it rests, the Monk tone as a range; schema v2 outputs still read."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from synthetic_labels import labelled_row, write_output

from m2fp_batch.annotate.skin_tone import monk_range
from m2fp_batch.labels.layout import shard_name, stats_name
from m2fp_batch.report.build import build_report

# (group, hue, source, pixels) of each person, in row order (4 images of 3 people)
PEOPLE = [
    ("light", 70.0, "measured", 900),
    ("light", 50.0, "reviewed", 400),
    ("medium", 62.0, "measured", 1200),
    ("medium", 48.0, "derived", 300),
    ("dark", 52.0, "measured", 800),
    ("dark", 58.0, "measured", 700),
    ("dark", 40.0, "derived", 250),
    ("light", 66.0, "measured", 950),
    ("medium", 55.0, "measured", 500),
    ("unknown", None, "measured", 12),
    ("unknown", None, None, 0),
    ("light", 61.0, "measured", 1000),
]


def _rows() -> list[dict]:
    rows = [labelled_row(f"img{i}", f"/nowhere/img{i}.png", (120, 160), 3, seed=i) for i in range(4)]
    people = iter(PEOPLE)
    for row in rows:
        for p in row["persons"]:
            group, hue, source, pixels = next(people)
            known = group != "unknown"
            p["skin_tone"].update(group=group, hue=hue, source=source, pixels=pixels, monk=6 if known else None)
        groups = [p["skin_tone"]["group"] for p in row["persons"]]
        row["skin_tone_counts"] = {g: groups.count(g) for g in ("light", "medium", "dark", "unknown")}
    return rows


def test_tone_by_hue_sources_pixels_and_monk_range(tmp_path):
    out = write_output(tmp_path / "out", _rows())
    report = build_report(out, tmp_path / "r.html")
    th = report.tables["tone_hue"]
    # counted by hand from PEOPLE, red h* <= 55 < yellow (medium's 55.0 sits on the boundary: red)
    want = {  # group: (red, yellow, unknown, median h*)
        "light": (1, 3, 0, 63.5),  # 50 | 70, 66, 61
        "medium": (2, 1, 0, 55.0),  # 48, 55 | 62
        "dark": (2, 1, 0, 52.0),  # 52, 40 | 58
        "unknown": (0, 0, 2, None),
    }
    for group, (red, yellow, unknown, median) in want.items():
        assert (th.loc[group, "red"], th.loc[group, "yellow"], th.loc[group, "unknown"]) == (red, yellow, unknown)
        if median is None:
            assert pd.isna(th.loc[group, "median h*"])
        else:
            assert th.loc[group, "median h*"] == pytest.approx(median)
    assert report.numbers["tone_hue"]["dark"] == {"red": 2, "yellow": 1, "unknown": 0}

    src = report.tables["sources"].set_index("source")
    assert report.numbers["skin_sources"] == {"measured": 8, "derived": 2, "reviewed": 1, "not measured": 1}
    assert src.loc["derived", "medium"] == 1 and src.loc["derived", "dark"] == 1
    assert src.loc["derived", "median skin pixels"] == 275.0  # the groups' pixels, known tones only
    assert src.loc["not measured", "unknown"] == 1

    monk = report.tables["monk"].set_index("MST")
    assert monk.loc[6, "people"] == 10 and monk.loc[6, "within uncertainty"] == "MST 5-7" and monk_range(1) == (1, 2)

    html, md = report.html_path.read_text(), report.markdown_path.read_text()
    for text in ("Tone &times; hue", "How the groups were obtained", "Monk Skin Tone", "&plusmn;1 tone"):
        assert text in html
    assert "## Tone x hue" in md and "| group | red | yellow | unknown | median h* |" in md
    assert "| dark | 2 | 1 | 0 | 52.0 |" in md  # counts as integers, the group's median h*
    people = pd.read_csv(report.people_path)
    assert len(people) == len(PEOPLE) and list(people["source"].fillna("")) == [
        s or "not measured" for _, _, s, _ in PEOPLE
    ]
    assert list(people["skin_pixels"]) == [px for _, _, _, px in PEOPLE]


def test_schema_v2_output_reads_as_measured_without_hue(tmp_path):
    """An output written before schema v3 (no skin_tone.hue / .source) still makes a report."""
    rows = _rows()
    for row in rows:
        row["schema_version"] = 2
        for p in row["persons"]:
            del p["skin_tone"]["hue"], p["skin_tone"]["source"]
    out = tmp_path / "v2"
    (out / "_stats").mkdir(parents=True)
    (out / "_config.json").write_text(json.dumps({"job_id": "v2job"}))
    pq.write_table(pa.Table.from_pylist(rows), out / shard_name(0))
    marker = {"shard": 0, "job_id": "v2job", "rows": len(rows), "bytes": (out / shard_name(0)).stat().st_size}
    (out / stats_name(0)).write_text(json.dumps(marker))
    report = build_report(out, tmp_path / "v2.html")
    assert report.numbers["skin_sources"] == {"measured": 12, "derived": 0, "reviewed": 0, "not measured": 0}
    assert report.numbers["schema_versions"] == [2]
    assert report.tables["tone_hue"]["unknown"].sum() == 12 and report.tables["tone_hue"]["red"].sum() == 0
