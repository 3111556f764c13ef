"""CVAT's "Segmentation mask 1.1" (Pascal VOC segmentation, what Datumaro reads and writes): write and read back.

::

    DIR/labelmap.txt                       # label:color_rgb:parts:actions, one line per class:
                                           # background and the 19 CIHP part classes, our palette
    DIR/ImageSets/Segmentation/default.txt the item names, one per line
    DIR/SegmentationClass/<name>.png       RGB: each pixel the colour of its class (labelmap.txt)
    DIR/SegmentationObject/<name>.png      RGB: each pixel the Pascal VOC colour of its instance index

``<name>`` is the row's ``image_id`` when it is a safe file name, else ``id-<sha1>``
(:func:`m2fp_batch.labels.layout.safe_name`). One instance is one part of one person, numbered
like the CIHP export's ``Instance_ids`` (:func:`m2fp_batch.labels.part_instances`, a later person
drawn over an earlier one); the class map is the class of each instance, so both PNGs agree.

Reading a (fixed) export back (``m2fp-batch cvat pull``): each instance's class is the class most of
its pixels have; it belongs to the job's person it overlaps most (none: a new person). A part whose
visible pixels are unchanged keeps the job's mask (hidden pixels included) and score; a person keeps
its pixels outside its parts. CVAT's mask format has no verdict: every item of the export is
``reviewed`` (``review_edited`` tells approved from fixed); job rows it lacks are ``not_in_dataset``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from m2fp_batch.annotate.palette import CIHP_CLASSES, PALETTE
from m2fp_batch.errors import UserError
from m2fp_batch.labels import decode_mask, part_instance_map, part_instances
from m2fp_batch.labels.layout import safe_name

__all__ = [
    "CLASS_DIR",
    "CLASSES",
    "IMAGESETS_DIR",
    "LABELMAP_FILE",
    "MAX_INSTANCES",
    "OBJECT_DIR",
    "CvatError",
    "CvatItem",
    "instance_colormap",
    "read_item",
    "read_labelmap",
    "read_names",
    "write_item",
    "write_labelmap",
    "write_names",
]

log = logging.getLogger(__name__)

LABELMAP_FILE = "labelmap.txt"
IMAGESETS_DIR = "ImageSets/Segmentation"
CLASS_DIR = "SegmentationClass"
OBJECT_DIR = "SegmentationObject"
SUBSET = "default"
CLASSES = tuple(n.lower() if i == 0 else n for i, n in enumerate(CIHP_CLASSES[:-1]))  # background + 19 parts
MAX_INSTANCES = 255  # the Pascal VOC instance colormap has 256 entries, 0 = background


class CvatError(UserError):
    """A directory that is not a readable Segmentation mask 1.1 export (the message says what is wrong)."""


def instance_colormap(n: int = MAX_INSTANCES + 1) -> np.ndarray:
    """(n, 3) uint8: the Pascal VOC colour of each instance index (0 = black)."""
    out = np.zeros((n, 3), np.uint8)
    for i in range(n):
        c, rgb = i, [0, 0, 0]
        for bit in range(8):
            for ch in range(3):
                rgb[ch] |= ((c >> ch) & 1) << (7 - bit)
            c >>= 3
        out[i] = rgb
    return out


def write_labelmap(root: Path) -> None:
    lines = ["# label:color_rgb:parts:actions"]
    lines += [f"{name}:{','.join(str(int(v)) for v in PALETTE[i])}::" for i, name in enumerate(CLASSES)]
    (root / LABELMAP_FILE).write_text("\n".join(lines) + "\n")


def write_names(root: Path, names: list[str]) -> None:
    (root / IMAGESETS_DIR).mkdir(parents=True, exist_ok=True)
    (root / IMAGESETS_DIR / f"{SUBSET}.txt").write_text("".join(f"{n}\n" for n in names))


def write_item(root: Path, row: Mapping[str, Any]) -> str | None:
    """Write one ok row's two PNGs; its item name, or None when it has more than 255 part instances."""
    instances = part_instances(row)
    if len(instances) > MAX_INSTANCES:
        log.warning("cvat-mask: %s has %d part instances, more than the format's 255", row["image_id"], len(instances))
        return None
    index = part_instance_map(row).astype(np.uint8)
    labels = np.array([0, *(q.label_id for q in instances)], np.uint8)
    name = safe_name(str(row["image_id"]))
    for folder, rgb in ((CLASS_DIR, PALETTE[labels[index]]), (OBJECT_DIR, instance_colormap()[index])):
        (root / folder).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.ascontiguousarray(rgb, np.uint8), "RGB").save(root / folder / f"{name}.png")
    return name


def read_labelmap(root: Path) -> dict[tuple[int, int, int], str]:
    """Colour -> label name of an export's ``labelmap.txt``.

    Raises:
        CvatError: the file is missing or a line is not ``name:r,g,b:parts:actions``.
    """
    path = root / LABELMAP_FILE
    if not path.is_file():
        raise CvatError(f"{root} has no {LABELMAP_FILE}: export the CVAT task as 'Segmentation mask 1.1'")
    out = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split(":")
        try:
            color = tuple(int(v) for v in fields[1].split(","))
            assert len(fields) == 4 and len(color) == 3
        except (ValueError, IndexError, AssertionError):
            raise CvatError(f"{path} line {n} is not 'name:r,g,b:parts:actions': {line[:80]!r}") from None
        out[color] = fields[0].strip()
    return out


def read_names(root: Path) -> list[str]:
    """The item names of every list under ``ImageSets/Segmentation`` (subsets), in order, once each."""
    lists = sorted((root / IMAGESETS_DIR).glob("*.txt"))
    names = [n.split()[0] for p in lists for n in p.read_text(encoding="utf-8").splitlines() if n.strip()]
    if not names:
        names = sorted(p.stem for p in (root / CLASS_DIR).glob("*.png"))
    return list(dict.fromkeys(names))


def _unpaint(path: Path, colors: Mapping[tuple[int, int, int], int], what: str) -> np.ndarray:
    """An RGB (or indexed) PNG -> (H, W) int index map through ``colors``.

    Raises:
        CvatError: a colour that is not in ``colors``.
    """
    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB"), dtype=np.int64)
    key = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    known = np.array(sorted((r << 16) | (g << 8) | b for r, g, b in colors), np.int64)
    values = np.array([colors[((k >> 16) & 255, (k >> 8) & 255, k & 255)] for k in known], np.int64)
    pos = np.clip(np.searchsorted(known, key), 0, len(known) - 1)
    bad = known[pos] != key
    if bad.any():
        y, x = np.argwhere(bad)[0]
        raise CvatError(f"{path}: pixel ({x}, {y}) has colour {tuple(rgb[y, x])}, not a {what} colour")
    return values[pos]


@dataclass
class CvatItem:
    """One item of an export: its instances as (class id, mask) in instance order."""

    name: str
    instances: list[tuple[int, np.ndarray]]


def read_item(root: Path, name: str, labelmap: Mapping[tuple[int, int, int], str]) -> CvatItem:
    """The instances of item ``name`` (its class of each instance: the class most of its pixels have).

    Raises:
        CvatError: a missing PNG, PNGs of different sizes, or a label that is not one of ours.
    """
    cls_path, obj_path = root / CLASS_DIR / f"{name}.png", root / OBJECT_DIR / f"{name}.png"
    if not cls_path.is_file() or not obj_path.is_file():
        raise CvatError(f"item {name!r} lacks {CLASS_DIR}/{name}.png or {OBJECT_DIR}/{name}.png")
    label_ids = {}
    for color, label in labelmap.items():
        label_ids[color] = CLASSES.index(label) if label in CLASSES else -1 - len(label_ids)
    classes = _unpaint(cls_path, label_ids, "labelmap.txt")
    inst_colors = {tuple(int(v) for v in c): i for i, c in enumerate(instance_colormap())}
    objects = _unpaint(obj_path, inst_colors, "Pascal VOC instance")
    if classes.shape != objects.shape:
        raise CvatError(f"item {name!r}: {CLASS_DIR} and {OBJECT_DIR} PNGs differ in size")
    instances = []
    for k in (int(v) for v in np.unique(objects) if v != 0):
        m = objects == k
        ids, counts = np.unique(classes[m], return_counts=True)
        label_id = int(ids[np.argmax(counts)])
        if label_id < 0:
            names = {v: labelmap[c] for c, v in label_ids.items()}
            raise CvatError(f"item {name!r}: instance {k} has the label {names[label_id]!r}, not one of our 19 parts")
        if label_id > 0:
            instances.append((label_id, m))
    return CvatItem(name, instances)


def visible_parts(row: Mapping[str, Any]) -> list[tuple[int, int, np.ndarray]]:
    """(person index, class id, visible mask) of each part instance of a row, as the export draws them."""
    index = part_instance_map(row)
    return [(q.person_id, q.label_id, index == q.instance_id) for q in part_instances(row)]


def iter_person_masks(row: Mapping[str, Any]) -> Iterator[np.ndarray]:
    for p in row.get("persons") or []:
        yield decode_mask(p["mask"])
