"""Load on loopback: 32 clients x 8 requests lose nothing and every answer equals the one-at-a-time answer
for its photo (concurrency never changes a result; the server runs the default one photo per forward
pass); a flood beyond the bounded queue gets 503 + Retry-After while the server stays up."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from skimage import data

from .conftest import QUEUE, jpeg

pytestmark = pytest.mark.cluster

CLIENTS, PER_CLIENT = 32, 8


def _photos() -> list[bytes]:
    """Real photos of three sizes (three padded sizes: batches mix and group)."""
    astro, coffee, cat = data.astronaut(), data.coffee(), data.chelsea()
    return [
        jpeg(astro[::2, ::2]),
        jpeg(coffee[::2, ::2]),
        jpeg(cat[::2, ::2]),
        jpeg(np.ascontiguousarray(astro[:, ::-1])),
    ]


def _same(a, b, path: str = "") -> None:
    """Equal, except scores and confidences within float rounding: a batched forward pass sums in
    another order (masks, areas, classes and skin tones are exact)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and path.rsplit(".", 1)[-1] in ("score", "confidence"):
        assert abs(a - b) < 1e-4, (path, a, b)
    else:
        assert a == b, (path, a, b)


def _labels(answer: dict) -> dict:
    return {k: answer[k] for k in ("width", "height", "persons", "masks", "skin_tone_counts")}


def test_32_clients_x_8_requests_lose_nothing(server):
    photos = _photos()
    reference = []
    for p in photos:
        status, _, body = server.post(p)
        assert status == 200, body[:300]
        reference.append(_labels(json.loads(body)))
    start = threading.Barrier(CLIENTS)

    def client(c: int) -> list[tuple[int, int, bytes]]:
        start.wait()
        out = []
        for i in range(PER_CLIENT):
            k = (c + i) % len(photos)
            status, _, body = server.post(photos[k], timeout=600)
            out.append((k, status, body))
        return out

    with ThreadPoolExecutor(CLIENTS) as pool:
        results = [r for rs in pool.map(client, range(CLIENTS)) for r in rs]
    assert len(results) == CLIENTS * PER_CLIENT
    bad = [(s, b[:200]) for _, s, b in results if s != 200]
    assert not bad, f"{len(bad)} of {len(results)} requests failed: {bad[:3]}"
    for k, _, body in results:
        _same(_labels(json.loads(body)), reference[k])
    assert json.loads(server.get("healthz")[2])["admitted"] == 0


def test_a_flood_beyond_the_queue_gets_503_and_the_server_stays_up(server):
    info = json.loads(server.get("api/info")[2])
    capacity = info["limits"]["capacity"]
    assert capacity >= QUEUE + 1
    flood = capacity * 3
    photo = _photos()[0]
    start = threading.Barrier(flood)

    def one(_):
        start.wait()
        return server.post(photo, timeout=600)

    with ThreadPoolExecutor(flood) as pool:
        results = list(pool.map(one, range(flood)))
    statuses = [s for s, _, _ in results]
    rejected = [(h, b) for s, h, b in results if s == 503]
    assert set(statuses) <= {200, 503}, sorted(set(statuses))
    assert rejected, "a flood of 3x the capacity got no 503"
    assert statuses.count(200) >= QUEUE, "the queue holds at least 32 waiting requests"
    for headers, body in rejected:
        assert int(headers["Retry-After"]) >= 1
        if body.startswith(b"{"):
            assert json.loads(body)["error_kind"] == "overloaded"
    # still up, and nothing stuck in the admission count
    assert server.get("healthz")[0] == 200
    assert server.post(photo)[0] == 200
    assert json.loads(server.get("healthz")[2])["admitted"] == 0
