"""COCO: one JSON with images, categories (the parsing classes and ``person``) and annotations.

Per image one annotation per person (category ``person``) and one per part of each person (its
CIHP class), each with the job's mask as a COCO RLE (``counts`` a string, as pycocotools writes
it), ``bbox`` [x, y, w, h], ``area``, ``iscrowd`` 0. A part names its person (``person_id``, the
person's index in the image, and ``person_annotation_id``); a person carries its skin tone in
``attributes`` (``skin_tone`` group, ``ita``, ``ita_category``, ``monk``, ``hue``, ``pixels``,
``source``; a video frame's person also its ``track_id``). ``file_name`` is the image's uri (an
absolute path or ``s3://``); ``m2fp_image_id`` the job's ``image_id``. A video frame has no file of
its own: its pixels (:func:`m2fp_batch.labels.row_pixels`) are written as ``frames/<name>.jpg``
beside the JSON (``<name>``: :func:`m2fp_batch.labels.layout.safe_name` of its image id), which is
its relative ``file_name``, and its entry adds ``video_id``, ``frame_index``, ``pts_seconds`` and
``video_uri``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from m2fp_batch.annotate.palette import CIHP_CLASSES
from m2fp_batch.labels import is_frame, skin_tone_source
from m2fp_batch.labels.layout import safe_name
from m2fp_batch.schema import SKIN_GROUPS

__all__ = ["FRAME_DIR", "PERSON_CATEGORY_ID", "annotations", "categories", "header", "image_entry", "xywh"]

PERSON_CATEGORY_ID = CIHP_CLASSES.index("Human")  # 20: after the 19 part classes (0 = background)
UNKNOWN_SKIN = SKIN_GROUPS[-1]
FRAME_DIR = "frames"  # beside the JSON: the JPEG of each video frame (a frame has no file of its own)


def categories() -> list[dict[str, Any]]:
    """The 19 CIHP part classes (ids 1..19, as in the semantic map) and ``person``."""
    parts = [
        {"id": i, "name": name, "supercategory": "part"}
        for i, name in enumerate(CIHP_CLASSES)
        if 0 < i < PERSON_CATEGORY_ID
    ]
    return parts + [{"id": PERSON_CATEGORY_ID, "name": "person", "supercategory": "person"}]


def xywh(bbox: list[int]) -> list[int]:
    """[x0, y0, x1, y1] (end-exclusive) -> COCO [x, y, w, h]."""
    x0, y0, x1, y1 = (int(v) for v in bbox)
    return [x0, y0, x1 - x0, y1 - y0]


def _rle(mask: Mapping[str, Any]) -> dict[str, Any]:
    return {"size": [int(v) for v in mask["size"]], "counts": str(mask["counts"])}


def header(description: str) -> dict[str, Any]:
    """Everything of the COCO dict except ``images`` and ``annotations``."""
    return {"info": {"description": description, "version": "1.0"}, "licenses": [], "categories": categories()}


def image_entry(row: Mapping[str, Any], image_id: int) -> dict[str, Any]:
    """The ``images`` entry of one ``ok`` row (a video frame: its JPEG under ``FRAME_DIR`` and its video keys)."""
    if not is_frame(row):
        file_name = str(row["uri"])
    else:
        file_name = f"{FRAME_DIR}/{safe_name(str(row['image_id']))}.jpg"
    entry = {
        "id": image_id,
        "file_name": file_name,
        "width": int(row["width"]),
        "height": int(row["height"]),
        "m2fp_image_id": str(row["image_id"]),
    }
    if is_frame(row):
        entry |= {"video_id": str(row["video_id"]), "frame_index": int(row["frame_index"])}
        entry |= {"pts_seconds": float(row["pts_seconds"]), "video_uri": str(row["uri"])}
    return entry


def _annotation(ann_id: int, image_id: int, category: int, entry: Mapping[str, Any], person: int) -> dict[str, Any]:
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category,
        "segmentation": _rle(entry["mask"]),
        "area": int(entry["area"]),
        "bbox": xywh(entry["bbox"]),
        "iscrowd": 0,
        "person_id": person,
        "score": None if entry.get("score") is None else float(entry["score"]),
    }


def annotations(row: Mapping[str, Any], image_id: int, first_id: int) -> list[dict[str, Any]]:
    """The annotations of one ``ok`` row, ids from ``first_id``: each person, then its parts."""
    out: list[dict[str, Any]] = []
    for k, p in enumerate(row.get("persons") or []):
        skin = p.get("skin_tone") or {}
        person = _annotation(first_id + len(out), image_id, PERSON_CATEGORY_ID, p, k)
        person["attributes"] = {
            "skin_tone": skin.get("group") or UNKNOWN_SKIN,
            "ita": skin.get("ita"),
            "ita_category": skin.get("ita_category"),
            "monk": skin.get("monk"),
            "hue": skin.get("hue"),
            "pixels": skin.get("pixels"),
            "source": skin_tone_source(skin),  # None: nothing measured (a reader derives it)
        }
        if p.get("track_id") is not None:
            person["attributes"]["track_id"] = int(p["track_id"])
        out.append(person)
        for q in p.get("parts") or []:
            part = _annotation(first_id + len(out), image_id, int(q["label_id"]), q, k)
            part["person_annotation_id"] = person["id"]
            out.append(part)
    return out
