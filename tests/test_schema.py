"""The output schema: the generated files in schemas/ match the code; required columns exist."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from m2fp_batch import schema

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"


def test_schema_files_in_sync():
    for name, text in schema.generated_files().items():
        path = SCHEMAS / name
        assert path.is_file(), f"{path} is missing: run python -m m2fp_batch.schema --write schemas"
        assert path.read_text() == text, f"{path} is stale: run python -m m2fp_batch.schema --write schemas"


def test_regenerate_command(tmp_path):
    subprocess.run([sys.executable, "-m", "m2fp_batch.schema", "--write", str(tmp_path)], check=True)
    for name, text in schema.generated_files().items():
        assert (tmp_path / name).read_text() == text


def test_required_columns_and_masks():
    s = schema.SCHEMA
    for col in (
        "image_id",
        "uri",
        "width",
        "height",
        "status",
        "error",
        "persons",
        "semantic",
        "model_id",
        "model_revision",
        "checkpoint_sha256",
        "package_version",
        "config_hash",
        "timings",
    ):
        assert col in s.names
    person = s.field("persons").type.value_type
    assert {person.field(i).name for i in range(person.num_fields)} >= {
        "person_id",
        "score",
        "bbox",
        "mask",
        "area",
        "parts",
    }
    part = person.field("parts").type.value_type
    assert {part.field(i).name for i in range(part.num_fields)} >= {
        "label_id",
        "label",
        "area",
        "fraction",
        "bbox",
        "score",
        "mask",
    }
    rle = person.field("mask").type
    assert rle.field("size").type == pa.list_(pa.int32()) and rle.field("counts").type == pa.string()


def test_output_schema_passthrough_and_clash():
    extra = pa.schema([("caption", pa.string()), ("rating", pa.int64())])
    out = schema.output_schema(extra)
    assert out.names[-2:] == ["caption", "rating"] and out.field("rating").type == pa.int64()
    with pytest.raises(ValueError, match="collide"):
        schema.output_schema(pa.schema([("status", pa.string())]))


def test_v5_has_video_frames_and_tracks_v4_the_device_and_v3_skin_tone_has_hue_and_source():
    assert schema.SCHEMA_VERSION == 5 and schema.SCHEMA_NAME == "labels_v5"
    assert schema.COLUMN_NAMES[-len(schema.VIDEO_COLUMNS) :] == schema.VIDEO_COLUMNS
    assert all(schema.SCHEMA.field(c).nullable for c in schema.VIDEO_COLUMNS)  # null on a photo's row
    person_fields = schema.SCHEMA.field("persons").type.value_type
    assert [person_fields.field(i).name for i in range(person_fields.num_fields)][-2:] == [
        "track_id",
        "track_skin_tone",
    ]
    assert {"video_error", "not_a_video"} <= set(schema.ERROR_KINDS)
    assert schema.COLUMN_NAMES[schema.COLUMN_NAMES.index("config_hash") + 1] == "device"
    person = schema.SCHEMA.field("persons").type.value_type
    skin = person.field("skin_tone").type
    names = [skin.field(i).name for i in range(skin.num_fields)]
    assert names[-2:] == ["hue", "source"]
    assert skin.field("hue").type == pa.float32() and skin.field("source").type == pa.string()
    assert schema.SKIN_SOURCES == ("measured", "derived", "reviewed")
    # the older versions stay readable through labels/
    from m2fp_batch.labels import SUPPORTED_SCHEMA_VERSIONS

    assert SUPPORTED_SCHEMA_VERSIONS == (1, 2, 3, 4, 5)
    # the previous versions' descriptions are kept
    assert all((SCHEMAS / f"labels_v{v}.json").is_file() for v in (2, 3, 4))
