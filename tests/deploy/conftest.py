"""The image, built once per session by ``make image`` (which reuses its base and wheelhouse while
their inputs are unchanged), and the tiny model and a real photo as the image's user can read them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from container import REPO, Image, copy_model, podman_env, shared_dir


@pytest.fixture(scope="session")
def image() -> Image:
    res = subprocess.run(
        ["make", "--no-print-directory", "image"], cwd=REPO, env=podman_env(), capture_output=True, text=True,
        timeout=3000,
    )  # fmt: skip
    assert res.returncode == 0, f"make image failed:\n{res.stdout[-3000:]}\n{res.stderr[-5000:]}"
    name = subprocess.run(
        ["bash", str(REPO / "deploy" / "image.sh"), "name"], capture_output=True, text=True, check=True
    ).stdout.strip()
    print(res.stderr.strip().splitlines()[-1])  # "make image: NAME: SIZE MB, built in N s"
    return Image(name, res.stderr)


@pytest.fixture(scope="session")
def mounted_model(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny seeded model, readable by the image's user (mounted read-only at /models/m2fp)."""
    return copy_model(tiny_model_dir, shared_dir(tmp_path_factory.mktemp("mounted")) / "m2fp")


@pytest.fixture(scope="session")
def photos(tmp_path_factory) -> Path:
    """Real photos (scikit-image, matplotlib's Grace Hopper), JPEG, readable by the image's user."""
    import io

    from PIL import Image as PILImage
    from skimage import data
    from tiny_model import REFERENCE

    root = shared_dir(tmp_path_factory.mktemp("photos") / "in")
    for name, arr in {"astronaut": data.astronaut(), "coffee": data.coffee(), "chelsea": data.chelsea()}.items():
        buf = io.BytesIO()
        PILImage.fromarray(arr).save(buf, "JPEG", quality=90)
        (root / f"{name}.jpg").write_bytes(buf.getvalue())
    (root / "grace_hopper.jpg").write_bytes((REFERENCE / "images" / "grace_hopper.jpg").read_bytes())
    for p in root.iterdir():
        p.chmod(0o644)
    return root
