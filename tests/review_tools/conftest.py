"""Fixtures of the Label Studio / CVAT tests: a REAL job output over real photos, a REAL Label Studio.

The photos live under the server's local-files document root, as a team serving its images from
disk would have them. The server runs with a fresh HOME and data dir; at the end it is stopped and
the tests' own HOME holds nothing of it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from review.fo_helpers import run_job, write_photos

from .server import LabelStudioServer


@pytest.fixture(scope="package")
def tools_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("review_tools")


@pytest.fixture(scope="package")
def document_root(tools_root) -> Path:
    d = tools_root / "files"
    d.mkdir()
    return d


@pytest.fixture(scope="package")
def job_output(tools_root, document_root, tiny_model_dir) -> Path:
    """``m2fp-batch run`` (tiny model) over astronaut, coffee, grace_hopper and a corrupt file."""
    write_photos(document_root / "images")
    out = tools_root / "out"
    run_job(tiny_model_dir, document_root / "images", out, tools_root / "job_home")
    return out


@pytest.fixture(scope="package")
def label_studio(tools_root, document_root):
    """A running Label Studio 1.23.2 (own venv, SQLite, 127.0.0.1, legacy user token)."""
    home = Path(os.environ["HOME"])
    before = set(home.rglob("*"))
    server = LabelStudioServer(tools_root / "label_studio", document_root).start()
    try:
        yield server
    finally:
        server.stop()
    left = {p for p in set(home.rglob("*")) - before if "label" in str(p).lower()}
    assert not left, f"Label Studio left files in ~: {sorted(left)[:5]}"


@pytest.fixture()
def ls_env(label_studio, monkeypatch) -> dict[str, str]:
    """The environment of an m2fp-batch process that talks to the server (token in LABEL_STUDIO_API_KEY)."""
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", label_studio.token)
    monkeypatch.setenv("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT", str(label_studio.document_root))
    return dict(os.environ)
