"""The one-mask-at-a-time postprocess against a dense restatement of the official one."""

import numpy as np
import torch
from torch.nn import functional as F

from m2fp_batch.inference import preprocess
from m2fp_batch.inference.postprocess import parse_instances
from m2fp_batch.resize import target_size


def official_dense(pred_logits, pred_masks, input_size, image_size, num_parsing, thr):
    """The official M2FP parsing inference, all Q masks at full size at once (test oracle)."""
    hp, wp = pred_masks.shape[-2] * 4, pred_masks.shape[-1] * 4
    m = F.interpolate(pred_masks[None], size=(hp, wp), mode="bilinear", align_corners=False)
    m = m[:, :, : input_size[0], : input_size[1]]
    m = F.interpolate(m, size=image_size, mode="bilinear", align_corners=False)[0]
    k = pred_logits.shape[1] - 1
    scores = F.softmax(pred_logits, -1)[:, :-1]
    vals, idx = scores.flatten().topk(100, sorted=False)
    labels = idx % k
    m = m[idx // k]
    binary = (m > 0).float()
    ms = (m.sigmoid().flatten(1) * binary.flatten(1)).sum(1) / (binary.flatten(1).sum(1) + 1e-6)
    s = vals * ms
    sem = []
    for c in range(num_parsing):
        sel = torch.where(labels == c)[0]
        acc = torch.zeros(image_size)
        cnt = torch.zeros(image_size)
        for j in sel[s[sel].argsort()]:
            if s[j] < thr:
                continue
            p = m[j].sigmoid() * s[j]
            acc = torch.where(p > 0.5, p + acc, acc)
            cnt += torch.where(p > 0.5, 1, 0)
        sem.append(acc / torch.where(cnt == 0, torch.ones_like(cnt), cnt))
    sem = torch.stack(sem)
    parts = [
        (int(labels[j]), float(s[j]), (m[j] > 0).numpy())
        for j in range(100)
        if 0 < labels[j] < num_parsing and s[j] >= 0.1
    ]
    humans = [
        (int(labels[j]), float(s[j]), (m[j] > 0).numpy()) for j in range(100) if labels[j] == num_parsing and s[j] > 0.1
    ]
    return sem.argmax(0).numpy(), sem.max(0).values.numpy(), parts, humans


def _assert_same_instances(inst, expected):
    """Same count; each expected (label, score, mask) has a twin: score within 1e-5, mask IoU > 0.999."""
    assert len(inst) == len(expected)
    used = set()
    for lab, score, mask in expected:
        for i in range(len(inst)):
            if i in used or inst.labels[i] != lab or abs(inst.scores[i] - score) > 1e-5:
                continue
            m = inst.mask(i)
            if (m & mask).sum() / max(1, (m | mask).sum()) > 0.999:
                used.add(i)
                break
        else:
            raise AssertionError(f"no match for label {lab} score {score}")


def test_matches_dense_official(tiny_parser, astronaut):
    img = astronaut[::2, ::3]  # a non-square size: exercises the crop and the two resizes
    size = target_size(*img.shape[:2])
    batch = preprocess.to_batch(
        [preprocess.resize(img, size)], tiny_parser.model.pixel_mean, tiny_parser.model.pixel_std, 32
    )
    out = tiny_parser.forward(batch)
    logits, masks = out["pred_logits"][0], out["pred_masks"][0]
    cfg = tiny_parser.config
    parsed = parse_instances(logits, masks, size, img.shape[:2], cfg.num_parsing, cfg.parsing_ins_score_thr)
    label, smax, parts, humans = parsed.semantic, parsed.semantic_score, parsed.parts, parsed.humans
    d_label, d_max, d_parts, d_humans = official_dense(
        logits, masks, size, img.shape[:2], cfg.num_parsing, cfg.parsing_ins_score_thr
    )
    assert (label == d_label).mean() > 0.9999
    np.testing.assert_allclose(smax, d_max, atol=5e-4)  # kept as float16: half an ulp at 1
    _assert_same_instances(parts, d_parts)
    _assert_same_instances(humans, d_humans)
    assert len(parts) > 0 and len(humans) > 0  # the tiny model's random weights give instances


def test_small_memory_budget_gives_same_answer(tiny_parser, astronaut, monkeypatch):
    import m2fp_batch.inference.postprocess as pp

    a = tiny_parser.parse_one(astronaut)
    monkeypatch.setattr(pp, "CACHE_FLOATS", 1)  # nothing kept: every band recomputed for the paste
    b = tiny_parser.parse_one(astronaut)
    np.testing.assert_array_equal(a.semantic, b.semantic)
    np.testing.assert_array_equal(a.semantic_score, b.semantic_score)
    np.testing.assert_array_equal(a.parts.packed_masks(), b.parts.packed_masks())


def test_thin_bands_give_the_same_answer(tiny_parser, astronaut, monkeypatch):
    """Bands of 7 rows (73 of them, the last one short) against one band for the whole photo:
    the same parse, up to the float summation order of the band's matmul."""
    import m2fp_batch.inference.postprocess as pp

    a = tiny_parser.parse_one(astronaut)
    monkeypatch.setattr(pp, "BAND_FLOATS", 7 * astronaut.shape[1])
    b = tiny_parser.parse_one(astronaut)
    assert (a.semantic == b.semantic).mean() > 0.9999
    np.testing.assert_allclose(a.semantic_score, b.semantic_score, atol=1e-3)  # float16: one ulp at 1
    for x, y in ((a.parts, b.parts), (a.humans, b.humans)):
        np.testing.assert_array_equal(x.labels, y.labels)
        np.testing.assert_allclose(x.scores, y.scores, rtol=1e-5)
        assert all((x.mask(i) == y.mask(i)).mean() > 0.9999 for i in range(len(x)))
    assert [p.bbox for p in a.persons] == [p.bbox for p in b.persons]


def test_runs_round_trip():
    from m2fp_batch.inference.postprocess import _toggles
    from m2fp_batch.inference.types import runs_to_mask

    rng = np.random.default_rng(0)
    for p in (0.0, 0.02, 0.5, 0.98, 1.0):
        m = rng.random(1000) < p
        t = np.concatenate([_toggles(m[:377], 0, False), _toggles(m[377:], 377, bool(m[376]))])
        np.testing.assert_array_equal(runs_to_mask(t, m.size), m)
