"""Build or update the persistent FiftyOne review dataset from a job's Parquet output.

One sample per image, keyed by ``image_id`` (a unique index): a rerun updates the samples in
place and never duplicates them. Masks are PNG files under a mask directory (default
``<output>/_review/masks``), referenced with ``mask_path``: no mask is stored inline in MongoDB.

Sample fields (see ``docs/review.md``): ``parsing`` (image-level parse, Segmentation),
``person_parts`` (the people's part maps composed, Segmentation), ``people`` (Detections with
instance masks, score, skin group and ITA), ``part_stats`` (per part class: area, fraction,
score, persons), the skin-tone summary, ``review_priority`` (:mod:`.priority`) and the row's
``status`` / ``error``. Tags: ``error``, ``skin:<group>``, ``low_confidence``, ``brightened``.

Samples a reviewer has tagged ``reviewed`` or ``rejected`` keep their labels on a rerun unless
``overwrite_reviewed`` is set.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import fiftyone as fo
import numpy as np
from fiftyone import ViewField as F

from m2fp_batch.annotate.palette import CIHP_CLASSES, hex_color
from m2fp_batch.review import masks as mk
from m2fp_batch.review.priority import parse_agreement, person_anomalies, review_priority, weighted_part_score

log = logging.getLogger(__name__)

FACE_ID = CIHP_CLASSES.index("Face")
SKIN_GROUPS = ("light", "medium", "dark", "unknown")
TAG_ERROR = "error"
TAG_LOW_CONFIDENCE = "low_confidence"
TAG_BRIGHTENED = "brightened"
SKIN_TAG_PREFIX = "skin:"
TAG_REVIEWED = "reviewed"
TAG_REJECTED = "rejected"
REVIEW_TAGS = (TAG_REVIEWED, TAG_REJECTED)
DEFAULT_LOW_SCORE = 0.5
INFO_KEY = "m2fp_batch"

# Saved views (name -> description); built by :func:`saved_views`.
VIEW_ERRORS = "errors"
VIEW_LOW_CONFIDENCE = "low-confidence"
VIEW_QUEUE = "review-queue"
VIEW_SKIN = {g: f"skin-{g}" for g in SKIN_GROUPS}


def is_auto_tag(tag: str) -> bool:
    """Tags the importer sets (recomputed on every import); every other tag belongs to reviewers."""
    return tag in (TAG_ERROR, TAG_LOW_CONFIDENCE, TAG_BRIGHTENED) or tag.startswith(SKIN_TAG_PREFIX)


def part_field_name(label: str) -> str:
    """A class name as a field name (``Left-arm`` -> ``Left_arm``)."""
    return label.replace("-", "_")


def mask_targets() -> dict[int, str]:
    """Class id -> CIHP class name for the ``parsing`` / ``person_parts`` masks (0 = Background)."""
    return {i: name for i, name in enumerate(CIHP_CLASSES) if name != "Human"}


def color_scheme() -> fo.ColorScheme:
    """The App colour scheme: the project's palette for both parse fields, white people."""
    colors = [{"intTarget": i, "color": hex_color(i)} for i in mask_targets() if i != 0]
    return fo.ColorScheme(
        color_by="value",
        fields=[
            {"path": "parsing", "maskTargetsColors": colors},
            {"path": "person_parts", "maskTargetsColors": colors},
            {"path": "people", "fieldColor": hex_color(CIHP_CLASSES.index("Human"))},
        ],
        default_mask_targets_colors=colors,
    )


@dataclass
class BuildStats:
    """What an import did."""

    rows: int = 0
    added: int = 0
    updated: int = 0
    kept_reviewed: int = 0
    errors: int = 0
    mask_files: int = 0
    seconds: float = 0.0
    schema_versions: set[int] = field(default_factory=set)

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["schema_versions"] = sorted(self.schema_versions)
        return d


def _skin(person: dict, schema_version: int) -> dict | None:
    """The person's skin tone struct; None for schema v1 (not measured there).

    Raises:
        mk.ReviewInputError: a v2+ row without ``persons[].skin_tone``.
    """
    if schema_version < 2:
        return None
    if "skin_tone" not in person:
        raise mk.ReviewInputError(f"schema v{schema_version} person without 'skin_tone': corrupt or foreign output")
    return person["skin_tone"]


def _brightness(row: dict) -> float | None:
    """The image's brightness factor (v2+), None when the schema has none."""
    if row["schema_version"] < 2:
        return None
    if "brightness_factor" not in row:
        raise mk.ReviewInputError(f"schema v{row['schema_version']} row without 'brightness_factor'")
    v = row["brightness_factor"]
    return None if v is None else float(v)


def _filepath(uri: str, image_root: Path | None) -> str:
    if "://" in uri:
        scheme, rest = uri.split("://", 1)
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


def sample_from_row(
    row: dict,
    source: Path,
    mask_dir: Path,
    image_root: Path | None = None,
    low_score: float = DEFAULT_LOW_SCORE,
) -> tuple[fo.Sample, int]:
    """One review sample from one job row; writes its mask PNGs. Returns (sample, files written)."""
    version = int(row["schema_version"])
    ok = row["status"] == "ok"
    sample = fo.Sample(filepath=_filepath(row["uri"], image_root))
    base = {
        "image_id": row["image_id"],
        "uri": row["uri"],
        "shard": row["shard"],
        "status": row["status"],
        "error": row["error"],
        "error_kind": row["error_kind"],
        "num_persons": row["num_persons"],
        "schema_version": version,
        "source_parquet": str(Path(source).resolve()),
        "skin_tone_available": version >= 2,
    }
    for k, v in base.items():
        sample[k] = v
    tags = []
    if not ok:
        tags.append(TAG_ERROR)
        sample.tags = tags
        for k in ("parsing", "person_parts", "people", "review_priority", "review_reasons"):
            sample[k] = None
        return sample, 0

    h, w = int(row["height"]), int(row["width"])
    sample.metadata = fo.ImageMetadata(width=w, height=h)
    folder = mk.mask_folder(mask_dir, row["image_id"])
    semantic = mk.semantic_map(row, (h, w))
    persons = mk.decode_persons(row)
    parts_map = mk.person_parts_map(persons, (h, w))
    mk.write_png(folder / "parsing.png", semantic)
    mk.write_png(folder / "person_parts.png", parts_map)
    files = 2
    sample["parsing"] = fo.Segmentation(mask_path=str(folder / "parsing.png"))
    sample["person_parts"] = fo.Segmentation(mask_path=str(folder / "person_parts.png"))

    detections, anomalies, per_person_part_score = [], [], []
    groups, itas = [], []
    for p in persons:
        x0, y0, x1, y1 = p.bbox
        crop = p.mask[y0:y1, x0:x1]
        mpath = folder / f"person_{p.index}.png"
        mk.write_png(mpath, crop.astype(np.uint8) * 255)
        files += 1
        pscore = weighted_part_score(p.part_areas, p.part_scores)
        per_person_part_score.append(pscore)
        face = p.part_masks[p.part_ids.index(FACE_ID)] if FACE_ID in p.part_ids else None
        anomalies += person_anomalies(p.index, p.part_ids, face)
        skin = _skin(p.row, version)
        group = None if skin is None else (skin.get("group") or "unknown")
        ita = None if skin is None or skin.get("ita") is None else float(skin["ita"])
        if group is not None:
            groups.append(group)
        if ita is not None:
            itas.append(ita)
        detections.append(
            fo.Detection(
                label="person",
                bounding_box=[x0 / w, y0 / h, (x1 - x0) / w, (y1 - y0) / h],
                mask_path=str(mpath),
                confidence=p.score,
                person_id=int(p.row["person_id"]),
                area=int(p.row["area"]),
                parts=[mk.class_name(i) for i in p.part_ids],
                part_score=pscore,
                skin_group=group,
                ita=ita,
                ita_category=None if skin is None else skin.get("ita_category"),
                monk=None if skin is None or skin.get("monk") is None else int(skin["monk"]),
                skin_confidence=None if skin is None or skin.get("confidence") is None else float(skin["confidence"]),
            )
        )
    sample["people"] = fo.Detections(detections=detections)

    agreement = parse_agreement(semantic, parts_map)
    prio = review_priority([p.score for p in persons], per_person_part_score, 1.0 - agreement, anomalies)
    sample["parse_agreement"] = agreement
    sample["review_priority"] = prio.score
    sample["review_reasons"] = prio.reasons()
    sample["anomalies"] = list(prio.anomalies)
    known = [s for s in per_person_part_score if s is not None]
    sample["min_person_score"] = min((p.score for p in persons), default=None)
    sample["min_part_score"] = min(known, default=None)
    sample["part_stats"] = _part_stats(persons)

    factor = _brightness(row)
    sample["brightness_factor"] = factor
    sample["skin_groups"] = sorted(set(groups)) if version >= 2 else None
    sample["ita_mean"] = float(np.mean(itas)) if itas else None
    if version >= 2:
        tags += [SKIN_TAG_PREFIX + g for g in sorted(set(groups))]
    low = sample["min_person_score"] is not None and sample["min_person_score"] < low_score
    low = low or (sample["min_part_score"] is not None and sample["min_part_score"] < low_score)
    if low:
        tags.append(TAG_LOW_CONFIDENCE)
    if factor is not None and factor > 1.0:
        tags.append(TAG_BRIGHTENED)
    sample.tags = tags
    return sample, files


def _part_stats(persons: list[mk.DecodedPerson]) -> fo.DynamicEmbeddedDocument:
    """Per part class over the image's people: pixels, share of the people's pixels, score, persons."""
    area: dict[int, int] = defaultdict(int)
    wscore: dict[int, float] = defaultdict(float)
    sarea: dict[int, int] = defaultdict(int)
    npers: dict[int, int] = defaultdict(int)
    total = sum(int(p.mask.sum()) for p in persons)
    for p in persons:
        for i, a, s in zip(p.part_ids, p.part_areas, p.part_scores, strict=True):
            area[i] += a
            npers[i] += 1
            if s is not None:
                wscore[i] += a * s
                sarea[i] += a
    doc = fo.DynamicEmbeddedDocument()
    for i in sorted(area):
        doc[part_field_name(mk.class_name(i))] = fo.DynamicEmbeddedDocument(
            area=area[i],
            fraction=area[i] / total if total else 0.0,
            score=wscore[i] / sarea[i] if sarea[i] else None,
            persons=npers[i],
        )
    return doc


def get_or_create_dataset(name: str) -> fo.Dataset:
    """The persistent dataset ``name`` (created with its unique ``image_id`` index)."""
    if fo.dataset_exists(name):
        ds = fo.load_dataset(name)
    else:
        ds = fo.Dataset(name, persistent=True)
    ds.persistent = True
    if "image_id" not in ds.get_field_schema():
        ds.add_sample_field("image_id", fo.StringField)
    ds.create_index("image_id", unique=True)
    return ds


def configure_dataset(ds: fo.Dataset) -> None:
    """Mask targets, colour scheme, default visible fields and saved views (idempotent)."""
    targets = mask_targets()
    ds.default_mask_targets = targets
    ds.mask_targets = {"parsing": targets, "person_parts": targets}
    ds.app_config.color_scheme = color_scheme()
    ds.app_config.active_fields = fo.DatasetAppConfig.default_active_fields(ds)
    ds.app_config.active_fields.paths = ["parsing", "people"]
    ds.save()
    for name, (view, description) in saved_views(ds).items():
        ds.save_view(name, view, description=description, overwrite=True)


def saved_views(ds: fo.Dataset) -> dict[str, tuple[fo.DatasetView, str]]:
    """Saved view name -> (view, description)."""
    views = {
        VIEW_ERRORS: (ds.match(F("status") == "error"), "images the job could not label"),
        VIEW_LOW_CONFIDENCE: (ds.match_tags(TAG_LOW_CONFIDENCE), "a person or part score below the threshold"),
        VIEW_QUEUE: (
            ds.match(F("status") == "ok")
            .match_tags(list(REVIEW_TAGS), bool=False)
            .sort_by("review_priority", reverse=True),
            "not yet reviewed, most likely wrong first (review_priority)",
        ),
    }
    for g, vname in VIEW_SKIN.items():
        views[vname] = (ds.match_tags(SKIN_TAG_PREFIX + g), f"images with a person of skin group '{g}'")
    return views


def build_review_dataset(
    output_dir: str | Path,
    name: str,
    mask_dir: str | Path | None = None,
    image_root: str | Path | None = None,
    low_score: float = DEFAULT_LOW_SCORE,
    overwrite_reviewed: bool = False,
    batch_size: int = 500,
) -> tuple[fo.Dataset, BuildStats]:
    """Create or update the dataset ``name`` from the Parquet files under ``output_dir``.

    Args:
        output_dir: the job's ``--output`` directory.
        name: FiftyOne dataset name (persistent).
        mask_dir: where the mask PNGs go (default ``output_dir/_review/masks``).
        image_root: base for relative or ``s3://`` image uris (see ``docs/review.md``).
        low_score: a person or part score below this tags the sample ``low_confidence``.
        overwrite_reviewed: also replace the labels of samples tagged ``reviewed``/``rejected``.
        batch_size: samples written to the database per batch.

    Raises:
        mk.ReviewInputError: no job output there, an unknown schema version, or a duplicate image id.
    """
    t0 = time.perf_counter()
    output_dir = Path(output_dir)
    files = mk.parquet_files(output_dir)
    mask_dir = Path(mask_dir) if mask_dir else output_dir / mk.REVIEW_DIRNAME / "masks"
    root = Path(image_root) if image_root else None
    ds = get_or_create_dataset(name)
    existing = dict(zip(*ds.values(["image_id", "tags"]), strict=True)) if len(ds) else {}
    stats = BuildStats()
    seen: set[str] = set()
    new: list[fo.Sample] = []
    upd: list[fo.Sample] = []

    def flush(final: bool = False) -> None:
        if new and (final or len(new) >= batch_size):
            ds.add_samples(new, dynamic=True, progress=False)
            stats.added += len(new)
            new.clear()
        if upd and (final or len(upd) >= batch_size):
            ds.merge_samples(upd, key_field="image_id", merge_lists=False, dynamic=True, progress=False)
            stats.updated += len(upd)
            upd.clear()

    for source, row in mk.iter_rows(files):
        iid = row["image_id"]
        if iid in seen:
            raise mk.ReviewInputError(f"image_id {iid!r} appears twice in {output_dir}: the ids must be unique")
        seen.add(iid)
        stats.rows += 1
        stats.schema_versions.add(int(row["schema_version"]))
        old_tags = existing.get(iid)
        if old_tags is not None and not overwrite_reviewed and any(t in REVIEW_TAGS for t in old_tags):
            stats.kept_reviewed += 1
            continue
        sample, nfiles = sample_from_row(row, source, mask_dir, root, low_score)
        stats.mask_files += nfiles
        stats.errors += row["status"] != "ok"
        if old_tags is None:
            new.append(sample)
        else:
            sample.tags = [t for t in old_tags if not is_auto_tag(t)] + list(sample.tags)
            upd.append(sample)
        flush()
    flush(final=True)
    info = dict(ds.info.get(INFO_KEY) or {})
    sources = set(info.get("sources", [])) | {str(output_dir.resolve())}
    info.update(
        sources=sorted(sources),
        mask_dir=str(mask_dir.resolve()),
        schema_versions=sorted(set(info.get("schema_versions", [])) | stats.schema_versions),
        low_score=low_score,
    )
    ds.info[INFO_KEY] = info
    configure_dataset(ds)
    stats.seconds = time.perf_counter() - t0
    log.info("review dataset %r: %s", name, stats.to_dict())
    return ds, stats


def iter_image_ids(ds: fo.Dataset) -> Iterable[str]:
    """The image ids of the dataset's samples."""
    return ds.values("image_id")
