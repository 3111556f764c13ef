"""A long 4K video through the read stage: its memory does not grow with the video's length.

Every frame is sampled (the most a read task can hand on): 300 4K frames would be 7.5 GB of RGB if
they were held; the read task's resident memory stays within a fraction of an actor's 2 GiB budget
(docs/job.md) and is the same for a 2 s and a 10 s video."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av
import pytest
from videos import pan_frames

REPO = Path(__file__).resolve().parents[2]
SIZE = (3840, 2160)
ACTOR_BUDGET_MB = 2048

PROBE = """
import json, sys
import pyarrow as pa
from m2fp_batch.pipeline.reading import read_batch
from m2fp_batch.storage import S3Options
from m2fp_batch.video import Sampling

def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20

key = pa.table({"image_id": ["v"], "uri": [sys.argv[1]], "shard": pa.array([0], pa.int32())})
base, grown, rows, sizes = rss(), 0.0, 0, set()
for t in read_batch(key, S3Options(), 10**9, Sampling(every_nth=1), 10**9):
    rows += t.num_rows
    sizes.add(len(t.column("data")[0].as_py() or b""))
    grown = max(grown, rss() - base)
hwm = [int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")][0]
print(json.dumps({"rows": rows, "grown_mb": grown, "max_rss_mb": hwm / 1024, "frame_bytes": max(sizes)}))
"""


def _write_4k(path: Path, frames: int, looks: list) -> Path:
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=30, options={"preset": "ultrafast"})
        s.width, s.height, s.pix_fmt = *SIZE, "yuv420p"
        for i in range(frames):
            for p in s.encode(looks[i % len(looks)]):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def _probe(path: Path) -> dict:
    res = subprocess.run(
        [sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True, cwd=REPO, timeout=600
    )
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_long_4k_video_is_read_in_bounded_memory(tmp_path):
    looks = [av.VideoFrame.from_ndarray(f, format="rgb24") for f in pan_frames(30, SIZE)]
    short = _probe(_write_4k(tmp_path / "short.mp4", 60, looks))
    long = _probe(_write_4k(tmp_path / "long.mp4", 300, looks))
    assert (short["rows"], long["rows"]) == (60, 300)
    frame_mb = long["frame_bytes"] / 2**20  # one 4K frame as the read stage hands it on (PPM)
    assert frame_mb > 23
    assert long["grown_mb"] < 20 * frame_mb < 300 * frame_mb  # a few frames (FFmpeg's threads), not the video
    assert long["grown_mb"] < short["grown_mb"] + 3 * frame_mb  # the same for 5x the length
    # the process's peak (VmHWM: this process's own, where ru_maxrss would carry the forking parent's)
    assert long["max_rss_mb"] < ACTOR_BUDGET_MB / 2
