"""One job row -> a plain description of its review sample, mask PNGs written (no FiftyOne).

:func:`sample_data` is what the import spends its CPU on (RLE decoding, label maps, PNG files,
the review priority); it imports no FiftyOne so that worker processes can run it. The FiftyOne
sample is made from its result by :func:`m2fp_batch.review.build.sample_from_data`.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from m2fp_batch.annotate.palette import CIHP_CLASSES
from m2fp_batch.labels import class_name, decode_persons, person_parts_map, semantic_map, skin_tone_source
from m2fp_batch.review import masks as mk
from m2fp_batch.review.priority import parse_agreement, person_anomalies, review_priority, weighted_part_score
from m2fp_batch.schema import STATUS_OK

FACE_ID = CIHP_CLASSES.index("Face")
TAG_ERROR = "error"
TAG_LOW_CONFIDENCE = "low_confidence"
TAG_BRIGHTENED = "brightened"
SKIN_TAG_PREFIX = "skin:"
TAG_REVIEWED = "reviewed"
TAG_REJECTED = "rejected"
REVIEW_TAGS = (TAG_REVIEWED, TAG_REJECTED)
DEFAULT_LOW_SCORE = 0.5


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

    people, anomalies, per_person_part_score, groups, itas = [], [], [], [], []
    for p in persons:
        x0, y0, x1, y1 = p.bbox
        mpath = folder / f"person_{p.index}.png"
        mk.write_png(mpath, p.mask[y0:y1, x0:x1].astype(np.uint8) * 255)
        files += 1
        pscore = weighted_part_score(p.part_areas, p.part_scores)
        per_person_part_score.append(pscore)
        face = p.part_masks[p.part_ids.index(FACE_ID)] if FACE_ID in p.part_ids else None
        anomalies += person_anomalies(p.index, p.part_ids, face)
        skin = person_skin(p.row, version)
        group = None if skin is None else (skin.get("group") or "unknown")
        ita = None if skin is None or skin.get("ita") is None else float(skin["ita"])
        if group is not None:
            groups.append(group)
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
                "hue": None if skin is None or skin.get("hue") is None else float(skin["hue"]),
                "skin_source": None if skin is None else skin_tone_source(skin),
            }
        )
    data["people"] = people
    data["part_stats"] = part_stats(persons)
    data["files"] = files

    agreement = parse_agreement(semantic, parts_map)
    prio = review_priority([p.score for p in persons], per_person_part_score, 1.0 - agreement, anomalies)
    known = [s for s in per_person_part_score if s is not None]
    v2 = v2_columns(row)
    factor = None if v2["brightness_factor"] is None else float(v2["brightness_factor"])
    fields.update(
        parse_agreement=agreement,
        review_priority=prio.score,
        review_reasons=prio.reasons(),
        anomalies=list(prio.anomalies),
        min_person_score=min((p.score for p in persons), default=None),
        min_part_score=min(known, default=None),
        brightness_factor=factor,
        brightened=v2["brightened"],
        skin_tone_counts=v2["skin_tone_counts"],
        skin_groups=sorted(set(groups)) if version >= 2 else None,
        ita_mean=float(np.mean(itas)) if itas else None,
    )
    tags = [SKIN_TAG_PREFIX + g for g in sorted(set(groups))] if version >= 2 else []
    mps, mqs = fields["min_person_score"], fields["min_part_score"]
    if (mps is not None and mps < low_score) or (mqs is not None and mqs < low_score):
        tags.append(TAG_LOW_CONFIDENCE)
    if v2["brightened"]:
        tags.append(TAG_BRIGHTENED)
    data["tags"] = tags
    return data


def sample_data_star(args: tuple) -> dict:
    """:func:`sample_data` with its arguments as one tuple (for ``Executor.map``)."""
    return sample_data(*args)
