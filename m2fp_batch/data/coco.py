"""A COCO file of human-parsing labels (``m2fp-batch export --format coco`` or another tool's) as samples.

Categories are matched to the CIHP classes by name (case, ``-``, ``_`` and spaces ignored:
``torso_skin`` is Torso-skin); ``person`` or ``human`` is a person; other categories are left
out. Person k of an image (its k-th person annotation) is person id k + 1. A part belongs to the
person its ``person_annotation_id`` names, else (``m2fp-batch``'s own export) its ``person_id``
index, else the person whose mask covers most of it. Masks are COCO RLEs (compressed or not) or
polygons. ``file_name`` is absolute, ``s3://`` or relative to the JSON file's directory.

A person's stored skin tone is its ``attributes`` (``skin_tone`` group, ``ita``, ``hue``, ...,
``source``); files of other tools have none, and :mod:`m2fp_batch.data.skin` derives it.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from m2fp_batch.annotate import rle
from m2fp_batch.annotate.palette import CIHP_CLASSES
from m2fp_batch.labels import LabelsError

__all__ = ["CocoLabels", "CocoSample", "is_coco_file"]

PERSON_NAMES = ("person", "human")
MAX_JSON_BYTES = 4 << 30  # a bigger file is refused (one JSON is read into memory)


def _key(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", str(name)).lower()


CLASS_BY_NAME = {_key(n): i for i, n in enumerate(CIHP_CLASSES) if 0 < i < CIHP_CLASSES.index("Human")}


def is_coco_file(path: Path) -> bool:
    """A local ``.json`` file (what ``ParsingDataset`` reads as COCO)."""
    return path.suffix.lower() == ".json" and path.is_file()


@dataclass(frozen=True)
class CocoSample:
    """One image of the file: its label maps and the tone each person holds."""

    semantic: np.ndarray  # (H, W) uint8 CIHP class ids
    humans: np.ndarray  # (H, W) int64 person ids (person k: k + 1)
    parts: np.ndarray  # (H, W) int64 part-instance ids
    stored_tones: list[dict[str, Any] | None]  # per person id k + 1 (None: the file holds none)
    track_ids: list[int | None]  # per person id k + 1: its ``attributes.track_id`` (None: none, e.g. a photo)


def _decode(segmentation: Any, h: int, w: int) -> np.ndarray:
    """A COCO segmentation (polygons, RLE with string or list counts) -> (H, W) bool."""
    if isinstance(segmentation, list):  # polygons
        if not segmentation:
            return np.zeros((h, w), bool)
        return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(segmentation, h, w))).astype(bool)
    if isinstance(segmentation.get("counts"), list):  # uncompressed RLE
        return mask_utils.decode(mask_utils.frPyObjects(segmentation, h, w)).astype(bool)
    return rle.decode({"size": [h, w], "counts": segmentation["counts"]})  # compressed RLE


def _checked_image(image: dict[str, Any]) -> dict[str, Any]:
    """An ``images`` entry with the keys the reader needs (id, file_name, positive width and height)."""
    if not all(k in image for k in ("id", "file_name", "width", "height")):
        raise ValueError(f"an images entry lacks id, file_name, width or height: {str(image)[:200]}")
    if int(image["width"]) < 1 or int(image["height"]) < 1:
        raise ValueError(f"image {image['id']!r} has size {image['width']}x{image['height']}")
    return image


def _stored_tone(person: dict[str, Any]) -> dict[str, Any] | None:
    """The tone in a person annotation's ``attributes`` (None: none there)."""
    attrs = person.get("attributes") or {}
    if not attrs.get("skin_tone"):
        return None
    tone = {k: v for k, v in attrs.items() if k != "skin_tone"} | {"group": attrs["skin_tone"]}
    return tone


def _owner(part: dict[str, Any], mask: np.ndarray, persons: list[dict], masks: list[np.ndarray]) -> int | None:
    """Index of the person a part belongs to (module rule); None when none."""
    ids = [p["id"] for p in persons]
    if part.get("person_annotation_id") in ids:
        return ids.index(part["person_annotation_id"])
    k = part.get("person_id")
    if isinstance(k, int) and 0 <= k < len(persons):
        return k
    overlap = [int((mask & m).sum()) for m in masks]
    return int(np.argmax(overlap)) if overlap and max(overlap) > 0 else None


class CocoLabels:
    """The images and annotations of one COCO file.

    Raises:
        LabelsError: not a COCO JSON (no ``images`` / ``annotations`` / ``categories``), too big.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.stat().st_size > MAX_JSON_BYTES:
            raise LabelsError(f"{self.path} is larger than {MAX_JSON_BYTES >> 30} GiB: split the COCO file")
        try:
            doc = json.loads(self.path.read_text())
            self.images = [_checked_image(im) for im in doc["images"]]
            cats = {int(c["id"]): _key(c["name"]) for c in doc["categories"]}
            anns = [a for a in doc["annotations"] if isinstance(a, dict)]
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise LabelsError(f"{self.path} is not a COCO file (images, annotations, categories): {e!r}") from e
        self.person_cats = {i for i, n in cats.items() if n in PERSON_NAMES}
        self.part_class = {i: CLASS_BY_NAME[n] for i, n in cats.items() if n in CLASS_BY_NAME}
        self.by_image: dict[Any, list[dict]] = defaultdict(list)
        for a in anns:
            self.by_image[a.get("image_id")].append(a)

    def uri(self, image: dict[str, Any]) -> str:
        """Where the photo of an ``images`` entry is."""
        name = str(image["file_name"])
        return name if "://" in name or Path(name).is_absolute() else str(self.path.parent / name)

    def sample(self, image: dict[str, Any]) -> CocoSample:
        """The label maps of one ``images`` entry.

        Raises:
            LabelsError: an annotation's segmentation cannot be decoded.
        """
        try:
            return self._sample(image)
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise LabelsError(f"{self.path}: image {image['id']!r}: an annotation cannot be read: {e!r}") from e

    def _sample(self, image: dict[str, Any]) -> CocoSample:
        h, w = int(image["height"]), int(image["width"])
        anns = self.by_image.get(image["id"], [])
        persons = [a for a in anns if a.get("category_id") in self.person_cats]
        masks = [_decode(p["segmentation"], h, w) for p in persons]
        semantic, humans, parts = np.zeros((h, w), np.uint8), np.zeros((h, w), np.int64), np.zeros((h, w), np.int64)
        for k, m in enumerate(masks):
            humans[m] = k + 1
        instance = 0
        for a in anns:
            if a.get("category_id") not in self.part_class:
                continue
            m = _decode(a["segmentation"], h, w)
            semantic[m] = self.part_class[a["category_id"]]
            owner = _owner(a, m, persons, masks)
            if owner is not None:
                instance += 1
                humans[m], parts[m] = owner + 1, instance
        tracks = [(p.get("attributes") or {}).get("track_id") for p in persons]
        return CocoSample(semantic, humans, parts, [_stored_tone(p) for p in persons], tracks)
