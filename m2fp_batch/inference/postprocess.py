"""Official M2FP post-processing (``parsing_on``), one full-resolution mask at a time.

The official code upsamples all Q mask logits to the original size at once (Q x H x W
floats: 11 GB on a 24-megapixel photo). Here only the queries that can reach an output
are upsampled, a few at a time, with the same two bilinear steps; the results are the
same up to float summation order.

A top-k entry can only appear in the output if its class probability reaches the
smallest threshold in use (its score is class probability x mean mask probability, and
the mean mask probability is at most 1), so the others are skipped.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch.nn import functional as F

from m2fp_batch.inference.types import InstanceSet, Person

PART_SCORE_THR = 0.1  # parts kept at score >= 0.1
HUMAN_SCORE_THR = 0.1  # humans kept at score > 0.1
TOPK = 100
# Pixel budget for upsampled mask logits held at once (floats).
MAX_FLOATS_AT_ONCE = 32 * 1024 * 1024


def full_res_logits_fn(
    pred_masks: torch.Tensor, input_size: tuple[int, int], image_size: tuple[int, int]
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Return f(query indices) -> (n, H, W) mask logits at the original size.

    pred_masks: (Q, Hp/4, Wp/4) logits on the padded canvas. Each query goes up to the
    padded size, is cropped to the resized image, then resized to the original size,
    bilinearly (align_corners=False) both times, as the official code does.
    """
    hp, wp = pred_masks.shape[-2] * 4, pred_masks.shape[-1] * 4
    h, w = input_size

    def f(queries: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(pred_masks[queries][None], size=(hp, wp), mode="bilinear", align_corners=False)
        x = x[:, :, :h, :w]
        return F.interpolate(x, size=image_size, mode="bilinear", align_corners=False)[0]

    return f


def _chunks(items: list[int], size: int) -> list[list[int]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def parse_instances(
    pred_logits: torch.Tensor,
    pred_masks: torch.Tensor,
    input_size: tuple[int, int],
    image_size: tuple[int, int],
    num_parsing: int,
    ins_score_thr: float,
    keep_semantic_score: bool = True,
    topk: int = TOPK,
) -> tuple[np.ndarray, np.ndarray | None, InstanceSet, InstanceSet]:
    """M2FP's ``instance_parsing_inference`` and semantic paste.

    Args:
        pred_logits: (Q, K + 1) class logits (last = no object).
        pred_masks: (Q, Hp/4, Wp/4) mask logits.
        input_size: (h, w) of the resized image inside the padded canvas.
        image_size: (H, W) of the original image.
        num_parsing: parsing classes (labels 0..num_parsing-1; label num_parsing = human).
        ins_score_thr: instances at or above this score are pasted into the semantic map.

    Returns:
        semantic label (H, W) uint8, semantic max probability (H, W) float32 or None,
        part instances, human instances.
    """
    q_count, k1 = pred_logits.shape
    k = k1 - 1
    hh, ww = image_size
    scores = F.softmax(pred_logits.float(), dim=-1)[:, :-1]
    vals, idx = scores.flatten().topk(min(topk, q_count * k), sorted=True)
    labels = idx % k
    queries = idx // k
    min_thr = min(PART_SCORE_THR, HUMAN_SCORE_THR, ins_score_thr)
    relevant = (vals >= min_thr * (1 - 1e-4)).nonzero().flatten().tolist()
    uniq = sorted({int(queries[i]) for i in relevant})
    upsample = full_res_logits_fn(pred_masks.float(), input_size, image_size)

    per_chunk = max(1, MAX_FLOATS_AT_ONCE // max(1, hh * ww))
    cache_all = len(uniq) * hh * ww <= MAX_FLOATS_AT_ONCE
    cache: dict[int, torch.Tensor] = {}
    mask_score: dict[int, float] = {}
    packed: dict[int, np.ndarray] = {}
    for chunk in _chunks(uniq, per_chunk):
        logits = upsample(torch.tensor(chunk, dtype=torch.long))
        for j, q in enumerate(chunk):
            lg = logits[j]
            binary = lg > 0
            area = binary.sum(dtype=torch.float32)
            mask_score[q] = float(lg.sigmoid().mul_(binary).sum() / (area + 1e-6))
            packed[q] = np.packbits(binary.numpy().reshape(-1))
            del binary
            if cache_all:
                cache[q] = lg
        del logits

    entries = []  # (topk rank, label, query, score)
    for i in relevant:
        q = int(queries[i])
        s = float(np.float32(vals[i]) * np.float32(mask_score[q]))
        entries.append((i, int(labels[i]), q, s))

    def make_set(sel: list[tuple[int, int, int, float]]) -> InstanceSet:
        if not sel:
            return InstanceSet.empty(image_size)
        return InstanceSet(
            np.array([e[1] for e in sel], np.int64),
            np.array([e[3] for e in sel], np.float64),
            np.stack([packed[e[2]] for e in sel]),
            image_size,
        )

    parts = make_set([e for e in entries if 0 < e[1] < num_parsing and e[3] >= PART_SCORE_THR])
    humans = make_set([e for e in entries if e[1] == num_parsing and e[3] > HUMAN_SCORE_THR])

    # semantic paste: per class, instances above ins_score_thr in ascending score order
    best = torch.zeros(image_size, dtype=torch.float32)
    label_map = torch.zeros(image_size, dtype=torch.uint8)
    for c in range(num_parsing):
        inst = sorted((e for e in entries if e[1] == c and e[3] >= ins_score_thr), key=lambda e: e[3])
        if not inst:
            continue  # an all-zero class map never beats the running max (ties keep the lower class)
        acc = torch.zeros(image_size, dtype=torch.float32)
        cnt = torch.zeros(image_size, dtype=torch.float32)
        for _, _, q, s in inst:
            # one full-size map at a time (recomputed unless the image is small enough to cache)
            lg = cache[q] if q in cache else upsample(torch.tensor([q], dtype=torch.long))[0]
            prob = lg.sigmoid().mul_(s)
            hit = prob > 0.5
            acc.add_(prob.mul_(hit))  # == where(hit, prob + acc, acc): prob is finite
            cnt.add_(hit)
            del prob, hit, lg
        cat = acc.div_(cnt.clamp_(min=1))
        del cnt
        better = cat > best
        best = torch.where(better, cat, best)
        label_map[better] = c
        del acc, cat, better
    return label_map.numpy(), (best.numpy() if keep_semantic_score else None), parts, humans


def persons_from(humans: InstanceSet, semantic: np.ndarray) -> list[Person]:
    """One :class:`Person` per human instance: its mask, bbox and the parse inside it."""
    out = []
    for i in range(len(humans)):
        m = humans.mask(i)
        ys = np.flatnonzero(m.any(1))
        xs = np.flatnonzero(m.any(0))
        if len(ys) == 0:
            bbox = (0, 0, 0, 0)
        else:
            bbox = (int(xs[0]), int(ys[0]), int(xs[-1]) + 1, int(ys[-1]) + 1)
        x0, y0, x1, y1 = bbox
        crop = m[y0:y1, x0:x1]
        out.append(
            Person(
                score=float(humans.scores[i]),
                bbox=bbox,
                mask=crop,
                part_map=np.where(crop, semantic[y0:y1, x0:x1], 0).astype(np.uint8),
                instance_index=i,
            )
        )
    return out
