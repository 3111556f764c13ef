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

import hashlib
import json
import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from m2fp_batch.review import masks as mk
from m2fp_batch.review.convert import (
    DEFAULT_LOW_SCORE,
    REVIEW_TAGS,
    SKIN_TAG_PREFIX,
    TAG_BRIGHTENED,
    TAG_ERROR,
    TAG_LOW_CONFIDENCE,
    VIEW_ERRORS,
    VIEW_LOW_CONFIDENCE,
    VIEW_QUEUE,
    VIEW_SKIN,
    SampleData,
    is_auto_tag,
    is_video_row,
    part_field_name,
    sample_data_star,
)
from m2fp_batch.review.fields import INFO_KEY, color_scheme, declare_row_fields, mask_targets, set_label_fields
from m2fp_batch.review.fo import fo
from m2fp_batch.review.videos import VideoImport, configure_video_dataset, video_dataset_name
from m2fp_batch.schema import STATUS_ERROR, STATUS_OK

log = logging.getLogger(__name__)
__all__ = [
    "DEFAULT_LOW_SCORE",
    "REVIEW_TAGS",
    "TAG_BRIGHTENED",
    "TAG_ERROR",
    "TAG_LOW_CONFIDENCE",
    "BuildStats",
    "build_review_dataset",
    "is_auto_tag",
    "part_field_name",
    "sample_from_data",
]


@dataclass
class BuildStats:
    """What an import did."""

    rows: int = 0
    added: int = 0
    updated: int = 0
    kept_reviewed: int = 0
    errors: int = 0
    video_dataset: str | None = None  # the video dataset, when the output holds videos
    videos_added: int = 0
    videos_updated: int = 0
    frames: int = 0  # sampled frames on the video samples
    mask_files: int = 0
    seconds: float = 0.0
    schema_versions: set[int] = field(default_factory=set)

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["schema_versions"] = sorted(self.schema_versions)
        return d


def label_fingerprint(sample: fo.Sample) -> str:
    """A digest of the label fields as imported (mask files, boxes, labels, scores, skin groups).

    The import stores it in ``imported_labels``; the export reuses the job's labels unchanged when
    the digest still matches and no mask file changed since the import (see :mod:`.export`).
    """
    parts = []
    for path in ("parsing", "person_parts"):
        label = sample[path] if sample.has_field(path) else None
        parts.append(None if label is None else (label.mask_path, label.mask is not None))
    people = sample["people"] if sample.has_field("people") else None
    for det in [] if people is None else people.detections:
        parts.append(
            (
                det.label,
                [round(v, 6) for v in det.bounding_box],
                det.mask_path,
                det.mask is not None,
                None if det.confidence is None else round(det.confidence, 6),
                det["skin_group"] if det.has_field("skin_group") else None,
                det["person_id"] if det.has_field("person_id") else None,
            )
        )
    return hashlib.sha1(json.dumps(parts).encode()).hexdigest()


def sample_from_data(data: SampleData) -> fo.Sample:
    """A FiftyOne image sample from :func:`.convert.sample_data`'s plain description.

    The media type is ``image`` whatever the file's name (a photo named ``.mov`` is still a photo).
    """
    sample = fo.Sample(filepath=data.filepath, media_type="image")
    set_label_fields(sample, data)
    sample.tags = list(data.tags)
    if data.size is not None:
        w, h = data.size
        sample.metadata = fo.ImageMetadata(width=w, height=h)
    sample["imported_labels"] = label_fingerprint(sample)
    sample["imported_at"] = time.time()
    return sample


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def get_or_create_dataset(name: str) -> fo.Dataset:
    """The persistent dataset ``name`` (created with its unique ``image_id`` index)."""
    if fo.dataset_exists(name):
        ds = fo.load_dataset(name)
    else:
        ds = fo.Dataset(name, persistent=True)
    ds.persistent = True
    if "image_id" not in ds.get_field_schema():
        ds.add_sample_field("image_id", fo.StringField)
    declare_row_fields(ds)
    ds.create_index("image_id", unique=True)
    return ds


def create_query_indexes(ds: fo.Dataset) -> None:
    """Indexes the App's filters and the review queue sort use (kept small: one per field)."""
    for path in ("status", "review_priority", "tags"):
        if path in ds.get_field_schema():
            ds.create_index(path)


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
        VIEW_ERRORS: (ds.match(fo.ViewField("status") == STATUS_ERROR), "images the job could not label"),
        VIEW_LOW_CONFIDENCE: (ds.match_tags(TAG_LOW_CONFIDENCE), "a person or part score below the threshold"),
        VIEW_QUEUE: (
            ds.match(fo.ViewField("status") == STATUS_OK)
            .match_tags(list(REVIEW_TAGS), bool=False)
            .sort_by("review_priority", reverse=True),
            "not yet reviewed, most likely wrong first (review_priority)",
        ),
    }
    for g, vname in VIEW_SKIN.items():
        views[vname] = (ds.match_tags(SKIN_TAG_PREFIX + g), f"images with a person of skin group '{g}'")
    return views


@dataclass
class _Import:
    """One import's running state: the samples waiting to be written, and the counts."""

    ds: fo.Dataset
    existing: dict[str, list[str]]  # image_id -> tags, of the samples there before the import
    batch_size: int
    videos: VideoImport  # the videos' rows go to the video dataset
    stats: BuildStats = field(default_factory=BuildStats)
    new: list[fo.Sample] = field(default_factory=list)
    updated: list[fo.Sample] = field(default_factory=list)

    def keeps(self, image_id: str, overwrite_reviewed: bool) -> bool:
        """Whether the sample is a reviewer's (tagged reviewed/rejected) and stays as it is."""
        old_tags = self.existing.get(image_id)
        return old_tags is not None and not overwrite_reviewed and any(t in REVIEW_TAGS for t in old_tags)

    def add(self, data: SampleData) -> None:
        """Queue one converted row (new, or an update keeping the reviewers' tags); write full batches.

        A video's rows are gathered for the video dataset instead (:class:`.videos.VideoImport`).
        """
        self.stats.mask_files += data.files
        self.stats.errors += data.fields["status"] != STATUS_OK
        if data.fields.get("video_id") is not None:
            self.videos.add(data)
            return
        sample = sample_from_data(data)
        old_tags = self.existing.get(data.fields["image_id"])
        if old_tags is None:
            self.new.append(sample)
        else:
            sample.tags = [t for t in old_tags if not is_auto_tag(t)] + list(sample.tags)
            self.updated.append(sample)
        self.flush()

    def flush(self, final: bool = False) -> None:
        """Write the queued samples once a batch is full (all of them when ``final``)."""
        if self.new and (final or len(self.new) >= self.batch_size):
            self.ds.add_samples(self.new, dynamic=False, progress=False)
            self.stats.added += len(self.new)
            self.new.clear()
        if self.updated and (final or len(self.updated) >= self.batch_size):
            self.ds.merge_samples(self.updated, key_field="image_id", merge_lists=False, dynamic=False, progress=False)
            self.stats.updated += len(self.updated)
            self.updated.clear()


def _pending(
    source: mk.LabelSource, output_dir: Path, imp: _Import, overwrite_reviewed: bool, options: tuple
) -> Iterator[tuple]:
    """:func:`.convert.sample_data`'s arguments for every row to import (reviewers' samples skipped:
    for a video, all its rows when its video sample is a reviewer's).

    Raises:
        mk.ReviewInputError: an image id appears twice.
    """
    seen: set[str] = set()
    for path, row in mk.iter_rows(source):
        iid = row["image_id"]
        if iid in seen:
            raise mk.ReviewInputError(f"image_id {iid!r} appears twice in {output_dir}: the ids must be unique")
        seen.add(iid)
        imp.stats.rows += 1
        imp.stats.schema_versions.add(int(row["schema_version"]))
        video = is_video_row(row)
        if imp.videos.keeps(row["video_id"], overwrite_reviewed) if video else imp.keeps(iid, overwrite_reviewed):
            imp.stats.kept_reviewed += 1
            continue
        yield (row, str(Path(path).resolve()), *options)


def _convert(jobs: Iterable[tuple], workers: int, consume: Callable[[SampleData], None]) -> None:
    """Run :func:`.convert.sample_data` over ``jobs`` (in ``workers`` processes when > 1), in order."""
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) if workers > 1 else None
    try:
        for chunk in _chunks(jobs, 64 * workers):
            for data in pool.map(sample_data_star, chunk, chunksize=8) if pool else map(sample_data_star, chunk):
                consume(data)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def _record_sources(
    ds: fo.Dataset, output_dir: Path, mask_dir: Path, versions: set[int], low_score: float, **names: str | None
) -> None:
    """Add this import's source, mask dir, schema versions, threshold and the companion dataset
    (``image_dataset`` / ``video_dataset``) to ``ds.info``."""
    info = dict(ds.info.get(INFO_KEY) or {})
    info.update({k: v for k, v in names.items() if v is not None})
    sources = set(info.get("sources", [])) | {str(output_dir.resolve())}
    info.update(
        sources=sorted(sources),
        mask_dir=str(mask_dir.resolve()),
        schema_versions=sorted(set(info.get("schema_versions", [])) | versions),
        low_score=low_score,
    )
    ds.info[INFO_KEY] = info


def build_review_dataset(
    output_dir: str | Path,
    name: str,
    mask_dir: str | Path | None = None,
    image_root: str | Path | None = None,
    low_score: float = DEFAULT_LOW_SCORE,
    overwrite_reviewed: bool = False,
    batch_size: int = 500,
    workers: int | None = None,
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
        workers: processes decoding masks and writing PNGs (default min(4, CPUs); 1 = in this process).

    Raises:
        mk.ReviewInputError: no job output there, an unknown schema version, or a duplicate image id.
    """
    t0 = time.perf_counter()
    output_dir = Path(output_dir)
    source = mk.open_job_output(output_dir)
    mask_dir = Path(mask_dir) if mask_dir else output_dir / mk.REVIEW_DIRNAME / "masks"
    root = Path(image_root) if image_root else None
    ds = get_or_create_dataset(name)
    existing = dict(zip(*ds.values(["image_id", "tags"]), strict=True)) if len(ds) else {}
    imp = _Import(ds, existing, batch_size, VideoImport.open(video_dataset_name(name)))
    jobs = _pending(source, output_dir, imp, overwrite_reviewed, (mask_dir, root, low_score))
    _convert(jobs, max(1, workers if workers is not None else min(4, os.cpu_count() or 1)), imp.add)
    imp.flush(final=True)
    vds = imp.videos.write(batch_size)
    if vds is not None:
        _record_sources(vds, output_dir, mask_dir, imp.stats.schema_versions, low_score, image_dataset=name)
        configure_video_dataset(vds)
        imp.stats.video_dataset = vds.name
        imp.stats.videos_added, imp.stats.videos_updated = imp.videos.added, imp.videos.updated
        imp.stats.frames = imp.videos.frames
    _record_sources(
        ds, output_dir, mask_dir, imp.stats.schema_versions, low_score, video_dataset=imp.stats.video_dataset
    )
    # declare the people's attributes and the part_stats sub-fields once (filterable in the App),
    # instead of inferring them sample by sample during the import (the slow path of FiftyOne)
    ds.add_dynamic_sample_fields()
    create_query_indexes(ds)
    configure_dataset(ds)
    imp.stats.seconds = time.perf_counter() - t0
    log.info("review dataset %r: %s", name, imp.stats.to_dict())
    return ds, imp.stats
