"""ParsingDataset and ray_dataset on a job output with real photos (one with EXIF rotation),
an error row, a reviewer-rejected row, and on S3 (SeaweedFS)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from skimage import data
from synthetic_labels import commit_marker, error_row, labelled_row, write_output

from m2fp_batch.data import ParsingDataset, ray_dataset
from m2fp_batch.decode import decode_image
from m2fp_batch.labels import LabelsError
from m2fp_batch.labels.layout import EXPORT_FILE, shard_name, stats_name

KEYS = ("semantic", "humans", "parts")


@pytest.fixture()
def output(tmp_path) -> Path:
    """Two photos (coffee as a JPEG with EXIF orientation 6: 600x400 after rotation) and an error row."""
    photos = tmp_path / "photos"
    photos.mkdir()
    im = Image.fromarray(data.coffee())
    exif = im.getexif()
    exif[0x0112] = 6
    im.save(photos / "coffee.jpg", exif=exif, quality=90)
    Image.fromarray(data.astronaut()).save(photos / "astronaut.png")
    rows = [
        labelled_row("coffee", str(photos / "coffee.jpg"), (600, 400), 2, seed=1),
        error_row("broken", str(photos / "broken.jpg")),
        labelled_row("astronaut", str(photos / "astronaut.png"), (512, 512), 3, seed=2),
    ]
    return write_output(tmp_path / "out", rows)


def test_samples_are_the_photo_as_the_job_decodes_it_and_the_maps(output):
    ds = ParsingDataset(output)
    assert len(ds) == 2 and ds.image_ids == ["coffee", "astronaut"]  # the error row is no sample
    s = ds[0]
    photo = decode_image((output.parent / "photos" / "coffee.jpg").read_bytes(), max_pixels=10**8)
    assert s["image"].shape == (600, 400, 3) and s["image"].dtype == np.uint8
    np.testing.assert_array_equal(s["image"], photo)  # EXIF orientation applied
    assert all(s[k].shape == (600, 400) and s[k].dtype == np.int64 for k in KEYS)
    assert all(s[k].flags.writeable for k in ("image", *KEYS))  # the caller's to transform in place
    assert set(np.unique(s["humans"])) == {0, 1, 2} and s["skin_tones"] == ["light", "medium"]
    assert np.all((s["semantic"] > 0) == (s["humans"] > 0)) and np.all((s["parts"] > 0) == (s["humans"] > 0))
    assert ds[-1]["image_id"] == "astronaut"
    with pytest.raises(IndexError):
        ds[2]


def test_rejected_rows_and_changed_photos(output, tmp_path):
    reviewed = tmp_path / "reviewed"
    reviewed.mkdir()
    table = pq.read_table(output / shard_name(0))
    status = pa.array(["reviewed", "unreviewed", "rejected"])
    pq.write_table(table.append_column("review_status", status), reviewed / "shard-00000.parquet")
    (reviewed / EXPORT_FILE).write_text(json.dumps({"files": ["shard-00000.parquet"]}))
    assert ParsingDataset(reviewed).image_ids == ["coffee"]  # a rejected sample is not trained on

    Image.fromarray(data.astronaut()[:100]).save(output.parent / "photos" / "astronaut.png")
    with pytest.raises(LabelsError, match="the file changed after the job labelled it"):
        ParsingDataset(output)[1]
    (output.parent / "photos" / "coffee.jpg").unlink()
    with pytest.raises(LabelsError, match="cannot read"):
        ParsingDataset(output)[0]


def test_loader_workers_and_shard_order(output):
    import torch

    ds = ParsingDataset(output, transform=lambda s: {"semantic": torch.as_tensor(s["semantic"][:32, :32])})
    order = ds.shard_order(np.random.default_rng(0))
    assert sorted(order) == [0, 1]
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2, sampler=order)
    (batch,) = list(loader)
    assert batch["semantic"].shape == (2, 32, 32)


def test_ray_dataset_gives_the_same_records(output):
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        records = {r["image_id"]: r for r in ray_dataset(output).take_all()}
    finally:
        ray.shutdown()
    ds = ParsingDataset(output)
    assert sorted(records) == sorted(ds.image_ids)
    for i, iid in enumerate(ds.image_ids):
        for k in ("image", *KEYS):
            np.testing.assert_array_equal(np.asarray(records[iid][k]), ds[i][k])
        assert list(records[iid]["skin_tones"]) == ds[i]["skin_tones"]


@pytest.mark.cluster
def test_job_output_and_photos_on_s3(output, monkeypatch):
    import boto3
    from pipeline.cluster import seaweedfs

    with seaweedfs() as endpoint:
        for k, v in {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "m2fp-test",
            "AWS_SECRET_ACCESS_KEY": "m2fp-test-secret",
            "AWS_REGION": "us-east-1",
        }.items():
            monkeypatch.setenv(k, v)
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="labels")
        table = pq.read_table(output / shard_name(0))
        uris = [f"s3://labels/photos/{Path(u).name}" for u in table.column("uri").to_pylist()]
        for u, local in zip(uris, table.column("uri").to_pylist(), strict=True):
            if Path(local).exists():
                s3.upload_file(local, "labels", u[len("s3://labels/") :])
        moved = output.parent / "s3out"
        shutil.copytree(output, moved)
        pq.write_table(
            table.set_column(table.schema.get_field_index("uri"), "uri", pa.array(uris)), moved / shard_name(0)
        )
        (moved / stats_name(0)).write_text(json.dumps(commit_marker(moved, 0)))  # the shard changed: commit it again
        for f in sorted(p for p in moved.rglob("*") if p.is_file()):
            s3.upload_file(str(f), "labels", f"out/{f.relative_to(moved)}")
        remote, local = ParsingDataset("s3://labels/out"), ParsingDataset(output)
        assert remote.kind == "job" and remote.image_ids == local.image_ids
        for i in range(len(local)):
            for k in ("image", *KEYS):
                np.testing.assert_array_equal(remote[i][k], local[i][k])
