"""The ML backend's parts without Label Studio: the config check, where photos may come from (against
real loopback HTTP servers: the token goes to Label Studio only, never to a redirect's host), bounded
reads, basic auth, and the reviewed-labels directory (atomic, one row per task)."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from m2fp_batch.labels import open_labels
from m2fp_batch.labels.layout import EXPORT_FILE
from m2fp_batch.labelstudio import ml_backend as lsb
from m2fp_batch.labelstudio import project as lsp

PHOTO = b"\xff\xd8photo-bytes" * 100


class _Handler(BaseHTTPRequestHandler):
    seen: list  # (path, Authorization) per request, set per server

    def do_GET(self):  # noqa: N802 - http.server's name
        self.server.seen.append((self.path, self.headers.get("Authorization")))
        if self.path.startswith("/redirect"):
            self.send_response(302)
            self.send_header("Location", self.server.redirect_to)
            self.end_headers()
            return
        if self.path.startswith("/missing"):
            self.send_response(404)
            self.end_headers()
            return
        chunked = self.path.startswith("/chunked")
        self.send_response(200)
        if not chunked:
            self.send_header("Content-Length", str(len(PHOTO)))
        self.end_headers()
        self.wfile.write(PHOTO)

    def log_message(self, *args):
        pass


@pytest.fixture()
def http_pair():
    """Two loopback HTTP servers: 'Label Studio' and another host; each records what it was sent."""
    servers = []
    for _ in range(2):
        s = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        s.seen, s.redirect_to = [], ""
        threading.Thread(target=s.serve_forever, daemon=True).start()
        servers.append(s)
    ls, other = servers
    ls.redirect_to = f"http://127.0.0.1:{other.server_port}/photo.jpg"
    yield ls, other
    for s in servers:
        s.shutdown()
        s.server_close()


def _url(s) -> str:
    return f"http://127.0.0.1:{s.server_port}"


def test_config_problem_names_what_is_not_ours():
    assert lsp.config_problem(lsp.label_config()) is None
    other = lsp.label_config().replace('value="Hat"', 'value="Car"')
    assert "['Car']" in lsp.config_problem(other) and "20 classes" in lsp.config_problem(other)
    assert "not XML" in lsp.config_problem("<View>")
    assert "no 'm2fp_parts'" in lsp.config_problem('<View><Image name="image" value="$image"/></View>')


def test_the_environment_wins_over_setup(monkeypatch):
    monkeypatch.delenv(lsb.LS_URL_ENV, raising=False)
    monkeypatch.delenv(lsb.LS_TOKEN_ENV, raising=False)
    assert lsb.connection("http://ls:8080/", "t1") == lsb.Connection("http://ls:8080", "t1")
    monkeypatch.setenv(lsb.LS_URL_ENV, "http://other:9000")
    monkeypatch.setenv(lsb.LS_TOKEN_ENV, "t2")
    conn = lsb.connection("http://ls:8080", "t1")
    assert (conn.url, conn.token) == ("http://other:9000", "t2")
    assert "t2" not in repr(conn)


def test_label_studio_paths_get_the_token_other_hosts_need_allow_fetch(http_pair):
    ls, other = http_pair
    conn = lsb.Connection(_url(ls), "secret-token")
    got = lsb.fetch_image("/data/upload/1/a.jpg", 1, conn, allow_fetch=False, limit=10**6)
    assert got == PHOTO and ls.seen[-1] == ("/data/upload/1/a.jpg", "Token secret-token")
    assert lsb.fetch_image(_url(ls) + "/data/x.jpg", 1, conn, allow_fetch=False, limit=10**6) == PHOTO
    with pytest.raises(lsb.FetchError) as e:
        lsb.fetch_image(_url(other) + "/photo.jpg", 1, conn, allow_fetch=False, limit=10**6)
    assert e.value.kind == "forbidden" and "--allow-fetch" in e.value.message and not other.seen
    assert lsb.fetch_image(_url(other) + "/photo.jpg", 1, conn, allow_fetch=True, limit=10**6) == PHOTO
    assert other.seen[-1] == ("/photo.jpg", None), "the token never goes to another host"
    # a redirect from Label Studio (its storage resolver) is followed without the token
    assert lsb.fetch_image("/redirect", 1, conn, allow_fetch=False, limit=10**6) == PHOTO
    assert other.seen[-1] == ("/photo.jpg", None)
    with pytest.raises(lsb.FetchError) as e:
        lsb.fetch_image("/missing.jpg", 1, conn, allow_fetch=False, limit=10**6)
    assert e.value.kind == "not_found" and "404" in e.value.message


def test_presigned_urls_of_our_own_s3_store_need_no_allow_fetch(http_pair, monkeypatch):
    ls, store = http_pair
    conn = lsb.Connection(_url(ls), "tok")
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", _url(store))
    signed = _url(store) + "/photos/a.jpg?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=abc123"
    assert lsb.fetch_image(signed, 1, conn, allow_fetch=False, limit=10**6) == PHOTO
    assert store.seen[-1][1] is None, "no Label Studio token to the S3 store"
    with pytest.raises(lsb.FetchError) as e:  # the same host without a signature is just another host
        lsb.fetch_image(_url(store) + "/photos/a.jpg", 1, conn, allow_fetch=False, limit=10**6)
    assert e.value.kind == "forbidden" and "abc123" not in e.value.message
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    with pytest.raises(lsb.FetchError) as e:
        lsb.fetch_image(signed, 1, conn, allow_fetch=False, limit=10**6)
    assert e.value.kind == "forbidden" and "abc123" not in e.value.message


def test_storage_uris_go_through_label_studio_and_reads_are_bounded(http_pair):
    ls, _ = http_pair
    conn = lsb.Connection(_url(ls), "tok")
    lsb.fetch_image("s3://bucket/key.jpg", 7, conn, allow_fetch=False, limit=10**6)
    path, auth = ls.seen[-1]
    assert path.startswith("/tasks/7/resolve/?fileuri=") and auth == "Token tok"
    assert base64.urlsafe_b64decode(path.split("=", 1)[1]) == b"s3://bucket/key.jpg"
    for where in ("/declared.jpg", "/chunked.jpg"):
        with pytest.raises(lsb.FetchError) as e:
            lsb.fetch_image(where, 1, conn, allow_fetch=False, limit=len(PHOTO) - 1)
        assert e.value.kind == "too_large"
    with pytest.raises(lsb.FetchError) as e:
        lsb.fetch_image("/data/upload/1/a.jpg", 1, lsb.Connection(None, None), allow_fetch=False, limit=10)
    assert e.value.kind == "unavailable" and lsb.LS_URL_ENV in e.value.message
    with pytest.raises(lsb.FetchError) as e:
        lsb.fetch_image("/data/upload/1/a.jpg", 1, lsb.Connection(_url(ls), None), allow_fetch=False, limit=10)
    assert e.value.kind == "unauthorized" and lsb.LS_TOKEN_ENV in e.value.message


def test_basic_auth(monkeypatch):
    monkeypatch.setenv("AUTH_VAR", "user:pw:with:colons")
    creds = lsb.read_basic_auth("AUTH_VAR")
    assert creds == ("user", "pw:with:colons")
    good = "Basic " + base64.b64encode(b"user:pw:with:colons").decode()
    assert lsb.basic_auth_ok(good, creds) and lsb.basic_auth_ok(None, None)
    for header in (None, "", "Basic " + base64.b64encode(b"user:nope").decode(), "Basic ***", "Token x"):
        assert not lsb.basic_auth_ok(header, creds)
    monkeypatch.setenv("AUTH_VAR", "no-colon")
    with pytest.raises(ValueError, match="USER:PASSWORD"):
        lsb.read_basic_auth("AUTH_VAR")


def test_reviewed_log_keeps_one_row_per_task(tmp_path):
    from synthetic_labels import labelled_row

    out = tmp_path / "reviewed"
    log = lsb.ReviewedLog(out, "test")
    row = {
        **labelled_row("a1", "x.jpg", (64, 48), 2),
        "uri": "/data/upload/1/a.jpg",
        "review_status": "reviewed",
        "review_edited": True,
    }
    for _ in range(2):
        log.put(3, 11, [5], dict(row), PHOTO)
    log.put(3, 12, [6], {**row, "review_status": "rejected", "review_edited": False}, PHOTO)
    body = json.loads((out / EXPORT_FILE).read_text())
    assert body["files"] == ["task-3-11.parquet", "task-3-12.parquet"] and body["rows"] == 2
    assert body["by_status"] == {"reviewed": 1, "rejected": 1} and body["edited"] == 1
    rows = [r for _, r in open_labels(out).iter_rows()]
    assert [r["label_studio_task"] for r in rows] == [11, 12]
    assert rows[0]["label_studio_image"] == "/data/upload/1/a.jpg" and open(rows[0]["uri"], "rb").read() == PHOTO
    assert log.tasks_of({6, 99}) == [(3, 12)]
    log.remove(3, 12)
    assert json.loads((out / EXPORT_FILE).read_text())["files"] == ["task-3-11.parquet"]
    assert not (out / "task-3-12.parquet").exists() and (out / "images").is_dir()
    assert not list(out.glob(".*.tmp"))
