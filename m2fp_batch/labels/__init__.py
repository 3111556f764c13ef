"""The one reader of the job output: committed shards -> rows -> label arrays.

Used by review, report, data and the exports; imports neither pipeline nor any consumer. The
output directory's layout contract (shard names, the commit rule) is :mod:`.layout`.
"""

from m2fp_batch.labels.maps import (
    DecodedPerson,
    LabelMaps,
    MaskSizeError,
    PartInstance,
    class_name,
    decode_mask,
    decode_persons,
    human_map,
    label_maps,
    part_instance_map,
    part_instances,
    person_parts_map,
    semantic_map,
    skin_tone_source,
    skin_tones,
)
from m2fp_batch.labels.pixels import is_frame, row_pixels
from m2fp_batch.labels.reader import (
    SUPPORTED_SCHEMA_VERSIONS,
    LabelsError,
    LabelSource,
    is_trainable,
    open_labels,
)

__all__ = [
    "SUPPORTED_SCHEMA_VERSIONS",
    "DecodedPerson",
    "LabelMaps",
    "LabelSource",
    "LabelsError",
    "MaskSizeError",
    "PartInstance",
    "class_name",
    "decode_mask",
    "decode_persons",
    "human_map",
    "is_frame",
    "is_trainable",
    "label_maps",
    "open_labels",
    "part_instance_map",
    "part_instances",
    "person_parts_map",
    "row_pixels",
    "semantic_map",
    "skin_tone_source",
    "skin_tones",
]
