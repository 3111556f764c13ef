"""A job output with real photos and real-photo-like masks, written without running the model.

Each person is a standing figure (hair and face ellipses, torso, arms, legs, shoes as polygons),
people side by side and partly overlapping, so masks have the smooth boundaries and run counts of
a real parse (the tiny random-weight model's masks are noise). Rows follow ``SCHEMA`` exactly and
the shard is committed the way the job commits it (Parquet, then ``_stats/``).
Used by tests/labels and benchmarks/bench_dataset.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from skimage import draw

from m2fp_batch.annotate import rle
from m2fp_batch.annotate.palette import CIHP_CLASSES
from m2fp_batch.labels.layout import CONFIG_FILE, STATS_DIR, shard_name, stats_name
from m2fp_batch.schema import SCHEMA, SCHEMA_VERSION, SKIN_GROUPS

SYNTHETIC_JOB_ID = "synthetic-job"

C = {name: i for i, name in enumerate(CIHP_CLASSES)}


# A standing figure in head heights u, drawn in this order: ellipses (label, centre dy, dx, ry, rx)
# and quadrilaterals (label, four x offsets, top dy, bottom dy), relative to (top, centre x).
ELLIPSES = (("Hair", 0.45, 0, 0.55, 0.42), ("Face", 0.6, 0, 0.42, 0.32))
QUADS = (
    ("Left-arm", (-1.1, -0.75, -1.0, -1.4), 1.3, 4),
    ("Right-arm", (0.75, 1.1, 1.4, 1.0), 1.3, 4),
    ("UpperClothes", (-0.9, 0.9, 0.8, -0.8), 1.1, 4),
    ("Pants", (-0.8, 0.8, 0.7, -0.7), 4, 5),
    ("Left-leg", (-0.7, -0.05, -0.15, -0.6), 5, 7.5),
    ("Right-leg", (0.05, 0.7, 0.6, 0.15), 5, 7.5),
)
SHOES = (("Left-shoe", 7.75, -0.4, 0.25, 0.35), ("Right-shoe", 7.75, 0.4, 0.25, 0.35))


def _figure(shape: tuple[int, int], cx: float, top: float, height: float) -> np.ndarray:
    """(H, W) uint8 part ids of one standing person."""
    out = np.zeros(shape, np.uint8)
    u = height / 8.0  # head height

    def ellipses(items) -> None:
        for label, dy, dx, ry, rx in items:
            rr, cc = draw.ellipse(top + dy * u, cx + dx * u, ry * u, rx * u, shape)
            out[rr, cc] = C[label]

    ellipses(ELLIPSES)
    for label, xs, y0, y1 in QUADS:
        rr, cc = draw.polygon(top + np.array([y0, y0, y1, y1]) * u, cx + np.array(xs) * u, shape)
        out[rr, cc] = C[label]
    ellipses(SHOES)
    return out


def _bbox(mask: np.ndarray) -> list[int]:
    ys, xs = np.nonzero(mask)
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def _skin(group: str) -> dict:
    known = group != SKIN_GROUPS[-1]
    return {
        "lab": [60.0, 12.0, 18.0] if known else None,
        "ita": 30.0 if known else None,
        "ita_category": "intermediate" if known else "unknown",
        "group": group,
        "monk": 5 if known else None,
        "pixels": 900 if known else 0,
        "confidence": 0.8 if known else 0.0,
        "hue": 56.3 if known else None,
        "source": "measured",
    }


def labelled_row(image_id: str, uri: str, shape: tuple[int, int], people: int, seed: int = 0) -> dict:
    """One ``ok`` row with ``people`` figures (later ones in front)."""
    rng = np.random.default_rng(seed)
    h, w = shape
    owner = np.zeros(shape, np.int32)  # person index + 1 on top
    maps = []
    for k in range(people):
        height = h * rng.uniform(0.6, 0.9)
        cx = w * (k + 1) / (people + 1) + rng.uniform(-0.05, 0.05) * w
        fig = _figure(shape, cx, rng.uniform(0.02, 0.1) * h, height)
        owner[fig > 0] = k + 1
        maps.append(fig)
    semantic = np.zeros(shape, np.uint8)
    persons = []
    for k, fig in enumerate(maps):
        mine = owner == k + 1
        semantic[mine] = fig[mine]
        area = int(mine.sum())
        parts = []
        for label in np.unique(fig[mine]):
            m = mine & (fig == label)
            parts.append(
                {
                    "label_id": int(label),
                    "label": CIHP_CLASSES[label],
                    "area": int(m.sum()),
                    "fraction": float(m.sum() / area),
                    "bbox": _bbox(m),
                    "score": 0.9,
                    "mask": rle.encode(m),
                }
            )
        persons.append(
            {
                "person_id": k,
                "score": 0.95,
                "bbox": _bbox(mine),
                "area": area,
                "mask": rle.encode(mine),
                "parts": parts,
                "skin_tone": _skin(SKIN_GROUPS[k % len(SKIN_GROUPS)]),
            }
        )
    groups = [p["skin_tone"]["group"] for p in persons]
    return {
        "schema_version": SCHEMA_VERSION,
        "image_id": image_id,
        "uri": uri,
        "shard": 0,
        "width": w,
        "height": h,
        "status": "ok",
        "num_persons": people,
        "persons": persons,
        "semantic": [
            {
                "label_id": int(c),
                "label": CIHP_CLASSES[c],
                "area": int((semantic == c).sum()),
                "mask": rle.encode(semantic == c),
            }
            for c in np.unique(semantic)
            if c != 0
        ],
        "skin_tone_groups": sorted({g for g in groups if g != SKIN_GROUPS[-1]}),
        "skin_tone_counts": {g: groups.count(g) for g in SKIN_GROUPS},
        "brightened": False,
        "brightness_factor": 1.0,
        "model": "synthetic",
        "checkpoint_sha256": "0" * 64,
        "package_version": "0",
        "config_hash": "0" * 16,
    }


def error_row(image_id: str, uri: str) -> dict:
    return {
        "schema_version": SCHEMA_VERSION,
        "image_id": image_id,
        "uri": uri,
        "shard": 0,
        "status": "error",
        "error": "the image data is truncated",
        "error_kind": "truncated",
        "model": "synthetic",
        "checkpoint_sha256": "0" * 64,
        "package_version": "0",
        "config_hash": "0" * 16,
    }


def write_output(out: Path, rows: list[dict], shard: int = 0) -> Path:
    """Commit ``rows`` as shard ``shard`` of a job output at ``out`` (Parquet, then the stats marker)."""
    (out / STATS_DIR).mkdir(parents=True, exist_ok=True)
    if not (out / CONFIG_FILE).exists():
        (out / CONFIG_FILE).write_text(json.dumps({"job_id": SYNTHETIC_JOB_ID}))
    path = out / shard_name(shard)
    pq.write_table(pa.Table.from_pylist([{**r, "shard": shard} for r in rows], schema=SCHEMA), path)
    marker = {"shard": shard, "job_id": SYNTHETIC_JOB_ID, "rows": len(rows), "bytes": path.stat().st_size}
    (out / stats_name(shard)).write_text(json.dumps(marker))
    return out


def commit_marker(out: Path, shard: int) -> dict:
    """The stats marker that commits the ``shard-NNNNN.parquet`` now at ``out`` (as the job writes it)."""
    rows = pq.read_metadata(out / shard_name(shard)).num_rows
    job_id = json.loads((out / CONFIG_FILE).read_text())["job_id"]
    return {"shard": shard, "job_id": job_id, "rows": rows, "bytes": (out / shard_name(shard)).stat().st_size}


def frame_row(
    video_uri: str, video_id: str, frame_index: int, fps: float, shape: tuple[int, int], tracks: list[int | None]
) -> dict:
    """The ``ok`` row of frame ``frame_index`` of the video at ``video_uri`` (``fps`` constant): one
    figure per entry of ``tracks``, person k with ``track_id`` ``tracks[k]``, as the job writes a frame."""
    from m2fp_batch.video import frame_image_id

    row = labelled_row(frame_image_id(video_id, frame_index), video_uri, shape, len(tracks), seed=frame_index)
    for p, track in zip(row["persons"], tracks):
        p["track_id"] = track
    h, w = shape
    video = {"video_id": video_id, "frame_index": frame_index, "pts_seconds": frame_index / fps, "video_fps": fps}
    return row | video | {"video_width": w, "video_height": h, "video_duration_s": None}
