"""The job end to end on a local Ray (one per module): a directory of real photos and bad
files, resume, --overwrite, Parquet/CSV manifests with passthrough columns, bad settings."""

from __future__ import annotations

import itertools
import json
import shutil

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

ray = pytest.importorskip("ray")  # before the job's modules: without Ray the module skips, never errors

from badfiles import MAX_PIXELS, MIN_SIDE, good_files, write_inputs  # noqa: E402

from m2fp_batch import cli as m2fp_cli  # noqa: E402
from m2fp_batch.annotate import rle  # noqa: E402
from m2fp_batch.pipeline.config import JobSettings, JobSettingsError  # noqa: E402
from m2fp_batch.pipeline.job import run_job  # noqa: E402
from m2fp_batch.schema import output_schema  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _cfg(tiny_model_dir, src, out, **kw) -> JobSettings:
    base = dict(
        input=str(src),
        output=str(out),
        model=str(tiny_model_dir),
        max_pixels=MAX_PIXELS,
        min_side=MIN_SIDE,
        shard_size=8,
        batch_size=2,
        forward_batch=2,  # same-size photos share a pass: the job path of batching stays tested
        progress_interval_s=1.0,
    )
    base.update(kw)
    return JobSettings.from_sources(None, base)


def _run(cfg: JobSettings) -> dict:
    """The job's summary as the dict it writes to ``_run.json``."""
    return run_job(cfg).to_dict()


def _rows(out) -> list[dict]:
    return pq.read_table(out).to_pylist()


@pytest.fixture(scope="module")
def dir_job(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("job")
    src, out = root / "in", root / "out"
    expected = write_inputs(src)
    cfg = _cfg(tiny_model_dir, src, out)
    summary = _run(cfg)
    return cfg, src, out, expected, summary


def test_directory_gives_one_row_per_file(dir_job):
    cfg, src, out, expected, summary = dir_job
    rows = _rows(out)
    by_uri = {r["uri"]: r for r in rows}
    assert len(rows) == len(by_uri) == len(expected)
    for rel, (status, kind) in expected.items():
        r = by_uri[str(src / rel)]
        assert (r["status"], r["error_kind"]) == (status, kind), (rel, r["error"])
        if status == "ok":
            assert r["error"] is None and r["width"] > 0 and r["num_persons"] == len(r["persons"])
            assert sum(r["skin_tone_counts"].values()) == r["num_persons"] and r["brightened"] is False
            for p in r["persons"]:
                assert p["skin_tone"]["group"] in ("light", "medium", "dark", "unknown")
                assert rle.decode(p["mask"]).sum() == p["area"]
                assert p["mask"]["size"] == [r["height"], r["width"]]
        else:
            assert r["error"] and r["persons"] is None
    # every file has the explicit schema, also shards made only of errors
    for f in sorted(out.glob("shard-*.parquet")):
        assert pq.read_schema(f).equals(output_schema(), check_metadata=False)
    n_err = sum(1 for s, _ in expected.values() if s == "error")
    assert summary["complete"] and summary["rows"] == len(expected)
    assert summary["status"] == {"ok": len(expected) - n_err, "error": n_err}
    kinds = {}
    for _, k in expected.values():
        if k:
            kinds[k] = kinds.get(k, 0) + 1
    assert summary["error_kinds"] == kinds
    saved = json.loads((out / "_run.json").read_text())
    assert saved == json.loads(json.dumps(summary))  # the returned summary is what the file holds
    assert saved["status"] == summary["status"] and saved["provenance"]["checkpoint_sha256"]
    assert saved["run"]["images_per_s"] > 0
    assert len(list((out / "_stats").glob("shard-*.json"))) == summary["shards"]["total"]


def test_rerun_resumes_and_appends_new_inputs(dir_job, tiny_model_dir):
    cfg, src, out, expected, _ = dir_job
    again = _run(cfg)
    assert again["run"]["labelled_this_run"] == 0 and again["rows"] == len(expected)
    # a shard without its stats file counts as unfinished; a new photo becomes a new shard
    (out / "_stats" / "shard-00001.json").unlink()
    (src / "new" / "later.jpg").parent.mkdir()
    (src / "new" / "later.jpg").write_bytes(good_files()["good/photo.jpg"][0])
    resumed = _run(cfg)
    assert resumed["run"]["labelled_this_run"] == 8 + 1
    rows = _rows(out)
    ids = [r["image_id"] for r in rows]
    assert len(ids) == len(set(ids)) == len(expected) + 1
    assert resumed["complete"] and resumed["shards"]["total"] == 5


def test_manifests_keep_passthrough_columns(tmp_path, tiny_model_dir):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    good = good_files()
    for name in ("good/photo.jpg", "good/gray.png"):
        (imgs / name.split("/")[1]).write_bytes(good[name][0])
    manifest = pa.table(
        {
            "image_id": ["p1", "p2", "p3"],
            "uri": ["imgs/photo.jpg", "imgs/gray.png", "imgs/missing.jpg"],  # relative to the manifest
            "caption": ["an astronaut", None, "gone"],
            "rating": pa.array([5, 3, None], pa.int64()),
            "tags": pa.array([["a", "b"], [], None], pa.list_(pa.string())),
        }
    )
    pq.write_table(manifest, tmp_path / "manifest.parquet")
    summary = _run(_cfg(tiny_model_dir, tmp_path / "manifest.parquet", tmp_path / "out"))
    assert summary["status"] == {"ok": 2, "error": 1} and summary["error_kinds"] == {"missing": 1}
    t = pq.read_table(tmp_path / "out")
    assert t.schema.field("rating").type == pa.int64() and t.schema.field("tags").type == pa.list_(pa.string())
    rows = {r["image_id"]: r for r in t.to_pylist()}
    assert rows["p1"]["caption"] == "an astronaut" and rows["p1"]["tags"] == ["a", "b"] and rows["p1"]["status"] == "ok"
    assert rows["p2"]["caption"] is None and rows["p2"]["rating"] == 3
    assert (
        rows["p3"]["status"] == "error" and "does not exist" in rows["p3"]["error"] and rows["p3"]["caption"] == "gone"
    )
    # CSV, custom uri column, ids derived from the uri
    csv = tmp_path / "list.csv"
    pacsv.write_csv(pa.table({"path": [str(imgs / "photo.jpg")], "source": ["web"]}), csv)
    s2 = _run(_cfg(tiny_model_dir, csv, tmp_path / "out_csv", uri_column="path"))
    r = pq.read_table(tmp_path / "out_csv").to_pylist()
    assert s2["status"]["ok"] == 1 and r[0]["source"] == "web" and len(r[0]["image_id"]) == 20
    # resuming with settings that change rows is refused; --overwrite starts over
    with pytest.raises(JobSettingsError, match="other settings"):
        _run(_cfg(tiny_model_dir, csv, tmp_path / "out_csv", uri_column="path", max_pixels=MAX_PIXELS * 2))
    fresh = _run(_cfg(tiny_model_dir, csv, tmp_path / "out_csv", uri_column="path", max_pixels=7, overwrite=True))
    assert fresh["run"]["labelled_this_run"] == 1 and fresh["error_kinds"] == {"too_large": 1}
    assert pq.read_table(tmp_path / "out_csv").num_rows == 1


def test_bad_settings_stop_before_ray(tmp_path, tiny_model_dir, capsys):
    def run(*argv):
        return m2fp_cli.main(["run", *argv])

    assert run("--input", str(tmp_path), "--output", str(tmp_path / "o"), "--set", "batchsize=3") == 2
    assert "unknown setting(s) ['batchsize']" in capsys.readouterr().err
    assert run("--input", str(tmp_path), "--output", str(tmp_path / "o"), "--batch-size", "0") == 2
    assert "batch_size must be >= 1" in capsys.readouterr().err
    assert run("--input", str(tmp_path / "nope"), "--output", str(tmp_path / "o"), "--model", str(tiny_model_dir)) == 2
    assert "does not exist" in capsys.readouterr().err
    assert run("--input", str(tmp_path), "--output", str(tmp_path / "o"), "--model", str(tmp_path)) == 2
    assert "configuration.json" in capsys.readouterr().err
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "notes.txt").write_text("x")
    assert run("--input", str(tmp_path / "in"), "--output", str(tmp_path / "o"), "--model", str(tiny_model_dir)) == 2
    assert "holds no images" in capsys.readouterr().err
    bad_yaml = tmp_path / "c.yaml"
    bad_yaml.write_text("shard_size: [1, 2]\n")
    assert run("--config", str(bad_yaml), "--input", "a", "--output", "b") == 2
    assert "shard_size: expected int" in capsys.readouterr().err
    clash = tmp_path / "clash.parquet"
    pq.write_table(pa.table({"uri": ["a.jpg"], "status": ["x"]}), clash)
    assert run("--input", str(clash), "--output", str(tmp_path / "o2"), "--model", str(tiny_model_dir)) == 2
    assert "collide with output columns" in capsys.readouterr().err
    shutil.rmtree(tmp_path / "o", ignore_errors=True)


def test_staged_pipeline_on_cpu_gives_the_single_stage_rows(dir_job, tmp_path, tiny_model_dir):
    """The GPU-shaped pipeline (CPU decode tasks -> device actors -> CPU row tasks) with device cpu:
    the same rows as the single-stage job, every one recording the device."""
    cfg, src, out, expected, _ = dir_job  # src may hold one more photo than `expected` (the rerun test adds it)

    def by_uri(d):
        return {r["uri"]: {k: v for k, v in r.items() if k != "timings"} for r in _rows(d)}

    single = by_uri(out)
    staged_out = tmp_path / "staged"
    summary = _run(_cfg(tiny_model_dir, src, staged_out, staged=True))
    assert summary["complete"] and summary["rows"] == len(single) >= len(expected)
    staged = by_uri(staged_out)
    assert staged == single and {r["device"] for r in staged.values()} == {"cpu"}


def test_a_labelling_actor_that_cannot_reach_the_ledger_goes_on(tiny_model_dir):
    """The ledger's actor gone (its node lost): the labeller still starts and labels its block,
    unrecorded, instead of failing it (which would abort the whole dataset)."""
    from m2fp_batch.pipeline.worker import CrashLedger, Labeler

    ledger = ray.remote(num_cpus=0)(CrashLedger).remote()
    assert ray.get(ledger.size.remote()) == 0
    ray.kill(ledger, no_restart=True)
    labeler = Labeler(_cfg(tiny_model_dir, "x", "y"), output_schema(pa.schema([])), ledger, threads=1)
    photo = good_files()["good/photo.jpg"][0]
    block = pa.table({
        "image_id": ["a", "b"], "uri": ["/a.jpg", "/b.jpg"], "shard": pa.array([0, 0], pa.int32()),
        "data": pa.array([photo, photo], pa.large_binary()), "read_error": pa.array([None, None], pa.string()),
        "read_error_kind": pa.array([None, None], pa.string()), "read_s": [0.0, 0.0],
    })  # fmt: skip
    rows = labeler(block).to_pylist()
    assert [(r["uri"], r["status"]) for r in rows] == [("/a.jpg", "ok"), ("/b.jpg", "ok")]


def test_the_read_stage_reads_a_joined_run_in_bounded_calls_and_blocks(tmp_path):
    """Ray Data joins the blocks of a read task (a run of the listing): the read stage must still
    read at most READ_CALL_ROWS files per call and hand on blocks of about MAX_BLOCK_BYTES, never
    the run's photos at once (a real job of 65,536 photos per run would hold them all)."""
    import ray.data as rd

    from m2fp_batch.pipeline.reading import READ_CALL_ROWS, read_batch, read_stage
    from m2fp_batch.pipeline.schedule import MAX_BLOCK_BYTES
    from m2fp_batch.storage import S3Options
    from m2fp_batch.video import Sampling

    photo = tmp_path / "photo.bin"
    photo.write_bytes(bytes(range(256)) * 400)  # 100 kB: 600 of them are 3.7 blocks of bytes
    uris = [str(photo)] * 600
    rd.DataContext.get_current().target_max_block_size = MAX_BLOCK_BYTES  # as the job sets it
    ds = rd.from_arrow(pa.table({"uri": uris, "image_id": [str(i) for i in range(600)]}))  # one joined run

    def counted(b: pa.Table, **kw):  # read_batch, each row saying how many rows its call read
        for t in read_batch(b, **kw):
            yield t.append_column("call_rows", pa.array([b.num_rows] * t.num_rows))

    ds = read_stage(ds, S3Options(), (10**6, 10**8), Sampling(), 0.5, 2, fn=counted)
    blocks = ds.map_batches(
        lambda b: pa.table(
            {"rows": [b.num_rows], "bytes": [b.nbytes], "most": [max(b.column("call_rows").to_pylist())]}
        ),
        batch_format="pyarrow",
        batch_size=None,
    ).take_all()
    assert sum(r["rows"] for r in blocks) == 600
    assert max(r["most"] for r in blocks) <= READ_CALL_ROWS
    assert len(blocks) >= 3 and max(r["bytes"] for r in blocks) <= 1.5 * MAX_BLOCK_BYTES


def test_each_block_of_the_schedule_reaches_the_stages_as_one_block(tmp_path):
    """Ray Data joins the blocks one read task yields: each block of the guided schedule is its own
    read task, so the stages see the schedule (a small job spreads over every actor)."""
    from m2fp_batch.pipeline.inputs import INPUTS_ROW_GROUP_ROWS
    from m2fp_batch.pipeline.pending import listing_dataset, spans
    from m2fp_batch.pipeline.schedule import Plan
    from m2fp_batch.storage import S3Options

    sizes = {0: INPUTS_ROW_GROUP_ROWS - 200, 1: 500}  # shard 1 straddles two row groups
    n = sum(sizes.values())
    shards = [s for s, k in sizes.items() for _ in range(k)]
    listing = pa.table({"image_id": [f"{i:06d}" for i in range(n)], "uri": [f"/x/{i:06d}.jpg" for i in range(n)]})
    listing = listing.append_column("shard", pa.array(shards, pa.int32()))
    pq.write_table(listing, tmp_path / "_inputs.parquet", row_group_size=INPUTS_ROW_GROUP_ROWS)
    plan = Plan(sizes, (0, 1), n, 0, n)
    want = [s.rows for s in spans(plan, actors=2, batch_size=4)]
    assert len(want) > 10 and want[-1] <= 4  # blocks shrink to one batch at the end

    ds = listing_dataset(str(tmp_path), S3Options(), plan, 2, 4, listing.schema)
    got = ds.map_batches(
        lambda b: pa.table({"first": [b.column("uri")[0].as_py()], "rows": [b.num_rows]}),
        batch_format="pyarrow",
        batch_size=None,
        num_cpus=0.5,
    ).take_all()
    starts = [0, *itertools.accumulate(want)][:-1]
    assert sorted((r["first"], r["rows"]) for r in got) == [(f"/x/{s:06d}.jpg", w) for s, w in zip(starts, want)]
