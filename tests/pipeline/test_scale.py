"""The driver at scale: 200,000 missing files (error rows only), a kill -9 mid-run and a rerun.

The rerun's driver heap (``RssAnon`` of the ``m2fp-batch run`` process, sampled every 0.1 s; its
local Ray runs in other processes) must stay under :data:`DRIVER_HEAP_MB`, and the object-store
pages it maps (``RssShmem``) under :data:`DRIVER_STORE_PAGES_MB`. The driver that held
the whole listing (8972997) reached 534 MB of heap in this rerun, and 477 MB in the first run;
the streamed listing: 402 MB in the rerun (422-432 MB in the first run), near its start-up size (docs/performance.md, "The driver at
store scale"). ``ru_maxrss`` is printed too. After the kill and the rerun,
every input is in exactly one committed row.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from cluster import seaweedfs

from m2fp_batch.storage import S3_LIST_WORKERS, S3Options, list_s3

REPO = Path(__file__).resolve().parents[2]
ROWS = 200_000
DRIVER_HEAP_MB = 480
# the object-store pages the driver maps: one block of rows at a time (~25 MB) since it drops what
# it has read (memory.release_mapped_store_pages); without that, ~350 B per row read (70 MB here)
DRIVER_STORE_PAGES_MB = 48
# the m2fp-batch CLI, reporting its own peak RSS on stderr when it ends
DRIVER = (
    "import resource, sys\n"
    "from m2fp_batch.cli import main\n"
    "try:\n"
    "    code = main(sys.argv[1:])\n"
    "finally:\n"
    "    print('driver_peak_rss_kb', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
    "sys.exit(code)\n"
)

pytestmark = pytest.mark.timeout(1500)


def _argv(manifest: Path, out: Path, model: Path) -> list[str]:
    return [sys.executable, "-c", DRIVER, "run", "--input", str(manifest), "--output", str(out),
            "--model", str(model), "--num-cpus", "2"]  # fmt: skip


def _env(tmp: Path) -> dict[str, str]:
    return {**os.environ, "RAY_TMPDIR": str(tmp), "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": str(REPO)}


def _peak_kb(proc: subprocess.Popen, timeout: float) -> dict[str, int]:
    """The peaks of ``proc``'s own heap (``RssAnon``) and of the shared pages it maps
    (``RssShmem``: Ray's object store, read as the rows arrive), sampled every 0.1 s until it exits."""
    peak, deadline = dict.fromkeys(("RssAnon", "RssShmem"), 0), time.time() + timeout
    while proc.poll() is None and time.time() < deadline:
        try:
            with open(f"/proc/{proc.pid}/status") as f:
                for ln in f:
                    key = ln.split(":")[0]
                    if key in peak:
                        peak[key] = max(peak[key], int(ln.split()[1]))
        except OSError:
            pass
        time.sleep(0.1)
    proc.wait(timeout=max(1.0, deadline - time.time()))
    return peak


def _committed(out: Path) -> int:
    stats = out / "_stats"
    return len(list(stats.glob("shard-*.json"))) if stats.is_dir() else 0


@pytest.mark.slow
def test_200k_rows_bounded_driver_and_exactly_once_after_kill(tmp_path, tiny_model_dir):
    manifest, out = tmp_path / "missing.csv", tmp_path / "out"
    manifest.write_text("uri\n" + "".join(f"{tmp_path}/absent/{i:07d}.jpg\n" for i in range(ROWS)))
    ray_tmp = Path(f"/tmp/rs{os.getpid()}")
    log = tmp_path / "first.log"
    with log.open("w") as f:
        first = subprocess.Popen(
            _argv(manifest, out, tiny_model_dir), env=_env(ray_tmp), cwd=REPO, stdout=f, stderr=subprocess.STDOUT
        )
    deadline = time.time() + 900
    while _committed(out) < 3 and first.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert first.poll() is None, f"the first run ended before it was killed: {log.read_text()[-3000:]}"
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=60)
    killed_at = _committed(out)
    assert 0 < killed_at < ROWS // 256

    with (tmp_path / "rerun.log").open("w") as f:
        rerun = subprocess.Popen(
            _argv(manifest, out, tiny_model_dir), env=_env(ray_tmp), cwd=REPO, stdout=f, stderr=subprocess.STDOUT
        )
        peak = {k: kb / 1024 for k, kb in _peak_kb(rerun, 1200).items()}
    text = (tmp_path / "rerun.log").read_text()
    assert rerun.returncode == 0, text[-3000:]
    rss_mb = int(text.rsplit("driver_peak_rss_kb", 1)[1].split()[0]) / 1024
    print(f"driver over {ROWS} inputs: peak heap {peak['RssAnon']:.0f} MB, peak store pages "
          f"{peak['RssShmem']:.0f} MB, peak RSS {rss_mb:.0f} MB")  # fmt: skip
    assert peak["RssAnon"] < DRIVER_HEAP_MB, f"driver peak heap (RssAnon) {peak['RssAnon']:.0f} MB over {ROWS} inputs"
    assert peak["RssShmem"] < DRIVER_STORE_PAGES_MB, (
        f"object-store pages mapped by the driver: {peak['RssShmem']:.0f} MB"
    )

    ids = pq.read_table([str(p) for p in sorted(out.glob("shard-*.parquet"))], columns=["image_id", "status"])
    assert ids.num_rows == ROWS
    assert len(set(ids.column("image_id").to_pylist())) == ROWS
    assert set(ids.column("status").to_pylist()) == {"error"}


@pytest.mark.cluster
def test_s3_listing_by_prefix_yields_every_key_once():
    """More sub-prefixes than listers, one of them over a page (1,000 keys), keys directly under
    the prefix, deep keys, odd characters; a sibling prefix is not listed."""
    import boto3

    key, secret = "m2fp-test", "m2fp-test-secret"
    names = [f"big/{i:05d}.jpg" for i in range(1200)] + [f"d{i:02d}/x.jpg" for i in range(2 * S3_LIST_WORKERS + 1)]
    names += ["-dash.jpg", "a.jpg", "a/b/c.jpg", "zz/deep/er.jpg", "~tilde.jpg", "é.jpg", "0"]
    with seaweedfs(key, secret) as endpoint:
        s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=key, aws_secret_access_key=secret,
                          region_name="us-east-1")  # fmt: skip
        s3.create_bucket(Bucket="photos")
        for k in [*(f"flat/{n}" for n in names), "flat-sibling/x.jpg"]:
            s3.put_object(Bucket="photos", Key=k, Body=b"")
        options = S3Options(endpoint=endpoint, access_key=key, secret_key=secret)
        keys = [k for page in list_s3(options, "photos", "flat/") for k in page]
    assert sorted(keys) == sorted(f"flat/{n}" for n in names)
