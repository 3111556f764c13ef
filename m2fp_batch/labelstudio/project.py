"""What our Label Studio project looks like: the labelling config, regions, tasks (pure; no HTTP).

The config has one ``BrushLabels`` control, ``m2fp_parts``, with 20 labels: ``Human`` (a person's
whole mask) and the 19 CIHP part classes, coloured with the project's palette; and a ``Choices``
control, ``m2fp_verdict`` (``approved`` / ``rejected``), for the task's verdict.

Every person is an instance: a ``Human`` region with id ``p<k>`` (k = the person's index in the
row) and one region per part, id ``p<k>c<label_id>``. A region a reviewer adds gets Label Studio's
own random id: a new ``Human`` region is a new person; a new part region belongs to the person
(``Human`` region) it overlaps most, or, overlapping none, to one new person made of such parts.
A person's mask is its ``Human`` region plus the pixels its parts gained.
"""

from __future__ import annotations

import hashlib
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any

from m2fp_batch.annotate import ls_rle
from m2fp_batch.annotate.palette import CIHP_CLASSES, hex_color
from m2fp_batch.errors import UserError
from m2fp_batch.labels import DecodedPerson
from m2fp_batch.schema import REJECTED

__all__ = [
    "CONTROL",
    "HUMAN",
    "IMAGE",
    "LABELS",
    "PART_IDS",
    "VERDICT",
    "VERDICT_APPROVED",
    "VERDICT_REJECTED",
    "ForeignProjectError",
    "brush_region",
    "check_config",
    "config_problem",
    "label_config",
    "label_id_of",
    "model_version",
    "parse_region_id",
    "prediction_result",
    "region_id",
    "task_fingerprint",
]

IMAGE = "image"
CONTROL = "m2fp_parts"
VERDICT = "m2fp_verdict"
VERDICT_APPROVED = "approved"
VERDICT_REJECTED = REJECTED  # the choice that rejects: the review status's word
HUMAN = CIHP_CLASSES[-1]
PART_IDS = tuple(range(1, len(CIHP_CLASSES) - 1))  # the 19 part classes (no Background, no Human)
LABELS = (HUMAN, *(CIHP_CLASSES[i] for i in PART_IDS))
_REGION_ID = re.compile(r"^p(\d+)(?:c(\d+))?$")


class ForeignProjectError(UserError):
    """The Label Studio project was not made by m2fp-batch (its labelling config is not ours)."""


def label_config() -> str:
    """The project's labelling config (XML)."""
    labels = "\n".join(
        f'    <Label value="{name}" background="{hex_color(CIHP_CLASSES.index(name))}"/>' for name in LABELS
    )
    return (
        "<View>\n"
        '  <Header value="m2fp-batch: fix the people and their parts, then approve or reject"/>\n'
        f'  <Image name="{IMAGE}" value="$image" zoom="true" zoomControl="true"/>\n'
        f'  <BrushLabels name="{CONTROL}" toName="{IMAGE}">\n{labels}\n  </BrushLabels>\n'
        f'  <Choices name="{VERDICT}" toName="{IMAGE}" choice="single" showInline="true">\n'
        f'    <Choice value="{VERDICT_APPROVED}"/>\n    <Choice value="{VERDICT_REJECTED}"/>\n'
        "  </Choices>\n"
        "</View>\n"
    )


def check_config(project: Mapping[str, Any]) -> bool:
    """Whether ``project`` is ours and its config is current (False: ours, but an older config).

    Raises:
        ForeignProjectError: the config has no ``m2fp_parts`` brush control with our labels.
    """
    title = project.get("title")
    config = project.get("label_config") or ""
    problem = config_problem(config)
    if problem is not None:
        raise ForeignProjectError(
            f"Label Studio project {title!r} was not made by m2fp-batch ({problem}): give another --project name"
        )
    return config.strip() == label_config().strip()


def config_problem(config: str) -> str | None:
    """Why a labelling config is not ours (None: it is): it needs the ``m2fp_parts`` brush control on
    the ``image`` object, with labels among our 20 classes (:data:`LABELS`)."""
    try:
        root = ET.fromstring(config or "")
    except ET.ParseError as e:
        return f"its labelling config is not XML: {e}"
    control = root.find(f".//BrushLabels[@name='{CONTROL}']")
    if control is None:
        return f"its labelling config has no {CONTROL!r} brush control"
    labels = {e.get("value") for e in control.iter("Label")}
    other = sorted(str(v) for v in labels - set(LABELS))
    if other:
        return f"its {CONTROL!r} labels {other} are not among the 20 classes of M2FP ({', '.join(LABELS)})"
    if control.get("toName") != IMAGE or root.find(f".//Image[@name='{IMAGE}']") is None:
        return f"its {CONTROL!r} control does not label an Image named {IMAGE!r}"
    return None


def region_id(person: int, label_id: int | None = None) -> str:
    """``p<k>`` for person k's Human region, ``p<k>c<label_id>`` for one of its parts."""
    return f"p{person}" if label_id is None else f"p{person}c{label_id}"


def parse_region_id(rid: str) -> tuple[int, int | None] | None:
    """(person, label id or None) of one of our region ids; None for any other id."""
    m = _REGION_ID.match(str(rid))
    return None if m is None else (int(m.group(1)), None if m.group(2) is None else int(m.group(2)))


def label_id_of(name: str) -> int:
    """Class id of a brush label (``Human`` -> its CIHP index 20).

    Raises:
        KeyError: not one of :data:`LABELS`.
    """
    if name not in LABELS:
        raise KeyError(name)
    return CIHP_CLASSES.index(name)


def brush_region(rid: str, label: str, mask, shape: tuple[int, int], score: float | None) -> dict:
    """One ``brushlabels`` result item (mask in Label Studio's RLE)."""
    h, w = shape
    region = {
        "id": rid,
        "from_name": CONTROL,
        "to_name": IMAGE,
        "type": "brushlabels",
        "original_width": int(w),
        "original_height": int(h),
        "image_rotation": 0,
        "value": {"format": "rle", "rle": ls_rle.encode(mask), "brushlabels": [label]},
    }
    if score is not None:
        region["score"] = float(score)
    return region


def prediction_result(persons: list[DecodedPerson], shape: tuple[int, int]) -> list[dict]:
    """The regions of a row's people: per person its Human region, then one region per part."""
    out = []
    for p in persons:
        out.append(brush_region(region_id(p.index), HUMAN, p.mask, shape, p.score))
        for label_id, m, s in zip(p.part_ids, p.part_masks, p.part_scores, strict=True):
            out.append(brush_region(region_id(p.index, label_id), CIHP_CLASSES[label_id], m, shape, s))
    return out


def model_version(row: Mapping[str, Any]) -> str:
    """The prediction's model provenance: model id (or dir), checkpoint sha256 prefix, config hash."""
    model = row.get("model_id") or row.get("model") or "m2fp"
    return f"{model} ckpt:{str(row.get('checkpoint_sha256') or '')[:12]} cfg:{row.get('config_hash') or ''}"


def task_fingerprint(row: Mapping[str, Any], data: Mapping[str, Any]) -> str:
    """A digest of what a push sends for a row (labels, provenance, task data): equal means nothing to update."""
    labels = [
        (p["score"], p["mask"]["counts"], [(q["label_id"], q["mask"]["counts"], q.get("score")) for q in p["parts"]])
        for p in row.get("persons") or []
    ]
    body = json.dumps([model_version(row), labels, {k: v for k, v in data.items() if k != "m2fp_sha"}], default=str)
    return hashlib.sha1(body.encode()).hexdigest()
