"""One job row -> a plain description of its review sample, mask PNGs written (no FiftyOne).

:func:`sample_data` is what the import spends its CPU on (RLE decoding, label maps, PNG files,
the review priority); it imports no FiftyOne so that worker processes can run it. The FiftyOne
sample is made from its result by :func:`m2fp_batch.review.build.sample_from_data`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from m2fp_batch.annotate.palette import CIHP_CLASSES
from m2fp_batch.labels import class_name, decode_persons, person_parts_map, semantic_map
from m2fp_batch.review import masks as mk
from m2fp_batch.review.priority import (
    Priority,
    parse_agreement,
    person_anomalies,
    review_priority,
    weighted_part_score,
)
from m2fp_batch.schema import SKIN_GROUPS, STATUS_OK

FACE_ID = CIHP_CLASSES.index("Face")
TAG_ERROR = "error"
TAG_LOW_CONFIDENCE = "low_confidence"
TAG_BRIGHTENED = "brightened"
SKIN_TAG_PREFIX = "skin:"
TAG_REVIEWED = "reviewed"
TAG_REJECTED = "rejected"
REVIEW_TAGS = (TAG_REVIEWED, TAG_REJECTED)
DEFAULT_LOW_SCORE = 0.5

# Saved views of the review dataset (names shared by every review tool's --view)
VIEW_ERRORS = "errors"
VIEW_LOW_CONFIDENCE = "low-confidence"
VIEW_QUEUE = "review-queue"
VIEW_SKIN = {g: f"skin-{g}" for g in SKIN_GROUPS}
VIEWS = (VIEW_QUEUE, VIEW_LOW_CONFIDENCE, VIEW_ERRORS, *VIEW_SKIN.values())


def is_auto_tag(tag: str) -> bool:
    """Tags the importer sets (recomputed on every import); every other tag belongs to reviewers."""
    return tag in (TAG_ERROR, TAG_LOW_CONFIDENCE, TAG_BRIGHTENED) or tag.startswith(SKIN_TAG_PREFIX)


def part_field_name(label: str) -> str:
    """A class name as a field name (``Left-arm`` -> ``Left_arm``)."""
    return label.replace("-", "_")


def person_skin(person: dict, schema_version: int) -> dict | None:
    """The person's ``skin_tone`` struct; None for schema v1 (not measured there, not invented).

    Raises:
        mk.ReviewInputError: a v2+ person without ``skin_tone``.
    """
    if schema_version < 2:
        return None
    if "skin_tone" not in person:
        raise mk.ReviewInputError(f"schema v{schema_version} person without 'skin_tone': corrupt or foreign output")
    return person["skin_tone"]


V2_IMAGE_COLUMNS = ("brightened", "brightness_factor", "skin_tone_groups", "skin_tone_counts")


def v2_columns(row: dict) -> dict:
    """The image-level v2 columns (brightness, skin-tone summary); all None for schema v1.

    Raises:
        mk.ReviewInputError: a v2+ row without one of them.
    """
    if row["schema_version"] < 2:
        return dict.fromkeys(V2_IMAGE_COLUMNS)
    missing = [c for c in V2_IMAGE_COLUMNS if c not in row]
    if missing:
        raise mk.ReviewInputError(f"schema v{row['schema_version']} row without {missing}: corrupt or foreign output")
    return {c: row[c] for c in V2_IMAGE_COLUMNS}


def filepath(uri: str, image_root: Path | None) -> str:
    """The local file of an image uri (``image_root`` for relative paths and ``s3://bucket/key``).

    Raises:
        mk.ReviewInputError: a remote uri without ``image_root``.
    """
    if "://" in uri:
        _, rest = uri.split("://", 1)
        if image_root is None:
            raise mk.ReviewInputError(
                f"image {uri!r} is not a local file: copy the images locally and pass --image-root DIR "
                f"(DIR/<bucket>/<key> for s3://<bucket>/<key>)"
            )
        return str((image_root / rest).resolve())
    p = Path(uri)
    if not p.is_absolute():
        p = (image_root or Path.cwd()) / p
    return str(p.resolve())


def part_stats(persons: list[mk.DecodedPerson]) -> dict[str, dict]:
    """Per part class over the image's people: pixels, share of the people's pixels, score, persons."""
    area: dict[int, int] = defaultdict(int)
    wscore: dict[int, float] = defaultdict(float)
    sarea: dict[int, int] = defaultdict(int)
    npers: dict[int, int] = defaultdict(int)
    total = sum(int(p.row["area"]) for p in persons)
    for p in persons:
        for i, a, s in zip(p.part_ids, p.part_areas, p.part_scores, strict=True):
            area[i] += a
            npers[i] += 1
            if s is not None:
                wscore[i] += a * s
                sarea[i] += a
    return {
        part_field_name(class_name(i)): {
            "area": area[i],
            "fraction": area[i] / total if total else 0.0,
            "score": wscore[i] / sarea[i] if sarea[i] else None,
            "persons": npers[i],
        }
        for i in sorted(area)
    }


def sample_data(
    row: dict,
    source: str,
    mask_dir: Path,
    image_root: Path | None = None,
    low_score: float = DEFAULT_LOW_SCORE,
) -> dict:
    """Describe the review sample of one job row (plain data) and write its mask PNGs.

    Returns a dict with ``filepath``, ``fields`` (scalar sample fields), ``tags``, ``size``
    ((W, H) or None), ``parsing`` / ``person_parts`` (PNG paths or None), ``people`` (keyword
    arguments of one ``fo.Detection`` per person, or None), ``part_stats`` and ``files`` (PNGs written).
    """
    version = int(row["schema_version"])
    fields = {
        "image_id": row["image_id"],
        "uri": row["uri"],
        "shard": row["shard"],
        "status": row["status"],
        "error": row["error"],
        "error_kind": row["error_kind"],
        "num_persons": row["num_persons"],
        "schema_version": version,
        "source_parquet": source,
        "skin_tone_available": version >= 2,
    }
    data = {
        "filepath": filepath(row["uri"], image_root),
        "fields": fields,
        "tags": [],
        "size": None,
        "parsing": None,
        "person_parts": None,
        "people": None,
        "part_stats": None,
        "files": 0,
    }
    if row["status"] != STATUS_OK:
        data["tags"] = [TAG_ERROR]
        fields.update(review_priority=None, review_reasons=None)
        return data

    h, w = int(row["height"]), int(row["width"])
    data["size"] = (w, h)
    folder = mk.mask_folder(mask_dir, row["image_id"])
    semantic = semantic_map(row, (h, w))
    persons = decode_persons(row)
    parts_map = person_parts_map(persons, (h, w))
    data["parsing"] = str(folder / "parsing.png")
    data["person_parts"] = str(folder / "person_parts.png")
    mk.write_png(Path(data["parsing"]), semantic)
    mk.write_png(Path(data["person_parts"]), parts_map)
    files = 2

    people, itas = [], []
    for p in persons:
        x0, y0, x1, y1 = p.bbox
        mpath = folder / f"person_{p.index}.png"
        mk.write_png(mpath, p.mask[y0:y1, x0:x1].astype(np.uint8) * 255)
        files += 1
        pscore = weighted_part_score(p.part_areas, p.part_scores)
        skin = person_skin(p.row, version)
        group = None if skin is None else (skin.get("group") or "unknown")
        ita = None if skin is None or skin.get("ita") is None else float(skin["ita"])
        if ita is not None:
            itas.append(ita)
        people.append(
            {
                "label": "person",
                "bounding_box": [x0 / w, y0 / h, (x1 - x0) / w, (y1 - y0) / h],
                "mask_path": str(mpath),
                "confidence": p.score,
                "person_id": int(p.row["person_id"]),
                "area": int(p.row["area"]),
                "parts": [class_name(i) for i in p.part_ids],
                "part_score": pscore,
                "skin_group": group,
                "ita": ita,
                "ita_category": None if skin is None else skin.get("ita_category"),
                "monk": None if skin is None or skin.get("monk") is None else int(skin["monk"]),
                "skin_confidence": None
                if skin is None or skin.get("confidence") is None
                else float(skin["confidence"]),
            }
        )
    data["people"] = people
    data["part_stats"] = part_stats(persons)
    data["files"] = files

    sig = review_signals(row, semantic, persons, parts_map, low_score)
    v2 = v2_columns(row)
    fields.update(
        parse_agreement=sig.agreement,
        review_priority=sig.priority.score,
        review_reasons=sig.priority.reasons(),
        anomalies=list(sig.priority.anomalies),
        min_person_score=sig.min_person_score,
        min_part_score=sig.min_part_score,
        brightness_factor=None if v2["brightness_factor"] is None else float(v2["brightness_factor"]),
        brightened=v2["brightened"],
        skin_tone_counts=v2["skin_tone_counts"],
        skin_groups=sorted(set(sig.groups)) if version >= 2 else None,
        ita_mean=float(np.mean(itas)) if itas else None,
    )
    tags = sig.tags
    data["tags"] = tags
    return data


@dataclass(frozen=True)
class ReviewSignals:
    """What the review ranks and filters a row by (the same for every review tool)."""

    priority: Priority
    agreement: float  # parse_agreement of the image-level parse and the people's part maps
    groups: list[str]  # skin-tone group per person (schema v2+; empty for v1)
    min_person_score: float | None
    min_part_score: float | None
    tags: list[str]  # skin:<group>, low_confidence, brightened


def review_signals(
    row: dict,
    semantic: np.ndarray,
    persons: list[mk.DecodedPerson],
    parts_map: np.ndarray,
    low_score: float = DEFAULT_LOW_SCORE,
) -> ReviewSignals:
    """The review priority, skin groups and automatic tags of an ``ok`` row (its maps already decoded)."""
    version = int(row["schema_version"])
    part_scores, anomalies, groups = [], [], []
    for p in persons:
        part_scores.append(weighted_part_score(p.part_areas, p.part_scores))
        face = p.part_masks[p.part_ids.index(FACE_ID)] if FACE_ID in p.part_ids else None
        anomalies += person_anomalies(p.index, p.part_ids, face)
        skin = person_skin(p.row, version)
        if skin is not None:
            groups.append(skin.get("group") or "unknown")
    agreement = parse_agreement(semantic, parts_map)
    prio = review_priority([p.score for p in persons], part_scores, 1.0 - agreement, anomalies)
    known = [s for s in part_scores if s is not None]
    mps, mqs = min((p.score for p in persons), default=None), min(known, default=None)
    tags = [SKIN_TAG_PREFIX + g for g in sorted(set(groups))] if version >= 2 else []
    if (mps is not None and mps < low_score) or (mqs is not None and mqs < low_score):
        tags.append(TAG_LOW_CONFIDENCE)
    if v2_columns(row)["brightened"]:
        tags.append(TAG_BRIGHTENED)
    return ReviewSignals(prio, agreement, groups, mps, mqs, tags)


def row_signals(row: dict, low_score: float = DEFAULT_LOW_SCORE) -> ReviewSignals:
    """:func:`review_signals` of an ``ok`` row, decoding its maps."""
    shape = (int(row["height"]), int(row["width"]))
    persons = decode_persons(row)
    return review_signals(row, semantic_map(row, shape), persons, person_parts_map(persons, shape), low_score)


def in_view(view: str | None, signals: ReviewSignals) -> bool:
    """Whether an ``ok`` row belongs to the saved view ``view`` (None: every row; see :data:`VIEWS`).

    ``review-queue`` holds every ok row (a review tool keeps its own verdicts), ``low-confidence``
    the rows tagged ``low_confidence``, ``skin-<group>`` the rows with a person of that group, and
    ``errors`` no ok row.
    """
    if view is None or view == VIEW_QUEUE:
        return True
    if view == VIEW_LOW_CONFIDENCE:
        return TAG_LOW_CONFIDENCE in signals.tags
    groups = {v: g for g, v in VIEW_SKIN.items()}
    if view in groups:
        return SKIN_TAG_PREFIX + groups[view] in signals.tags
    return False


def sample_data_star(args: tuple) -> dict:
    """:func:`sample_data` with its arguments as one tuple (for ``Executor.map``)."""
    return sample_data(*args)
