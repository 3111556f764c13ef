"""The labelling core on the tiny model and a real photo: guards, model input, the engine step with
its per-image retry, rows with provenance (the job's actor and the service's replica both run these)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageFile
from skimage import data

from m2fp_batch.photo_to_row import PROVENANCE_COLUMNS, PhotoToRow
from m2fp_batch.schema import SCHEMA_VERSION
from m2fp_batch.settings import EngineSettings


def _jpeg(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", quality=92)
    return buf.getvalue()


@pytest.fixture(scope="module")
def core(tiny_model_dir) -> PhotoToRow:
    settings = EngineSettings(model=str(tiny_model_dir), short_edge=256, max_size=512, max_bytes=2_000_000, threads=1)
    ImageFile.LOAD_TRUNCATED_IMAGES = True  # a library switched it on: loading the core switches it off
    try:
        return PhotoToRow.load(settings)
    finally:
        truncated_was_on = ImageFile.LOAD_TRUNCATED_IMAGES
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        assert truncated_was_on is False


def test_load_records_provenance(core):
    assert set(core.provenance) == set(PROVENANCE_COLUMNS)
    assert core.provenance["config_hash"] == core.settings.label_hash() and core.provenance["checkpoint_sha256"]


def test_decode_guards_become_error_columns(core):
    photo = _jpeg(data.astronaut())
    ok = core.decode(photo)
    assert ok.error is None and ok.image.shape == (512, 512, 3) and ok.seconds > 0
    big = core.decode(photo + b"\0" * core.settings.max_bytes)
    assert big.image is None and big.error["error_kind"] == "too_large" and "max_bytes" in big.error["error"]
    junk = core.decode(b"<html>not a photo</html>")
    assert junk.image is None and junk.error["error_kind"] == "not_an_image" and junk.error["status"] == "error"


def test_a_failing_photo_in_a_batch_fails_alone(core):
    good = core.decode(_jpeg(data.astronaut())).image
    bad = np.zeros((64, 64), np.uint8)  # not (H, W, 3): the engine raises ValueError
    outcomes = core.infer([good, bad, good])
    assert isinstance(outcomes[1], ValueError)
    assert not isinstance(outcomes[0], Exception) and not isinstance(outcomes[2], Exception)
    np.testing.assert_array_equal(outcomes[0].semantic, outcomes[2].semantic)
    labels = [core.label(im, o, 1.0) for im, o in zip([good, bad, good], outcomes, strict=True)]
    assert [lab["status"] for lab in labels] == ["ok", "error", "ok"]
    assert labels[1]["error_kind"] == "inference_error" and labels[1]["error"].startswith("the model failed")
    assert labels[0] == {**labels[2], "timings": labels[0]["timings"]}


def test_label_images_and_row(core):
    image = core.decode(_jpeg(data.astronaut())).image
    (label,) = core.label_images([image])
    row = core.row({"image_id": "a", "uri": "astronaut.jpg", "shard": 0}, label, 0.01, 0.02)
    assert row["schema_version"] == SCHEMA_VERSION and row["status"] == "ok" and row["brightened"] is False
    assert {k: row[k] for k in PROVENANCE_COLUMNS} == core.provenance
    assert row["timings"]["read_s"] == 0.01 and row["timings"]["decode_s"] == 0.02 and row["timings"]["forward_s"] > 0
