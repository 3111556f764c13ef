"""``serve --replicas 2 --max-batch 4`` (two model replicas, batched forward passes) and ``serve --address``
(joining an existing Ray cluster): every answer equals the one-replica, one-photo answer."""

from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from skimage import data

from m2fp_batch.annotate import rle

from .conftest import jpeg, serving

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pipeline"))
from cluster import descendants_matching, ray_head  # noqa: E402

PER_REQUEST = ("timings", "inference_time")  # and the links (*_url) to this request's stored PNGs
pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(1200)]


def _photos() -> list[bytes]:
    """Four different photos of one size (one padded size: a batch can hold them all)."""
    a = data.astronaut()[:256, :256]
    return [jpeg(a), jpeg(a[:, ::-1].copy()), jpeg(a[::-1].copy()), jpeg(data.coffee()[:256, :256])]


def _answers(server, photos: list[bytes], clients: int) -> list[dict]:
    def one(p: bytes) -> dict:
        status, _, body = server.post(p, timeout=600)
        assert status == 200, body[:500]
        # what may differ between requests: the timings and the links to its stored PNGs
        return {k: v for k, v in json.loads(body).items() if k not in PER_REQUEST and not k.endswith("_url")}

    with ThreadPoolExecutor(clients) as pool:
        return list(pool.map(one, photos))


def _masks_close(got: list[dict], want: list[dict]) -> bool:
    """The same classes; each class's area within 0.1 % of the photo and its confidence within 1e-3
    (another batch size rounds the forward pass differently: the parity tolerance)."""
    if [m["label_id"] for m in got] != [m["label_id"] for m in want]:
        return False
    return all(
        abs(a["area"] - b["area"]) <= 1e-3 * 256 * 256 and abs(a["confidence"] - b["confidence"]) <= 1e-3
        for a, b in zip(got, want, strict=True)
    )


def _persons_close(got: list[dict], want: list[dict]) -> bool:
    """The same people; scores within 2e-3 and mask IoU >= 0.98 (check_parity.py's criteria)."""
    if len(got) != len(want):
        return False
    for a, b in zip(got, want, strict=True):
        ma, mb = rle.decode(a["mask"]), rle.decode(b["mask"])
        if abs(a["score"] - b["score"]) > 2e-3 or (ma & mb).sum() / max((ma | mb).sum(), 1) < 0.98:
            return False
    return True


def assert_same_answers(got: list[dict], want: list[dict]) -> None:
    assert len(got) == len(want)
    for k, (a, b) in enumerate(zip(got, want, strict=True)):
        for key, close in (("masks", _masks_close), ("persons", _persons_close)):
            if close(a.get(key, []), b.get(key, [])):
                a, b = {**a, key: None}, {**b, key: None}
        differ = {
            key: (str(a.get(key))[:300], str(b.get(key))[:300])
            for key in a.keys() | b.keys()
            if a.get(key) != b.get(key)
        }
        assert not differ, (k, differ)


@pytest.fixture(scope="module")
def single_answers(server) -> list[dict]:
    """The default service's answers (one replica, one photo per forward pass), one request at a time."""
    return _answers(server, _photos(), 1)


def test_two_replicas_with_batches_answer_as_one(tiny_model_dir, single_answers):
    with serving(tiny_model_dir, ("--replicas", "2", "--max-batch", "4", "--threads", "1")) as srv:
        limits = json.loads(srv.get("api/info")[2])["limits"]
        assert (limits["replicas"], limits["max_batch"]) == (2, 4)
        assert len(descendants_matching(srv.proc.pid, "ParserReplica")) == 2  # two model processes
        photos = _photos() * 3  # 12 concurrent requests: both replicas, batches of up to 4
        got = _answers(srv, photos, len(photos))
    assert_same_answers(got, single_answers * 3)


def test_serve_joins_an_existing_cluster(tiny_model_dir, single_answers):
    with ray_head(num_cpus=2) as (gcs, _, env, head_pid):
        auth = {k: env[k] for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH")}
        with serving(tiny_model_dir, ("--address", gcs), env_extra=auth, own_ray=False) as srv:
            assert not descendants_matching(srv.proc.pid, "raylet")  # no Ray of its own
            assert len(descendants_matching(head_pid, "ParserReplica")) == 1  # the model runs on the cluster
            assert_same_answers(_answers(srv, _photos(), 2), single_answers)
        assert not descendants_matching(head_pid, "ParserReplica")  # its application left with it
