"""torch.compile is an optimisation, never a requirement: every failure falls back to eager.

(No test compiles for real: inductor takes minutes on 2 cores; benchmarks/bench_inference.py
measures the compiled engine.)"""

import os

import numpy as np
import pytest
import torch

from m2fp_batch.inference import M2FPParser
from m2fp_batch.inference import compiled as comp


def test_no_compiler_skips_compile(monkeypatch, tiny_model_dir, astronaut, caplog):
    monkeypatch.setenv("CXX", "no-such-c++-compiler")
    parser = M2FPParser.from_pretrained(str(tiny_model_dir), torch_compile=True)
    assert parser.compiled is False
    assert "no C++ compiler" in caplog.text
    assert parser.parse_one(astronaut).semantic.shape == astronaut.shape[:2]


def test_failing_compile_falls_back_to_eager(monkeypatch, tiny_model_dir, astronaut, tmp_path, caplog):
    calls = []

    def broken_compile(fn, **kwargs):
        assert kwargs["backend"] == "inductor"

        def run(*args, **kw):
            calls.append(1)
            raise RuntimeError("inductor exploded")

        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "restored-after-the-test")
    eager = M2FPParser.from_pretrained(str(tiny_model_dir))
    parser = M2FPParser.from_pretrained(str(tiny_model_dir), torch_compile=True, compile_cache_dir=str(tmp_path / "c"))
    assert parser.compiled is True and (tmp_path / "c").is_dir()
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "c")
    a, b = eager.parse_one(astronaut), parser.parse_one(astronaut)
    np.testing.assert_array_equal(a.semantic, b.semantic)
    assert "running it eagerly" in caplog.text
    n = len(calls)
    parser.parse_one(astronaut)
    assert len(calls) == n, "after a failure the compiled path is not tried again"
    # the modules keep their parameters and state-dict names
    assert parser.model.state_dict().keys() == eager.model.state_dict().keys()


@pytest.mark.parametrize("value", ["", "/nonexistent-dir-for-m2fp"])
def test_cache_dir_setting(monkeypatch, value):
    monkeypatch.setenv(comp.COMPILE_CACHE_ENV, value)
    d = comp.default_cache_dir()
    assert (str(d) == value) if value else d.name == "inductor"
