"""The CIHP release layout: write one labelled image, read one back.

::

    DIR/Images/<id>.jpg          the photo (JPEG originals copied byte for byte; a video frame encoded)
    DIR/Category_ids/<id>.png    class id per pixel (uint8) = the job's semantic map, exactly
    DIR/Human_ids/<id>.png       person id per pixel: person k of the row is k + 1, 0 background
    DIR/Instance_ids/<id>.png    (person, part) instance id per pixel, 0 background
    DIR/<split>_id.txt           the ids of the split, one per line
    DIR/<split>_meta.jsonl       per image: its job image_id, uri, size, persons (score, box, skin
                                 tone, track_id) and what each instance id is ([instance_id, human_id,
                                 label_id]); a video frame also its video_id, frame_index, pts_seconds

``<id>`` is the job's ``image_id`` when it is a safe file name, else ``id-<sha1>``
(``m2fp_batch.labels.layout.safe_name``; a video frame's ``<video_id>#f000123`` always, as ``#`` is
not safe); the meta record keeps the original.

Human and instance PNGs are 8-bit when their ids fit (always below 256 people or part instances),
else 16-bit. Overlapping people: the job's semantic classes never overlap; where two people's masks
overlap, the later person (the model's order) owns the pixel in ``Human_ids`` and
``Instance_ids``, so ``Category_ids`` and the two id maps can disagree only where the semantic
map and the people's part maps disagree in the job output itself.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from m2fp_batch.annotate.skin_tone import SkinTone
from m2fp_batch.labels import LabelMaps, is_frame, skin_tone_source
from m2fp_batch.labels.layout import safe_name

__all__ = [
    "CATEGORY_DIR",
    "FRAME_KEYS",
    "HUMAN_DIR",
    "IMAGE_DIR",
    "INSTANCE_DIR",
    "CihpSample",
    "encode_jpeg",
    "find_splits",
    "frame_fields",
    "ids_file",
    "image_bytes_for_jpeg",
    "meta_file",
    "meta_record",
    "read_ids",
    "read_meta",
    "read_sample",
    "stored_tones",
    "write_index",
    "write_label_pngs",
    "write_sample",
]

IMAGE_DIR = "Images"
CATEGORY_DIR = "Category_ids"
HUMAN_DIR = "Human_ids"
INSTANCE_DIR = "Instance_ids"
# what the meta record keeps of a person's skin tone (every SkinTone field; source per labels.skin_tone_source)
SKIN_TONE_KEYS = tuple(SkinTone.__dataclass_fields__)
FRAME_KEYS = ("video_id", "frame_index", "pts_seconds")  # what a frame's meta record adds
JPEG_QUALITY = 95  # for photos that are not JPEG files (or need their EXIF rotation applied)
_EXIF_ORIENTATION = 0x0112


def ids_file(split: str) -> str:
    return f"{split}_id.txt"


def meta_file(split: str) -> str:
    return f"{split}_meta.jsonl"


def find_splits(root: Path) -> list[str]:
    """The splits of a CIHP-layout dir (``<split>_id.txt`` files), sorted."""
    return sorted(p.name[: -len("_id.txt")] for p in root.glob("*_id.txt") if p.is_file())


def image_bytes_for_jpeg(data: bytes, pixels: np.ndarray) -> bytes:
    """What ``Images/<id>.jpg`` holds: the original bytes when they are a JPEG without EXIF rotation
    (no re-encoding loss), else ``pixels`` (the decoded, EXIF-rotated photo) encoded as JPEG."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.format == "JPEG" and im.getexif().get(_EXIF_ORIENTATION, 1) == 1:
                return data
    except (OSError, ValueError, SyntaxError):
        pass
    return encode_jpeg(pixels)


def encode_jpeg(pixels: np.ndarray) -> bytes:
    """``pixels`` (H, W, 3) uint8 RGB as a JPEG at ``JPEG_QUALITY`` (a video frame has no file to copy)."""
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def _id_png(array: np.ndarray, path: Path) -> None:
    if int(array.max(initial=0)) <= 255:
        Image.fromarray(array.astype(np.uint8), mode="L").save(path, compress_level=1)
    else:
        Image.fromarray(array.astype(np.uint16), mode="I;16").save(path, compress_level=1)


def write_label_pngs(paths: Mapping[str, Path], semantic: np.ndarray, humans: np.ndarray, parts: np.ndarray) -> None:
    """The three label PNGs of one image, at ``paths[CATEGORY_DIR]``, ``[HUMAN_DIR]``, ``[INSTANCE_DIR]``
    (class ids 8-bit; human and instance ids 8-bit when they fit, else 16-bit). The VIP export writes
    its per-frame maps with it too."""
    Image.fromarray(semantic, mode="L").save(paths[CATEGORY_DIR], compress_level=1)
    _id_png(humans, paths[HUMAN_DIR])
    _id_png(parts, paths[INSTANCE_DIR])


def write_sample(root: Path, maps: LabelMaps, jpeg: bytes) -> None:
    """Write one image's photo and three label PNGs under ``root`` (the dirs exist)."""
    name = safe_name(maps.image_id)
    (root / IMAGE_DIR / f"{name}.jpg").write_bytes(jpeg)
    paths = {d: root / d / f"{name}.png" for d in (CATEGORY_DIR, HUMAN_DIR, INSTANCE_DIR)}
    write_label_pngs(paths, maps.semantic, maps.humans, maps.parts)


def meta_record(row: Mapping[str, Any], maps: LabelMaps) -> dict[str, Any]:
    """The ``<split>_meta.jsonl`` line of one image."""
    persons = []
    for k, p in enumerate(row.get("persons") or []):
        skin = p.get("skin_tone") or {}
        persons.append(
            {
                "human_id": k + 1,
                "score": float(p["score"]),
                "bbox": [int(v) for v in p["bbox"]],
                "skin_tone": {key: skin.get(key) for key in SKIN_TONE_KEYS} | {"source": skin_tone_source(skin)},
                "track_id": p.get("track_id"),
            }
        )
    return {
        "id": safe_name(maps.image_id),
        "image_id": maps.image_id,
        "uri": row["uri"],
        "width": int(row["width"]),
        "height": int(row["height"]),
        "persons": persons,
        "instances": [[i.instance_id, i.person_id + 1, i.label_id] for i in maps.instances],
    } | frame_fields(row)


def frame_fields(row: Mapping[str, Any]) -> dict[str, Any]:
    """``video_id``, ``frame_index`` and ``pts_seconds`` of a video frame's row ({} for a photo)."""
    return {k: row[k] for k in FRAME_KEYS} if is_frame(row) else {}


def write_index(root: Path, split: str, records: Iterable[dict[str, Any]]) -> int:
    """Write ``<split>_id.txt`` and ``<split>_meta.jsonl``; returns the number of images."""
    n = 0
    with open(root / ids_file(split), "w") as ids, open(root / meta_file(split), "w") as meta:
        for rec in records:
            ids.write(rec["id"] + "\n")
            meta.write(json.dumps(rec) + "\n")
            n += 1
    return n


def read_ids(root: Path, split: str) -> list[str]:
    """The image ids of ``<split>_id.txt``."""
    return [line.strip() for line in (root / ids_file(split)).read_text().splitlines() if line.strip()]


def read_meta(root: Path, split: str) -> dict[str, dict[str, Any]]:
    """id -> its ``<split>_meta.jsonl`` record ({} when the file is absent, e.g. the CIHP release)."""
    path = root / meta_file(split)
    if not path.is_file():
        return {}
    with open(path) as f:
        return {rec["id"]: rec for rec in (json.loads(line) for line in f if line.strip())}


def _read_png(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        a = np.asarray(im)
    return a[..., 0] if a.ndim == 3 else a


@dataclass(frozen=True)
class CihpSample:
    """One image of a CIHP-layout dir, read back."""

    image_id: str  # the job's image_id (the file id without a meta record)
    image_path: Path
    semantic: np.ndarray  # (H, W) uint8
    humans: np.ndarray  # (H, W) int64
    parts: np.ndarray  # (H, W) int64
    stored_tones: list[dict[str, Any] | None]  # per human id k + 1: the meta record's skin tone (None: none)
    track_ids: list[int | None] = field(default_factory=list)  # per human id k + 1: its track (None: a photo)


def read_sample(root: Path, name: str, meta: Mapping[str, Any] | None) -> CihpSample:
    """The label maps of file id ``name`` (image id and skin tones from its meta record).

    Raises:
        FileNotFoundError: a file of the image is missing.
    """
    semantic = _read_png(root / CATEGORY_DIR / f"{name}.png").astype(np.uint8)
    humans = _read_png(root / HUMAN_DIR / f"{name}.png").astype(np.int64)
    parts = _read_png(root / INSTANCE_DIR / f"{name}.png").astype(np.int64)
    meta = meta or {}
    tracks = [p.get("track_id") for p in meta.get("persons") or []]
    return CihpSample(
        meta.get("image_id", name),
        root / IMAGE_DIR / f"{name}.jpg",
        semantic,
        humans,
        parts,
        stored_tones(meta),
        tracks,
    )


def stored_tones(meta: Mapping[str, Any]) -> list[dict[str, Any] | None]:
    """The skin tone each person of a meta record holds, by human id (index k: id k + 1; None: none)."""
    by_id = {int(p.get("human_id", k + 1)): p.get("skin_tone") for k, p in enumerate(meta.get("persons") or [])}
    return [by_id.get(k) for k in range(1, max(by_id, default=0) + 1)]
