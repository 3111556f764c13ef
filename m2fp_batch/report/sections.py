"""The report as data: its sections and their blocks (text, tables, figures), built once from the numbers.

:mod:`.render` turns one :class:`Document` into HTML and into Markdown. A block or section that
only one of them shows says so in ``to`` (the Markdown summary leaves out the low-light section,
the ITA histogram and the per-class IoU; it lists people per image as a table, the HTML beside a
plot). Texts are written in HTML (``<em>``, entities); the Markdown renderer makes them plain.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from m2fp_batch.annotate.skin_tone import MONK_UNCERTAINTY
from m2fp_batch.report.ground_truth import GroundTruthResult

__all__ = [
    "BOTH",
    "HTML",
    "MARKDOWN",
    "Document",
    "Figures",
    "Section",
    "Subheading",
    "Table",
    "Text",
    "document",
    "pct",
]

HTML = "html"
MARKDOWN = "markdown"
BOTH = frozenset({HTML, MARKDOWN})
_HTML_ONLY = frozenset({HTML})
_MD_ONLY = frozenset({MARKDOWN})


def pct(v: float | None) -> str:
    """A share as a percentage with one decimal; ``n/a`` for None / NaN."""
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100.0 * v:.1f}%"


def _num(v, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if isinstance(v, int):
        return str(v)
    return f"{v:.{digits}f}"


Format = Mapping[str, Callable[[object], str]]  # column (or "*": every other column) -> cell text

_GROUP_FMT: Format = {
    "share": pct,
    "median ITA": lambda v: _num(v, 1),
    "mean confidence": lambda v: _num(v, 2),
    "mean skin pixels": lambda v: _num(v, 0),
    "in low light": pct,
    "people": str,
    "group": str,
}
_GT_FMT: Format = {"group": str, "mIoU": pct, "gap": lambda v: f"{100.0 * v:.1f} pt", "pixels": lambda v: f"{int(v):,}"}
_HUE_FMT: Format = {"median h*": lambda v: _num(v, 1), "*": lambda v: str(int(v))}  # counts: ints
_SOURCE_FMT: Format = {
    "median skin pixels": lambda v: _num(v, 0),
    "10th pct skin pixels": lambda v: _num(v, 0),
    "*": str,
}
_STR: Format = {"*": str}

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


@dataclass(frozen=True)
class Text:
    """A paragraph in HTML markup; ``note``: set as a side note (smaller, grey)."""

    text: str
    note: bool = True
    to: frozenset[str] = BOTH


@dataclass(frozen=True)
class Table:
    """A table: ``frame`` with each cell formatted by ``formats`` (column, or ``*``), the index as a column."""

    frame: pd.DataFrame
    formats: Format = field(default_factory=lambda: _STR)
    index: bool = False
    to: frozenset[str] = BOTH


@dataclass(frozen=True)
class Figures:
    """Plots by name; ``grid``: side by side (with ``beside``, a table next to them); ``captions``: Markdown alt texts."""

    names: tuple[str, ...]
    grid: bool = False
    beside: Table | None = None
    captions: tuple[str, ...] = ()
    to: frozenset[str] = BOTH


@dataclass(frozen=True)
class Subheading:
    title: str
    to: frozenset[str] = BOTH


Block = Text | Table | Figures | Subheading


@dataclass(frozen=True)
class Section:
    """A titled section (``md_title``: its Markdown title where it differs)."""

    anchor: str
    title: str
    blocks: tuple[Block, ...]
    md_title: str | None = None
    to: frozenset[str] = BOTH


@dataclass(frozen=True)
class Document:
    """The whole report: the job output it describes, its numbers (head / summary) and its sections."""

    output_dir: Path
    numbers: dict
    sections: tuple[Section, ...]


def _groups(numbers: dict, tables: dict) -> list[Section]:
    ita = pd.DataFrame(
        {"ITA category": list(numbers["ita_category_counts"]), "people": list(numbers["ita_category_counts"].values())}
    )
    shown = ("people per group", "people per ITA category")
    return [
        Section(
            "groups",
            "Skin-tone groups",
            (
                Table(tables["groups"], _GROUP_FMT),
                Figures(("groups", "ita_categories"), grid=True, captions=shown),
                Figures(("ita_histogram",), to=_HTML_ONLY),
            ),
        ),
        Section("sources", "How the groups were obtained", (Text(SOURCE_NOTE), Table(tables["sources"], _SOURCE_FMT))),
        Section("tone-hue", "Tone &times; hue", (Text(HUE_NOTE), Table(tables["tone_hue"], _HUE_FMT, index=True))),
        Section("ita", "ITA categories", (Table(ita),)),
        Section("monk", "Monk Skin Tone", (Text(MONK_NOTE), Table(tables["monk"]))),
    ]


def _low_light(numbers: dict) -> Section:
    low = numbers["low_light"]
    if low is None:
        blocks: tuple[Block, ...] = (
            Text(
                "Adaptive brightness was off for this job (<code>adaptive_brightness: false</code>), "
                "so the low-light share is not measured: run with <code>--set adaptive_brightness=true</code>."
            ),
        )
    else:
        factors = ", ".join(f"x{k:g}: {v}" for k, v in low["factors"].items())
        blocks = (
            Text(f"{pct(low['images'])} of the ok images were brightened (factors: {html.escape(factors)}).", False),
        )
        if numbers["adaptive_brightness"] is None:
            blocks += (Text("No job settings file (_config.json): shares from the recorded factors."),)
        blocks += (Figures(("low_light",)),)
    return Section("low-light", "Low light", blocks, to=_HTML_ONLY)


def _parts_and_people(numbers: dict, tables: dict) -> list[Section]:
    people = pd.DataFrame(
        {"people": list(numbers["people_per_image"]), "images": list(numbers["people_per_image"].values())}
    )
    present = pd.DataFrame(
        {"groups present": list(numbers["groups_present"]), "images": list(numbers["groups_present"].values())}
    )
    sections = [Section("people-per-image", "People per image", (Table(people),), to=_MD_ONLY)]
    share = 100.0 * tables["part_fraction"]
    if len(tables["part_fraction"]):
        blocks: tuple[Block, ...] = (
            Figures(("part_area", "part_score"), to=_HTML_ONLY),
            Table(share, {"*": lambda v: f"{v:.1f}%"}, index=True, to=_HTML_ONLY),
            Table(share, {"*": lambda v: f"{v:.1f}"}, index=True, to=_MD_ONLY),
            Figures(("part_area", "part_score"), captions=("part area", "part score"), to=_MD_ONLY),
        )
        sections.append(
            Section("parts", "Parts per group", blocks, md_title="Part area per group (mean % of the person)")
        )
    else:
        sections.append(Section("parts", "Parts per group", (Text("No parts found."),), to=_HTML_ONLY))
    people_plot = Figures(("people_per_image",), grid=True, beside=Table(present))
    return sections + [Section("people", "People per image", (people_plot,), to=_HTML_ONLY)]


def _ground_truth(gt: GroundTruthResult | None) -> list[Section]:
    if gt is None:
        return []
    counted = f"{gt.images_evaluated} image(s) evaluated, {len(gt.images_without_gt)} without "
    blocks = (
        Text(
            counted + "a ground-truth PNG. Region of a group: the union of its people's boxes; mIoU: mean IoU over "
            "the classes present there, background included; gap: best known group's mIoU minus this group's.",
            to=_HTML_ONLY,
        ),
        Text(counted + "ground truth.", to=_MD_ONLY),
        Table(gt.summary[["group", "mIoU", "gap", "pixels"]], _GT_FMT),
        Figures(("miou",), to=_HTML_ONLY),
        Subheading("Per-class IoU", to=_HTML_ONLY),
        Table(gt.ious.dropna(how="all"), {"*": pct}, index=True, to=_HTML_ONLY),
    )
    return [Section("ground-truth", "Accuracy per group (ground truth)", blocks)]


def document(output_dir: Path, numbers: dict, tables: dict, gt: GroundTruthResult | None) -> Document:
    """The report's sections: groups (sources, tone x hue, ITA, Monk), low light, parts, people, accuracy, method."""
    sections = _groups(numbers, tables) + [_low_light(numbers)] + _parts_and_people(numbers, tables)
    sections += _ground_truth(gt) + [Section("method", "Method and limits", (Text(LIMITS),))]
    return Document(output_dir, numbers, tuple(sections))
