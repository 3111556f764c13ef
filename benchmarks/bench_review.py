#!/usr/bin/env python
"""Import speed and database size of the FiftyOne review dataset at 10k samples.

    python benchmarks/bench_review.py [--n 10000] [--source JOB_OUTPUT] [--work DIR] [--json out.json]

Without --source it runs the real job (``m2fp-batch run``, the tiny model of tests/tiny_model.py:
real M2FP code, random weights) on 4 photos (astronaut, coffee, chelsea, grace_hopper) and tiles
its rows to N: every synthetic row is a real job row (real RLE masks, real part statistics) with
a new image id, written in shards of 1000 rows in the job's schema. The masks of a random-weight
model are noisier than a trained model's, so the mask PNGs and RLEs are larger than real ones
(a pessimistic size). FiftyOne runs in a private HOME and bundled database under --work.

Measured in one run: the first import (samples/s), a rerun over the same output (the idempotent
update path, samples/s), the export of all samples back to Parquet (rows/s), the database size
(MongoDB dbStats: data, storage, indexes; the sample documents' mean and max BSON size), the mask
PNG folder size, and the time of the review-queue's first page (sort by review_priority, 50 rows).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _dir_bytes(path: Path) -> tuple[int, int]:
    total, n = 0, 0
    for p in path.rglob("*"):
        if p.is_file():
            total += p.stat().st_size
            n += 1
    return total, n


def write_photos(work: Path) -> Path:
    """The 4 real photos (scikit-image, matplotlib) in ``work/images``; returns that dir."""
    import matplotlib.cbook
    from PIL import Image
    from skimage import data

    images = work / "images"
    images.mkdir(parents=True, exist_ok=True)
    for name in ("astronaut", "coffee", "chelsea"):
        Image.fromarray(getattr(data, name)()).save(images / f"{name}.png")
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        (images / "grace_hopper.jpg").write_bytes(f.read())
    return images


def make_source(work: Path) -> Path:
    """Run the real job with the tiny model on 4 photos; returns the job output dir."""
    images = write_photos(work)
    model = work / "tiny_model"
    subprocess.run([sys.executable, str(REPO / "tests" / "tiny_model.py"), str(model)], check=True, cwd=REPO)
    out = work / "job"
    cmd = [sys.executable, "-m", "m2fp_batch.cli", "run", "--input", str(images), "--out", str(out)]
    subprocess.run([*cmd, "--model", str(model)], check=True, cwd=REPO)
    return out


def tile(source: Path, n: int, dest: Path, shard_rows: int = 1000) -> int:
    """Write N rows (the source's ok rows repeated with new image ids) as shards under ``dest``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from m2fp_batch.labels import open_labels

    table = open_labels(source).read_table()
    rows = [r for r in table.to_pylist() if r["status"] == "ok"]
    dest.mkdir(parents=True, exist_ok=True)
    for s, start in enumerate(range(0, n, shard_rows)):
        out = []
        for k in range(start, min(n, start + shard_rows)):
            r = dict(rows[k % len(rows)])
            r["image_id"] = f"{r['image_id']}-{k:06d}"
            r["shard"] = s
            out.append(r)
        pq.write_table(pa.Table.from_pylist(out, schema=table.schema), dest / f"shard-{s:05d}.parquet")
    return len(rows)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=10_000, help="samples to import (default 10000)")
    p.add_argument("--source", help="a job output to tile (default: run the job on 4 photos)")
    p.add_argument("--work", help="work directory (default: a temp dir, removed afterwards)")
    p.add_argument("--json", help="write the results here too")
    args = p.parse_args()

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench_review_"))
    work.mkdir(parents=True, exist_ok=True)
    home = work / "home"
    home.mkdir(exist_ok=True)
    os.environ.update(
        HOME=str(home),
        FIFTYONE_DO_NOT_TRACK="true",
        FIFTYONE_DATABASE_VALIDATION="false",
        FIFTYONE_DATABASE_DIR=str(home / "db"),
        RAY_USAGE_STATS_ENABLED="0",
    )
    os.environ.pop("FIFTYONE_DATABASE_URI", None)
    try:
        source = Path(args.source) if args.source else make_source(work)
        tiled = work / "tiled"
        if tiled.exists():
            shutil.rmtree(tiled)
        distinct = tile(source, args.n, tiled)

        import fiftyone as fo

        from m2fp_batch.review.build import build_review_dataset
        from m2fp_batch.review.export import export_reviewed

        name = "bench-review"
        if fo.dataset_exists(name):
            fo.delete_dataset(name)
        t0 = time.perf_counter()
        ds, first = build_review_dataset(tiled, name)
        t_first = time.perf_counter() - t0
        t0 = time.perf_counter()
        ds, second = build_review_dataset(tiled, name)
        t_second = time.perf_counter() - t0
        assert len(ds) == args.n, (len(ds), args.n)

        t0 = time.perf_counter()
        page = ds.load_saved_view("review-queue").limit(50).values("review_priority")
        t_queue = time.perf_counter() - t0
        t0 = time.perf_counter()
        exp = export_reviewed(name, work / "export")
        t_export = time.perf_counter() - t0

        db = ds._sample_collection.database
        stats = db.command("dbStats")
        coll = db.command("collStats", ds._sample_collection_name)
        max_doc = next(
            iter(ds._sample_collection.aggregate([{"$group": {"_id": None, "m": {"$max": {"$bsonSize": "$$ROOT"}}}}]))
        )["m"]
        mask_bytes, mask_files = _dir_bytes(tiled / "_review" / "masks")
        parquet_bytes = sum(f.stat().st_size for f in tiled.glob("shard-*.parquet"))
        result = {
            "n": args.n,
            "distinct_source_rows": distinct,
            "persons": int(sum(ds.values("num_persons"))),
            "import_first_s": round(t_first, 1),
            "import_first_samples_per_s": round(args.n / t_first, 1),
            "import_rerun_s": round(t_second, 1),
            "import_rerun_samples_per_s": round(args.n / t_second, 1),
            "rerun_added": second.added,
            "rerun_updated": second.updated,
            "export_s": round(t_export, 1),
            "export_rows_per_s": round(exp.rows / t_export, 1),
            "queue_first_page_s": round(t_queue, 3),
            "queue_first_page_top": round(page[0], 3),
            "db_data_mb": round(stats["dataSize"] / 2**20, 2),
            "db_storage_mb": round(stats["storageSize"] / 2**20, 2),
            "db_index_mb": round(stats["indexSize"] / 2**20, 2),
            "sample_doc_mean_kb": round(coll["avgObjSize"] / 1024, 2),
            "sample_doc_max_kb": round(max_doc / 1024, 2),
            "mask_files": mask_files,
            "mask_dir_mb": round(mask_bytes / 2**20, 1),
            "job_parquet_mb": round(parquet_bytes / 2**20, 1),
            "first_import_stats": first.to_dict(),
        }
        print(json.dumps(result, indent=2))
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        fo.delete_dataset(name)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
