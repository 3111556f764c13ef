"""The FiftyOne side of a review sample's labels, shared by the image and the video dataset: the
fields and labels of one row (:class:`.convert.SampleData`) set on a sample or a video frame, the
mask targets and the App colours."""

from __future__ import annotations

from m2fp_batch.annotate.palette import CIHP_CLASSES, hex_color
from m2fp_batch.review.convert import SampleData
from m2fp_batch.review.fo import fo

__all__ = ["INFO_KEY", "color_scheme", "declare_row_fields", "mask_targets", "set_label_fields"]

INFO_KEY = "m2fp_batch"  # the key of the review datasets' own entry in ``ds.info``


def mask_targets() -> dict[int, str]:
    """Class id -> CIHP class name for the ``parsing`` / ``person_parts`` masks (0 = Background)."""
    return {i: name for i, name in enumerate(CIHP_CLASSES) if name != "Human"}


def color_scheme(prefix: str = "") -> fo.ColorScheme:
    """The App colour scheme: the project's palette for both parse fields, white people.

    ``prefix``: ``frames.`` for the video dataset, whose labels are on the frames.
    """
    colors = [{"intTarget": i, "color": hex_color(i)} for i in mask_targets() if i != 0]
    return fo.ColorScheme(
        color_by="value",
        fields=[
            {"path": f"{prefix}parsing", "maskTargetsColors": colors},
            {"path": f"{prefix}person_parts", "maskTargetsColors": colors},
            {"path": f"{prefix}people", "fieldColor": hex_color(CIHP_CLASSES.index("Human"))},
        ],
        default_mask_targets_colors=colors,
    )


def set_label_fields(doc: fo.Sample | fo.Frame, data: SampleData, skip: tuple[str, ...] = ()) -> None:
    """Set the row's fields (but ``skip``) and its labels (parse masks, people, part stats) on ``doc``."""
    for k, v in data.fields.items():
        if k not in skip:
            doc[k] = fo.DynamicEmbeddedDocument(**v) if isinstance(v, dict) else v
    doc["parsing"] = None if data.parsing is None else fo.Segmentation(mask_path=data.parsing)
    doc["person_parts"] = None if data.person_parts is None else fo.Segmentation(mask_path=data.person_parts)
    if data.people is None:
        doc["people"] = None
    else:
        doc["people"] = fo.Detections(detections=[fo.Detection(**d) for d in data.people])
    if data.part_stats is not None:
        stats = fo.DynamicEmbeddedDocument()
        for name, values in data.part_stats.items():
            stats[name] = fo.DynamicEmbeddedDocument(**values)
        doc["part_stats"] = stats


def declare_row_fields(ds: fo.Dataset, frames: bool = False) -> None:
    """Declare the row fields that are often empty or None in a whole import (schema v1, no person),
    so they get their type all the same; on the frames of a video dataset when ``frames``."""
    schema = ds.get_frame_field_schema() if frames else ds.get_field_schema()
    add = ds.add_frame_field if frames else ds.add_sample_field
    for name in ("review_reasons", "anomalies", "skin_groups"):
        if name not in schema:
            add(name, fo.ListField, subfield=fo.StringField)
    declared = {
        "brightened": fo.BooleanField,
        "brightness_factor": fo.FloatField,
        "ita_mean": fo.FloatField,
        "min_person_score": fo.FloatField,
        "min_part_score": fo.FloatField,
    }
    for name, ftype in declared.items():
        if name not in schema:
            add(name, ftype)
