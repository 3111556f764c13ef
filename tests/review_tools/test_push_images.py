"""Where push points Label Studio for each image: local-files URLs, presigned s3:// URLs, error rows (no server)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import pytest

from m2fp_batch.labelstudio import project as lsp
from m2fp_batch.labelstudio.push import ImageNotServable, image_url
from m2fp_batch.storage import S3Options

S3 = S3Options(endpoint="http://127.0.0.1:8333", region="us-east-1", access_key="key", secret_key="secret")


def test_local_image_under_the_document_root(tmp_path):
    photo = tmp_path / "shoot 1" / "a+b.jpg"
    url, folder = image_url(str(photo), tmp_path, S3)
    assert url.startswith("/data/local-files/?d=")
    assert parse_qs(urlparse(url).query)["d"] == ["shoot 1/a+b.jpg"]
    assert folder == str(photo.parent)


@pytest.mark.parametrize("root", ["other", None])
def test_local_image_label_studio_cannot_serve(tmp_path, root):
    with pytest.raises(ImageNotServable, match="outside the document root|--document-root"):
        image_url(str(tmp_path / "a.jpg"), tmp_path / root if root else None, S3)


def test_s3_image_gets_a_presigned_url():
    url, folder = image_url("s3://photos/shoot/a.jpg", None, S3)
    parsed = urlparse(url)
    assert (parsed.netloc, parsed.path, folder) == ("127.0.0.1:8333", "/photos/shoot/a.jpg", None)
    query = parse_qs(parsed.query)
    assert query["X-Amz-Expires"] == ["604800"] and "X-Amz-Signature" in query
    assert "secret" not in url


def test_config_is_ours_and_foreign_configs_are_refused():
    assert lsp.check_config({"title": "t", "label_config": lsp.label_config()}) is True
    older = lsp.label_config().replace('<Choice value="rejected"/>', "")
    assert lsp.check_config({"title": "t", "label_config": older}) is False
    for config in (
        "<View/>",
        "not xml",
        '<View><BrushLabels name="m2fp_parts"><Label value="Car"/></BrushLabels></View>',
    ):
        with pytest.raises(lsp.ForeignProjectError, match="not made by m2fp-batch"):
            lsp.check_config({"title": "t", "label_config": config})
    assert len(lsp.LABELS) == 20 and lsp.LABELS[0] == "Human"


def test_video_frames_are_no_tasks_but_counted(tmp_path):
    """A frame row's uri is its video: push skips and counts it (a task would show a broken image)."""
    from video_labels import video_output

    from m2fp_batch.labelstudio.push import PushSummary, _collect

    out, rows = video_output(tmp_path)
    summary = PushSummary("mine")
    tasks, _ = _collect(str(out), summary, tmp_path, None, 0.5)
    assert [t["data"]["image_id"] for t in tasks] == ["photo"]
    frames = sum(r.get("video_id") is not None for r in rows) + 1  # and the rejected frame (push has no verdicts)
    assert (summary.skipped_frames, summary.skipped_errors, summary.image_errors) == (frames, 1, [])
