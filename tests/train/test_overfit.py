"""The tiny model (seeded random init) overfits 4 real photos with simple drawn labels."""

from __future__ import annotations

import time

import numpy as np
import pytest

from m2fp_batch.inference import M2FPParser
from m2fp_batch.inference.loading import read_config
from m2fp_batch.train.config import AugmentSettings, LossSettings
from m2fp_batch.train.evaluate import Evaluation, add_image
from m2fp_batch.train.loop import run_loop
from m2fp_batch.train.settings import TrainSettings

from .helpers import SIZE, samples

STEPS = 200


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_tiny_model_overfits_four_photos(tiny_model_dir, tmp_path):
    recs = samples()
    settings = TrainSettings(
        data=(),
        init_model=str(tiny_model_dir),
        out=str(tmp_path / "out"),
        steps=STEPS,
        batch_size=4,
        lr=1e-3,
        backbone_lr_multiplier=1.0,
        checkpoint_every=STEPS,
        log_every=25,
        augment=AugmentSettings.off(SIZE, SIZE),
        loss=LossSettings(num_points=1024),
    )
    t0 = time.monotonic()
    state = run_loop(settings, recs, ["light", "medium", "dark", "dark"])
    seconds = time.monotonic() - t0
    parser = M2FPParser(state.model, read_config(tiny_model_dir)[0], short_edge=SIZE)

    def miou() -> float:
        ev = Evaluation(np.zeros((20, 20), np.int64), {}, 0)
        for r in recs:
            add_image(ev, parser.parse([r["image"]])[0].semantic, r)
        return ev.miou()

    assert seconds < 600
    assert state.history[-1]["loss"] < 0.25 * state.history[0]["loss"]
    assert miou() >= 0.9
