"""``review --image-root`` (relative and ``s3://`` image uris read from a local copy) and
``review --launch --view`` (the App opens on the saved view, which leaves rows out); no Ray: a
synthetic committed output."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from synthetic_labels import error_row, labelled_row, write_output

SIZE = (48, 64)


def _output_with_remote_uris(tmp_path: Path) -> tuple[Path, Path, dict[str, Path]]:
    """A committed output whose rows name ``s3://photos/a.png`` and ``rel/b.png``; the images are at
    ROOT/photos/a.png and ROOT/rel/b.png (a local copy, as --image-root expects)."""
    root = tmp_path / "copy"
    uris = {"a": "s3://photos/a.png", "b": "rel/b.png"}
    files = {"a": root / "photos" / "a.png", "b": root / "rel" / "b.png"}
    rng = np.random.default_rng(0)
    for f in files.values():
        f.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (*SIZE, 3), dtype=np.uint8)).save(f)
    rows = [labelled_row(i, uris[i], SIZE, 1, seed=k) for k, i in enumerate(uris)]
    rows.append(error_row("c", "rel/c.png"))  # a photo the job could not read (the copy lacks it too)
    return write_output(tmp_path / "out", rows), root, files


def test_review_image_root_reads_s3_and_relative_uris_locally(tmp_path, capsys):
    from m2fp_batch.cli import main
    from m2fp_batch.review.fo import fo

    out, root, files = _output_with_remote_uris(tmp_path)
    assert main(["review", str(out), "--dataset", "rv-root-missing"]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("m2fp-batch review: ") and "s3://photos/a.png" in last and "--image-root" in last
    assert main(["review", str(out), "--dataset", "rv-root", "--image-root", str(root)]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["added"] == 3
    ds = fo.load_dataset("rv-root")
    want = {**{i: str(f.resolve()) for i, f in files.items()}, "c": str((root / "rel" / "c.png").resolve())}
    assert {s.image_id: s.filepath for s in ds} == want
    assert all((s.metadata is None or (s.metadata.width, s.metadata.height) == SIZE[::-1]) for s in ds)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.cluster
def test_launch_view_opens_only_the_view(tmp_path):
    """``--view errors`` on an output of two labelled rows and one error row: the App's session holds
    the error row only, not the dataset's three."""
    from m2fp_batch.review.app import launch
    from m2fp_batch.review.build import build_review_dataset
    from m2fp_batch.review.masks import ReviewInputError

    out, root, _ = _output_with_remote_uris(tmp_path)
    ds, _ = build_review_dataset(out, "rv-view", image_root=root)
    assert len(ds) == 3
    with pytest.raises(ReviewInputError, match="no saved view 'nope'"):
        launch("rv-view", port=_free_port(), view="nope")
    session = launch("rv-view", port=_free_port(), view="errors")
    try:
        assert len(session.view) == 1 and session.view.values("image_id") == ["c"]
        assert session.dataset.name == "rv-view"
    finally:
        session.close()
