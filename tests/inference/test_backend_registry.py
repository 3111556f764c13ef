"""The backend registry: one entry per backend, read by --engine's choices, auto and the export cache."""

from __future__ import annotations

import pytest

from m2fp_batch.backend_registry import AUTO, BACKENDS, ENGINES, EngineError, backend_entry, resolve_engine
from m2fp_batch.errors import UserError
from m2fp_batch.inference.backends.export import EXPORT_FORMATS
from m2fp_batch.inference.backends.graph import ExportError
from m2fp_batch.inference.backends.load import backend_class
from m2fp_batch.settings import EngineSettings, SettingsError


def test_each_entry_loads_the_class_of_its_name():
    assert len({b.name for b in BACKENDS}) == len(BACKENDS) == 3
    for entry in BACKENDS:
        assert backend_class(entry).name == entry.name
        assert entry.cache_format is None or entry.cache_format in EXPORT_FORMATS
    assert sorted(b.auto_rank for b in BACKENDS) == [1, 2, 3]


def test_engine_choices_are_the_entries_and_auto():
    assert ENGINES == ("torch", "onnxruntime", "openvino", AUTO)
    for name in ENGINES:
        assert EngineSettings(engine=name).engine == name
    with pytest.raises(SettingsError, match="one of torch, onnxruntime, openvino, auto"):
        EngineSettings(engine="tensorrt")


def test_auto_is_the_best_ranked_installed_backend():
    # torch is a dependency and ranks first (the measured order: torch, openvino, onnxruntime)
    assert [b.name for b in sorted(BACKENDS, key=lambda b: b.auto_rank)] == ["torch", "openvino", "onnxruntime"]
    assert resolve_engine(AUTO) == "torch"
    assert resolve_engine("openvino") == "openvino"


def test_engine_errors_are_not_export_errors():
    with pytest.raises(EngineError, match="not one of torch, onnxruntime, openvino, auto"):
        resolve_engine("tensorrt")
    with pytest.raises(EngineError, match="not one of torch, onnxruntime, openvino$"):
        backend_entry(AUTO)  # auto is a choice, not a backend
    assert issubclass(EngineError, UserError) and not issubclass(EngineError, ExportError)
    assert "pip install" in backend_entry("openvino").missing_message()
