"""The report's numbers: pure functions over the flat tables of :mod:`m2fp_batch.report.data`
and over label maps (per-group IoU against ground truth)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from m2fp_batch.annotate.palette import CIHP_CLASSES
from m2fp_batch.annotate.skin_tone import HUE_BINS, ITA_CATEGORIES, MONK_HEX, hue_bin, monk_range
from m2fp_batch.report.data import NOT_MEASURED
from m2fp_batch.schema import SKIN_GROUPS, SKIN_SOURCES, STATUS_OK

NUM_CLASSES = 20  # CIHP parsing classes incl. background (the 21st model class, Human, is not a label)
PART_CLASSES = tuple(CIHP_CLASSES[1:NUM_CLASSES])


def counted_people(persons: pd.DataFrame) -> pd.DataFrame:
    """The people the fairness numbers count: each person of a photo, and each track of a video once,
    with the track's one tone group (a person seen in 30 frames is one person, not 30)."""
    if "track_id" not in persons or not persons["track_id"].notna().any():
        return persons
    tracked = persons["track_id"].notna().to_numpy()
    tracks = persons[tracked].drop_duplicates(["video_id", "track_id"])
    return pd.concat([persons[~tracked], tracks.assign(group=tracks["track_group"])], ignore_index=True)


def group_counts(persons: pd.DataFrame) -> pd.Series:
    """Persons per skin-tone group, in the order light, medium, dark, unknown."""
    return persons["group"].value_counts().reindex(list(SKIN_GROUPS), fill_value=0).astype(int)


def ita_category_counts(persons: pd.DataFrame) -> pd.Series:
    """Persons per ITA category (very light ... dark, unknown)."""
    return persons["ita_category"].value_counts().reindex(list(ITA_CATEGORIES), fill_value=0).astype(int)


def unknown_rate(persons: pd.DataFrame) -> float | None:
    """Share of persons whose tone is unknown (None with no persons)."""
    if len(persons) == 0:
        return None
    return float((persons["group"] == "unknown").mean())


def low_light(images: pd.DataFrame, persons: pd.DataFrame, enabled: bool | None = None) -> dict | None:
    """Low-light share: images whose model input was brightened (factor > 1).

    ``enabled`` is the job's ``adaptive_brightness`` setting (None: not recorded). Returns None
    when it is False (every factor is then 1.0 and says nothing about the light) or when no row
    recorded a brightness factor, else
    ``{"images": share of ok images, "factors": {factor: images}, "by_group": {group: share of
    persons in brightened images}}``.
    """
    ok = images[images["status"] == STATUS_OK]
    if enabled is False or ok["brightness_factor"].isna().all():
        return None
    recorded = ok.dropna(subset=["brightness_factor"])
    by_group = {}
    for g in SKIN_GROUPS:
        p = persons[(persons["group"] == g) & persons["brightness_factor"].notna()]
        by_group[g] = float((p["brightness_factor"] > 1.0).mean()) if len(p) else None
    factors = recorded["brightness_factor"].value_counts().sort_index()
    return {
        "images": float((recorded["brightness_factor"] > 1.0).mean()),
        "factors": {float(k): int(v) for k, v in factors.items()},
        "by_group": by_group,
    }


def people_per_image(images: pd.DataFrame) -> pd.Series:
    """Number of ok images per person count (index: persons in the image)."""
    ok = images[images["status"] == STATUS_OK]
    counts = ok["num_persons"].astype(int).value_counts().sort_index()
    if len(counts):
        counts = counts.reindex(range(int(counts.index.max()) + 1), fill_value=0)
    return counts.astype(int)


def groups_present(persons: pd.DataFrame, images: pd.DataFrame) -> pd.Series:
    """Ok images per combination of groups present (e.g. ``dark+light``; ``no people``)."""
    ok_ids = images.loc[images["status"] == STATUS_OK, "image_id"]
    combos = persons.groupby("image_id")["group"].agg(lambda s: "+".join(g for g in SKIN_GROUPS if g in set(s)))
    combos = combos.reindex(ok_ids.to_numpy()).fillna("no people")
    return combos.value_counts().sort_values(ascending=False).astype(int)


def part_stats_by_group(persons: pd.DataFrame, parts: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(mean area fraction, mean part score) per part class (rows) and group (columns).

    The area fraction averages over ALL persons of the group (a person without the part counts
    0); the score averages over the persons that have the part (NaN when none has it).
    """
    n_persons = persons["group"].value_counts()
    frac_sum = parts.pivot_table(index="label", columns="group", values="fraction", aggfunc="sum", fill_value=0.0)
    frac = frac_sum.div(n_persons.reindex(frac_sum.columns), axis=1)
    score = parts.pivot_table(index="label", columns="group", values="score", aggfunc="mean")
    order = [c for c in PART_CLASSES if c in frac.index]
    cols = [g for g in SKIN_GROUPS if g in n_persons.index]
    return (
        frac.reindex(index=order, columns=cols).fillna(0.0),
        score.reindex(index=order, columns=cols),
    )


def tone_hue_table(persons: pd.DataFrame) -> pd.DataFrame:
    """People per skin-tone group (rows) and hue bin (columns: red h* <= 55, yellow, unknown), with the
    group's median h*."""
    bins = persons["hue"].map(hue_bin) if len(persons) else pd.Series([], dtype=str)
    table = pd.crosstab(persons["group"], bins).reindex(index=list(SKIN_GROUPS), columns=list(HUE_BINS), fill_value=0)
    table = table.astype(int)
    table["median h*"] = [persons.loc[persons["group"] == g, "hue"].median() for g in SKIN_GROUPS]
    table.index.name = "group"
    table.columns.name = None
    return table


def source_table(persons: pd.DataFrame) -> pd.DataFrame:
    """How the groups were obtained: one row per source (measured, derived, reviewed, not measured)
    with the people per group and the skin pixels their groups rest on (median, 10th percentile)."""
    rows = []
    for source in (*SKIN_SOURCES, NOT_MEASURED):
        s = persons[persons["source"] == source]
        known = s[s["group"] != "unknown"]["skin_pixels"]
        rows.append(
            {
                "source": source,
                "people": len(s),
                **{g: int((s["group"] == g).sum()) for g in SKIN_GROUPS},
                "median skin pixels": float(known.median()) if len(known) else None,
                "10th pct skin pixels": float(known.quantile(0.1)) if len(known) else None,
            }
        )
    return pd.DataFrame(rows)


def monk_table(persons: pd.DataFrame) -> pd.DataFrame:
    """People per nearest Monk tone 1..10, with the range the stated uncertainty gives each tone."""
    counts = persons["monk"].dropna().astype(int).value_counts()
    tones = range(1, len(MONK_HEX) + 1)
    return pd.DataFrame(
        {
            "MST": list(tones),
            "colour": list(MONK_HEX),
            "people": [int(counts.get(t, 0)) for t in tones],
            "within uncertainty": ["MST {}-{}".format(*monk_range(t)) for t in tones],
        }
    )


def status_counts(images: pd.DataFrame) -> dict[str, int]:
    return {str(k): int(v) for k, v in images["status"].value_counts().items()}


# ---------------------------------------------------------------- ground truth: IoU per group


def group_regions(
    shape: tuple[int, int], boxes: Iterable[Sequence[int]], groups: Iterable[str]
) -> dict[str, np.ndarray]:
    """Per group, the union of the boxes (x0, y0, x1, y1, end-exclusive) of its persons, as (H, W) bool."""
    regions: dict[str, np.ndarray] = {}
    for (x0, y0, x1, y1), g in zip(boxes, groups, strict=True):
        r = regions.setdefault(g, np.zeros(shape, bool))
        r[int(y0) : int(y1), int(x0) : int(x1)] = True
    return regions


def confusion(pred: np.ndarray, gt: np.ndarray, region: np.ndarray, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """(num_classes, num_classes) int64 counts [gt, pred] over ``region``; gt >= num_classes is ignored."""
    if pred.shape != gt.shape or region.shape != gt.shape:
        raise ValueError(f"shapes differ: pred {pred.shape}, ground truth {gt.shape}, region {region.shape}")
    sel = region & (gt < num_classes)
    idx = gt[sel].astype(np.int64) * num_classes + np.minimum(pred[sel].astype(np.int64), num_classes - 1)
    return np.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def image_group_confusions(
    pred: np.ndarray,
    gt: np.ndarray,
    boxes: Sequence[Sequence[int]],
    groups: Sequence[str],
    num_classes: int = NUM_CLASSES,
) -> dict[str, np.ndarray]:
    """Confusion matrices of one image, one per group of its persons (over the group's region)."""
    return {g: confusion(pred, gt, r, num_classes) for g, r in group_regions(gt.shape, boxes, groups).items()}


def iou_from_confusion(conf: np.ndarray) -> np.ndarray:
    """Per-class IoU = TP / (TP + FP + FN); NaN where the class is absent from both."""
    tp = np.diag(conf).astype(np.float64)
    union = conf.sum(0) + conf.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def miou_table(confusions: Mapping[str, np.ndarray], class_names: Sequence[str] = CIHP_CLASSES[:NUM_CLASSES]):
    """(per-class IoU DataFrame [class x group], summary DataFrame [group, mIoU, gap, pixels]).

    mIoU is the mean IoU over the classes present (in ground truth or prediction) in the
    group's regions, background included; ``gap`` is the best group's mIoU minus this one's.
    """
    groups = [g for g in SKIN_GROUPS if g in confusions]
    ious = pd.DataFrame({g: iou_from_confusion(confusions[g]) for g in groups}, index=list(class_names))
    miou = ious.mean(axis=0, skipna=True)
    summary = pd.DataFrame(
        {
            "group": groups,
            "mIoU": [float(miou[g]) for g in groups],
            "pixels": [int(confusions[g].sum()) for g in groups],
        }
    )
    # The best group is among the groups that are known when any is; unknown still gets a gap.
    known = summary[summary["group"] != "unknown"]
    best = float((known if len(known) else summary)["mIoU"].max()) if len(summary) else float("nan")
    summary["gap"] = best - summary["mIoU"]
    return ious, summary
