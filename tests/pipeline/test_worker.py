"""The labelling stage without Ray: rows for decoded and failed inputs, and the crash ledger
(an image whose attempts killed the worker twice becomes an error row; its batch mates run)."""

from __future__ import annotations

import dataclasses

import pyarrow as pa
import pytest
from badfiles import MAX_PIXELS, MIN_SIDE, bad_files, good_files

from m2fp_batch.pipeline.config import JobSettings
from m2fp_batch.pipeline.worker import CrashLedger, Labeler
from m2fp_batch.schema import SCHEMA, output_schema
from m2fp_batch.settings import EngineSettings


def _batch(items: list[tuple[str, bytes | None]]) -> pa.Table:
    n = len(items)
    return pa.table(
        {
            "image_id": [f"id{i}" for i in range(n)],
            "uri": [name for name, _ in items],
            "shard": pa.array([0] * n, pa.int32()),
            "data": pa.array([d for _, d in items], pa.large_binary()),
            "read_error": [None if d is not None else "the file does not exist: x" for _, d in items],
            "read_error_kind": [None if d is not None else "missing" for _, d in items],
            "read_s": [0.001] * n,
            "caption": [f"c{i}" for i in range(n)],
        }
    )


@pytest.fixture(scope="module")
def settings(tiny_model_dir) -> JobSettings:
    engine = EngineSettings(model=str(tiny_model_dir), max_pixels=MAX_PIXELS, min_side=MIN_SIDE)
    return JobSettings(input="x", output="y", engine=engine)


def _with(cfg: JobSettings, **engine) -> JobSettings:
    return dataclasses.replace(cfg, engine=dataclasses.replace(cfg.engine, **engine))


def test_rows_for_good_bad_and_missing(settings):
    schema = output_schema(pa.schema([("caption", pa.string())]))
    labeler = Labeler(settings, schema, None, threads=1)
    batch = _batch(
        [
            ("photo.jpg", good_files()["good/photo.jpg"][0]),
            ("trunc.png", bad_files()["bad/truncated.png"][0]),
            ("gone.jpg", None),
            ("cmyk.jpg", good_files()["good/cmyk.jpg"][0]),
        ]
    )
    out = labeler(batch)
    assert out.schema.equals(schema, check_metadata=False)
    rows = out.to_pylist()
    assert [r["status"] for r in rows] == ["ok", "error", "error", "ok"]
    assert [r["error_kind"] for r in rows] == [None, "truncated", "missing", None]
    assert [r["caption"] for r in rows] == ["c0", "c1", "c2", "c3"]
    ok = rows[0]
    assert (ok["width"], ok["height"]) == (512, 512) and ok["num_persons"] == len(ok["persons"]) > 0
    assert ok["checkpoint_sha256"] and ok["config_hash"] == settings.engine.label_hash()
    assert ok["timings"]["forward_s"] > 0 and ok["timings"]["read_s"] == pytest.approx(0.001)
    assert rows[1]["persons"] is None and rows[1]["error"].startswith("the image data is truncated")


def test_image_that_crashed_workers_twice_becomes_an_error_row(settings):
    photo = good_files()["good/photo.jpg"][0]
    batch = _batch([("a.jpg", photo), ("b.jpg", photo), ("c.jpg", photo)])
    ledger = CrashLedger()
    # worker 1 died during the batch; worker 2 died while running id1 alone
    assert ledger.begin_batch(["id0", "id1", "id2"]) == [0, 0, 0]
    assert ledger.begin_one("id1") == 1
    labeler = Labeler(settings, SCHEMA, ledger, threads=1)
    rows = labeler(batch.drop_columns(["caption"])).to_pylist()
    assert [r["status"] for r in rows] == ["ok", "error", "ok"]
    assert rows[1]["error_kind"] == "worker_crash" and "2 times" in rows[1]["error"]
    assert ledger.size() == 0
    # a clean batch runs as one batch and leaves nothing behind
    assert [r["status"] for r in labeler(batch.drop_columns(["caption"])).to_pylist()] == ["ok"] * 3
    assert ledger.size() == 0


def test_skin_tone_uses_original_pixels_and_brightness_is_recorded(settings, tiny_model_dir):
    import numpy as np

    from m2fp_batch.annotate.brightness import adaptive_brightness
    from m2fp_batch.annotate.skin_tone import person_skin_tone
    from m2fp_batch.decode import decode_image
    from m2fp_batch.inference import M2FPParser

    photo = good_files()["good/photo.jpg"][0]
    dark = (decode_image(photo, max_pixels=MAX_PIXELS).astype(np.float64) * 0.2).astype(np.uint8)
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(dark).save(buf, "PNG")
    labeler = Labeler(_with(settings, adaptive_brightness=True), SCHEMA, None, threads=1)
    row = labeler(_batch([("dark.png", buf.getvalue())]).drop_columns(["caption"])).to_pylist()[0]
    assert row["status"] == "ok" and row["brightened"] is True and row["brightness_factor"] == 1.5
    # the same parse by hand: the model saw the brightened image, skin tone the original pixels
    bright, factor = adaptive_brightness(dark)
    assert factor == 1.5
    r = M2FPParser.from_pretrained(str(tiny_model_dir), threads=1).parse_one(bright)
    assert row["num_persons"] == len(r.persons) > 0
    for p, person in zip(row["persons"], r.persons, strict=True):
        want = person_skin_tone(dark, person.bbox, person.part_map).to_dict()
        assert p["skin_tone"]["group"] == want["group"] and p["skin_tone"]["pixels"] == want["pixels"]
        if want["lab"] is not None:
            assert p["skin_tone"]["lab"] == pytest.approx(want["lab"], abs=1e-3)
            assert p["skin_tone"]["lab"][0] < person_skin_tone(bright, person.bbox, person.part_map).lab[0]
    counts = row["skin_tone_counts"]
    assert sum(counts.values()) == row["num_persons"]
    assert row["skin_tone_groups"] == sorted(g for g in ("light", "medium", "dark") if counts[g])
    # brightness off (the default): recorded as not brightened
    plain = Labeler(settings, SCHEMA, None, threads=1)
    row = plain(_batch([("dark.png", buf.getvalue())]).drop_columns(["caption"])).to_pylist()[0]
    assert row["brightened"] is False and row["brightness_factor"] == 1.0


@pytest.mark.parametrize("forward_batch", [1, 2])
def test_a_batch_is_labelled_forward_batch_photos_at_a_time(settings, forward_batch):
    """Only ``forward_batch`` decoded photos (and their full-size parses) are alive at once."""
    labeler = Labeler(dataclasses.replace(settings, forward_batch=forward_batch), SCHEMA, None, threads=1)
    seen = []
    parse = labeler.core.parser.parse
    labeler.core.parser.parse = lambda images, **kw: seen.append(len(images)) or parse(images, **kw)
    photo = good_files()["good/photo.jpg"][0]
    rows = labeler(_batch([(f"p{i}.jpg", photo) for i in range(5)]).drop_columns(["caption"])).to_pylist()
    assert [r["status"] for r in rows] == ["ok"] * 5
    assert max(seen) == forward_batch and sum(seen) == 5
