"""Label Studio serving ``s3://`` images: a job output whose photos live in an S3 bucket (a real SeaweedFS)
is pushed to a real Label Studio; each task names a presigned URL that returns the photo's bytes."""

from __future__ import annotations

import io
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pyarrow.fs as pafs
import pytest
from PIL import Image
from skimage import data
from synthetic_labels import labelled_row, write_output

from .test_label_studio import project_tasks, push, sdk

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pipeline"))
from cluster import seaweedfs  # noqa: E402

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(1200)]
KEY, SECRET = "m2fp-test", "m2fp-test-secret"


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def test_push_names_presigned_s3_urls_that_serve_the_photos(label_studio, ls_env, tmp_path):
    photos = {"astro": data.astronaut()[:96, :128].copy(), "coffee": data.coffee()[:96, :128].copy()}
    with seaweedfs(KEY, SECRET) as endpoint:
        fs = pafs.S3FileSystem(
            access_key=KEY, secret_key=SECRET, endpoint_override=endpoint.split("//")[1], scheme="http",
            region="us-east-1", allow_bucket_creation=True,
        )  # fmt: skip
        fs.create_dir("photos")
        for name, img in photos.items():
            with fs.open_output_stream(f"photos/shoot/{name}.png") as f:
                f.write(_png(img))
        rows = [labelled_row(n, f"s3://photos/shoot/{n}.png", (96, 128), 1, seed=k) for k, n in enumerate(photos)]
        out = write_output(tmp_path / "out", rows)
        env = {**ls_env, "AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_ENDPOINT_URL": endpoint}
        env["AWS_REGION"] = "us-east-1"
        done = push(out, label_studio, env, project="m2fp s3")
        assert done.returncode == 0, done.stderr[-3000:]
        assert SECRET not in done.stdout + done.stderr
        tasks = project_tasks(sdk(label_studio), "m2fp s3")
        assert len(tasks) == len(photos)
        for task in tasks:
            url = task["data"]["image"]
            assert url.startswith(f"{endpoint}/photos/shoot/") and "X-Amz-Signature=" in url and SECRET not in url
            name = url.split("/photos/shoot/", 1)[1].split(".png", 1)[0]
            with urllib.request.urlopen(url, timeout=60) as r:  # what the reviewer's browser fetches
                got = np.asarray(Image.open(io.BytesIO(r.read())).convert("RGB"))
            np.testing.assert_array_equal(got, photos[name])
            unsigned = url.split("?", 1)[0]  # without the signature the bucket refuses
            with pytest.raises(urllib.error.HTTPError):
                urllib.request.urlopen(unsigned, timeout=60)
