"""Moved modules and names keep their old import paths for one release: the old path gives the
same object as the new one, and warns with a DeprecationWarning that names the new home."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# (old module, old name, new module, new name): each imported in a fresh interpreter (a module warns once, on import)
MOVED = [
    ("m2fp_batch.inference.engine", "M2FPParser", "m2fp_batch.inference.parser", "M2FPParser"),
    ("m2fp_batch.inference.engines", "open_engine", "m2fp_batch.inference.backends.load", "open_engine"),
    ("m2fp_batch.inference.engines", "resolve_engine", "m2fp_batch.backend_registry", "resolve_engine"),
    ("m2fp_batch.inference.engines.export", "read_manifest", "m2fp_batch.inference.backends.graph", "read_manifest"),
    ("m2fp_batch.inference.engines.export", "export_model", "m2fp_batch.inference.backends.export", "export_model"),
    ("m2fp_batch.inference.engines.load", "LoadedEngine", "m2fp_batch.inference.backends.load", "LoadedEngine"),
    (
        "m2fp_batch.inference.engines.backends",
        "OpenVinoBackend",
        "m2fp_batch.inference.backends.openvino_backend",
        "OpenVinoBackend",
    ),
    (
        "m2fp_batch.inference.engines.quantize",
        "quantize_int8",
        "m2fp_batch.inference.backends.quantize",
        "quantize_int8",
    ),
    ("m2fp_batch.labelling", "LabellingCore", "m2fp_batch.photo_to_row", "PhotoToRow"),
    ("m2fp_batch.decode", "SHORT_EDGE", "m2fp_batch.resize", "SHORT_EDGE"),
    ("m2fp_batch.pipeline.config", "JobConfig", "m2fp_batch.pipeline.config", "JobSettings"),
    ("m2fp_batch.pipeline.config", "JobConfigError", "m2fp_batch.pipeline.config", "JobSettingsError"),
    ("m2fp_batch.train.config", "LossConfig", "m2fp_batch.train.config", "LossSettings"),
    ("m2fp_batch.train.config", "AugmentConfig", "m2fp_batch.train.config", "AugmentSettings"),
    ("m2fp_batch.train.config", "SkinConfig", "m2fp_batch.train.config", "SkinSettings"),
]

CHECK = """
import importlib, sys, warnings
old, name, new, new_name = sys.argv[1:]
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    value = getattr(importlib.import_module(old), name)
ours = [w for w in caught if issubclass(w.category, DeprecationWarning) and old in str(w.message)]
assert ours, f"no DeprecationWarning from {old}.{name}"
assert value is getattr(importlib.import_module(new), new_name), "not the same object"
print(ours[0].message)
"""


@pytest.mark.parametrize(("old", "name", "new", "new_name"), MOVED)
def test_old_path_works_and_warns(old, name, new, new_name):
    done = subprocess.run(
        [sys.executable, "-c", CHECK, old, name, new, new_name], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "next release" in done.stdout


def test_the_old_class_names_are_the_new_classes():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from m2fp_batch import labelling
        from m2fp_batch.inference import engines
    from m2fp_batch.backend_registry import BACKENDS
    from m2fp_batch.photo_to_row import PhotoToRow

    assert labelling.LabellingCore is PhotoToRow
    assert engines.AUTO_ORDER == tuple(b.name for b in sorted(BACKENDS, key=lambda b: b.auto_rank))
