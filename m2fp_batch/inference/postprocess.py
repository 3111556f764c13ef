"""Official M2FP post-processing (``parsing_on``), touching only the pixels that can change.

The official code upsamples all Q mask logits to the original size at once (Q x H x W
floats: 11 GB on a 24-megapixel photo), bilinearly twice (to the padded size, then, cropped,
to the original size). Both resizes are linear and separable, so here they are one matrix
per axis (:func:`resize_matrix`), and a query's full-size logits are ``A_y @ mask @ A_x.T``.
Bilinear weights are non-negative, so a full-size logit can only be positive where a
positive low-resolution logit contributes: each query is computed only inside that box
(:class:`MaskUpsampler`), and everything downstream (mask score, semantic paste) reads only
the boxes. Results equal the dense version up to float summation order.

A top-k entry can only appear in the output if its class probability reaches the
smallest threshold in use (its score is class probability x mean mask probability, and
the mean mask probability is at most 1), so the others are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from m2fp_batch.inference.types import InstanceSet, Person

PART_SCORE_THR = 0.1  # parts kept at score >= 0.1
HUMAN_SCORE_THR = 0.1  # humans kept at score > 0.1
TOPK = 100
# Budget of full-resolution mask logits kept for the semantic paste (floats); beyond it a
# query's box is recomputed when pasted.
MAX_FLOATS_AT_ONCE = 8 * 1024 * 1024


def resize_matrix(out_size: int, in_size: int) -> torch.Tensor:
    """(out, in) float32 matrix of a 1-D ``F.interpolate(mode="bilinear", align_corners=False)``:
    torch's own kernel resizing the identity, so its weights are exactly torch's."""
    eye = torch.eye(in_size, dtype=torch.float32)[None, None]  # (1, 1, in, in): rows resized, columns kept
    return F.interpolate(eye, size=(out_size, in_size), mode="bilinear", align_corners=False)[0, 0]


def composed_resize(out_size: int, crop: int, low: int) -> torch.Tensor:
    """(out, low) float32: low -> 4 x low (the padded canvas), keep the first ``crop``, -> out."""
    return (resize_matrix(out_size, crop).double() @ resize_matrix(4 * low, low)[:crop].double()).float()


def _support(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per input index, the first and last output index with a non-zero weight (a: (out, in))."""
    nz = a > 0
    idx = torch.arange(a.shape[0]).unsqueeze(1)
    first = torch.where(nz, idx, a.shape[0]).min(0).values
    last = torch.where(nz, idx, -1).max(0).values
    return first, last


@dataclass(frozen=True)
class Box:
    """Rows y0:y1 and columns x0:x1 of the original image."""

    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def area(self) -> int:
        return (self.y1 - self.y0) * (self.x1 - self.x0)

    def slices(self) -> tuple[slice, slice]:
        return slice(self.y0, self.y1), slice(self.x0, self.x1)

    def union(self, o: Box) -> Box:
        return Box(min(self.y0, o.y0), max(self.y1, o.y1), min(self.x0, o.x0), max(self.x1, o.x1))


class MaskUpsampler:
    """Full-size mask logits of one query, inside the box where they can be positive.

    pred_masks: (Q, Hp/4, Wp/4) logits on the padded canvas; input_size: the resized image
    inside the canvas; image_size: the original (H, W).
    """

    def __init__(self, pred_masks: torch.Tensor, input_size: tuple[int, int], image_size: tuple[int, int]) -> None:
        self.masks = pred_masks.float()
        hl, wl = self.masks.shape[-2:]
        self.ay = composed_resize(image_size[0], input_size[0], hl)  # (H, hl)
        self.ax = composed_resize(image_size[1], input_size[1], wl)  # (W, wl)
        self.y_first, self.y_last = _support(self.ay)
        self.x_first, self.x_last = _support(self.ax)

    def box(self, q: int) -> Box | None:
        """Where query ``q``'s full-size logits can be > 0 (None: nowhere)."""
        pos = self.masks[q] > 0
        rows = pos.any(1).nonzero().flatten()
        cols = pos.any(0).nonzero().flatten()
        if len(rows) == 0:
            return None
        y0, y1 = int(self.y_first[rows].min()), int(self.y_last[rows].max()) + 1
        x0, x1 = int(self.x_first[cols].min()), int(self.x_last[cols].max()) + 1
        return Box(y0, y1, x0, x1) if y1 > y0 and x1 > x0 else None

    def logits(self, q: int, box: Box) -> torch.Tensor:
        """(y1 - y0, x1 - x0) full-size logits of query ``q`` inside ``box``."""
        return (self.ay[box.y0 : box.y1] @ self.masks[q]) @ self.ax[box.x0 : box.x1].T


def _score_and_pack(lg: torch.Tensor, box: Box, image_size: tuple[int, int]) -> tuple[float, np.ndarray]:
    """Mean probability inside the mask (logit > 0) and the packed full-size mask."""
    binary = lg > 0
    area = binary.sum(dtype=torch.float32)
    score = float(lg.sigmoid().mul_(binary).sum() / (area + 1e-6))
    full = np.zeros(image_size, bool)
    full[box.slices()] = binary.numpy()
    return score, np.packbits(full.reshape(-1))


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
    image_size = (int(image_size[0]), int(image_size[1]))
    scores = F.softmax(pred_logits.float(), dim=-1)[:, :-1]
    vals, idx = scores.flatten().topk(min(topk, q_count * k), sorted=True)
    labels = idx % k
    queries = idx // k
    min_thr = min(PART_SCORE_THR, HUMAN_SCORE_THR, ins_score_thr)
    relevant = (vals >= min_thr * (1 - 1e-4)).nonzero().flatten().tolist()
    up = MaskUpsampler(pred_masks, input_size, image_size)

    boxes: dict[int, Box] = {}
    cache: dict[int, torch.Tensor] = {}
    mask_score: dict[int, float] = {}
    packed: dict[int, np.ndarray] = {}
    cached = 0
    for q in sorted({int(queries[i]) for i in relevant}):
        box = up.box(q)
        if box is None:  # no positive logit anywhere: an empty mask, score 0
            mask_score[q] = 0.0
            continue
        lg = up.logits(q, box)
        boxes[q] = box
        mask_score[q], packed[q] = _score_and_pack(lg, box, image_size)
        if cached + box.area <= MAX_FLOATS_AT_ONCE:
            cache[q] = lg
            cached += box.area

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

    # kept instances have score > 0, so a non-empty mask (an entry in ``packed``)
    parts = make_set([e for e in entries if 0 < e[1] < num_parsing and e[3] >= PART_SCORE_THR])
    humans = make_set([e for e in entries if e[1] == num_parsing and e[3] > HUMAN_SCORE_THR])
    pasted = [(label, q, s) for _, label, q, s in entries if s >= ins_score_thr and q in boxes]
    label_map, best = _semantic_paste(pasted, up, boxes, cache, image_size, num_parsing)
    return label_map.numpy(), (best.numpy() if keep_semantic_score else None), parts, humans


def _semantic_paste(
    pasted: list[tuple[int, int, float]],
    up: MaskUpsampler,
    boxes: dict[int, Box],
    cache: dict[int, torch.Tensor],
    image_size: tuple[int, int],
    num_parsing: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per class, the mean pasted probability of its instances (ascending score) where it
    exceeds 0.5, then a running arg-max over classes; each class reads only its boxes.

    A pixel outside a query's box has logit <= 0, so probability x score <= 0.5: no hit.
    """
    best = torch.zeros(image_size, dtype=torch.float32)
    label_map = torch.zeros(image_size, dtype=torch.uint8)
    for c in range(num_parsing):
        inst = sorted(((q, s) for label, q, s in pasted if label == c), key=lambda e: e[1])
        if not inst:
            continue  # an all-zero class map never beats the running max (ties keep the lower class)
        win = boxes[inst[0][0]]
        for q, _ in inst[1:]:
            win = win.union(boxes[q])
        acc = torch.zeros(win.y1 - win.y0, win.x1 - win.x0)
        cnt = torch.zeros(acc.shape, dtype=torch.int16)  # instances per pixel (<= TOPK)
        for q, s in inst:
            b = boxes[q]
            lg = cache[q] if q in cache else up.logits(q, b)
            prob = lg.sigmoid().mul_(s)
            hit = prob > 0.5
            inner = (slice(b.y0 - win.y0, b.y1 - win.y0), slice(b.x0 - win.x0, b.x1 - win.x0))
            acc[inner] += prob.mul_(hit)  # == where(hit, prob + acc, acc): prob is finite
            cnt[inner] += hit
            del prob, hit, lg
        cat = acc.div_(cnt.clamp_(min=1))
        del cnt
        region = best[win.slices()]
        label_map[win.slices()][cat > region] = c
        torch.maximum(region, cat, out=region)  # in place: no second full-size map
        del acc, cat
    return label_map, best


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
