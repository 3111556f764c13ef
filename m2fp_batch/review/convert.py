"""One job row -> a plain description of its review sample, mask PNGs written (no FiftyOne).

:func:`sample_data` is what the import spends its CPU on (RLE decoding, label maps, PNG files,
the review priority); it imports no FiftyOne so that worker processes can run it. The FiftyOne
sample is made from its result by :func:`m2fp_batch.review.build.sample_from_data`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from m2fp_batch.annotate.palette import CIHP_CLASSES
from m2fp_batch.labels import (
    DecodedPerson,
    class_name,
    decode_persons,
    person_parts_map,
    semantic_map,
    skin_tone_source,
)
from m2fp_batch.review import masks as mk
from m2fp_batch.review.priority import parse_agreement, person_anomalies, review_priority, weighted_part_score
from m2fp_batch.schema import REJECTED, REVIEWED, SKIN_GROUPS, STATUS_OK, VIDEO_COLUMNS

FACE_ID = CIHP_CLASSES.index("Face")
TAG_ERROR = "error"
TAG_LOW_CONFIDENCE = "low_confidence"
TAG_BRIGHTENED = "brightened"
SKIN_TAG_PREFIX = "skin:"
REVIEW_TAGS = (REVIEWED, REJECTED)  # a reviewer tags a sample with its verdict, in the review statuses' words
DEFAULT_LOW_SCORE = 0.5

# Saved views of the review dataset: their names and meaning are shared by every review tool's --view
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


def part_stats(persons: list[DecodedPerson]) -> dict[str, dict]:
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


@dataclass
class SampleData:
    """One review sample in plain data (made in worker processes, so no FiftyOne objects).

    :func:`m2fp_batch.review.build.sample_from_data` turns it into the FiftyOne sample.
    """

    filepath: str
    fields: dict[str, Any]  # scalar sample fields (status, scores, review priority, skin summary)
    tags: list[str] = field(default_factory=list)
    size: tuple[int, int] | None = None  # (W, H); None for an error row
    parsing: str | None = None  # PNG of the image-level parse
    person_parts: str | None = None  # PNG of the people's part maps composed
    people: list[dict[str, Any]] | None = None  # keyword arguments of one fo.Detection per person
    part_stats: dict[str, dict] | None = None  # see :func:`part_stats`
    files: int = 0  # PNG files written


@dataclass(frozen=True)
class _Person:
    """One person's detection and what the sample-level fields need of it."""

    detection: dict[str, Any]
    part_score: float | None
    anomalies: list
    group: str | None
    ita: float | None


def _row_fields(row: dict, source: str) -> dict[str, Any]:
    """The sample fields every row has, labelled or not."""
    version = int(row["schema_version"])
    return {
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
    } | ({c: row[c] for c in VIDEO_COLUMNS} if is_video_row(row) else {})


def is_video_row(row: dict) -> bool:
    """A video's row: a sampled frame, or the video's error row (``video_id`` set, schema v5)."""
    return row.get("video_id") is not None


def _track(person: dict) -> dict[str, Any]:
    """A video person's track: ``index`` (FiftyOne's object-track id) = ``track_id``, the track's tone."""
    if person.get("track_id") is None:
        return {}
    tone = person.get("track_skin_tone") or {}
    return {
        "index": int(person["track_id"]),
        "track_id": int(person["track_id"]),
        "track_skin_group": tone.get("group"),
        "track_ita": _optional(tone.get("ita"), float),
    }


def _optional(value: Any, kind: type) -> Any:
    return None if value is None else kind(value)


def _person(p: DecodedPerson, folder: Path | None, size: tuple[int, int], version: int) -> _Person:
    """Describe the person's detection, part score, anomalies and skin tone; write its mask PNG into ``folder``."""
    h, w = size
    x0, y0, x1, y1 = p.bbox
    mpath = None if folder is None else folder / f"person_{p.index}.png"
    if mpath is not None:
        mk.write_png(mpath, p.mask[y0:y1, x0:x1].astype(np.uint8) * 255)
    pscore = weighted_part_score(p.part_areas, p.part_scores)
    face = p.part_masks[p.part_ids.index(FACE_ID)] if FACE_ID in p.part_ids else None
    measured = person_skin(p.row, version)
    skin = measured or {}
    group = None if measured is None else (skin.get("group") or "unknown")
    ita = _optional(skin.get("ita"), float)
    detection = {
        "label": "person",
        "bounding_box": [x0 / w, y0 / h, (x1 - x0) / w, (y1 - y0) / h],
        "mask_path": None if mpath is None else str(mpath),
        "confidence": p.score,
        "person_id": int(p.row["person_id"]),
        "area": int(p.row["area"]),
        "parts": [class_name(i) for i in p.part_ids],
        "part_score": pscore,
        "skin_group": group,
        "ita": ita,
        "ita_category": skin.get("ita_category"),
        "monk": _optional(skin.get("monk"), int),
        "skin_confidence": _optional(skin.get("confidence"), float),
        "hue": _optional(skin.get("hue"), float),
        "skin_source": None if measured is None else skin_tone_source(skin),
    } | _track(p.row)
    return _Person(detection, pscore, person_anomalies(p.index, p.part_ids, face), group, ita)


def _review_fields(row: dict, persons: list[DecodedPerson], people: list[_Person], agreement: float) -> dict[str, Any]:
    """The fields a labelled row adds: review priority, lowest scores, brightness, skin summary."""
    scores = [p.part_score for p in people]
    prio = review_priority(
        [p.score for p in persons], scores, 1.0 - agreement, [a for p in people for a in p.anomalies]
    )
    known = [s for s in scores if s is not None]
    v2 = v2_columns(row)
    groups = [p.group for p in people if p.group is not None]
    itas = [p.ita for p in people if p.ita is not None]
    return {
        "parse_agreement": agreement,
        "review_priority": prio.score,
        "review_reasons": prio.reasons(),
        "anomalies": list(prio.anomalies),
        "min_person_score": min((p.score for p in persons), default=None),
        "min_part_score": min(known, default=None),
        "brightness_factor": _optional(v2["brightness_factor"], float),
        "brightened": v2["brightened"],
        "skin_tone_counts": v2["skin_tone_counts"],
        "skin_groups": sorted(set(groups)) if int(row["schema_version"]) >= 2 else None,
        "ita_mean": float(np.mean(itas)) if itas else None,
    }


def _tags(fields: dict[str, Any], low_score: float) -> list[str]:
    """``skin:<group>`` per group present, ``low_confidence`` and ``brightened``."""
    groups = fields["skin_groups"]
    tags = [SKIN_TAG_PREFIX + g for g in groups] if groups is not None else []
    mps, mqs = fields["min_person_score"], fields["min_part_score"]
    if (mps is not None and mps < low_score) or (mqs is not None and mqs < low_score):
        tags.append(TAG_LOW_CONFIDENCE)
    if fields["brightened"]:
        tags.append(TAG_BRIGHTENED)
    return tags


def sample_data(
    row: dict,
    source: str,
    mask_dir: Path,
    image_root: Path | None = None,
    low_score: float = DEFAULT_LOW_SCORE,
) -> SampleData:
    """Describe the review sample of one job row (plain data) and write its mask PNGs."""
    data = SampleData(filepath=filepath(row["uri"], image_root), fields=_row_fields(row, source))
    if row["status"] != STATUS_OK:
        data.tags = [TAG_ERROR]
        data.fields.update(review_priority=None, review_reasons=None)
        return data
    h, w = int(row["height"]), int(row["width"])
    data.size = (w, h)
    folder = mk.mask_folder(mask_dir, row["image_id"])
    semantic = semantic_map(row, (h, w))
    persons = decode_persons(row)
    parts_map = person_parts_map(persons, (h, w))
    data.parsing, data.person_parts = str(folder / "parsing.png"), str(folder / "person_parts.png")
    mk.write_png(Path(data.parsing), semantic)
    mk.write_png(Path(data.person_parts), parts_map)
    people = [_person(p, folder, (h, w), int(row["schema_version"])) for p in persons]
    data.people = [p.detection for p in people]
    data.part_stats = part_stats(persons)
    data.files = 2 + len(people)
    data.fields.update(_review_fields(row, persons, people, parse_agreement(semantic, parts_map)))
    data.tags = _tags(data.fields, low_score)
    return data


@dataclass(frozen=True)
class ReviewSignals:
    """What every review tool ranks and filters a row by: the sample's review fields and automatic tags."""

    fields: dict[str, Any]  # review_priority, review_reasons, skin_groups, min_person_score, ... (see sample_data)
    tags: list[str]  # skin:<group>, low_confidence, brightened


def review_signals(
    row: dict, persons: list[DecodedPerson] | None = None, low_score: float = DEFAULT_LOW_SCORE
) -> ReviewSignals:
    """The review fields and tags of an ``ok`` row, as the review dataset has them (no file written)."""
    shape = (int(row["height"]), int(row["width"]))
    persons = decode_persons(row) if persons is None else persons
    semantic, parts_map = semantic_map(row, shape), person_parts_map(persons, shape)
    people = [_person(p, None, shape, int(row["schema_version"])) for p in persons]
    fields = _review_fields(row, persons, people, parse_agreement(semantic, parts_map))
    return ReviewSignals(fields, _tags(fields, low_score))


def in_view(view: str | None, signals: ReviewSignals) -> bool:
    """Whether an ``ok`` row is in the saved view ``view`` (None: every row; names in :data:`VIEWS`).

    ``review-queue`` holds every ok row (a review tool keeps its own verdicts), ``low-confidence``
    the rows tagged ``low_confidence``, ``skin-<group>`` those with a person of that group, and
    ``errors`` no ok row.
    """
    if view is None or view == VIEW_QUEUE:
        return True
    if view == VIEW_LOW_CONFIDENCE:
        return TAG_LOW_CONFIDENCE in signals.tags
    groups = {v: g for g, v in VIEW_SKIN.items()}
    return view in groups and SKIN_TAG_PREFIX + groups[view] in signals.tags


def sample_data_star(args: tuple) -> SampleData:
    """:func:`sample_data` with its arguments as one tuple (for ``Executor.map``)."""
    return sample_data(*args)
