"""The service's plain parts, without a server: options, settings, the results cache, error statuses."""

from __future__ import annotations

import pytest

from m2fp_batch.schema import ERROR_KINDS
from m2fp_batch.serve.answers import HTTP_STATUS, SERVICE_ERROR_KINDS, parse_options
from m2fp_batch.serve.results import ResultCache
from m2fp_batch.serve.settings import ServeSettings
from m2fp_batch.settings import EngineSettings


def test_parse_options():
    assert parse_options(None, None) == ("json", 0.5)
    assert parse_options(" Overlay ", "0.25") == ("overlay", 0.25)
    for fmt, alpha in (("svg", None), ("json", "1.5"), ("json", "-0.1"), ("json", "half"), ("json", "nan")):
        with pytest.raises(ValueError):
            parse_options(fmt, alpha)


def test_every_image_error_kind_has_a_4xx_and_service_kinds_are_documented():
    # kinds a file store has, not an upload (the service parses photos; videos are the job's)
    for kind in set(ERROR_KINDS) - {"unreadable", "worker_crash", "bad_name", "video_error", "not_a_video"}:
        assert 400 <= HTTP_STATUS[kind] < 500, kind
    assert set(SERVICE_ERROR_KINDS) <= set(HTTP_STATUS)
    assert HTTP_STATUS["overloaded"] == 503 and HTTP_STATUS["body_too_large"] == 413


def test_settings_defaults_and_validation():
    s = ServeSettings(engine=EngineSettings(model="m"))
    assert s.host == "127.0.0.1" and s.queue_per_replica >= 32
    assert s.capacity == s.replicas * (s.queue_per_replica + s.replica_ongoing)
    for bad in ({"port": 0}, {"replicas": 0}, {"max_body_bytes": 0}, {"port": 70000}):
        with pytest.raises(ValueError):
            ServeSettings(engine=EngineSettings(model="m"), **bad)
    with pytest.raises(ValueError):
        ServeSettings(engine=EngineSettings(model="m", threads=0))


def test_result_cache_is_bounded_in_entries_and_bytes():
    c = ResultCache(max_entries=3, max_bytes=100)
    for i in range(5):
        assert c.put(f"k{i}", b"x" * 10)
    assert len(c) == 3 and c.get("k0") is None and c.get("k4") == b"x" * 10
    c.get("k2")  # recently used: kept
    assert c.put("big", b"y" * 80)
    assert c.nbytes <= 100 and c.get("k2") == b"x" * 10 and c.get("k3") is None
    assert not c.put("huge", b"z" * 101) and c.get("huge") is None
    a, b = ResultCache.new_id(), ResultCache.new_id()
    assert a != b and len(a) == 32


def test_serve_refuses_clearly_before_starting_ray(tmp_path, tiny_model_dir, capsys):
    import socket

    from m2fp_batch.cli import main

    assert main(["serve", "--model", str(tmp_path / "nothing")]) == 2
    assert "no such directory" in capsys.readouterr().err
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        assert main(["serve", "--model", str(tiny_model_dir), "--port", str(s.getsockname()[1])]) == 2
    assert "cannot listen on 127.0.0.1" in capsys.readouterr().err
    assert main(["serve", "--model", str(tiny_model_dir), "--replicas", "0"]) == 2
    assert "replicas must be >= 1" in capsys.readouterr().err


def test_the_service_never_imports_the_pipeline():
    import subprocess
    import sys

    code = (
        "import sys, m2fp_batch.serve.app, m2fp_batch.serve.cli; "
        "print([m for m in sys.modules if m.startswith('m2fp_batch.pipeline')])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
