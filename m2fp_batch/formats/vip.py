"""The VIP (Video instance-level Parsing) release layout: per-video folders of frames and label maps.

::

    DIR/Images/<video>/<frame>.jpg                     the sampled frame (its pixels, JPEG-encoded)
    DIR/Annotations/Category_ids/<video>/<frame>.png   class id per pixel (uint8): the semantic map
    DIR/Annotations/Human_ids/<video>/<frame>.png      human id per pixel, 0 background: the person's
                                                       identity in the video (track_id + 1)
    DIR/Annotations/Instance_ids/<video>/<frame>.png   (person, part) instance id per pixel, 0 background
    DIR/Annotations/Instance_ids/<video>/<frame>.txt   one line per instance: "instance_id category_id human_id"
    DIR/lists/<split>_videos.txt                       the videos of the split, one per line
    DIR/lists/<split>_id.txt                           its frames, "<video>/<frame>", one per line
    DIR/<split>_meta.jsonl                             per frame: the CIHP export's meta record (job
                                                       image_id, uri, persons, instances) with VIP ids

``<video>`` is the job's ``video_id`` when it is a safe file name, else ``id-<sha1>``
(:func:`m2fp_batch.labels.layout.safe_name`); ``<frame>`` the frame's ``frame_index`` in 12 digits,
as the release names its frames. The maps are the CIHP export's (:func:`.cihp.write_label_pngs`),
except that a person's human id is its identity across the video's frames, as in VIP: ``track_id + 1``.
A person without a track (one a reviewer added) gets a fresh id above the video's tracks, its own.
The layout is the release's ``VIP_Fine`` folder (docs/formats.md cites where it is described).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from m2fp_batch.formats import cihp
from m2fp_batch.labels import LabelMaps
from m2fp_batch.labels.layout import safe_name

__all__ = [
    "ANNOTATIONS_DIR",
    "IMAGE_DIR",
    "LISTS_DIR",
    "frame_name",
    "frame_path",
    "human_ids",
    "meta_record",
    "video_name",
    "write_frame",
    "write_lists",
]

IMAGE_DIR = "Images"
ANNOTATIONS_DIR = "Annotations"
LISTS_DIR = "lists"
FRAME_DIGITS = 12  # the release's frame file names: 000000000001.jpg


def video_name(video_id: str) -> str:
    """The folder of a video."""
    return safe_name(str(video_id))


def frame_name(frame_index: int) -> str:
    """The file stem of a frame."""
    return f"{int(frame_index):0{FRAME_DIGITS}d}"


def frame_path(row: Mapping[str, Any]) -> str:
    """``<video>/<frame>``: where a frame row's files are below each top folder (its id in the lists)."""
    return f"{video_name(row['video_id'])}/{frame_name(row['frame_index'])}"


def human_ids(row: Mapping[str, Any], fresh: int) -> tuple[list[int], int]:
    """The VIP human id of each person of a frame row (``track_id + 1``; an untracked person the next
    of the video's fresh ids, from ``fresh``), and the video's next fresh id."""
    ids = []
    for p in row.get("persons") or []:
        if p.get("track_id") is None:
            ids.append(fresh)
            fresh += 1
        else:
            ids.append(int(p["track_id"]) + 1)
    return ids, fresh


def write_frame(root: Path, row: Mapping[str, Any], maps: LabelMaps, jpeg: bytes, ids: list[int]) -> str:
    """Write one frame's JPEG, three label PNGs and instance list; returns its ``<video>/<frame>``."""
    name = frame_path(row)
    dirs = {d: root / ANNOTATIONS_DIR / d for d in (cihp.CATEGORY_DIR, cihp.HUMAN_DIR, cihp.INSTANCE_DIR)}
    for d in (root / IMAGE_DIR, *dirs.values()):
        (d / name).parent.mkdir(parents=True, exist_ok=True)
    (root / IMAGE_DIR / f"{name}.jpg").write_bytes(jpeg)
    lut = np.array([0, *ids], np.int64)  # person k of the row (k + 1 in maps.humans) -> its human id
    cihp.write_label_pngs({d: p / f"{name}.png" for d, p in dirs.items()}, maps.semantic, lut[maps.humans], maps.parts)
    lines = [f"{i.instance_id} {i.label_id} {ids[i.person_id]}\n" for i in maps.instances]
    (dirs[cihp.INSTANCE_DIR] / f"{name}.txt").write_text("".join(lines))
    return name


def meta_record(row: Mapping[str, Any], maps: LabelMaps, ids: list[int]) -> dict[str, Any]:
    """The ``<split>_meta.jsonl`` line of one frame: :func:`.cihp.meta_record` with the VIP human ids."""
    rec = cihp.meta_record(row, maps)
    for k, person in enumerate(rec["persons"]):
        person["human_id"] = ids[k]
    rec["instances"] = [[i.instance_id, ids[i.person_id], i.label_id] for i in maps.instances]
    return rec | {"id": frame_path(row)}


def write_lists(root: Path, split: str, frames: Iterable[str]) -> tuple[int, int]:
    """``lists/<split>_videos.txt`` and ``lists/<split>_id.txt``, sorted; returns (videos, frames)."""
    names = sorted(set(frames))
    videos = sorted({n.split("/", 1)[0] for n in names})
    (root / LISTS_DIR).mkdir(parents=True, exist_ok=True)
    (root / LISTS_DIR / f"{split}_videos.txt").write_text("".join(f"{v}\n" for v in videos))
    (root / LISTS_DIR / f"{split}_id.txt").write_text("".join(f"{n}\n" for n in names))
    return len(videos), len(names)
