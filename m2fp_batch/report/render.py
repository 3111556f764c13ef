"""The two renderers of a report :class:`~m2fp_batch.report.sections.Document`: HTML (self-contained,
plots embedded) and Markdown (plots linked). Neither decides what the report says."""

from __future__ import annotations

import base64
import datetime as _dt
import html

import pandas as pd

from m2fp_batch.report.sections import HTML, MARKDOWN, Document, Figures, Format, Section, Subheading, Table, Text, pct

__all__ = ["CSS", "render_html", "render_markdown"]

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


def _columns(df: pd.DataFrame, index: bool) -> list[str]:
    return ([df.index.name or ""] if index else []) + [str(c) for c in df.columns]


def _cell(formats: Format, column: object, value: object) -> str:
    return formats.get(str(column), formats.get("*", str))(value)


# ---- HTML -------------------------------------------------------------------------------------


def _html_table(t: Table) -> str:
    out = ["<table><thead><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in _columns(t.frame, t.index))]
    out[0] += "</tr></thead><tbody>"
    for idx, row in t.frame.iterrows():
        cells = [html.escape(str(idx))] if t.index else []
        cells += [html.escape(_cell(t.formats, c, row[c])) for c in t.frame.columns]
        out.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _html_figures(f: Figures, figures: dict[str, str]) -> list[str]:
    if not f.grid:
        return [figures[n] for n in f.names]
    beside = "" if f.beside is None else "<div>" + _html_table(f.beside) + "</div>"
    return ["<div class='plots'>" + "".join(figures[n] for n in f.names) + beside + "</div>"]


def _html_block(block, figures: dict[str, str]) -> list[str]:
    if isinstance(block, Text):
        return [f"<p class='note'>{block.text}</p>" if block.note else f"<p>{block.text}</p>"]
    if isinstance(block, Table):
        return [_html_table(block)]
    if isinstance(block, Subheading):
        return [f"<h3>{block.title}</h3>"]
    return _html_figures(block, figures)


def _kpis(numbers: dict) -> list[tuple[str, str]]:
    low = numbers["low_light"]
    return [
        ("images", str(numbers["images"])),
        ("ok / error", f"{numbers['status'].get('ok', 0)} / {numbers['status'].get('error', 0)}"),
        ("people", str(numbers["people"])),
        ("tone unknown", pct(numbers["unknown_rate"])),
        ("low-light images", "not measured" if low is None else pct(low["images"])),
    ]


def _html_head(doc: Document) -> list[str]:
    numbers = doc.numbers
    gen = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<title>m2fp-batch skin-tone report</title>",
        f"<style>{CSS}</style></head><body><main>",
        "<h1>Skin-tone and fairness report</h1>",
        f"<p class='note'>Job output <code>{html.escape(str(doc.output_dir))}</code> ({numbers['files']} Parquet "
        f"file(s), schema version(s) {', '.join(map(str, numbers['schema_versions'])) or 'n/a'}); generated {gen}.</p>",
        "<div class='kpis'>"
        + "".join(f"<div class='kpi'>{html.escape(k)}<b>{html.escape(v)}</b></div>" for k, v in _kpis(numbers))
        + "</div>",
    ]


def _shown(item: Section | Text | Table | Figures | Subheading, target: str) -> bool:
    return target in item.to


def render_html(doc: Document, figures: dict[str, str]) -> str:
    """The HTML report; ``figures``: plot name -> its ``<figure>`` (PNG embedded)."""
    parts = _html_head(doc)
    for s in (s for s in doc.sections if _shown(s, HTML)):
        parts.append(f"<h2 id='{s.anchor}'>{s.title}</h2>")
        parts += [line for b in s.blocks if _shown(b, HTML) for line in _html_block(b, figures)]
    return "\n".join(parts + ["</main></body></html>"])


def figure(name: str, png: bytes, alt: str) -> str:
    """One plot as an HTML ``<figure>`` with the PNG inline (base64)."""
    data = base64.b64encode(png).decode("ascii")
    return f'<figure id="plot-{name}"><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></figure>'


# ---- Markdown ---------------------------------------------------------------------------------


def plain(text: str) -> str:
    """HTML text (``<em>``, entities) as Markdown text."""
    for a, b in (("<em>", "*"), ("</em>", "*"), ("&gt;", ">"), ("&lt;", "<"), ("&le;", "<=")):
        text = text.replace(a, b)
    return text.replace("&deg;", " deg").replace("&plusmn;", "+-").replace("&times;", "x")


def _md_table(t: Table) -> str:
    cols = _columns(t.frame, t.index)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for idx, row in t.frame.iterrows():
        cells = ([str(idx)] if t.index else []) + [_cell(t.formats, c, row[c]) for c in t.frame.columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _md_block(block, links: dict[str, str]) -> str:
    if isinstance(block, Text):
        return plain(block.text)
    if isinstance(block, Table):
        return _md_table(block)
    if isinstance(block, Subheading):
        return f"### {plain(block.title)}"
    return " ".join(f"![{alt}]({links[n]})" for n, alt in zip(block.names, block.captions, strict=True))


def _md_summary(doc: Document) -> list[str]:
    numbers, low = doc.numbers, doc.numbers["low_light"]
    return [
        "# Skin-tone and fairness report",
        "",
        f"Job output `{doc.output_dir}`: {numbers['images']} images "
        f"({numbers['status'].get('ok', 0)} ok, {numbers['status'].get('error', 0)} error), "
        f"{numbers['people']} people, tone unknown for {pct(numbers['unknown_rate'])}, "
        + (
            "adaptive brightness off (low light not measured)."
            if low is None
            else f"{pct(low['images'])} of the ok images brightened."
        ),
        "",
    ]


def render_markdown(doc: Document, links: dict[str, str]) -> str:
    """The Markdown summary; ``links``: plot name -> its PNG's path relative to the Markdown file."""
    lines = _md_summary(doc)
    for s in (s for s in doc.sections if _shown(s, MARKDOWN)):
        lines += [f"## {s.md_title or plain(s.title)}", ""]
        lines += [x for b in s.blocks if _shown(b, MARKDOWN) for x in (_md_block(b, links), "")]
    return "\n".join(lines)
