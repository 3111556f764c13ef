"""``m2fp-batch serve`` in a container (host network, loopback): the page and ``POST /api/parse`` answer
from the host, with the host's service's answer for the same photo and settings."""

from __future__ import annotations

import json
import urllib.request

import pytest
from container import MODEL_MOUNT, wait_for
from serve.conftest import MAX_BODY_MB, MAX_PIXELS, MAX_SIZE, MIN_SIDE, QUEUE, SHORT_EDGE, Server, free_ports, serving

from m2fp_batch.settings import EngineSettings

pytestmark = [pytest.mark.container, pytest.mark.slow, pytest.mark.timeout(1800)]

# the flags of tests/serve/conftest.py's host service, which serving() starts
FLAGS = (
    "--threads", "1", "--queue", str(QUEUE), "--max-body-mb", str(MAX_BODY_MB), "--max-pixels", str(MAX_PIXELS),
    "--min-side", str(MIN_SIDE), "--short-edge", str(SHORT_EDGE), "--max-size", str(MAX_SIZE),
)  # fmt: skip
# what an answer takes from where the model is mounted, the clock, or the result cache's key
PLACE_OR_CLOCK = ("inference_time", "timings", "result_url", "people_mask_url")


def _comparable(answer: dict) -> dict:
    out = {k: v for k, v in answer.items() if k not in PLACE_OR_CLOCK}
    out["model"] = {k: v for k, v in answer["model"].items() if k not in ("model", "config_hash")}
    return out


def _ready(url: str) -> bool:
    return urllib.request.urlopen(url + "healthz", timeout=5).status == 200


def test_serve_in_a_container_answers_the_host_like_the_host_service(image, mounted_model, photos):
    (port,) = free_ports(1)
    photo = (photos / "astronaut.jpg").read_bytes()
    with serving(mounted_model) as host:  # the host's service first (one Ray at a time on a small machine)
        host_page = host.get("/")[2]
        host_answer = json.loads(host.post(photo, name="astronaut.jpg")[2])
        host_png = host.get(host_answer["result_url"])[2]
    args = ("serve", "--model", MODEL_MOUNT, "--port", str(port), *FLAGS)
    with image.started(*args, mounts=(f"{mounted_model}:{MODEL_MOUNT}:ro",)) as name:
        url = f"http://127.0.0.1:{port}/"
        wait_for(lambda: _ready(url), 600, "the service in the container", name)
        box = Server(url, None, None)
        status, headers, page = box.get("/")
        assert status == 200 and headers["Content-Type"].startswith("text/html")
        assert page == host_page
        status, _, body = box.post(photo, name="astronaut.jpg")
        assert status == 200, body[:500]
        answer = json.loads(body)
        status, _, png = box.get(answer["result_url"])
        assert status == 200 and png == host_png
    assert answer["success"] and answer["persons"], "a real photo: the tiny model finds people"
    assert _comparable(answer) == _comparable(host_answer)
    assert answer["model"]["model"] == MODEL_MOUNT
    assert (
        answer["model"]["config_hash"]
        == EngineSettings(model=MODEL_MOUNT, short_edge=SHORT_EDGE, max_size=MAX_SIZE).label_hash()
    )
