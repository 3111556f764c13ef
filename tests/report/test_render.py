"""The report's two renderers on a hand-made section model: what each writes, block by block."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from m2fp_batch.report.render import render_html, render_markdown
from m2fp_batch.report.sections import HTML, MARKDOWN, Document, Figures, Section, Subheading, Table, Text

NUMBERS = {
    "images": 3,
    "status": {"ok": 2, "error": 1},
    "people": 4,
    "unknown_rate": 0.25,
    "low_light": None,
    "files": 1,
    "schema_versions": [3],
}
TABLE = Table(pd.DataFrame({"group": ["dark"], "share": [0.5]}), {"group": str, "share": lambda v: f"{v:.0%}"})
SECTION = Section(
    "s",
    "Tone &times; hue",
    (
        Text("<em>measured</em> &gt; 41"),
        TABLE,
        Figures(("a", "b"), grid=True, captions=("first", "second")),
        Subheading("Only in HTML", to=frozenset({HTML})),
        Text("Only in Markdown.", to=frozenset({MARKDOWN})),
    ),
)
HIDDEN = Section("h", "HTML only", (Text("x", note=False),), to=frozenset({HTML}))
DOC = Document(Path("labels"), NUMBERS, (SECTION, HIDDEN))


def test_markdown_is_plain_text_with_linked_plots():
    assert render_markdown(DOC, {"a": "p/a.png", "b": "p/b.png"}) == "\n".join(
        [
            "# Skin-tone and fairness report",
            "",
            "Job output `labels`: 3 images (2 ok, 1 error), 4 people, tone unknown for 25.0%, "
            "adaptive brightness off (low light not measured).",
            "",
            "## Tone x hue",
            "",
            "*measured* > 41",
            "",
            "| group | share |",
            "|---|---|",
            "| dark | 50% |",
            "",
            "![first](p/a.png) ![second](p/b.png)",
            "",
            "Only in Markdown.",
            "",
        ]
    )


def test_html_keeps_markup_and_embeds_the_given_figures():
    page = render_html(DOC, {"a": "<figure>A</figure>", "b": "<figure>B</figure>"})
    body = page[page.index("<h2") : page.index("</main>")].splitlines()
    assert body == [
        "<h2 id='s'>Tone &times; hue</h2>",
        "<p class='note'><em>measured</em> &gt; 41</p>",
        "<table><thead><tr><th>group</th><th>share</th></tr></thead><tbody><tr><td>dark</td><td>50%</td></tr>"
        "</tbody></table>",
        "<div class='plots'><figure>A</figure><figure>B</figure></div>",
        "<h3>Only in HTML</h3>",
        "<h2 id='h'>HTML only</h2>",
        "<p>x</p>",
    ]
    assert "<code>labels</code> (1 Parquet file(s), schema version(s) 3)" in page
