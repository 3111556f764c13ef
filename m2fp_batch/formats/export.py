"""``export(source, out, fmt)``: a job output (or export-reviewed dir) as a CIHP, COCO, CVAT or VIP dataset.

Only ``ok`` rows whose labels no reviewer rejected are exported; error rows and rejected rows
are skipped and counted. The dataset is written into a temporary sibling of ``out`` and renamed
into place when complete: a crash never leaves a half-valid dataset under ``out``, and a rerun
replaces a previous export (``export.json`` marks a directory as one of ours; any other
non-empty ``out`` is refused).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from m2fp_batch.decode import DEFAULT_MAX_PIXELS, ImageError, decode_image
from m2fp_batch.errors import UserError
from m2fp_batch.formats import cihp, coco, cvat, vip
from m2fp_batch.labels import LabelSource, is_frame, label_maps, open_labels, row_pixels
from m2fp_batch.labels.reader import check_version
from m2fp_batch.schema import REJECTED, REVIEW_STATUS, STATUS_OK
from m2fp_batch.storage import DEFAULT_MAX_BYTES, Filesystems

__all__ = ["FORMATS", "SUMMARY_FILE", "ExportSummary", "FormatExportError", "export"]

log = logging.getLogger(__name__)

FORMATS = ("cihp", "coco", "cvat-mask", "vip")
SUMMARY_FILE = "export.json"
PROGRESS_EVERY_S = 10.0
_SPLIT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
FRAME_COLUMNS = ("video_id", "frame_index", "pts_seconds")  # null or absent for photos
IMAGE_COLUMNS = ("schema_version", "image_id", "uri", "status", "width", "height", REVIEW_STATUS, *FRAME_COLUMNS)
PERSON_COLUMNS = (*IMAGE_COLUMNS, "persons")
ROW_COLUMNS = (*PERSON_COLUMNS, "semantic")  # PERSON_COLUMNS has FRAME_COLUMNS (via IMAGE_COLUMNS)


class FormatExportError(UserError, ValueError):
    """The export cannot start (bad source, bad --out, bad split); the message says why."""


@dataclass
class ExportSummary:
    """What an export wrote and skipped (also saved as ``OUT/export.json``)."""

    format: str
    split: str
    source: str
    out: str
    rows: int = 0
    images: int = 0
    persons: int = 0
    skipped_errors: int = 0
    skipped_rejected: int = 0
    skipped_photos: int = 0  # vip: the format holds videos only
    videos: int = 0  # vip: the videos written
    unreadable_images: list[str] = field(default_factory=list)  # image ids whose photo could not be read
    seconds: float = 0.0


class _Progress:
    """Logs how far a long export is, at most every ``PROGRESS_EVERY_S`` seconds."""

    def __init__(self, total: int, what: str) -> None:
        self.total, self.what, self.done = total, what, 0
        self.t0 = self.last = time.perf_counter()

    def step(self) -> None:
        self.done += 1
        now = time.perf_counter()
        if now - self.last >= PROGRESS_EVERY_S or self.done == self.total:
            self.last = now
            pct, rate = 100 * self.done / self.total, self.done / max(now - self.t0, 1e-9)
            log.info("export %s: %d/%d rows (%.0f%%), %.1f rows/s", self.what, self.done, self.total, pct, rate)


def _check_out(out: Path, source: LabelSource) -> None:
    if out.exists() and not out.is_dir():
        raise FormatExportError(f"--out {out} is a file: give a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / SUMMARY_FILE).is_file():
        raise FormatExportError(f"--out {out} exists and is not an m2fp-batch export: choose a new or empty directory")
    if "://" not in source.uri:
        src = Path(source.root).resolve()
        if out == src or src in out.parents:
            raise FormatExportError(f"--out {out} is inside the source {src}: choose a directory outside it")


def _rows(
    source: LabelSource, columns: tuple[str, ...], what: str, summary: ExportSummary | None = None
) -> Iterator[dict[str, Any]]:
    """The exportable rows, one shard in memory at a time; counts what is skipped into ``summary``."""
    progress = _Progress(sum(source.read_file(f, ["status"]).num_rows for f in source.files), what)
    for path, table in source.iter_tables(columns):
        for batch in table.to_batches(max_chunksize=64):
            for row in batch.to_pylist():
                check_version(row, source.file_uri(path))
                progress.step()
                if summary is not None:
                    summary.rows += 1
                    summary.skipped_errors += row["status"] != STATUS_OK
                    summary.skipped_rejected += row["status"] == STATUS_OK and row.get(REVIEW_STATUS) == REJECTED
                if row["status"] == STATUS_OK and row.get(REVIEW_STATUS) != REJECTED:
                    yield row


def _image(row: dict[str, Any], fss: Filesystems, max_pixels: int, summary: ExportSummary) -> tuple[Any, bytes] | None:
    """The pixels a row labels and its JPEG: a JPEG photo's own bytes, else the pixels encoded (a video
    frame: read from its video, :func:`m2fp_batch.labels.row_pixels`). None, logged and counted in
    ``summary.unreadable_images``, when it cannot be read or no longer has the labels' size."""
    try:
        if is_frame(row):
            pixels = row_pixels(row, fss, max_pixels)
            jpeg = cihp.encode_jpeg(pixels)
        else:
            data = fss.read_bytes(row["uri"], DEFAULT_MAX_BYTES)
            pixels = decode_image(data, max_pixels=max_pixels)
            jpeg = cihp.image_bytes_for_jpeg(data, pixels)
    except (OSError, ValueError, ImageError) as e:
        log.warning("export: skipping %s: cannot read its image %s: %s", row["image_id"], row["uri"], e)
        summary.unreadable_images.append(str(row["image_id"]))
        return None
    if pixels.shape[:2] != (int(row["height"]), int(row["width"])):
        log.warning("export: skipping %s: %s changed size since the job", row["image_id"], row["uri"])
        summary.unreadable_images.append(str(row["image_id"]))
        return None
    return pixels, jpeg


def _write_cihp(source: LabelSource, tmp: Path, summary: ExportSummary, max_pixels: int) -> None:
    for d in (cihp.IMAGE_DIR, cihp.CATEGORY_DIR, cihp.HUMAN_DIR, cihp.INSTANCE_DIR):
        (tmp / d).mkdir(parents=True)
    fss = Filesystems()

    def records() -> Iterator[dict[str, Any]]:
        for row in _rows(source, ROW_COLUMNS, "cihp", summary):
            image = _image(row, fss, max_pixels, summary)
            if image is None:
                continue
            maps = label_maps(row)
            cihp.write_sample(tmp, maps, image[1])
            summary.images += 1
            summary.persons += len(maps.skin_tones)
            yield cihp.meta_record(row, maps)

    cihp.write_index(tmp, summary.split, records())


def _coco_images(source: LabelSource, tmp: Path, summary: ExportSummary, max_pixels: int) -> Iterator[str]:
    """The JSON of each ``images`` entry; a video frame's pixels are written to ``frames/<name>.jpg`` (its
    ``file_name``), a frame that cannot be read is left out (its id in ``summary.unreadable_images``)."""
    fss = Filesystems()
    for k, row in enumerate(_rows(source, IMAGE_COLUMNS, "coco images", summary)):
        entry = coco.image_entry(row, k + 1)
        if is_frame(row):
            image = _image(row, fss, max_pixels, summary)
            if image is None:
                continue
            (tmp / coco.FRAME_DIR).mkdir(exist_ok=True)
            (tmp / entry["file_name"]).write_bytes(image[1])
        summary.images += 1
        yield json.dumps(entry)


def _write_coco(source: LabelSource, tmp: Path, summary: ExportSummary, max_pixels: int) -> None:
    """Stream the JSON: images in a first pass over the rows, annotations in a second (bounded memory)."""
    head = json.dumps(coco.header(f"m2fp-batch labels of {source.uri}"))[:-1]
    with open(tmp / f"{summary.split}.json", "w") as f:
        f.write(head + ', "images": [')
        for k, entry in enumerate(_coco_images(source, tmp, summary, max_pixels)):
            f.write(("," if k else "") + entry)
        f.write('], "annotations": [')
        next_id, left_out = 1, set(summary.unreadable_images)
        for k, row in enumerate(_rows(source, PERSON_COLUMNS, "coco annotations")):
            if row["image_id"] in left_out:
                continue
            for ann in coco.annotations(row, k + 1, next_id):
                f.write(("," if next_id > 1 else "") + json.dumps(ann))
                next_id += 1
            summary.persons += len(row.get("persons") or [])
        f.write("]}")


def _first_fresh_ids(source: LabelSource) -> dict[str, int]:
    """Video id -> the first human id above its tracks (for people without a track), from a first pass."""
    top: dict[str, int] = {}
    for row in _rows(source, ("schema_version", "status", REVIEW_STATUS, *FRAME_COLUMNS, "persons"), "vip tracks"):
        if is_frame(row):
            tracks = [int(p["track_id"]) for p in row.get("persons") or [] if p.get("track_id") is not None]
            top[row["video_id"]] = max([top.get(row["video_id"], 0), *(t + 1 for t in tracks)])
    return {v: t + 1 for v, t in top.items()}


def _write_vip(source: LabelSource, tmp: Path, summary: ExportSummary, max_pixels: int) -> None:
    """VIP (:mod:`.vip`): the frames of each video; photos are skipped and counted."""
    fresh, fss, frames = _first_fresh_ids(source), Filesystems(), []

    def records() -> Iterator[dict[str, Any]]:
        for row in _rows(source, ROW_COLUMNS, "vip", summary):
            if not is_frame(row):
                summary.skipped_photos += 1
                continue
            image = _image(row, fss, max_pixels, summary)
            if image is None:
                continue
            maps = label_maps(row)
            ids, fresh[row["video_id"]] = vip.human_ids(row, fresh.get(row["video_id"], 1))
            frames.append(vip.write_frame(tmp, row, maps, image[1], ids))
            summary.images += 1
            summary.persons += len(ids)
            yield vip.meta_record(row, maps, ids)

    with open(tmp / cihp.meta_file(summary.split), "w") as meta:
        meta.writelines(json.dumps(rec) + "\n" for rec in records())
    summary.videos, _ = vip.write_lists(tmp, summary.split, frames)


def _write_cvat(source: LabelSource, tmp: Path, summary: ExportSummary) -> None:
    """CVAT's Segmentation mask 1.1 (:mod:`.cvat`): the masks only; CVAT has the images in its task."""
    cvat.write_labelmap(tmp)
    names = []
    for row in _rows(source, ROW_COLUMNS, "cvat-mask", summary):
        name = cvat.write_item(tmp, row)
        if name is None:
            summary.unreadable_images.append(str(row["image_id"]))
            continue
        names.append(name)
        summary.images += 1
        summary.persons += len(row.get("persons") or [])
    cvat.write_names(tmp, names)


def _replace(tmp: Path, out: Path) -> None:
    """Put ``tmp`` at ``out``, replacing a previous export (two renames; the old one is then removed)."""
    old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def export(source: str | Path, out: str | Path, fmt: str, split: str = "train") -> ExportSummary:
    """Export the labels at ``source`` (local or ``s3://``) to the local dir ``out`` as ``fmt``.

    Raises:
        FormatExportError: unknown format, bad split name, ``out`` is a file, someone else's directory
            or inside the source.
        LabelsError: the source is not a job output / export-reviewed dir.
    """
    if fmt not in FORMATS:
        raise FormatExportError(f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if not _SPLIT.match(split):
        raise FormatExportError(f"split name {split!r} must be letters, digits, '_', '-' or '.' (e.g. train, val)")
    t0 = time.perf_counter()
    labels = open_labels(source)
    out = Path(out).expanduser().resolve()
    _check_out(out, labels)
    summary = ExportSummary(fmt, split, str(source), str(out))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        max_pixels = int((labels.job_settings() or {}).get("max_pixels") or DEFAULT_MAX_PIXELS)
        if fmt == "cihp":
            _write_cihp(labels, tmp, summary, max_pixels)
        elif fmt == "coco":
            _write_coco(labels, tmp, summary, max_pixels)
        elif fmt == "vip":
            _write_vip(labels, tmp, summary, max_pixels)
        else:
            _write_cvat(labels, tmp, summary)
        summary.seconds = round(time.perf_counter() - t0, 3)
        (tmp / SUMMARY_FILE).write_text(json.dumps(asdict(summary), indent=2) + "\n")
        _replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("export: %s", {k: v for k, v in asdict(summary).items() if k != "unreadable_images"})
    return summary
