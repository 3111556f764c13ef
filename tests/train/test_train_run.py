"""The training loop and the Ray Train driver on the tiny model: resume after a kill, 2 workers
against 1, the trained dir loading strictly."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from m2fp_batch.train.config import AugmentSettings, LossSettings, SkinSettings
from m2fp_batch.train.loop import checkpoint_path, run_loop
from m2fp_batch.train.settings import TrainSettings

from .helpers import samples


def _settings(model_dir, out, **kw) -> TrainSettings:
    base = TrainSettings(
        data=(),
        init_model=str(model_dir),
        out=str(out),
        steps=4,
        batch_size=2,
        lr=1e-3,
        checkpoint_every=2,
        augment=AugmentSettings(short_edge=96, crop_size=96),
        loss=LossSettings(num_points=256),
        skin=SkinSettings(balanced=True, weights={"dark": 1.5}),
    )
    return replace(base, **kw)


class Killed(Exception):
    pass


def test_resume_after_kill_continues_from_last_checkpoint(tiny_model_dir, tmp_path):
    recs = samples()
    groups = ["light", "medium", "dark", "dark"]
    full = run_loop(_settings(tiny_model_dir, tmp_path / "a"), recs, groups)

    s = _settings(tiny_model_dir, tmp_path / "b")

    def kill_at_3(metrics):
        if metrics["step"] == 3:
            raise Killed

    with pytest.raises(Killed):
        run_loop(s, recs, groups, report=kill_at_3)
    assert torch.load(checkpoint_path(s), weights_only=True)["step"] == 2  # step 3 was never saved
    resumed = run_loop(s, recs, groups, resume=True)
    assert [h["step"] for h in resumed.history] == [1, 2, 3, 4]
    assert np.allclose([h["loss"] for h in resumed.history], [h["loss"] for h in full.history], rtol=1e-5)
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


@pytest.mark.cluster
def test_two_ray_workers_match_one_and_result_loads_strictly(tiny_model_dir, tmp_path, monkeypatch):
    import ray

    from m2fp_batch.inference import M2FPParser
    from m2fp_batch.inference.loading import load_model
    from m2fp_batch.train.run import fit

    recs = samples()
    outs = {}
    try:
        for workers in (1, 2):
            s = _settings(tiny_model_dir, tmp_path / f"w{workers}", steps=2, workers=workers, checkpoint_every=1)
            outs[workers] = fit(s, records=recs)
    finally:
        ray.shutdown()
    one, two = (json.loads((outs[w] / "training.json").read_text()) for w in (1, 2))
    # step 1's loss comes from the same weights and images; step 2's from the updated weights
    assert np.allclose([h["loss"] for h in one["losses"]], [h["loss"] for h in two["losses"]], rtol=1e-4)
    sd1 = torch.load(outs[1] / "pytorch_model.pt", weights_only=True)["model"]
    sd2 = torch.load(outs[2] / "pytorch_model.pt", weights_only=True)["model"]
    diff = torch.cat([(sd1[k].float() - sd2[k].float()).abs().flatten() for k in sd1])
    # Conv biases in front of a GroupNorm have a zero true gradient: their float noise differs
    # between the two reductions and Adam's first step turns it into +-lr. All else agrees.
    assert float((diff > 1e-5).float().mean()) < 1e-3 and float(diff.max()) <= 2 * 2e-3
    assert one["steps"] == 2 and one["parent"]["sha256"] and one["settings"]["skin"]["weights"] == {"dark": 1.5}
    assert (outs[2] / "loss_curve.png").stat().st_size > 1000
    info = load_model(str(outs[2])).info  # strict: raises on a missing or mis-shaped key
    assert info.unexpected_keys == ()
    result = M2FPParser.from_pretrained(str(outs[2])).parse([recs[0]["image"]])[0]
    assert result.semantic.shape == recs[0]["image"].shape[:2]
