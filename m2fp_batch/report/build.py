"""Build the fairness report: one self-contained HTML file, a Markdown summary and the PNG plots.

``build_report(output_dir, out_html, gt_dir=None)`` writes

* ``out_html``: HTML with every plot embedded as base64 (no other file needed to view it);
* ``<out_html stem>.md``: the same numbers as Markdown, linking the PNGs;
* ``<out_html stem>_plots/*.png``: the plots;
* ``<out_html stem>_people.csv``: every person's group, how it was obtained and its skin pixels;

and returns a :class:`Report` with the numbers (the tests read them). What the report says is one
:class:`~m2fp_batch.report.sections.Document`; :mod:`.render` writes it as HTML and as Markdown.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

import m2fp_batch.report.metrics as metrics  # not through the package: its __init__ imports this module
import m2fp_batch.report.plots as plots
import m2fp_batch.report.render as render
import m2fp_batch.report.sections as sections
from m2fp_batch.annotate.skin_tone import HUE_BINS
from m2fp_batch.report.data import JobOutput, load_output
from m2fp_batch.report.ground_truth import GroundTruthResult, evaluate
from m2fp_batch.schema import SKIN_GROUPS


@dataclass
class Report:
    html_path: Path
    markdown_path: Path
    plot_paths: dict[str, Path]
    numbers: dict
    ground_truth: GroundTruthResult | None = None
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    people_path: Path | None = None  # one row per person: group, source, skin pixels, ITA, hue, Monk


# the per-person CSV: how each person's group was obtained and what it rests on
PEOPLE_COLUMNS = (
    "image_id",
    "person_id",
    "group",
    "source",
    "skin_pixels",
    "skin_confidence",
    "ita",
    "ita_category",
    "hue",
    "monk",
)


def group_table(job: JobOutput, low: dict | None) -> pd.DataFrame:
    """One row per group: people, share, median ITA, mean confidence, mean skin pixels, low-light share."""
    p = job.persons
    n = max(1, len(p))
    rows = []
    for g in SKIN_GROUPS:
        s = p[p["group"] == g]
        rows.append(
            {
                "group": g,
                "people": len(s),
                "share": len(s) / n if len(p) else None,
                "median ITA": float(s["ita"].median()) if s["ita"].notna().any() else None,
                "mean confidence": float(s["skin_confidence"].mean()) if len(s) else None,
                "mean skin pixels": float(s["skin_pixels"].mean()) if len(s) else None,
                "in low light": None if low is None else low["by_group"][g],
            }
        )
    return pd.DataFrame(rows)


def compute(job: JobOutput) -> tuple[dict, dict[str, pd.DataFrame]]:
    """All the numbers of the report (no ground truth)."""
    low = metrics.low_light(job.images, job.persons, job.adaptive_brightness)
    frac, score = metrics.part_stats_by_group(job.persons, job.parts)
    numbers = {
        "images": len(job.images),
        "status": metrics.status_counts(job.images),
        "people": len(people := metrics.counted_people(job.persons)),  # a video's track once
        "group_counts": metrics.group_counts(people).to_dict(),
        "ita_category_counts": metrics.ita_category_counts(job.persons).to_dict(),
        "unknown_rate": metrics.unknown_rate(job.persons),
        "low_light": low,
        "people_per_image": {int(k): int(v) for k, v in metrics.people_per_image(job.images).items()},
        "groups_present": metrics.groups_present(job.persons, job.images).to_dict(),
        "schema_versions": list(job.schema_versions),
        "files": len(job.files),
        "adaptive_brightness": job.adaptive_brightness,
    }
    tables = {
        "groups": group_table(job, low),
        "part_fraction": frac,
        "part_score": score,
        "sources": metrics.source_table(job.persons),
        "tone_hue": metrics.tone_hue_table(job.persons),
        "monk": metrics.monk_table(job.persons),
    }
    numbers["skin_sources"] = {r["source"]: int(r["people"]) for _, r in tables["sources"].iterrows()}
    numbers["tone_hue"] = {g: {b: int(tables["tone_hue"].loc[g, b]) for b in HUE_BINS} for g in SKIN_GROUPS}
    return numbers, tables


def build_report(
    output_dir: str | Path, out_html: str | Path | None = None, gt_dir: str | Path | None = None
) -> Report:
    """Read the job output in ``output_dir`` and write the report (see the module docstring)."""
    output_dir = Path(output_dir)
    out_html = Path(out_html) if out_html else output_dir / "report.html"
    job = load_output(output_dir, with_semantic=gt_dir is not None)
    numbers, tables = compute(job)
    gt = evaluate(job, gt_dir) if gt_dir is not None else None

    pngs: dict[str, tuple[bytes, str]] = {
        "groups": (plots.group_counts_plot(pd.Series(numbers["group_counts"])), "people per skin-tone group"),
        "ita_categories": (
            plots.ita_category_plot(metrics.ita_category_counts(job.persons)),
            "people per ITA category",
        ),
        "ita_histogram": (plots.ita_histogram(job.persons["ita"]), "ITA histogram"),
        "people_per_image": (plots.people_per_image_plot(metrics.people_per_image(job.images)), "people per image"),
    }
    if numbers["low_light"] is not None:
        pngs["low_light"] = (
            plots.share_by_group_plot(numbers["low_light"]["by_group"], "People in brightened (low-light) images"),
            "low-light share per group",
        )
    if len(tables["part_fraction"]):
        pngs["part_area"] = (
            plots.grouped_bars(100.0 * tables["part_fraction"], "Part area per group", "mean % of the person's area"),
            "part area per group",
        )
        pngs["part_score"] = (
            plots.grouped_bars(tables["part_score"], "Part score per group", "mean part score", ylim=(0, 1)),
            "part score per group",
        )
    if gt is not None:
        pngs["miou"] = (plots.miou_plot(gt.summary), "mIoU per group")
        numbers["ground_truth"] = {
            "images_evaluated": gt.images_evaluated,
            "images_without_gt": len(gt.images_without_gt),
            "miou": {r["group"]: r["mIoU"] for _, r in gt.summary.iterrows()},
            "gap": {r["group"]: r["gap"] for _, r in gt.summary.iterrows()},
        }

    out_html.parent.mkdir(parents=True, exist_ok=True)
    plot_dir = out_html.parent / f"{out_html.stem}_plots"
    plot_dir.mkdir(exist_ok=True)
    plot_paths = {}
    for name, (png, _) in pngs.items():
        plot_paths[name] = plot_dir / f"{name}.png"
        plot_paths[name].write_bytes(png)

    md_path = out_html.with_suffix(".md")
    doc = sections.document(output_dir, numbers, tables, gt)
    figures = {k: render.figure(k, png, alt) for k, (png, alt) in pngs.items()}
    out_html.write_text(render.render_html(doc, figures), encoding="utf-8")
    links = {k: p.relative_to(md_path.parent).as_posix() for k, p in plot_paths.items()}
    md_path.write_text(render.render_markdown(doc, links), encoding="utf-8")
    people_path = out_html.parent / f"{out_html.stem}_people.csv"
    job.persons[list(PEOPLE_COLUMNS)].to_csv(people_path, index=False)
    return Report(out_html, md_path, plot_paths, numbers, gt, tables, people_path)
