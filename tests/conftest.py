from __future__ import annotations

import os
import secrets
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tiny_model import REFERENCE, write_reference_model, write_tiny_model  # noqa: E402

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")


def _isolate_home() -> Path:
    """A fresh HOME for the whole session, with the one Ray token every Ray of the tests uses.

    Set before anything imports Ray or FiftyOne: nothing in the user's ``~`` (a Ray token, a
    FiftyOne config or database) can make a test pass or fail. Local ``ray.init()``, the
    cluster tests' ``ray start --head`` (token auth) and their clients all read the token
    from ``RAY_AUTH_TOKEN_PATH``, so the order in which they run in one process does not matter.
    """
    home = Path(tempfile.mkdtemp(prefix="m2fp-test-home-"))
    token = home / ".ray" / "auth_token"
    token.parent.mkdir()
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    os.environ["HOME"] = str(home)
    os.environ["RAY_AUTH_TOKEN_PATH"] = str(token)
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ.pop("RAY_AUTH_TOKEN", None)
    return home


TEST_HOME = _isolate_home()


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def pytest_collection_modifyitems(config, items) -> None:
    """A ``gpu`` test is skipped only where torch sees no CUDA device; it runs wherever one exists."""
    gpu = [item for item in items if item.get_closest_marker("gpu")]
    if gpu and not _cuda_available():
        skip = pytest.mark.skip(reason="needs CUDA: torch.cuda.is_available() is False here")
        for item in gpu:
            item.add_marker(skip)


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
