"""The review's video dataset: one FiftyOne video sample per video of the job output, the labels of
its sampled frames on the frames they came from (see ``docs/review.md``).

A video's rows (schema v5: its sampled frames and, when it failed, its error row; ``docs/video.md``)
are converted like photos (:func:`.convert.sample_data`: mask PNGs, people, review fields) and
gathered here by ``video_id``; the samples are written once all rows are read. The dataset is
``<review dataset>-videos``, keyed by ``video_id`` (a unique index). A frame row's labels go on
FiftyOne frame ``frame_index + 1`` (1-based, counting decoded frames, so right for a variable frame
rate too); each person is a Detection whose ``index`` (FiftyOne's object-track id) is its
``track_id``, so the App shows one identity per person across the video.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field

import eta.core.utils as etau
import eta.core.video as etav

from m2fp_batch.review import masks as mk
from m2fp_batch.review.convert import (
    REVIEW_TAGS,
    TAG_ERROR,
    VIEW_ERRORS,
    VIEW_QUEUE,
    SampleData,
    is_auto_tag,
)
from m2fp_batch.review.fields import color_scheme, declare_row_fields, mask_targets, set_label_fields
from m2fp_batch.review.fo import fo
from m2fp_batch.schema import STATUS_ERROR, STATUS_OK

log = logging.getLogger(__name__)

__all__ = [
    "VIDEO_DATASET_SUFFIX",
    "VIDEO_SAMPLE_FIELDS",
    "VideoImport",
    "VideoRows",
    "configure_video_dataset",
    "frame_number",
    "get_or_create_video_dataset",
    "require_ffprobe",
    "video_dataset_name",
    "video_metadata",
    "video_sample",
]

VIDEO_DATASET_SUFFIX = "-videos"
# the row fields that describe the whole video: on the video sample, not repeated on its frames
VIDEO_SAMPLE_FIELDS = (
    "video_id",
    "uri",
    "source_parquet",
    "schema_version",
    "skin_tone_available",
    "video_fps",
    "video_width",
    "video_height",
    "video_duration_s",
)


def video_dataset_name(name: str) -> str:
    """The video dataset of the review dataset ``name``: ``<name>-videos``."""
    return name + VIDEO_DATASET_SUFFIX


def frame_number(frame_index: int) -> int:
    """FiftyOne's 1-based frame number of a sampled frame: its index among the decoded frames + 1.

    Not ``pts_seconds x fps + 1``: with a variable frame rate that lands on another frame.
    """
    return int(frame_index) + 1


@dataclass
class VideoRows:
    """One video's converted rows: its sampled frames and its error row (a failed video)."""

    frames: list[SampleData] = field(default_factory=list)
    error: SampleData | None = None

    def add(self, data: SampleData) -> None:
        if data.fields["frame_index"] is None:
            self.error = data
        else:
            self.frames.append(data)

    def first(self) -> SampleData:
        """A row of the video (the video-level fields are the same in all)."""
        return self.frames[0] if self.frames else self.error


def video_metadata(filepath: str, rows: VideoRows) -> fo.VideoMetadata:
    """ffprobe's metadata of the video file, with the frame size the frames were labelled at.

    ffprobe gives the coded size, before a phone video's rotation; the masks are upright, as the
    browser plays the video. A file ffprobe cannot read (moved, damaged) gets what the rows say.
    """
    ref = rows.first()
    size = ref.size or (ref.fields["video_width"], ref.fields["video_height"])
    try:
        meta = fo.VideoMetadata.build_for(filepath)
    except (etav.VideoStreamInfoError, etau.ExecutableRuntimeError, OSError) as e:
        log.warning("video %s: no metadata from ffprobe (%s); using the job's", filepath, str(e).splitlines()[0])
        meta = fo.VideoMetadata(frame_rate=ref.fields["video_fps"], duration=ref.fields["video_duration_s"])
    meta.frame_width, meta.frame_height = (int(v) if v is not None else None for v in size)
    return meta


def _sample_fields(rows: VideoRows) -> dict:
    """The video sample's own fields: the video columns, status and error, frames, tracks, priority."""
    ref, err = rows.first(), rows.error
    tracks = {d["track_id"] for f in rows.frames for d in f.people or [] if d.get("track_id") is not None}
    priorities = [f.fields["review_priority"] for f in rows.frames if f.fields.get("review_priority") is not None]
    failed = err is not None or any(f.fields["status"] != STATUS_OK for f in rows.frames)
    return {k: ref.fields[k] for k in VIDEO_SAMPLE_FIELDS} | {
        "status": STATUS_ERROR if failed else STATUS_OK,
        "error": None if err is None else err.fields["error"],
        "error_kind": None if err is None else err.fields["error_kind"],
        "error_position_s": None if err is None else err.fields["pts_seconds"],
        "frames_sampled": len(rows.frames),
        "track_ids": sorted(tracks),
        "review_priority": max(priorities, default=None),
    }


def video_sample(rows: VideoRows) -> fo.Sample:
    """The FiftyOne video sample of one video: its fields and the labels of its sampled frames."""
    ref = rows.first()
    sample = fo.Sample(filepath=ref.filepath, media_type="video")
    for k, v in _sample_fields(rows).items():
        sample[k] = v
    tags = {t for f in rows.frames for t in f.tags}
    sample.tags = sorted(tags | ({TAG_ERROR} if sample["status"] != STATUS_OK else set()))
    sample.metadata = video_metadata(ref.filepath, rows)
    for data in sorted(rows.frames, key=lambda d: d.fields["frame_index"]):
        frame = fo.Frame()
        set_label_fields(frame, data, skip=VIDEO_SAMPLE_FIELDS)
        sample.frames[frame_number(data.fields["frame_index"])] = frame
    return sample


def _existing_tags(name: str) -> dict[str, list[str]]:
    """video_id -> tags of the samples already in the video dataset ``name`` (none: empty)."""
    if not fo.dataset_exists(name):
        return {}
    ds = fo.load_dataset(name)
    return dict(zip(*ds.values(["video_id", "tags"]), strict=True)) if len(ds) else {}


def require_ffprobe() -> None:
    """FiftyOne reads a video's metadata with ffprobe (the Debian package ``ffmpeg``).

    Raises:
        mk.ReviewInputError: ffprobe is not on the PATH.
    """
    if shutil.which("ffprobe") is None:
        raise mk.ReviewInputError(
            "the output holds videos and FiftyOne needs ffprobe for them: install ffmpeg "
            "(`make browser-deps`, or apt-get install ffmpeg)"
        )


def get_or_create_video_dataset(name: str) -> fo.Dataset:
    """The persistent video dataset ``name`` (created with its unique ``video_id`` index)."""
    ds = fo.load_dataset(name) if fo.dataset_exists(name) else fo.Dataset(name, persistent=True)
    ds.persistent = True
    if ds.media_type is None:
        ds.media_type = "video"
    if "video_id" not in ds.get_field_schema():
        ds.add_sample_field("video_id", fo.StringField)
    if "track_ids" not in ds.get_field_schema():
        ds.add_sample_field("track_ids", fo.ListField, subfield=fo.IntField)
    declare_row_fields(ds, frames=True)
    ds.create_index("video_id", unique=True)
    return ds


def configure_video_dataset(ds: fo.Dataset) -> None:
    """Mask targets and colours of the frame labels, visible fields, saved views (idempotent; saves ``ds``)."""
    ds.add_dynamic_sample_fields()
    ds.add_dynamic_frame_fields()
    targets = mask_targets()
    ds.default_mask_targets = targets
    ds.mask_targets = {"frames.parsing": targets, "frames.person_parts": targets}
    ds.app_config.color_scheme = color_scheme("frames.")
    ds.app_config.active_fields = fo.DatasetAppConfig.default_active_fields(ds)
    ds.app_config.active_fields.paths = ["frames.parsing", "frames.people"]
    ds.save()
    for path in ("status", "review_priority", "tags"):
        ds.create_index(path)
    F = fo.ViewField
    views = {
        VIEW_ERRORS: (ds.match(F("status") == STATUS_ERROR), "videos the job could not read to the end"),
        VIEW_QUEUE: (
            ds.match_tags(list(REVIEW_TAGS), bool=False).sort_by("review_priority", reverse=True),
            "videos not yet reviewed, the one with the most likely wrong frame first",
        ),
    }
    for vname, (view, description) in views.items():
        ds.save_view(vname, view, description=description, overwrite=True)


def _chunks(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


@dataclass
class VideoImport:
    """The video rows of one import, gathered by ``video_id``, and what writing them did."""

    name: str  # the video dataset
    existing: dict[str, list[str]]  # video_id -> tags, of the samples there before the import
    videos: dict[str, VideoRows] = field(default_factory=dict)
    added: int = 0
    updated: int = 0
    frames: int = 0

    @classmethod
    def open(cls, name: str) -> VideoImport:
        """The import into the video dataset ``name`` (nothing is created before a video row comes)."""
        return cls(name, _existing_tags(name))

    def keeps(self, video_id: str, overwrite_reviewed: bool) -> bool:
        """Whether the video's sample is a reviewer's (tagged reviewed/rejected) and stays as it is."""
        tags = self.existing.get(video_id)
        return tags is not None and not overwrite_reviewed and any(t in REVIEW_TAGS for t in tags)

    def add(self, data: SampleData) -> None:
        """Gather one converted video row."""
        self.videos.setdefault(data.fields["video_id"], VideoRows()).add(data)

    def write(self, batch_size: int) -> fo.Dataset | None:
        """Replace the gathered videos' samples (keeping the reviewers' tags); None when there are none."""
        if not self.videos:
            return None
        require_ffprobe()
        ds = get_or_create_video_dataset(self.name)
        replaced = [v for v in self.videos if v in self.existing]
        self.added, self.updated = len(self.videos) - len(replaced), len(replaced)
        if replaced:
            ds.delete_samples(ds.match(fo.ViewField("video_id").is_in(replaced)))
        for chunk in _chunks(sorted(self.videos), max(1, batch_size // 100)):
            samples = []
            for vid in chunk:
                sample = video_sample(self.videos.pop(vid))
                sample.tags = [t for t in self.existing.get(vid, []) if not is_auto_tag(t)] + sample.tags
                self.frames += len(sample.frames)
                samples.append(sample)
            ds.add_samples(samples, dynamic=False, progress=False)
        return ds
