"""Tracking people through the job, with a model that can find them: the tiny model is first
fine-tuned on drawn people (as tests/train does), then the job labels a video of those people
walking over a real photo, crossing, and one leaving the frame and walking back in."""

from __future__ import annotations

import collections
import math

import numpy as np
import pyarrow.parquet as pq
import pytest
from people import PERSON_W, H, W, people_video, training_samples
from videos import write_video

ray = pytest.importorskip("ray")

from m2fp_batch.annotate import rle  # noqa: E402
from m2fp_batch.pipeline.config import JobSettings  # noqa: E402
from m2fp_batch.pipeline.job import run_job  # noqa: E402

FRAMES, FPS, SAMPLED_FPS = 60, 10, 5.0
STEPS = 300
PERSON_AREA = PERSON_W * 70  # a whole drawn person (hair, face, upper clothes, pants)
VISIBLE = 0.4  # a person is visible in a frame when this share of them is in it
SAME_PERSON_IOU = 0.5  # a found person is a drawn one when their masks overlap this much


@pytest.fixture(scope="module")
def tracked(tmp_path_factory, tiny_model_dir):
    from m2fp_batch.train.config import AugmentSettings, LossSettings
    from m2fp_batch.train.loop import run_loop
    from m2fp_batch.train.model_io import write_model_dir
    from m2fp_batch.train.settings import TrainSettings

    root = tmp_path_factory.mktemp("tracking")
    frames, sems, hums = people_video(FRAMES)
    recs = training_samples(frames, sems, hums, every=3)
    settings = TrainSettings(
        data=(), init_model=str(tiny_model_dir), out=str(root / "train"), steps=STEPS, batch_size=4, lr=1e-3,
        backbone_lr_multiplier=1.0, checkpoint_every=STEPS, log_every=50, augment=AugmentSettings.off(H, W),
        loss=LossSettings(num_points=1024),
    )  # fmt: skip
    state = run_loop(settings, recs, ["medium"] * len(recs))
    model = write_model_dir(root / "model", tiny_model_dir, state.model.state_dict())
    (root / "in").mkdir()
    write_video(root / "in" / "people.mp4", frames, fps=FPS)
    cfg = {"input": str(root / "in"), "output": str(root / "out"), "model": str(model), "short_edge": H}
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        summary = run_job(JobSettings.from_sources(None, cfg | {"video_fps": SAMPLED_FPS})).to_dict()
    finally:
        ray.shutdown()
    rows = sorted(pq.read_table(root / "out").to_pylist(), key=lambda r: r["frame_index"])
    return summary, rows, hums


def _track_of(row: dict, truth: np.ndarray) -> int | None:
    """The track id of the found person that is the drawn person ``truth`` (None: not found)."""
    best, best_iou = None, 0.0
    for p in row["persons"]:
        mask = rle.decode(p["mask"])
        iou = (mask & truth).sum() / max(1, (mask | truth).sum())
        if iou > best_iou:
            best, best_iou = p["track_id"], iou
    return best if best_iou >= SAME_PERSON_IOU else None


def test_one_row_per_sampled_frame(tracked):
    summary, rows, _ = tracked
    assert summary["complete"] and len(rows) == math.ceil(FRAMES / FPS * SAMPLED_FPS)
    assert [r["frame_index"] for r in rows] == list(range(0, FRAMES, int(FPS / SAMPLED_FPS)))


def test_each_person_keeps_one_track_id_and_crossing_does_not_swap_them(tracked):
    _, rows, hums = tracked
    ids: dict[int, list[int | None]] = {1: [], 2: []}
    for row in rows:
        for human in ids:
            truth = hums[row["frame_index"]] == human
            if truth.sum() >= VISIBLE * PERSON_AREA:
                ids[human].append(_track_of(row, truth))
    out_of_frame = [r["frame_index"] for r in rows if (hums[r["frame_index"]] == 2).sum() < VISIBLE * PERSON_AREA]
    assert out_of_frame, "B leaves the frame"
    main = {}
    for human, seen in ids.items():
        main[human], count = collections.Counter(seen).most_common(1)[0]
        assert main[human] is not None and count >= 0.95 * len(seen), (human, seen)
    assert main[1] != main[2]  # the two people never share an id, before or after they cross
