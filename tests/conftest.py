from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tiny_model import REFERENCE, write_reference_model, write_tiny_model  # noqa: E402

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny M2FP model dir (real network code, seeded random weights)."""
    return write_tiny_model(tmp_path_factory.mktemp("tiny_model"))


@pytest.fixture(scope="session")
def reference_model_dir(tmp_path_factory) -> Path:
    """The full-size seed-3 checkpoint of the parity fixture."""
    return write_reference_model(tmp_path_factory.mktemp("reference_model"))


@pytest.fixture(scope="session")
def tiny_parser(tiny_model_dir):
    from m2fp_batch.inference import M2FPParser

    return M2FPParser.from_pretrained(str(tiny_model_dir))


@pytest.fixture(scope="session")
def reference_images() -> list[Path]:
    return [REFERENCE / "images" / "astronaut.png", REFERENCE / "images" / "grace_hopper.jpg"]


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()
