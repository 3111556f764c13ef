"""The report's PNG plots (matplotlib, Agg backend); each function returns the PNG bytes."""

from __future__ import annotations

import functools
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from m2fp_batch.annotate.skin_tone import ITA_THRESHOLDS  # noqa: E402

GROUP_COLORS = {"light": "#eadaba", "medium": "#a07e56", "dark": "#3a312a", "unknown": "#b0b0b0"}
ITA_COLORS = {
    "very light": "#f6ede4",
    "light": "#eadaba",
    "intermediate": "#d7bd96",
    "tan": "#a07e56",
    "brown": "#825c43",
    "dark": "#3a312a",
    "unknown": "#b0b0b0",
}
DPI = 110
STYLE = {
    "font.size": 11,
    "axes.titlesize": 13,
    "axes.titleweight": "bold",
    "axes.spines.top": False,
    "axes.spines.right": False,
}


def _styled(func):
    """Run a plot function under the report's matplotlib style (no global rcParams change)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with plt.rc_context(STYLE):
            return func(*args, **kwargs)

    return wrapper


def _png(fig: plt.Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return buf.getvalue()


@_styled
def _bars(counts: pd.Series, colors: dict[str, str], title: str, ylabel: str, fmt: str = "{:d}") -> bytes:
    fig, ax = plt.subplots(figsize=(7, 3.8))
    x = np.arange(len(counts))
    bars = ax.bar(x, counts.to_numpy(), color=[colors.get(str(k), "#777777") for k in counts.index], edgecolor="black")
    ax.set_xticks(x, [str(k) for k in counts.index], rotation=20 if len(counts) > 5 else 0)
    for b, v in zip(bars, counts.to_numpy(), strict=True):
        if pd.notna(v):
            ax.annotate(fmt.format(v), (b.get_x() + b.get_width() / 2, b.get_height()), ha="center", va="bottom")
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    if fmt == "{:d}":
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.margins(y=0.15)
    return _png(fig)


@_styled
def group_counts_plot(counts: pd.Series) -> bytes:
    return _bars(counts, GROUP_COLORS, "People per skin-tone group", "people")


@_styled
def ita_category_plot(counts: pd.Series) -> bytes:
    return _bars(counts, ITA_COLORS, "People per ITA category", "people")


@_styled
def ita_histogram(ita: pd.Series) -> bytes:
    fig, ax = plt.subplots(figsize=(7, 3.8))
    values = ita.dropna().to_numpy()
    ax.hist(values, bins=np.arange(-90, 91, 5), color="#a07e56", edgecolor="black")
    for t, _name in ITA_THRESHOLDS:
        ax.axvline(t, color="#444444", linestyle="--", linewidth=1)
    for t in (41, 10):
        ax.axvline(t, color="#c00000", linewidth=2)
    ax.set_xlim(-90, 90)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("ITA (degrees); red lines: group boundaries 41 and 10; dashed: ITA categories")
    ax.set_ylabel("people")
    ax.set_title(f"ITA of the people with a known tone (n={len(values)})")
    return _png(fig)


@_styled
def people_per_image_plot(counts: pd.Series) -> bytes:
    fig, ax = plt.subplots(figsize=(7, 3.8))
    bars = ax.bar(counts.index.astype(int), counts.to_numpy(), color="#5b7fb5", edgecolor="black")
    for b, v in zip(bars, counts.to_numpy(), strict=True):
        ax.annotate(f"{v:d}", (b.get_x() + b.get_width() / 2, b.get_height()), ha="center", va="bottom")
    ax.set_xticks(counts.index.astype(int))
    ax.set_xlabel("people in the image")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("images")
    ax.set_title("People per image")
    ax.margins(y=0.15)
    return _png(fig)


@_styled
def grouped_bars(table: pd.DataFrame, title: str, ylabel: str, ylim: tuple[float, float] | None = None) -> bytes:
    """Rows (classes) on the x axis, one bar per column (group) coloured by group."""
    n_rows, n_cols = table.shape
    fig, ax = plt.subplots(figsize=(max(7.0, 0.75 * n_rows + 3.0), 4.2))
    width = 0.8 / max(1, n_cols)
    x = np.arange(n_rows)
    for j, g in enumerate(table.columns):
        ax.bar(
            x - 0.4 + width * (j + 0.5),
            table[g].to_numpy(dtype=float),
            width,
            label=str(g),
            color=GROUP_COLORS.get(str(g), "#777777"),
            edgecolor="black",
            linewidth=0.6,
        )
    ax.set_xticks(x, [str(i) for i in table.index], rotation=35, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if ylim:
        ax.set_ylim(*ylim)
    ax.legend(title="group", frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _png(fig)


@_styled
def share_by_group_plot(shares: dict[str, float | None], title: str) -> bytes:
    s = pd.Series({k: (np.nan if v is None else 100.0 * v) for k, v in shares.items()})
    return _bars(s, GROUP_COLORS, title, "% of the group's people", fmt="{:.0f}%")


@_styled
def miou_plot(summary: pd.DataFrame) -> bytes:
    s = pd.Series(summary["mIoU"].to_numpy() * 100.0, index=summary["group"].to_numpy())
    return _bars(s, GROUP_COLORS, "mIoU per skin-tone group (ground truth)", "mIoU (%)", fmt="{:.1f}")
