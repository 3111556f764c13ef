"""``POST /api/parse`` on real photos: the same numbers as the batch job's row for the same photo
(the job's labelling stage, ``pipeline.worker.Labeler``, run on the same bytes with the same settings),
in both formats; every bad-input kind of the job's corpus gets its 4xx and the server keeps answering."""

from __future__ import annotations

import dataclasses
import io
import json

import numpy as np
import pyarrow as pa
import pytest
from badfiles import MAX_PIXELS, MIN_SIDE, bad_files, good_files
from PIL import Image
from skimage import data

from m2fp_batch.annotate import rle
from m2fp_batch.annotate.palette import PALETTE
from m2fp_batch.annotate.render import overlay
from m2fp_batch.pipeline.config import JobSettings
from m2fp_batch.pipeline.worker import Labeler
from m2fp_batch.schema import SCHEMA
from m2fp_batch.serve.answers import HTTP_STATUS
from m2fp_batch.settings import EngineSettings

from .conftest import MAX_BODY_MB, MAX_SIZE, SHORT_EDGE, jpeg

pytestmark = pytest.mark.cluster

PHOTOS = {"astronaut.jpg": lambda: jpeg(data.astronaut()), "coffee.png": lambda: _png(data.coffee())}
PERSON_KEYS = ("persons", "semantic", "num_persons", "skin_tone_groups", "skin_tone_counts", "width", "height")


def _png(array) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def job_rows(tiny_model_dir) -> dict[str, dict]:
    """The job's rows for PHOTOS: its labelling stage on the same bytes, with the server's settings."""
    engine = EngineSettings(
        model=str(tiny_model_dir), max_pixels=MAX_PIXELS, min_side=MIN_SIDE, short_edge=SHORT_EDGE, max_size=MAX_SIZE
    )
    labeler = Labeler(JobSettings(input="x", output="y", engine=engine), SCHEMA, None, threads=1)
    names = list(PHOTOS)
    batch = pa.table(
        {
            "image_id": names,
            "uri": names,
            "shard": pa.array([0] * len(names), pa.int32()),
            "data": pa.array([PHOTOS[n]() for n in names], pa.large_binary()),
            "read_error": pa.array([None] * len(names), pa.string()),
            "read_error_kind": pa.array([None] * len(names), pa.string()),
            "read_s": [0.0] * len(names),
        }
    )
    return {r["uri"]: r for r in labeler(batch).to_pylist()}


def _as_row(answer: dict) -> dict:
    """The answer's label columns in the job's Parquet types (float32 scores, int32 ids)."""
    semantic = [{k: m[k] for k in ("label_id", "label", "area")} | {"mask": m["rle"]} for m in answer["masks"]]
    cols = {k: answer[k] for k in PERSON_KEYS if k != "semantic"} | {"semantic": semantic}
    table = pa.Table.from_pylist([cols], schema=pa.schema([SCHEMA.field(k) for k in PERSON_KEYS]))
    return table.to_pylist()[0]


def _semantic_from(row: dict) -> np.ndarray:
    sem = np.zeros((row["height"], row["width"]), np.uint8)
    for s in row["semantic"]:
        sem[rle.decode(s["mask"])] = s["label_id"]
    return sem


@pytest.mark.parametrize("name", list(PHOTOS))
def test_json_equals_the_job_row(server, job_rows, name):
    status, headers, body = server.post(PHOTOS[name](), name=name)
    assert status == 200, body[:500]
    answer = json.loads(body)
    row = job_rows[name]
    assert answer["success"] is True and row["status"] == "ok"
    assert row["num_persons"] > 0 and answer["persons"], "a real photo: the tiny model finds people"
    got = _as_row(answer)
    for key in PERSON_KEYS:
        assert got[key] == row[key], key
    for key in ("model", "checkpoint_sha256", "package_version", "schema_version"):
        assert answer["model" if key != "schema_version" else key] is not None
        if key != "schema_version":
            assert answer["model"][key] == row[key]
    sem = _semantic_from(row)
    for m in answer["masks"]:
        assert m["color"] == PALETTE[m["label_id"]].tolist() and 0 < m["confidence"] <= 1
    assert answer["inference_time"] > 0 and float(headers["X-Inference-Time"]) > 0
    # result_url: the colour parse of exactly this semantic map
    status, headers, png = server.get(answer["result_url"])
    assert status == 200 and headers["Content-Type"] == "image/png"
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png)).convert("RGB")), PALETTE[sem])
    status, _, mask_png = server.get(answer["people_mask_url"])
    people = np.zeros(sem.shape, bool)
    for p in row["persons"]:
        people |= rle.decode(p["mask"])
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(mask_png))).astype(bool), people)


@pytest.mark.parametrize("name", list(PHOTOS))
def test_job_row_and_answer_carry_the_same_hash(server, job_rows, tiny_model_dir, name):
    """Same photo, model and settings: the job's row and the service's answer have one ``config_hash``,
    the hash of exactly the label settings (the service's other settings and the guards are not in it)."""
    status, _, body = server.post(PHOTOS[name](), name=name)
    assert status == 200, body[:500]
    answer, row = json.loads(body), job_rows[name]
    engine = EngineSettings(model=str(tiny_model_dir), short_edge=SHORT_EDGE, max_size=MAX_SIZE)
    assert answer["model"]["config_hash"] == row["config_hash"] == engine.label_hash()
    status, _, info = server.get("/api/info")
    assert status == 200 and json.loads(info)["model"]["config_hash"] == row["config_hash"]
    # the hash changes with a label setting
    assert dataclasses.replace(engine, short_edge=SHORT_EDGE + 32).label_hash() != row["config_hash"]


def test_image_formats_equal_the_job_row(server, job_rows):
    photo = PHOTOS["astronaut.jpg"]()
    row = job_rows["astronaut.jpg"]
    sem = _semantic_from(row)
    pixels = np.asarray(Image.open(io.BytesIO(photo)).convert("RGB"))
    status, headers, png = server.post(photo, {"format": "image"})
    assert status == 200 and headers["Content-Type"] == "image/png"
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png)).convert("RGB")), PALETTE[sem])
    status, _, png = server.post(photo, {"format": "overlay", "alpha": "0.3"})
    assert status == 200
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png))), overlay(pixels, sem, 0.3))
    status, _, png = server.post(photo, {"format": "people"})
    cut = np.asarray(Image.open(io.BytesIO(png)))
    people = np.zeros(sem.shape, bool)
    for p in row["persons"]:
        people |= rle.decode(p["mask"])
    assert status == 200 and cut.shape == (*sem.shape, 4)
    np.testing.assert_array_equal(cut[..., 3] == 255, people)
    np.testing.assert_array_equal(cut[people][:, :3], pixels[people])


BAD = bad_files()


def test_every_bad_input_kind_gets_its_4xx_and_the_server_keeps_answering(server):
    for name, (blob, kind) in BAD.items():
        status, headers, body = server.post(blob, name=name.split("/")[-1])
        answer = json.loads(body)
        assert (status, answer["error_kind"]) == (HTTP_STATUS[kind], kind), (name, status, body[:300])
        assert 400 <= status < 500 and answer["success"] is False and answer["error"]
    # unusual but valid images (16-bit, CMYK, palette, EXIF-rotated...) parse like the job parses them
    for name, (blob, (h, w)) in good_files().items():
        status, _, body = server.post(blob, name=name.split("/")[-1])
        assert status == 200, (name, body[:300])
        assert (json.loads(body)["height"], json.loads(body)["width"]) == (h, w), name
    assert server.get("healthz")[0] == 200
    assert server.post(PHOTOS["astronaut.jpg"]())[0] == 200


def _declared_too_large(server):
    """Headers announcing a body above the limit: refused before a byte of it is read."""
    import http.client
    from urllib.parse import urlparse

    u = urlparse(server.url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    conn.putrequest("POST", "/api/parse")
    conn.putheader("Content-Type", "multipart/form-data; boundary=x")
    conn.putheader("Content-Length", str(int(MAX_BODY_MB * 2**20) + 1))
    conn.endheaders()
    r = conn.getresponse()
    out = r.status, r.headers, r.read()
    conn.close()
    return out


def test_request_errors(server):
    photo = PHOTOS["astronaut.jpg"]()
    cases = [
        (server.post(photo, {"format": "svg"}), 400, "invalid_request"),
        (server.post(photo, {"alpha": "2"}), 400, "invalid_request"),
        (server.post(photo, {"format": "overlay", "alpha": "x"}), 400, "invalid_request"),
        (_declared_too_large(server), 413, "body_too_large"),
        (server.post(b"\0" * int(MAX_BODY_MB * 2**20 - 1000)), 415, "not_an_image"),  # just under the limit
        (server.get("results/0123456789abcdef.png"), 404, "not_found"),
    ]
    from .conftest import multipart, request

    body, ctype = multipart({"format": "json"})
    cases.append((request(server.url + "api/parse", body, {"Content-Type": ctype}, 30), 400, "missing"))
    cases.append(
        (request(server.url + "api/parse", b"{}", {"Content-Type": "application/json"}, 30), 400, "invalid_request")
    )
    cases.append(
        (
            request(
                server.url + "api/parse", b"--x\r\nbroken", {"Content-Type": "multipart/form-data; boundary=x"}, 30
            ),
            400,
            None,
        )
    )
    for (status, _, body), want_status, kind in cases:
        answer = json.loads(body)
        assert status == want_status and answer["success"] is False, (status, body[:300])
        assert kind is None or answer["error_kind"] == kind
    # a raw image body works too (curl --data-binary)
    status, headers, png = request(server.url + "api/parse?format=image", photo, {"Content-Type": "image/jpeg"}, 60)
    assert status == 200 and headers["Content-Type"] == "image/png"
    assert server.get("healthz")[0] == 200


def test_info_healthz_and_page(server):
    status, _, body = server.get("api/info")
    info = json.loads(body)
    assert status == 200 and info["classes"][0] == "Background" and len(info["palette"]) == len(PALETTE)
    assert info["palette"]["Hair"] == PALETTE[2].tolist() and info["model"]["checkpoint_sha256"]
    assert info["limits"]["max_body_bytes"] == int(MAX_BODY_MB * 2**20)
    assert json.loads(server.get("healthz")[2])["status"] == "ok"
    status, headers, page = server.get("/")
    assert status == 200 and headers["Content-Type"].startswith("text/html") and b"static/app.js" in page
    for asset in ("static/app.js", "static/app.css"):
        assert server.get(asset)[0] == 200
    for asset in ("/", "static/app.js", "static/app.css"):
        assert b"://" not in server.get(asset)[2], f"{asset}: everything is served by us (no CDN)"
