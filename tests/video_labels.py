"""A job output that mixes photos and real videos (PyAV-encoded pans over scikit-image photos), with
people drawn as in :mod:`synthetic_labels` and tracked across frames: for the readers of frame rows
(ParsingDataset, the exports) without running the model.

Video ``A`` (25 frames at 10 fps) is sampled at frames 0, 10, 20: its tracks 0 and 1 are the two
people of frame 0, listed in the other order in frame 10 (person k is not track k), and only track 1
is left in frame 20. Video ``B`` (10 frames) gives frames 0 and 5 with one person, track 0. The rows
are written out of frame order, with a photo, an error row and a rejected frame among them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import skimage.data
from PIL import Image
from synthetic_labels import error_row, frame_row, labelled_row, write_output
from video.videos import pan_frames, write_video

from m2fp_batch.labels.layout import EXPORT_FILE, shard_name

__all__ = ["FPS", "SHAPE", "TRACKS", "video_output"]

FPS = 10
SHAPE = (120, 160)  # (H, W) of the frames
TRACKS = {("A", 0): [0, 1], ("A", 10): [1, 0], ("A", 20): [1], ("B", 0): [0], ("B", 5): [0]}


def video_output(root: Path) -> tuple[Path, list[dict]]:
    """An export-reviewed dir at ``root / "out"`` (frame A#f000030 rejected) and its ``ok`` rows by write order."""
    src = root / "in"
    src.mkdir(parents=True)
    a = write_video(src / "a.mp4", pan_frames(25), fps=FPS)
    b = write_video(src / "b.mkv", pan_frames(10, photo=skimage.data.chelsea()), fps=FPS)
    Image.fromarray(skimage.data.astronaut()).resize((128, 128)).save(src / "photo.png")
    uri = {"A": str(a), "B": str(b)}
    order = [("A", 20), ("B", 5), ("A", 0), ("B", 0), ("A", 10)]
    rows = [frame_row(uri[v], v, i, FPS, SHAPE, TRACKS[v, i]) for v, i in order]
    rows.insert(1, labelled_row("photo", str(src / "photo.png"), (128, 128), 2))
    rejected = frame_row(uri["A"], "A", 24, FPS, SHAPE, [0])
    rows += [error_row("broken", str(src / "broken.jpg")), rejected]
    out = write_output(root / "job", rows)
    reviewed = root / "out"
    reviewed.mkdir()
    status = ["reviewed"] * (len(rows) - 1) + ["rejected"]
    table = pq.read_table(out / shard_name(0)).append_column("review_status", pa.array(status))
    pq.write_table(table, reviewed / "shard-00000.parquet")
    (reviewed / EXPORT_FILE).write_text(json.dumps({"files": ["shard-00000.parquet"]}))
    return reviewed, [r for r in rows if r["status"] == "ok" and r is not rejected]
