"""ParsingDataset throughput: samples/s through a DataLoader with 2 workers, on 640-px photos.

The labels are real-photo-like (standing figures with smooth part boundaries, 1-4 people per
image, written by tests/synthetic_labels.py in the job's schema and committed like the job
commits shards); the photos are real (scikit-image, matplotlib) JPEGs, 640 px on the short side.
Each sample decodes its JPEG (EXIF applied, the job's decoder) and rebuilds its semantic, person
and part-instance maps from the RLEs.

Measured in one run: the time per sample of each stage in this process (row read, maps, image
decode), then the DataLoader with ``--workers`` workers over every sample in shard order
(shuffled within shards), steady state (after the first batch) and overall, and the workers' CPU
seconds per sample: on a machine shared with other work the wall-clock rate shows the load, the
CPU time per sample what ``--workers`` dedicated cores deliver. Three hand-overs from the workers
(``LOADERS``): whole samples as tensors (the DataLoader's own conversion: shared memory; the goal
line), the training loop of docs/training.md (crops, batches), and numpy arrays kept by ``collate_fn=list``
(pickled through a pipe: the slow path to avoid).

    python benchmarks/bench_dataset.py [--images 512] [--workers 2] [--epochs 2]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

SHORT_SIDE = 640
SHARD_ROWS = 256


def photos() -> list[np.ndarray]:
    import matplotlib.cbook
    from PIL import Image
    from skimage import data

    out = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket(), data.immunohistochemistry()]
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        out.append(np.asarray(Image.open(f).convert("RGB")))
    return out


def make_output(work: Path, n: int) -> Path:
    """``n`` labelled 640-px JPEG photos as a committed job output under ``work/out``."""
    from PIL import Image
    from synthetic_labels import labelled_row, write_output

    pics = photos()
    (work / "photos").mkdir(parents=True)
    rows: list[dict] = []
    shard = 0
    for i in range(n):
        im = Image.fromarray(pics[i % len(pics)])
        s = SHORT_SIDE / min(im.size)
        im = im.resize((round(im.width * s), round(im.height * s)), Image.BILINEAR)
        path = work / "photos" / f"{i:05d}.jpg"
        im.save(path, quality=90)
        rows.append(labelled_row(f"img{i:05d}", str(path), (im.height, im.width), 1 + i % 4, seed=i))
        if len(rows) == SHARD_ROWS or i == n - 1:
            write_output(work / "out", rows, shard)
            rows, shard = [], shard + 1
    return work / "out"


def stage_times(ds, k: int = 40) -> dict[str, float]:
    """Milliseconds per sample of each stage, in this process."""
    from m2fp_batch.labels import label_maps

    t_row = t_maps = t_img = 0.0
    for i in range(min(k, len(ds))):
        ref = ds.refs[i]
        t0 = time.perf_counter()
        row = ds._table(ref.file).slice(ref.row, 1).to_pylist()[0]
        t1 = time.perf_counter()
        maps = label_maps(row)
        t2 = time.perf_counter()
        ds._image(ref.uri, maps.semantic.shape, ref.image_id)
        t3 = time.perf_counter()
        t_row, t_maps, t_img = t_row + t1 - t0, t_maps + t2 - t1, t_img + t3 - t2
    n = min(k, len(ds))
    return {"row_ms": 1e3 * t_row / n, "maps_ms": 1e3 * t_maps / n, "image_ms": 1e3 * t_img / n}


def children_cpu_s() -> float:
    """CPU seconds used by this process's finished children (the DataLoader workers, once joined)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def readme_crop(sample: dict, size: int = 384) -> tuple:
    """The training transform of docs/training.md's loop: a random square crop of image and semantic map, as tensors."""
    import torch
    import torch.nn.functional as F

    h, w = sample["semantic"].shape
    y, x = np.random.randint(0, max(h - size, 0) + 1), np.random.randint(0, max(w - size, 0) + 1)
    img = torch.from_numpy(sample["image"][y : y + size, x : x + size].copy()).permute(2, 0, 1).float() / 255
    sem = torch.from_numpy(sample["semantic"][y : y + size, x : x + size].copy())
    img = F.pad(img, (0, size - img.shape[2], 0, size - img.shape[1]))
    return img, F.pad(sem, (0, size - sem.shape[1], 0, size - sem.shape[0]), value=255)


def count(batch) -> int:
    """Samples in what the loader yielded: a list of samples, one sample dict, or stacked tensors."""
    if isinstance(batch, dict):
        return 1
    if isinstance(batch, (tuple, list)) and batch and hasattr(batch[0], "shape"):
        return int(batch[0].shape[0])
    return len(batch)


# name -> (transform, DataLoader keywords): how the samples leave the workers
LOADERS = {
    "full-size samples as tensors (batch_size=None)": (None, {"batch_size": None}),
    "docs/training.md loop: 384-px crops, batches of 8": (readme_crop, {"batch_size": 8}),
    "numpy kept (collate_fn=list, pickled through a pipe)": (None, {"batch_size": 8, "collate_fn": list}),
}


def loader_rate(ds, workers: int, epochs: int, **loader_kw) -> dict[str, float]:
    """samples/s through a DataLoader (shard order), steady state and overall, and the workers'
    CPU seconds per sample (what the rate would be on dedicated cores)."""
    import torch

    order = [i for e in range(epochs) for i in ds.shard_order(np.random.default_rng(e))]
    loader = torch.utils.data.DataLoader(ds, num_workers=workers, sampler=order, persistent_workers=False, **loader_kw)
    cpu0, t0 = children_cpu_s(), time.perf_counter()
    first = None
    n = 0
    batches = iter(loader)
    for batch in batches:
        n += count(batch)
        if first is None:
            first, n_first = time.perf_counter(), n
    end = time.perf_counter()
    del batches  # the iterator joins its workers, so that their CPU time is counted
    cpu = children_cpu_s() - cpu0
    return {
        "samples": n,
        "overall": n / (end - t0),
        "steady": (n - n_first) / (end - first),
        "cpu_ms_per_sample": 1e3 * cpu / n,
    }


def cpu_model() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    return next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")), "?")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=512)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--epochs", type=int, default=2)
    args = p.parse_args()
    import torch

    from m2fp_batch.data import ParsingDataset

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="bench_dataset") as tmp:
        out = make_output(Path(tmp), args.images)
        ds = ParsingDataset(out)
        s0 = ds[0]
        print(f"CPU: {cpu_model()}, {os.cpu_count()} CPUs; load average before: {os.getloadavg()}")
        print(f"{len(ds)} samples, e.g. {s0['image'].shape} image, {int(s0['humans'].max())} people")
        stages = stage_times(ds)
        print("per sample, one process: " + ", ".join(f"{k} {v:.1f}" for k, v in stages.items()))
        print(f"  -> {1e3 / sum(stages.values()):.1f} samples/s in one process")
        for name, (transform, loader_kw) in LOADERS.items():
            ds.transform = transform
            rate = loader_rate(ds, args.workers, args.epochs, **loader_kw)
            dedicated = args.workers * 1e3 / rate["cpu_ms_per_sample"]
            print(
                f"DataLoader, {args.workers} workers, {name}, {rate['samples']} samples: "
                f"{rate['steady']:.1f} samples/s steady, {rate['overall']:.1f} overall (worker start included); "
                f"workers' CPU {rate['cpu_ms_per_sample']:.1f} ms per sample -> {dedicated:.1f} samples/s "
                f"with {args.workers} dedicated cores"
            )
        print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
