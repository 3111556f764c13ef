"""Official M2FP post-processing (``parsing_on``), touching only the pixels that can change.

The official code upsamples all Q mask logits to the original size at once (Q x H x W
floats: 11 GB on a 24-megapixel photo), bilinearly twice (to the padded size, then, cropped,
to the original size). Both resizes are linear and separable, so here they are one matrix
per axis (:func:`resize_matrix`), and a query's full-size logits are ``A_y @ mask @ A_x.T``.
Bilinear weights are non-negative, so a full-size logit can only be positive where a
positive low-resolution logit contributes: each query is computed only inside that box
(:class:`MaskUpsampler`), and everything downstream (mask score, semantic paste) reads only
the boxes. Results equal the dense version up to float summation order.

Every tensor step runs on the device of ``pred_masks`` (the engine's device: on a GPU the
upsampling, scoring and arg-max stay there); only the runs of each band and the label maps
come back to the CPU as numpy.

Full-size logits exist only one band of rows at a time (:data:`BAND_FLOATS`), on a grid of
bands shared by the scoring pass and the paste, so both see the same floats and the memory of
the post-processing does not grow with the photo beyond the label maps it returns. Masks leave
as runs inside their boxes (:class:`InstanceSet`), never as full-size copies.

A top-k entry can only appear in the output if its class probability reaches the
smallest threshold in use (its score is class probability x mean mask probability, and
the mean mask probability is at most 1), so the others are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch.nn import functional as F

from m2fp_batch.annotate.parts import mask_bbox
from m2fp_batch.inference.types import InstanceSet, Person

PART_SCORE_THR = 0.1  # parts kept at score >= 0.1
HUMAN_SCORE_THR = 0.1  # humans kept at score > 0.1
TOPK = 100
# Full-resolution logits computed at once: a band of rows of the image (floats).
BAND_FLOATS = 4 * 1024 * 1024
# Band logits kept from the scoring pass for the semantic paste (floats); beyond it they are
# recomputed when pasted.
CACHE_FLOATS = 8 * 1024 * 1024
# The whole-photo max semantic probability (``semantic_score``): float16, 2 bytes a pixel.
SCORE_DTYPE = torch.float16


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
    idx = torch.arange(a.shape[0], device=a.device).unsqueeze(1)
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

    def union(self, o: Box) -> Box:
        return Box(min(self.y0, o.y0), max(self.y1, o.y1), min(self.x0, o.x0), max(self.x1, o.x1))

    def rows(self, y0: int, y1: int) -> Box | None:
        """This box cut to rows y0:y1 (None: they do not meet)."""
        a, b = max(self.y0, y0), min(self.y1, y1)
        return Box(a, b, self.x0, self.x1) if b > a else None


class MaskUpsampler:
    """Full-size mask logits of one query, inside the box where they can be positive.

    pred_masks: (Q, Hp/4, Wp/4) logits on the padded canvas; input_size: the resized image
    inside the canvas; image_size: the original (H, W).
    """

    def __init__(self, pred_masks: torch.Tensor, input_size: tuple[int, int], image_size: tuple[int, int]) -> None:
        self.masks = pred_masks.float()
        hl, wl = self.masks.shape[-2:]
        self.ay = composed_resize(image_size[0], input_size[0], hl).to(self.masks.device)  # (H, hl)
        self.ax = composed_resize(image_size[1], input_size[1], wl).to(self.masks.device)  # (W, wl)
        self.y_first, self.y_last = _support(self.ay)
        self.x_first, self.x_last = _support(self.ax)
        self.band = max(1, BAND_FLOATS // max(1, image_size[1]))  # rows per band

    def pieces(self, box: Box) -> list[Box]:
        """``box`` cut along the band grid (rows k * band ... (k + 1) * band)."""
        starts = range(box.y0 - box.y0 % self.band, box.y1, self.band)
        return [box.rows(y, y + self.band) for y in starts]  # type: ignore[misc]

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


@dataclass
class _Scored:
    """One query's full-size mask: its box, mean probability inside it, and its runs."""

    box: Box
    score: float
    toggles: np.ndarray


def _toggles(flat: np.ndarray, offset: int, before: bool) -> np.ndarray:
    """Indices (from ``offset``) where ``flat`` switches, ``before`` being the value ahead of it."""
    t = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    if flat.size and bool(flat[0]) != before:
        t = np.concatenate([[0], t])
    return t + offset


class _BandCache:
    """Band logits of the scoring pass kept for the paste, up to ``CACHE_FLOATS`` floats."""

    def __init__(self) -> None:
        self.kept: dict[tuple[int, int], torch.Tensor] = {}  # (query, band start) -> logits
        self.left = CACHE_FLOATS

    def offer(self, q: int, piece: Box, lg: torch.Tensor) -> None:
        if piece.area <= self.left:
            self.kept[(q, piece.y0)] = lg
            self.left -= piece.area

    def logits(self, up: MaskUpsampler, q: int, piece: Box) -> torch.Tensor:
        lg = self.kept.get((q, piece.y0))
        return lg if lg is not None else up.logits(q, piece)


def _score_query(up: MaskUpsampler, q: int, box: Box, cache: _BandCache) -> _Scored:
    """Mean probability inside query ``q``'s mask (logit > 0) and its runs, band by band."""
    area, prob, runs, before, offset = 0, 0.0, [], False, 0
    for piece in up.pieces(box):
        lg = up.logits(q, piece)
        binary = lg > 0
        area += int(binary.sum())
        prob += float(lg.sigmoid().mul_(binary).sum())
        flat = binary.cpu().numpy().reshape(-1)
        runs.append(_toggles(flat, offset, before))
        before, offset = bool(flat[-1]), offset + flat.size
        cache.offer(q, piece, lg)
    score = float(np.float32(prob) / np.float32(area + 1e-6))
    return _Scored(box, score, np.concatenate(runs).astype(np.int64))


@dataclass(frozen=True)
class InstanceParsing:
    """What :func:`parse_instances` returns: the semantic parse and the two instance sets."""

    semantic: np.ndarray  # (H, W) uint8 class ids
    semantic_score: np.ndarray | None  # (H, W) float32 max semantic probability, or None
    parts: InstanceSet
    humans: InstanceSet


class _Entry(NamedTuple):
    """A top-k (query, class) pair: its rank, class, query and score (class prob x mask score)."""

    rank: int
    label: int
    query: int
    score: float


def _candidates(pred_logits: torch.Tensor, min_thr: float, topk: int) -> list[_Entry]:
    """The top-k (query, class) pairs whose class probability can reach ``min_thr``; score = that prob."""
    q_count, k1 = pred_logits.shape
    k = k1 - 1
    scores = F.softmax(pred_logits.float(), dim=-1)[:, :-1]
    vals, idx = scores.flatten().topk(min(topk, q_count * k), sorted=True)
    vals, idx = vals.cpu(), idx.cpu()  # read one by one below: on the host
    labels = idx % k
    queries = idx // k
    relevant = (vals >= min_thr * (1 - 1e-4)).nonzero().flatten().tolist()
    return [_Entry(i, int(labels[i]), int(queries[i]), float(np.float32(vals[i]))) for i in relevant]


def _instance_set(sel: list[_Entry], scored: dict[int, _Scored], image_size: tuple[int, int]) -> InstanceSet:
    """The selected entries as an :class:`InstanceSet` (their queries' boxes and runs)."""
    if not sel:
        return InstanceSet.empty(image_size)
    boxes = [scored[e.query].box for e in sel]
    return InstanceSet(
        np.array([e.label for e in sel], np.int64),
        np.array([e.score for e in sel], np.float64),
        np.array([(b.y0, b.y1, b.x0, b.x1) for b in boxes], np.int64).reshape(-1, 4),
        tuple(scored[e.query].toggles for e in sel),
        image_size,
    )


def parse_instances(
    pred_logits: torch.Tensor,
    pred_masks: torch.Tensor,
    input_size: tuple[int, int],
    image_size: tuple[int, int],
    num_parsing: int,
    ins_score_thr: float,
    keep_semantic_score: bool = True,
    topk: int = TOPK,
) -> InstanceParsing:
    """M2FP's ``instance_parsing_inference`` and semantic paste.

    Args:
        pred_logits: (Q, K + 1) class logits (last = no object).
        pred_masks: (Q, Hp/4, Wp/4) mask logits.
        input_size: (h, w) of the resized image inside the padded canvas.
        image_size: (H, W) of the original image.
        num_parsing: parsing classes (labels 0..num_parsing-1; label num_parsing = human).
        ins_score_thr: instances at or above this score are pasted into the semantic map.
    """
    image_size = (int(image_size[0]), int(image_size[1]))
    candidates = _candidates(pred_logits, min(PART_SCORE_THR, HUMAN_SCORE_THR, ins_score_thr), topk)
    up = MaskUpsampler(pred_masks, input_size, image_size)
    cache = _BandCache()
    scored: dict[int, _Scored] = {}
    for q in sorted({e.query for e in candidates}):
        box = up.box(q)
        if box is not None:  # else no positive logit anywhere: an empty mask, score 0
            scored[q] = _score_query(up, q, box, cache)
    entries = [
        e._replace(score=float(np.float32(e.score) * np.float32(scored[e.query].score if e.query in scored else 0.0)))
        for e in candidates
    ]
    # kept instances have score > 0, so a non-empty mask (an entry in ``scored``)
    parts = _instance_set(
        [e for e in entries if 0 < e.label < num_parsing and e.score >= PART_SCORE_THR], scored, image_size
    )
    humans = _instance_set(
        [e for e in entries if e.label == num_parsing and e.score > HUMAN_SCORE_THR], scored, image_size
    )
    pasted = [(e.label, e.query, e.score) for e in entries if e.score >= ins_score_thr and e.query in scored]
    label_map, best = _semantic_paste(pasted, up, scored, cache, image_size, num_parsing, keep_semantic_score)
    return InstanceParsing(label_map.cpu().numpy(), best.cpu().numpy() if best is not None else None, parts, humans)


def _semantic_paste(
    pasted: list[tuple[int, int, float]],
    up: MaskUpsampler,
    scored: dict[int, _Scored],
    cache: _BandCache,
    image_size: tuple[int, int],
    num_parsing: int,
    keep_score: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The label map and (when ``keep_score``) the max semantic probability, band by band.

    The arg-max runs in float32 within each band; the whole-photo score map keeps float16
    (:data:`SCORE_DTYPE`): 2 bytes a pixel instead of 4 (180 MB less at 89 Mpx), the same labels,
    part scores within 5e-4 (the raw output always stored it as float16)."""
    by_class = [
        sorted(((q, s) for label, q, s in pasted if label == c), key=lambda e: e[1]) for c in range(num_parsing)
    ]
    device = up.masks.device
    label_map = torch.zeros(image_size, dtype=torch.uint8, device=device)
    best = torch.zeros(image_size, dtype=SCORE_DTYPE, device=device) if keep_score else None
    for y0 in range(0, image_size[0], up.band):
        y1 = min(image_size[0], y0 + up.band)
        band_best = torch.zeros((y1 - y0, image_size[1]), device=device)
        for c, inst in enumerate(by_class):
            pieces = [(q, s, scored[q].box.rows(y0, y1)) for q, s in inst]
            _paste_class(c, [(q, s, b) for q, s, b in pieces if b is not None], up, cache, label_map, band_best, y0)
        if best is not None:
            best[y0:y1] = band_best
    return label_map, best


def _paste_class(
    c: int,
    inst: list[tuple[int, float, Box]],
    up: MaskUpsampler,
    cache: _BandCache,
    label_map: torch.Tensor,
    band_best: torch.Tensor,
    y0: int,
) -> None:
    """Class ``c`` in one band: the mean pasted probability of its instances (ascending score)
    where it exceeds 0.5, then the running arg-max over classes; reads only its pieces.

    A pixel outside a query's box has logit <= 0, so probability x score <= 0.5: no hit.
    """
    if not inst:
        return  # an all-zero class map never beats the running max (ties keep the lower class)
    win = inst[0][2]
    for _, _, b in inst[1:]:
        win = win.union(b)
    acc = torch.zeros(win.y1 - win.y0, win.x1 - win.x0, device=label_map.device)
    cnt = torch.zeros(acc.shape, dtype=torch.int16, device=label_map.device)  # instances per pixel (<= TOPK)
    for q, s, b in inst:
        prob = cache.logits(up, q, b).sigmoid().mul_(s)
        hit = prob > 0.5
        inner = (slice(b.y0 - win.y0, b.y1 - win.y0), slice(b.x0 - win.x0, b.x1 - win.x0))
        acc[inner] += prob.mul_(hit)  # == where(hit, prob + acc, acc): prob is finite
        cnt[inner] += hit
        del prob, hit
    cat = acc.div_(cnt.clamp_(min=1))
    del cnt
    rows, cols = slice(win.y0, win.y1), slice(win.x0, win.x1)
    region = band_best[win.y0 - y0 : win.y1 - y0, cols]
    label_map[rows, cols][cat > region] = c
    torch.maximum(region, cat, out=region)  # in place: no second full-size map


def persons_from(humans: InstanceSet, semantic: np.ndarray) -> list[Person]:
    """One :class:`Person` per human instance: its mask, bbox and the parse inside it."""
    out = []
    for i in range(len(humans)):
        (by0, _, bx0, _), m = humans.box_mask(i)
        tight = mask_bbox(m)
        if tight is None:
            bbox, crop = (0, 0, 0, 0), m[:0, :0]
        else:
            cx0, cy0, cx1, cy1 = tight
            crop = m[cy0:cy1, cx0:cx1]
            crop = crop if crop.shape == m.shape else crop.copy()  # not a view keeping the whole box
            bbox = (bx0 + cx0, by0 + cy0, bx0 + cx1, by0 + cy1)
        x0, y0, x1, y1 = bbox
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
