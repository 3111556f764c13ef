"""The job on a real Ray cluster (`ray start --head`): submission through the Jobs API,
SIGKILL of the driver and of a model actor mid-run, and S3 input/output on SeaweedFS.
After every interruption and rerun, each input appears exactly once."""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from badfiles import MAX_PIXELS, bad_files
from cluster import auth_headers, descendants_matching, ray_head, seaweedfs
from PIL import Image

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def head():
    # token auth, the session's token (tests/conftest.py: RAY_AUTH_TOKEN_PATH), passed explicitly
    with ray_head() as h:
        yield h


def _photos() -> list[tuple[str, bytes]]:
    """Real photos (skimage, matplotlib) at several crops, JPEG-encoded."""
    import matplotlib.cbook
    from skimage import data

    imgs = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        imgs.append(plt_img := __import__("numpy").asarray(Image.open(f).convert("RGB")))
    del plt_img
    out = []
    for i, im in enumerate(imgs):
        for j, frac in enumerate((1.0, 0.8, 0.6, 0.45)):
            h, w = im.shape[:2]
            crop = im[: max(16, int(h * frac)), : max(16, int(w * frac))]
            buf = io.BytesIO()
            Image.fromarray(crop).save(buf, "JPEG", quality=85)
            out.append((f"p{i}_{j}.jpg", buf.getvalue()))
    return out


def _write_dir(root: Path, n: int, n_bad: int = 2) -> list[str]:
    root.mkdir(parents=True)
    photos = _photos()
    for k in range(n):
        name, data = photos[k % len(photos)]
        (root / f"{k:03d}_{name}").write_bytes(data)
    for name, (data, _) in list(bad_files().items())[:n_bad]:
        (root / Path(name).name).write_bytes(data)
    return sorted(str(p) for p in root.iterdir())


def _video_bytes(tmp_path: Path) -> bytes:
    """A real H.264 video, 2.5 s at 10 fps, of a pan over a photo (tests/video/videos.py)."""
    sys.path.insert(0, str(REPO / "tests" / "video"))
    from videos import pan_frames, write_video

    return write_video(tmp_path / "clip.mp4", pan_frames(25), fps=10).read_bytes()


def _run_cmd(tiny_model_dir, src, out, *extra) -> list[str]:
    return [
        sys.executable, "-m", "m2fp_batch.cli", "run", "--input", str(src), "--output", str(out),
        "--model", str(tiny_model_dir), "--set", f"max_pixels={MAX_PIXELS}", "--set", "progress_interval_s=2", *extra,
    ]  # fmt: skip


def _assert_exactly_once(out: Path, uris: list[str]) -> list[dict]:
    rows = pq.read_table(out).to_pylist()
    got = sorted(r["uri"] for r in rows)
    assert got == sorted(uris), "every input exactly once"
    return rows


def _wait_for_stats(out: Path, n: int, proc: subprocess.Popen, timeout: float = 300, poll: float = 0.2) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if len(list((out / "_stats").glob("shard-*.json"))) >= n:
            return
        assert proc.poll() is None, f"the job ended early ({proc.returncode})"
        time.sleep(poll)
    raise TimeoutError("no shard finished")


def test_ray_job_submit(head, tmp_path, tiny_model_dir):
    from ray.job_submission import JobStatus, JobSubmissionClient

    _, url, _, _ = head
    uris = _write_dir(tmp_path / "in", 4)
    out = tmp_path / "out"
    client = JobSubmissionClient(url, headers=auth_headers())
    entry = " ".join(
        [sys.executable, "jobs/parse_images.py", "--input", str(tmp_path / "in"), "--output", str(out),
         "--model", str(tiny_model_dir), "--shard-size", "3", "--set", f"max_pixels={MAX_PIXELS}"]
    )  # fmt: skip
    job = client.submit_job(
        entrypoint=entry, runtime_env={"working_dir": str(REPO), "excludes": ["tests/", "benchmarks/"]}
    )
    end = time.time() + 600
    while (status := client.get_job_status(job)) not in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
        assert time.time() < end, "job did not finish"
        time.sleep(1)
    logs = client.get_job_logs(job)
    assert status == JobStatus.SUCCEEDED, logs[-3000:]
    assert "finished: 6 rows of 6 inputs (complete)" in logs and "joining the Ray cluster" in logs
    rows = _assert_exactly_once(out, uris)
    assert sorted(r["status"] for r in rows) == ["error"] * 2 + ["ok"] * 4
    summary = json.loads((out / "_run.json").read_text())
    assert summary["complete"] and summary["shards"] == {"total": 2, "finished": 2}


def _kill_after_a_shard(cmd: list[str], env: dict, out: Path) -> int:
    """Start the job, SIGKILL its driver once a shard is committed; returns the shards committed then."""
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for_stats(out, 1, proc, poll=0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    return len(list((out / "_stats").glob("shard-*.json")))


def test_driver_sigkill_then_rerun(head, tmp_path, tiny_model_dir):
    gcs, _, env, _ = head
    uris = _write_dir(tmp_path / "in", 24)  # enough shards that the kill lands mid-job on a quiet machine
    out = tmp_path / "out"
    cmd = _run_cmd(tiny_model_dir, tmp_path / "in", out, "--address", gcs, "--shard-size", "2", "--batch-size", "1")
    done_at_kill = _kill_after_a_shard(cmd, env, out)
    assert done_at_kill < len(uris) // 2, "the kill came before the end"
    # every finished shard is readable and complete; nothing half-written looks finished
    for f in out.glob("shard-*.parquet"):
        assert pq.read_table(f).num_rows == 2
    res = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "already finished" in res.stderr
    _assert_exactly_once(out, uris)
    summary = json.loads((out / "_run.json").read_text())
    assert summary["complete"] and summary["run"]["labelled_this_run"] <= len(uris) - 2 * done_at_kill
    assert not list(out.glob(".*.tmp")) and not list((out / "_stats").glob(".*.tmp"))


def test_driver_sigkill_then_rerun_with_videos(head, tmp_path, tiny_model_dir):
    """A directory of photos and videos: killed after its first shard, rerun, every photo and every
    sampled frame exactly once (a video's frames are committed with its shard, all or none)."""
    sys.path.insert(0, str(REPO / "tests" / "video"))
    from videos import pan_frames, write_video

    gcs, _, env, _ = head
    photos = _write_dir(tmp_path / "in", 10, n_bad=0)
    seconds = {f"v{k}.mp4": (20 + 5 * k) / 10 for k in range(6)}  # 2.0 to 4.5 s at 10 fps
    for name, s in seconds.items():
        write_video(tmp_path / "in" / name, pan_frames(int(s * 10)), fps=10)
    out = tmp_path / "out"
    cmd = _run_cmd(tiny_model_dir, tmp_path / "in", out, "--address", gcs, "--shard-size", "2", "--batch-size", "1")
    assert _kill_after_a_shard(cmd, env, out) < 8, "the kill came before the end"
    res = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = pq.read_table(out).to_pylist()
    assert sorted(r["uri"] for r in rows if r["video_id"] is None) == photos
    for name, s in seconds.items():
        frames = sorted(r["frame_index"] for r in rows if r["uri"] == str(tmp_path / "in" / name))
        assert frames == [10 * k for k in range(math.ceil(s))], name  # 1 frame a second, each once
    assert json.loads((out / "_run.json").read_text())["complete"]


def test_actor_sigkill_is_retried(head, tmp_path, tiny_model_dir):
    gcs, _, env, head_pid = head
    uris = _write_dir(tmp_path / "in", 8, n_bad=0)
    out = tmp_path / "out"
    cmd = _run_cmd(tiny_model_dir, tmp_path / "in", out, "--address", gcs, "--shard-size", "2", "--batch-size", "2")
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _wait_for_stats(out, 1, proc)
    actors = descendants_matching(head_pid, "MapBatches(Labeler)")  # the cluster's model actor processes
    assert actors, "a labelling actor is alive"
    os.kill(actors[0], signal.SIGKILL)
    log, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, log[-3000:]
    rows = _assert_exactly_once(out, uris)
    summary = json.loads((out / "_run.json").read_text())
    assert summary["complete"] and summary["run"]["labelled_this_run"] == len(uris)
    # the images in flight were retried on a restarted actor: all labelled, none lost
    assert all(r["status"] == "ok" for r in rows), [r["error"] for r in rows if r["error"]]


def test_s3_manifest_and_directory(head, tmp_path, tiny_model_dir):
    gcs, _, env, _ = head
    key, secret = "m2fp-test", "m2fp-test-secret"
    with seaweedfs(key, secret) as endpoint:
        fs = pafs.S3FileSystem(
            access_key=key,
            secret_key=secret,
            endpoint_override=endpoint.split("//")[1],
            scheme="http",
            region="us-east-1",
            allow_bucket_creation=True,
        )
        fs.create_dir("photos")
        photos = _photos()[:3] + [("clip.mp4", _video_bytes(tmp_path))]  # a 2.5 s video: 3 frames
        for name, data in photos:
            with fs.open_output_stream(f"photos/in/sub/{name}") as f:
                f.write(data)
        manifest = pa.table(
            {
                "uri": [f"s3://photos/in/sub/{n}" for n, _ in photos] + ["s3://photos/in/nope.jpg"],
                "license": ["cc-by", "cc0", "cc-by-sa", "video", "unknown"],
            }
        )
        with fs.open_output_stream("photos/manifest.parquet") as f:
            pq.write_table(manifest, f)
        s3_env = {**env, "AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret, "AWS_ENDPOINT_URL": endpoint}
        cmd = _run_cmd(tiny_model_dir, "s3://photos/manifest.parquet", "s3://photos/labels", "--address", gcs)
        res = subprocess.run(cmd, env=s3_env, cwd=REPO, capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stderr[-3000:]
        assert secret not in res.stderr + res.stdout
        rows = pq.read_table("photos/labels", filesystem=fs).to_pylist()
        video = "s3://photos/in/sub/clip.mp4"
        assert sorted(r["frame_index"] for r in rows if r["uri"] == video) == [0, 10, 20]  # streamed from S3
        assert sorted({r["uri"] for r in rows}) == sorted(manifest.column("uri").to_pylist())
        by_uri = {r["uri"]: r for r in rows}
        assert by_uri["s3://photos/in/nope.jpg"]["error_kind"] == "missing"
        assert [by_uri[u]["license"] for u in manifest.column("uri").to_pylist()] == manifest.column(
            "license"
        ).to_pylist()
        assert sum(r["status"] == "ok" for r in rows) == 3 + 3
        with fs.open_input_stream("photos/labels/_run.json") as f:
            summary = json.loads(f.read())
        assert summary["complete"] and secret not in json.dumps(summary)
        # a directory listing on S3, written locally
        res = subprocess.run(
            _run_cmd(tiny_model_dir, "s3://photos/in", tmp_path / "out", "--address", gcs),
            env=s3_env, cwd=REPO, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert res.returncode == 0, res.stderr[-3000:]
        frames = ["s3://photos/in/sub/clip.mp4"] * 2  # the video's three rows: two more than one input
        _assert_exactly_once(tmp_path / "out", [f"s3://photos/in/sub/{n}" for n, _ in photos] + frames)
    shutil.rmtree(tmp_path / "out", ignore_errors=True)
