"""Build the fairness report: one self-contained HTML file, a Markdown summary and the PNG plots.

``build_report(output_dir, out_html, gt_dir=None)`` writes

* ``out_html``: HTML with every plot embedded as base64 (no other file needed to view it);
* ``<out_html stem>.md``: the same numbers as Markdown, linking the PNGs;
* ``<out_html stem>_plots/*.png``: the plots;
* ``<out_html stem>_people.csv``: every person's group, how it was obtained and its skin pixels;

and returns a :class:`Report` with the numbers (the tests read them).
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

import m2fp_batch.report.metrics as metrics  # not through the package: its __init__ imports this module
import m2fp_batch.report.plots as plots
from m2fp_batch.annotate.skin_tone import HUE_BINS, MONK_UNCERTAINTY
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


def _pct(v: float | None) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100.0 * v:.1f}%"


def _num(v, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if isinstance(v, int):
        return str(v)
    return f"{v:.{digits}f}"


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
        "people": len(job.persons),
        "group_counts": metrics.group_counts(job.persons).to_dict(),
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


def _html_table(df: pd.DataFrame, formats: dict[str, callable] | None = None, index: bool = False) -> str:
    formats = formats or {}
    cols = ([df.index.name or ""] if index else []) + [str(c) for c in df.columns]
    out = ["<table><thead><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in cols) + "</tr></thead><tbody>"]
    for idx, row in df.iterrows():
        cells = [html.escape(str(idx))] if index else []
        for c in df.columns:
            f = formats.get(str(c), formats.get("*", lambda v: html.escape(str(v))))
            cells.append(html.escape(f(row[c])) if f is not None else html.escape(str(row[c])))
        out.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _md_table(df: pd.DataFrame, formats: dict[str, callable] | None = None, index: bool = False) -> str:
    formats = formats or {}
    cols = ([df.index.name or ""] if index else []) + [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for idx, row in df.iterrows():
        cells = [str(idx)] if index else []
        cells += [formats.get(str(c), formats.get("*", str))(row[c]) for c in df.columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


_GROUP_FMT = {
    "share": _pct,
    "median ITA": lambda v: _num(v, 1),
    "mean confidence": lambda v: _num(v, 2),
    "mean skin pixels": lambda v: _num(v, 0),
    "in low light": _pct,
    "people": str,
    "group": str,
}
_GT_FMT = {"group": str, "mIoU": _pct, "gap": lambda v: f"{100.0 * v:.1f} pt", "pixels": lambda v: f"{int(v):,}"}

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;background:#fafafa;color:#222}
main{max-width:1100px;margin:0 auto;padding:24px 32px;background:#fff}
h1{margin-top:0}h2{border-bottom:2px solid #ddd;padding-bottom:4px;margin-top:36px}
table{border-collapse:collapse;margin:12px 0;font-size:14px}th,td{border:1px solid #ccc;padding:4px 10px;text-align:right}
th{background:#f0f0f0}td:first-child,th:first-child{text-align:left}
.kpis{display:flex;flex-wrap:wrap;gap:12px}.kpi{border:1px solid #ddd;border-radius:6px;padding:10px 16px;min-width:140px}
.kpi b{display:block;font-size:24px}
.plots{display:grid;grid-template-columns:repeat(auto-fit,minmax(460px,1fr));gap:16px;align-items:start}
figure{margin:8px 0}figure img{max-width:100%;border:1px solid #eee}.plots figure img{width:100%}.note{color:#555;font-size:14px;max-width:900px}
"""


def _figure(name: str, png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<figure id="plot-{name}"><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></figure>'


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
        "groups": (plots.group_counts_plot(metrics.group_counts(job.persons)), "people per skin-tone group"),
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
    out_html.write_text(_render_html(output_dir, job, numbers, tables, gt, pngs), encoding="utf-8")
    md_path.write_text(_render_markdown(output_dir, numbers, tables, gt, plot_paths, md_path.parent), encoding="utf-8")
    people_path = out_html.parent / f"{out_html.stem}_people.csv"
    job.persons[list(PEOPLE_COLUMNS)].to_csv(people_path, index=False)
    return Report(out_html, md_path, plot_paths, numbers, gt, tables, people_path)


def _kpis(numbers: dict) -> list[tuple[str, str]]:
    low = numbers["low_light"]
    return [
        ("images", str(numbers["images"])),
        ("ok / error", f"{numbers['status'].get('ok', 0)} / {numbers['status'].get('error', 0)}"),
        ("people", str(numbers["people"])),
        ("tone unknown", _pct(numbers["unknown_rate"])),
        ("low-light images", "not measured" if low is None else _pct(low["images"])),
    ]


LIMITS = (
    "Skin tone is measured on the original pixels of the skin parts M2FP found (face, arms, legs, torso skin): "
    "eroded masks, L* percentile trimming, median CIELAB, ITA = atan2(L* - 50, b*). It measures the skin "
    "<em>as photographed</em>: lighting, white balance, exposure, filters and make-up shift it, and the groups "
    "(light ITA &gt; 41, medium 10 &lt; ITA &le; 41, dark ITA &le; 10, after the I-II / III-IV / V-VI bins of "
    "fairness tables) are a convention, not a Fitzpatrick type. People with too few visible skin pixels are "
    "<em>unknown</em>. See docs/skin_tone.md for the method and its measured confusion matrix."
)


HUE_NOTE = (
    "Hue angle h* = atan2(b*, a*) of the same median skin colour, a second axis beside ITA: ITA mixes "
    "lightness and yellowness, h* separates redder (low h*) from yellower (high h*) skin at the same "
    "lightness. Bins: red h* &le; 55&deg;, yellow h* &gt; 55&deg; (a convention of this tool); "
    "<em>unknown</em>: no hue (tone unknown, or an output written before schema v3)."
)
SOURCE_NOTE = (
    "How each person's group was obtained: <em>measured</em> by the job on its own labels, "
    "<em>derived</em> from a dataset's ground-truth skin parts (the data had none), <em>reviewed</em> "
    "(a reviewer set the group), <em>not measured</em> (a person a reviewer added). Skin pixels: "
    "the pixels the group rests on (after erosion and trimming; 200 at least). Every person, with "
    "source and pixels, is in the CSV next to this report."
)
MONK_NOTE = (
    f"Nearest Monk Skin Tone by CIEDE2000, uncertain by &plusmn;{MONK_UNCERTAINTY} tone: on synthetic faces "
    "the estimate is within one tone in 99% of normal-light cases and 82% under strong colour casts "
    "(benchmarks/skin_tone_confusion.py), and classic colour estimators are near chance on the 10-tone "
    "scale in published tests: read it as a range, not a tone."
)
_HUE_FMT = {"median h*": lambda v: _num(v, 1), "*": lambda v: str(int(v))}  # counts: ints
_SOURCE_FMT = {"median skin pixels": lambda v: _num(v, 0), "10th pct skin pixels": lambda v: _num(v, 0), "*": str}


def _plain(text: str) -> str:
    """An HTML note as Markdown text."""
    for a, b in (("<em>", "*"), ("</em>", "*"), ("&gt;", ">"), ("&lt;", "<"), ("&le;", "<=")):
        text = text.replace(a, b)
    return text.replace("&deg;", " deg").replace("&plusmn;", "+-")


def _html_head(output_dir, numbers: dict) -> list[str]:
    gen = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<title>m2fp-batch skin-tone report</title>",
        f"<style>{CSS}</style></head><body><main>",
        "<h1>Skin-tone and fairness report</h1>",
        f"<p class='note'>Job output <code>{html.escape(str(output_dir))}</code> ({numbers['files']} Parquet file(s), "
        f"schema version(s) {', '.join(map(str, numbers['schema_versions'])) or 'n/a'}); generated {gen}.</p>",
        "<div class='kpis'>"
        + "".join(f"<div class='kpi'>{html.escape(k)}<b>{html.escape(v)}</b></div>" for k, v in _kpis(numbers))
        + "</div>",
    ]


def _html_groups(numbers: dict, tables: dict, fig: dict) -> list[str]:
    ita = pd.DataFrame(
        {"ITA category": list(numbers["ita_category_counts"]), "people": list(numbers["ita_category_counts"].values())}
    )
    return [
        "<h2 id='groups'>Skin-tone groups</h2>",
        _html_table(tables["groups"], _GROUP_FMT),
        "<div class='plots'>" + fig["groups"] + fig["ita_categories"] + "</div>",
        fig["ita_histogram"],
        "<h2 id='sources'>How the groups were obtained</h2>",
        f"<p class='note'>{SOURCE_NOTE}</p>",
        _html_table(tables["sources"], _SOURCE_FMT),
        "<h2 id='tone-hue'>Tone &times; hue</h2>",
        f"<p class='note'>{HUE_NOTE}</p>",
        _html_table(tables["tone_hue"], _HUE_FMT, index=True),
        "<h2 id='ita'>ITA categories</h2>",
        _html_table(ita, {"*": str}),
        "<h2 id='monk'>Monk Skin Tone</h2>",
        f"<p class='note'>{MONK_NOTE}</p>",
        _html_table(tables["monk"], {"*": str}),
    ]


def _html_low_light(numbers: dict, fig: dict) -> list[str]:
    low = numbers["low_light"]
    parts = ["<h2 id='low-light'>Low light</h2>"]
    if low is None:
        return parts + [
            "<p class='note'>Adaptive brightness was off for this job (<code>adaptive_brightness: false</code>), "
            "so the low-light share is not measured: run with <code>--set adaptive_brightness=true</code>.</p>"
        ]
    factors = ", ".join(f"x{k:g}: {v}" for k, v in low["factors"].items())
    parts.append(f"<p>{_pct(low['images'])} of the ok images were brightened (factors: {html.escape(factors)}).</p>")
    if numbers["adaptive_brightness"] is None:
        parts.append("<p class='note'>No job settings file (_config.json): shares from the recorded factors.</p>")
    return parts + [fig["low_light"]]


def _html_parts_and_people(numbers: dict, tables: dict, fig: dict) -> list[str]:
    parts = ["<h2 id='parts'>Parts per group</h2>"]
    if "part_area" in fig:
        parts += [
            fig["part_area"],
            fig["part_score"],
            _html_table(100.0 * tables["part_fraction"], {"*": lambda v: f"{v:.1f}%"}, index=True),
        ]
    else:
        parts.append("<p class='note'>No parts found.</p>")
    gp = pd.DataFrame(
        {"groups present": list(numbers["groups_present"]), "images": list(numbers["groups_present"].values())}
    )
    return parts + [
        "<h2 id='people'>People per image</h2>",
        "<div class='plots'>" + fig["people_per_image"] + "<div>" + _html_table(gp, {"*": str}) + "</div></div>",
    ]


def _html_ground_truth(gt: GroundTruthResult | None, fig: dict) -> list[str]:
    if gt is None:
        return []
    return [
        "<h2 id='ground-truth'>Accuracy per group (ground truth)</h2>",
        f"<p class='note'>{gt.images_evaluated} image(s) evaluated, {len(gt.images_without_gt)} without a "
        "ground-truth PNG. Region of a group: the union of its people's boxes; mIoU: mean IoU over the "
        "classes present there, background included; gap: best known group's mIoU minus this group's.</p>",
        _html_table(gt.summary[["group", "mIoU", "gap", "pixels"]], _GT_FMT),
        fig["miou"],
        "<h3>Per-class IoU</h3>",
        _html_table(gt.ious.dropna(how="all"), {"*": _pct}, index=True),
    ]


def _render_html(output_dir, job, numbers, tables, gt, pngs) -> str:
    """The HTML report: head, groups (sources, tone x hue, ITA, Monk), low light, parts, people, accuracy."""
    fig = {k: _figure(k, png, alt) for k, (png, alt) in pngs.items()}
    parts = _html_head(output_dir, numbers) + _html_groups(numbers, tables, fig) + _html_low_light(numbers, fig)
    parts += _html_parts_and_people(numbers, tables, fig) + _html_ground_truth(gt, fig)
    parts += ["<h2 id='method'>Method and limits</h2>", f"<p class='note'>{LIMITS}</p>", "</main></body></html>"]
    return "\n".join(parts)


def _md_summary(output_dir, numbers: dict) -> list[str]:
    low = numbers["low_light"]
    return [
        "# Skin-tone and fairness report",
        "",
        f"Job output `{output_dir}`: {numbers['images']} images "
        f"({numbers['status'].get('ok', 0)} ok, {numbers['status'].get('error', 0)} error), "
        f"{numbers['people']} people, tone unknown for {_pct(numbers['unknown_rate'])}, "
        + (
            "adaptive brightness off (low light not measured)."
            if low is None
            else f"{_pct(low['images'])} of the ok images brightened."
        ),
        "",
    ]


def _md_groups(numbers: dict, tables: dict, rel: dict) -> list[str]:
    return [
        "## Skin-tone groups",
        "",
        _md_table(tables["groups"], _GROUP_FMT),
        "",
        f"![people per group]({rel['groups']}) ![people per ITA category]({rel['ita_categories']})",
        "",
        "## How the groups were obtained",
        "",
        _plain(SOURCE_NOTE),
        "",
        _md_table(tables["sources"], _SOURCE_FMT),
        "",
        "## Tone x hue",
        "",
        _plain(HUE_NOTE),
        "",
        _md_table(tables["tone_hue"], _HUE_FMT, index=True),
        "",
        "## ITA categories",
        "",
        "| ITA category | people |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in numbers["ita_category_counts"].items()],
        "",
        "## Monk Skin Tone",
        "",
        _plain(MONK_NOTE),
        "",
        _md_table(tables["monk"], {"*": str}),
        "",
    ]


def _md_parts_people_accuracy(numbers: dict, tables: dict, gt: GroundTruthResult | None, rel: dict) -> list[str]:
    lines = ["## People per image", "", "| people | images |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in numbers["people_per_image"].items()] + [""]
    if len(tables["part_fraction"]):
        lines += [
            "## Part area per group (mean % of the person)",
            "",
            _md_table(100.0 * tables["part_fraction"], {"*": lambda v: f"{v:.1f}"}, index=True),
            "",
            f"![part area]({rel['part_area']}) ![part score]({rel['part_score']})",
            "",
        ]
    if gt is not None:
        lines += [
            "## Accuracy per group (ground truth)",
            "",
            f"{gt.images_evaluated} image(s) evaluated, {len(gt.images_without_gt)} without ground truth.",
            "",
            _md_table(gt.summary[["group", "mIoU", "gap", "pixels"]], _GT_FMT),
            "",
        ]
    return lines


def _render_markdown(output_dir, numbers, tables, gt, plot_paths, md_dir: Path) -> str:
    """The Markdown summary: the same tables as the HTML, plots linked."""
    rel = {k: p.relative_to(md_dir).as_posix() for k, p in plot_paths.items()}
    lines = _md_summary(output_dir, numbers) + _md_groups(numbers, tables, rel)
    lines += _md_parts_people_accuracy(numbers, tables, gt, rel)
    lines += ["## Method and limits", "", _plain(LIMITS), ""]
    return "\n".join(lines)
