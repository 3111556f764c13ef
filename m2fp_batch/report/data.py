"""Read a job's Parquet output into flat tables for the report (pyarrow + pandas, no masks decoded).

``load_output(dir)`` returns three DataFrames:

* ``images``: one row per image (``image_id``, ``status``, ``width``, ``height``, ``num_persons``,
  ``brightness_factor``);
* ``persons``: one row per person (``image_id``, ``person_id``, ``score``, ``area``, ``x0 y0 x1 y1``,
  the skin-tone fields ``group``, ``ita``, ``ita_category``, ``monk``, ``skin_pixels``,
  ``skin_confidence``, ``hue`` (NaN before schema v3), ``source`` (``measured`` before v3; ``not
  measured`` for a null source), the image's ``brightness_factor``, and for a video frame's person
  ``video_id``, ``track_id`` and the track's one group ``track_group`` (null otherwise));
* ``parts``: one row per part of a person (``image_id``, ``person_id``, ``group``, ``label_id``,
  ``label``, ``area``, ``fraction``, ``score``).

The column names of the job output it relies on are the constants below (schema ``labels_v5``; v2 to v4 read too).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from m2fp_batch.errors import UserError
from m2fp_batch.labels import LabelsError, open_labels
from m2fp_batch.schema import SKIN_SOURCES

# Job-output names the report reads (m2fp_batch/schema.py).
COL_PERSONS = "persons"
COL_SEMANTIC = "semantic"
COL_BRIGHTNESS = "brightness_factor"  # image level: factor applied to the model input (1.0 none)
PERSON_SKIN = "skin_tone"  # persons[].skin_tone struct (SkinTone fields)
COL_VIDEO = "video_id"  # a sampled frame's video (schema v5); its people carry track_id, track_skin_tone
IMAGE_COLUMNS = ("image_id", "status", "width", "height", "num_persons")
NOT_MEASURED = "not measured"  # the source of a person whose struct holds no tone (v3 source null)


class ReportError(UserError):
    """The job output cannot be reported on (missing files, wrong schema); the message says why."""


@dataclass(frozen=True)
class OutputTable:
    """A job output as read: all its rows, its files and the job's settings (``_config.json``)."""

    table: pa.Table  # semantic masks included only when asked for
    files: tuple[str, ...]
    settings: dict | None  # None when not recorded


@dataclass(frozen=True)
class JobOutput:
    """A job output read and flattened for the report (see the module docstring)."""

    images: pd.DataFrame
    persons: pd.DataFrame
    parts: pd.DataFrame
    files: tuple[str, ...]
    schema_versions: tuple[int, ...]
    table: pa.Table  # the rows as read (semantic masks included only when asked for)
    adaptive_brightness: bool | None  # the job's setting (_config.json); None when not recorded


def read_table(directory: str | Path, with_semantic: bool = False) -> OutputTable:
    """All rows of the job output, its files and the job settings; ``semantic`` only when ``with_semantic``."""
    try:
        source = open_labels(directory)
        tables = []
        for f in source.files:
            names = source.schema(f).names
            missing = [c for c in (*IMAGE_COLUMNS, COL_PERSONS) if c not in names]
            if missing:
                raise ReportError(f"{f} lacks the column(s) {missing}: not an m2fp-batch job output")
            if with_semantic and COL_SEMANTIC not in names:
                raise ReportError(f"{f} has no '{COL_SEMANTIC}' column: the mIoU needs the semantic maps")
            tables.append(source.read_file(f, [c for c in names if c != COL_SEMANTIC or with_semantic]))
        settings = source.job_settings()
    except LabelsError as e:
        raise ReportError(str(e)) from e
    return OutputTable(pa.concat_tables(tables, promote_options="permissive"), tuple(source.files), settings)


def _flatten(list_array: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """(values, parent row index) of a list array (null lists contribute nothing)."""
    values = pc.list_flatten(list_array)
    parents = pc.list_parent_indices(list_array).to_numpy(zero_copy_only=False).astype(np.int64)
    return values, parents


def _field(struct: pa.Array, name: str) -> pa.Array:
    return pc.struct_field(struct, name)


def _num(struct: pa.Array, name: str, dtype: str = "float64") -> np.ndarray:
    return np.asarray(_field(struct, name).to_numpy(zero_copy_only=False), dtype=dtype)


def flatten(table: pa.Table) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(images, persons, parts) DataFrames of a job-output table (see the module docstring)."""
    table = table.combine_chunks()
    images = pd.DataFrame({c: table.column(c).to_pandas() for c in IMAGE_COLUMNS})
    if COL_BRIGHTNESS in table.column_names:
        images[COL_BRIGHTNESS] = table.column(COL_BRIGHTNESS).to_pandas().astype("float64")
    else:
        images[COL_BRIGHTNESS] = np.nan

    persons_arr = (
        table.column(COL_PERSONS).chunk(0) if table.num_rows else pa.array([], table.schema.field(COL_PERSONS).type)
    )
    person_type = persons_arr.type.value_type
    if person_type.get_field_index(PERSON_SKIN) < 0:
        raise ReportError(
            f"the persons have no '{PERSON_SKIN}' field (schema v1 output?): re-run the job with a version "
            "that writes the per-person skin tone (schema labels_v2 or later)"
        )
    pv, parent = _flatten(persons_arr)
    bbox = np.asarray(pc.list_flatten(_field(pv, "bbox")).to_numpy(zero_copy_only=False), dtype=np.int64).reshape(-1, 4)
    skin = _field(pv, PERSON_SKIN)
    persons = pd.DataFrame(
        {
            "image_index": parent,
            "image_id": images["image_id"].to_numpy()[parent],
            "person_id": _num(pv, "person_id", "int64"),
            "score": _num(pv, "score"),
            "area": _num(pv, "area", "int64"),
            "x0": bbox[:, 0],
            "y0": bbox[:, 1],
            "x1": bbox[:, 2],
            "y1": bbox[:, 3],
            "group": _field(skin, "group").to_pandas().fillna("unknown").to_numpy(),
            "ita": _num(skin, "ita"),
            "ita_category": _field(skin, "ita_category").to_pandas().fillna("unknown").to_numpy(),
            "monk": pd.array(_field(skin, "monk").to_pandas(), dtype="Int64"),
            "skin_pixels": _num(skin, "pixels"),
            "skin_confidence": _num(skin, "confidence"),
            **_hue_and_source(skin),
            COL_BRIGHTNESS: images[COL_BRIGHTNESS].to_numpy()[parent],
            **_tracks(table, pv, parent),
        }
    )
    partv, pparent = _flatten(_field(pv, "parts"))
    parts = pd.DataFrame(
        {
            "person_index": pparent,
            "image_id": persons["image_id"].to_numpy()[pparent],
            "person_id": persons["person_id"].to_numpy()[pparent],
            "group": persons["group"].to_numpy()[pparent],
            "label_id": _num(partv, "label_id", "int64"),
            "label": _field(partv, "label").to_pandas().to_numpy(),
            "area": _num(partv, "area", "int64"),
            "fraction": _num(partv, "fraction"),
            "score": _num(partv, "score"),
        }
    )
    return images, persons, parts


def _tracks(table: pa.Table, pv: pa.Array, parent: np.ndarray) -> dict[str, np.ndarray]:
    """A video frame's person: its video, track and the track's group (schema v5; else null)."""
    n = len(pv)
    if pv.type.get_field_index("track_id") < 0 or COL_VIDEO not in table.column_names:
        return {COL_VIDEO: np.full(n, None, dtype=object), "track_id": pd.array([None] * n, dtype="Int64"),
                "track_group": np.full(n, None, dtype=object)}  # fmt: skip
    videos = table.column(COL_VIDEO).to_pandas().to_numpy()
    tone = _field(pv, "track_skin_tone")
    return {
        COL_VIDEO: videos[parent] if n else np.full(0, None, dtype=object),
        "track_id": pd.array(_field(pv, "track_id").to_pandas(), dtype="Int64"),
        "track_group": _field(tone, "group").to_pandas().to_numpy(),
    }


def _hue_and_source(skin: pa.Array) -> dict[str, np.ndarray]:
    """The schema v3 skin fields; before v3 no hue (NaN) and every tone was measured."""
    names = {skin.type.field(i).name for i in range(skin.type.num_fields)}
    n = len(skin)
    hue = _num(skin, "hue") if "hue" in names else np.full(n, np.nan)
    if "source" not in names:
        return {"hue": hue, "source": np.full(n, SKIN_SOURCES[0], dtype=object)}
    return {"hue": hue, "source": _field(skin, "source").to_pandas().fillna(NOT_MEASURED).to_numpy()}


def adaptive_brightness_setting(settings: dict | None) -> bool | None:
    """The job's ``adaptive_brightness`` setting (from ``_config.json``); None when not recorded."""
    value = (settings or {}).get("adaptive_brightness")
    return None if value is None else bool(value)


def load_output(directory: str | Path, with_semantic: bool = False) -> JobOutput:
    """Read and flatten a job output directory."""
    read = read_table(directory, with_semantic=with_semantic)
    images, persons, parts = flatten(read.table)
    versions = (
        tuple(sorted({int(v) for v in read.table.column("schema_version").to_pylist()}))
        if "schema_version" in read.table.column_names
        else ()
    )
    return JobOutput(
        images, persons, parts, read.files, versions, read.table, adaptive_brightness_setting(read.settings)
    )
