"""Hostile inputs and conditions, as data: every case ends with its documented outcome.

Two tables (docs/job.md lists both with their outcomes):

- ``ROW_CASES``: files put into one input directory; ONE real job run (tiny model, local Ray,
  a subprocess under a timeout) labels them all. Each must end as its row (status, error_kind),
  every valid input exactly once, and nothing may hang or read without a bound.
- ``CLI_CASES``: a command line (and the files it needs); each must exit with its code and ONE
  sentence ``m2fp-batch CMD: ...`` on stderr, no traceback, and (run) no Ray started and no
  output dir created where the input is refused. These run in-process: they stop before Ray.

A few cases need a process of their own (offline model, unreachable Ray address, Ctrl-C).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from cluster import processes_using
from PIL import Image

from m2fp_batch import cli

REPO = Path(__file__).resolve().parents[2]
MAX_BYTES = 2_000_000  # the row job's byte cap
M2FP = [sys.executable, "-m", "m2fp_batch.cli"]

pytestmark = pytest.mark.timeout(300)


# ----------------------------------------------------------------------------- file makers
def _jpeg(size: tuple[int, int] = (96, 128), seed: int = 0) -> bytes:
    from skimage import data

    img = Image.fromarray(data.astronaut()).resize(size)
    if seed:
        img = img.rotate(seed)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=85)
    return buf.getvalue()


def _png_noise(side: int) -> bytes:
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(buf, "PNG", compress_level=0)
    return buf.getvalue()


def _write(data: bytes) -> Callable[[Path], None]:
    return lambda p: p.write_bytes(data)


def _fifo(p: Path) -> None:
    os.mkfifo(p)


def _socket(p: Path) -> None:
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(p))  # left bound: the file stays a socket while the job runs
    _SOCKETS.append(s)


_SOCKETS: list[socket.socket] = []


def _symlink_to(target: str) -> Callable[[Path], None]:
    return lambda p: os.symlink(target, p)


def _sparse(size: int) -> Callable[[Path], None]:
    def make(p: Path) -> None:
        with open(p, "wb") as f:
            f.truncate(size)

    return make


def _loop(p: Path) -> None:
    os.symlink(p.name, p)


# ----------------------------------------------------------------------------- row cases
@dataclass(frozen=True)
class RowCase:
    """A file in the input dir and the row it must become."""

    name: str
    make: Callable[[Path], None]
    status: str
    error_kind: str | None
    what: str
    uri_name: str | None = None  # the name in the row's uri, when it is not ``name``


ROW_CASES = [
    RowCase("pipe.jpg", _fifo, "error", "unreadable", "a named pipe (mkfifo) named like a photo: never opened"),
    RowCase("zero.jpg", _symlink_to("/dev/zero"), "error", "unreadable", "a symlink to /dev/zero: never read"),
    RowCase("null.png", _symlink_to("/dev/null"), "error", "unreadable", "a symlink to /dev/null (a device)"),
    RowCase("sock.jpg", _socket, "error", "unreadable", "a Unix socket named like a photo"),
    RowCase("huge.jpg", _sparse(3 * 1024**3), "error", "too_large", "a 3 GB file: refused by size, no byte read"),
    RowCase("big_noise.png", _write(_png_noise(1000)), "error", "too_large", "a real PNG above max_bytes"),
    RowCase("loop.jpg", _loop, "error", "unreadable", "a symlink pointing at itself"),
    RowCase("gone.jpg", _symlink_to("/nonexistent/photo.jpg"), "error", "missing", "a dangling symlink"),
    RowCase("empty.jpg", _write(b""), "error", "empty", "an empty file"),
    RowCase("page.jpg", _write(b"<!DOCTYPE html><html>403</html>"), "error", "not_an_image", "an HTML error page"),
    RowCase("half.jpg", _write(_jpeg()[:700]), "error", "truncated", "a JPEG cut inside its data"),
    RowCase("tiny.png", _write(_png_noise(4)), "error", "too_small", "a 4x4 image"),
    RowCase("photo.jpg", _write(_jpeg()), "ok", None, "a real photo"),
    RowCase("PHOTO2.JPG", _write(_jpeg(seed=5)), "ok", None, "upper-case extension"),
    RowCase("café photo ü.jpg", _write(_jpeg(seed=10)), "ok", None, "spaces and non-ASCII (UTF-8) in the name"),
    RowCase(
        "caf\udce9.jpg",
        _write(_jpeg(seed=25)),
        "error",
        "bad_name",
        "a file name that is not UTF-8 (Latin-1 é): its bytes kept escaped in the uri",
        uri_name="caf\\xe9.jpg",
    ),
    RowCase("new\nline.jpg", _write(_jpeg(seed=15)), "ok", None, "a newline in the file name"),
    RowCase("really_png.jpg", _write(_png_noise(64)), "ok", None, "a PNG with a .jpg extension"),
    RowCase("link_to_photo.jpg", _symlink_to("photo.jpg"), "ok", None, "a symlink to a real photo"),
    RowCase("-dash.jpg", _write(_jpeg(seed=20)), "ok", None, "a name starting with '-'"),
]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, tiny_model_dir) -> Path:
    """A private copy of the tiny model (cases replace its files)."""
    dst = tmp_path_factory.mktemp("hostile_model") / "model"
    shutil.copytree(tiny_model_dir, dst)
    return dst


def _ray_env(tmp: Path) -> dict[str, str]:
    return {**os.environ, "RAY_TMPDIR": str(tmp), "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": str(REPO)}


@pytest.fixture(scope="module")
def row_job(tmp_path_factory, tiny_model):
    """One real job over every row case; returns (input dir, output dir, process)."""
    root = tmp_path_factory.mktemp("hostile")
    src, out = root / "in", root / "out"
    src.mkdir()
    for case in ROW_CASES:
        case.make(src / case.name)
    cmd = [*M2FP, "run", "--input", str(src), "--output", str(out), "--model", str(tiny_model),
           "--set", f"max_bytes={MAX_BYTES}", "--shard-size", "8", "--batch-size", "2", "--num-cpus", "2",
           "--set", "progress_interval_s=2"]  # fmt: skip
    ray_tmp = Path(f"/tmp/rh{os.getpid()}")
    proc = subprocess.run(cmd, env=_ray_env(ray_tmp), capture_output=True, text=True, timeout=600, cwd=REPO)
    for s in _SOCKETS:
        s.close()
    shutil.rmtree(ray_tmp, ignore_errors=True)
    return src, out, proc


def test_row_cases_end_as_their_rows(row_job):
    src, out, proc = row_job
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stdout + proc.stderr
    rows = pq.read_table(out).to_pylist()
    by_uri = {r["uri"]: r for r in rows}
    assert len(rows) == len(by_uri) == len(ROW_CASES), "every input exactly once"
    for case in ROW_CASES:
        r = by_uri[str(src / (case.uri_name or case.name))]
        assert (r["status"], r["error_kind"]) == (case.status, case.error_kind), (case.name, r["error"])
        assert (r["error"] is None) == (case.status == "ok")
    summary = json.loads((out / "_run.json").read_text())
    assert summary["complete"] and summary["job_id"]
    stats = json.loads((out / "_stats" / "shard-00000.json").read_text())
    assert stats["job_id"] == summary["job_id"] and stats["bytes"] == (out / "shard-00000.parquet").stat().st_size


# ----------------------------------------------------------------------------- CLI cases
@dataclass
class World:
    """What a CLI case may use: a tmp dir, the tiny model, a finished job (copied on demand)."""

    tmp: Path
    model: Path
    row_job: tuple[Path, Path, subprocess.CompletedProcess] | None = None

    def photos(self, n: int = 2) -> Path:
        d = self.tmp / "photos"
        d.mkdir(exist_ok=True)
        for i in range(n):
            (d / f"p{i}.jpg").write_bytes(_jpeg(seed=i))
        return d

    def run(self, src: str | Path, *extra: str, out: str | Path | None = None, model: Path | None = None) -> list[str]:
        return ["run", "--input", str(src), "--output", str(out or self.tmp / "out"),
                "--model", str(model or self.model), *extra]  # fmt: skip

    def manifest_csv(self, text: bytes, name: str = "m.csv") -> Path:
        self.photos()
        p = self.tmp / name
        p.write_bytes(text)
        return p

    def manifest(self, table: pa.Table) -> Path:
        self.photos()
        p = self.tmp / "m.parquet"
        pq.write_table(table, p)
        return p

    def job_copy(self) -> tuple[Path, Path]:
        """(input dir, a private copy of the finished row job's output)."""
        assert self.row_job is not None
        src, out, proc = self.row_job
        assert proc.returncode == 0, proc.stderr[-2000:]
        dst = self.tmp / "job_out"
        shutil.copytree(out, dst, symlinks=True)
        return src, dst

    def model_variant(self, edit: Callable[[Path], None]) -> Path:
        dst = self.tmp / "model_variant"
        shutil.copytree(self.model, dst)
        edit(dst)
        return dst


def _no_ckpt(d: Path) -> None:
    (d / "pytorch_model.pt").unlink()


def _garbage_config(d: Path) -> None:
    (d / "configuration.json").write_text("{ this is not json")


def _config_not_m2fp(d: Path) -> None:
    (d / "configuration.json").write_text('{"framework": "pytorch", "task": "image-classification"}')


def _pickle_ckpt(d: Path) -> None:
    sd = torch.load(d / "pytorch_model.pt", weights_only=True)
    torch.save({"model": sd, "meta": Path("/tmp")}, d / "pytorch_model.pt")  # a non-tensor object: needs unpickling


def _fp16_ckpt(d: Path) -> None:
    sd = torch.load(d / "pytorch_model.pt", weights_only=True)
    sd = sd.get("model", sd)
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in sd.items()}, d / "pytorch_model.pt")


def _truncated_ckpt(d: Path) -> None:
    data = (d / "pytorch_model.pt").read_bytes()
    (d / "pytorch_model.pt").write_bytes(data[: len(data) // 3])


def _perturbed_ckpt(model: Path) -> Callable[[], None]:
    def edit() -> None:
        sd = torch.load(model / "pytorch_model.pt", weights_only=True)
        inner = sd.get("model", sd)
        k = next(k for k, v in inner.items() if v.is_floating_point())
        inner[k] = inner[k] + 1.0
        torch.save(sd, model / "pytorch_model.pt")

    return edit


def _dup_key_config(w: World) -> list[str]:
    (w.tmp / "c.yaml").write_text("batch_size: 2\nshard_size: 8\nbatch_size: 4\n")
    return [*w.run(w.photos()), "--config", str(w.tmp / "c.yaml")]


def _other_input(w: World) -> list[str]:
    _, out = w.job_copy()
    return _rerun_args(w, w.photos(1), out)


def _replaced_checkpoint(w: World) -> list[str]:
    src, out = w.job_copy()
    backup = w.tmp / "ckpt_backup.pt"
    shutil.copy(w.model / "pytorch_model.pt", backup)
    _perturbed_ckpt(w.model)()
    _RESTORE.append(lambda: shutil.copy(backup, w.model / "pytorch_model.pt"))
    return _rerun_args(w, src, out)


_RESTORE: list[Callable[[], None]] = []


def _rerun_args(w: World, src: Path, out: Path) -> list[str]:
    return [*w.run(src, out=out), "--set", f"max_bytes={MAX_BYTES}", "--shard-size", "8", "--batch-size", "2"]


def _lost_listing(w: World) -> list[str]:
    src, out = w.job_copy()
    (out / "_inputs.parquet").unlink()
    return _rerun_args(w, src, out)


def _foreign_listing(w: World) -> list[str]:
    src, out = w.job_copy()
    t = pq.read_table(out / "_inputs.parquet")
    pq.write_table(t.replace_schema_metadata({b"m2fp_batch.job_id": b"0123456789abcdef"}), out / "_inputs.parquet")
    return _rerun_args(w, src, out)


def _lost_config(w: World) -> list[str]:
    src, out = w.job_copy()
    (out / "_config.json").unlink()
    return _rerun_args(w, src, out)


def _foreign_shard(w: World) -> list[str]:
    out = w.tmp / "out"
    out.mkdir()
    pq.write_table(pa.table({"uri": ["x.jpg"], "status": ["ok"]}), out / "shard-00000.parquet")
    return w.run(w.photos())


def _output_is_file(w: World) -> list[str]:
    (w.tmp / "out.txt").write_text("I am a file")
    return w.run(w.photos(), out=w.tmp / "out.txt")


def _output_under_file(w: World) -> list[str]:
    (w.tmp / "plain").write_text("a file")
    return w.run(w.photos(), out=w.tmp / "plain" / "out")


def _type_change_on_rerun(w: World) -> list[str]:
    """First run (listing saved, before Ray) with rating int64; the rerun has a new row and rating as text."""
    from m2fp_batch.pipeline.config import JobSettings
    from m2fp_batch.pipeline.resume import prepare
    from m2fp_batch.storage import Filesystems

    d = w.photos(3)
    m = w.tmp / "m.parquet"
    pq.write_table(pa.table({"uri": [str(d / "p0.jpg"), str(d / "p1.jpg")], "rating": [1, 2]}), m)
    cfg = JobSettings.from_sources(None, {"input": str(m), "output": str(w.tmp / "out"), "model": str(w.model)})
    from m2fp_batch.inference.loading import load_model

    prepare(cfg, Filesystems(), load_model(str(w.model)).info.checkpoint_sha256)
    uris = [str(d / f"p{i}.jpg") for i in range(3)]
    pq.write_table(pa.table({"uri": uris, "rating": ["1", "2", "three"]}), m)
    return w.run(m)


def _parse_missing(w: World) -> list[str]:
    d = w.photos(1)
    return ["parse", str(d / "p0.jpg"), str(w.tmp / "nope.jpg"), str(w.tmp), "--model", str(w.model),
            "--out", str(w.tmp / "parsed")]  # fmt: skip


def _parse_same_stem(w: World) -> list[str]:
    for sub, seed in (("x", 1), ("y", 2)):
        (w.tmp / sub).mkdir()
        (w.tmp / sub / "a.jpg").write_bytes(_jpeg(seed=seed))
    (w.tmp / "a_2.jpg").write_bytes(_jpeg(seed=3))
    return ["parse", str(w.tmp / "x" / "a.jpg"), str(w.tmp / "y" / "a.jpg"), str(w.tmp / "a_2.jpg"),
            "--model", str(w.model), "--out", str(w.tmp / "parsed")]  # fmt: skip


def _report_truncated(w: World) -> list[str]:
    _, out = w.job_copy()
    shard = out / "shard-00000.parquet"
    shard.write_bytes(shard.read_bytes()[:500])
    return ["report", str(out)]


def _report_foreign(w: World) -> list[str]:
    d = w.tmp / "foreign"
    d.mkdir()
    pq.write_table(pa.table({"a": [1, 2], "b": ["x", "y"]}), d / "part-0.parquet")
    return ["report", str(d)]


def _report_foreign_shard(w: World) -> list[str]:
    """Another tool's Parquet that happens to be named like a shard: read, then refused by its columns."""
    d = w.tmp / "foreign"
    d.mkdir()
    pq.write_table(pa.table({"a": [1, 2], "b": ["x", "y"]}), d / "shard-00000.parquet")
    return ["report", str(d)]


def _csv(header: str, *rows: str) -> bytes:
    return ("\n".join([header, *rows]) + "\n").encode()


@dataclass(frozen=True)
class CliCase:
    """A command line, its exit code and a piece of the one sentence it must print."""

    id: str
    argv: Callable[[World], list[str]]
    rc: int
    says: str
    what: str
    needs_job: bool = False


CLI_CASES = [
    CliCase("nan-setting", lambda w: [*w.run(w.photos()), "--set", "max_pixels=.nan"], 2, "max_pixels: expected int",
            "a NaN setting"),
    CliCase("inf-setting", lambda w: [*w.run(w.photos()), "--set", "cpus_per_actor=.inf"], 2, "cpus_per_actor: expected float",
            "an infinite setting"),
    CliCase("inf-int", lambda w: [*w.run(w.photos()), "--set", "batch_size=.inf"], 2, "batch_size: expected int",
            "an infinite integer setting (overflow)"),
    CliCase("dup-yaml-key", _dup_key_config, 2, "the key 'batch_size' is given twice (line 1 and line 3)",
            "a job YAML with a key given twice"),
    CliCase("set-no-eq", lambda w: [*w.run(w.photos()), "--set", "batch_size"], 2, "expected KEY=VALUE",
            "--set without ="),
    CliCase("http-input", lambda w: w.run("http://example.com/photos/"), 2, "scheme http:// is not supported",
            "an http:// input"),
    CliCase("gs-input", lambda w: w.run("gs://bucket/photos/"), 2, "scheme gs:// is not supported", "a gs:// input"),
    CliCase("out-is-file", _output_is_file, 2, "is a file, not a directory", "--output is a file"),
    CliCase("out-unwritable", _output_under_file, 2, "cannot create the output directory",
            "--output under a file (cannot be created)"),
    CliCase("missing-input", lambda w: w.run(w.tmp / "nope"), 2, "does not exist", "--input does not exist"),
    CliCase("latin1-csv", lambda w: w.run(w.manifest_csv(_csv("uri", "photos/caf\xe9.jpg").replace(b"\xc3\xa9", b"\xe9"))),
            2, "not UTF-8 text", "a Latin-1 CSV manifest"),
    CliCase("uri-int", lambda w: w.run(w.manifest(pa.table({"uri": [1, 2]}))), 2, "has type int64",
            "a uri column of integers"),
    CliCase("uri-list", lambda w: w.run(w.manifest(pa.table({"uri": [["a.jpg"], ["b.jpg"]]}))), 2, "has type list",
            "a uri column of lists"),
    CliCase("dup-columns", lambda w: w.run(w.manifest_csv(_csv("uri,note,note", "photos/p0.jpg,a,b"))), 2,
            "appear more than once", "duplicate column names"),
    CliCase("reserved-data", lambda w: w.run(w.manifest_csv(_csv("uri,data", "photos/p0.jpg,x"))), 2,
            "reserved by the pipeline", "a passthrough column named like an internal one (data)"),
    CliCase("reserved-read-error", lambda w: w.run(w.manifest_csv(_csv("uri,read_error", "photos/p0.jpg,x"))), 2,
            "reserved by the pipeline", "a passthrough column named read_error"),
    CliCase("clash-status", lambda w: w.run(w.manifest_csv(_csv("uri,status", "photos/p0.jpg,x"))), 2,
            "collide with output columns", "a passthrough column named like an output column"),
    CliCase("blank-uris", lambda w: w.run(w.manifest(pa.table({"uri": ["photos/p0.jpg", "", "   "]}))), 2,
            "2 row(s) (2, 3", "blank-string uris (row numbers given)"),
    CliCase("null-uris", lambda w: w.run(w.manifest(pa.table({"uri": [None, "photos/p0.jpg"]}))), 2,
            "1 row(s) (1;", "null uris (row numbers given)"),
    CliCase("zero-rows", lambda w: w.run(w.manifest(pa.table({"uri": pa.array([], pa.string())}))), 2,
            "has no rows", "a manifest with 0 rows"),
    CliCase("same-file-3-ways",
            lambda w: w.run(w.manifest_csv(_csv("uri", "photos/p0.jpg", "./photos/p0.jpg", "/" + str(w.tmp / "photos/p0.jpg")))),
            2, "3 row(s) (1, 2, 3", "one file written as a.jpg, ./a.jpg and //abs/a.jpg"),
    CliCase("dup-ids", lambda w: w.run(w.manifest(pa.table({"uri": ["photos/p0.jpg", "photos/p1.jpg"],
                                                            "image_id": ["x", "x"]}))),
            2, "name the same image_id", "duplicate image ids"),
    CliCase("manifest-http-uri", lambda w: w.run(w.manifest(pa.table({"uri": ["http://x/a.jpg"]}))), 2,
            "only local paths and s3://", "an http:// uri inside a manifest"),
    CliCase("no-ckpt", lambda w: w.run(w.photos(), model=w.model_variant(_no_ckpt)), 2, "has no checkpoint",
            "a model dir without pytorch_model.pt"),
    CliCase("garbage-config", lambda w: w.run(w.photos(), model=w.model_variant(_garbage_config)), 2,
            "is not valid JSON", "a garbage configuration.json"),
    CliCase("foreign-config", lambda w: w.run(w.photos(), model=w.model_variant(_config_not_m2fp)), 2,
            "lacks", "a configuration.json of another model"),
    CliCase("pickle-ckpt", lambda w: w.run(w.photos(), model=w.model_variant(_pickle_ckpt)), 2,
            "--trust-checkpoint", "a pickle checkpoint (refused; run accepts --trust-checkpoint)"),
    CliCase("fp16-ckpt", lambda w: w.run(w.photos(), model=w.model_variant(_fp16_ckpt)), 2,
            "dtype mismatch", "an all-float16 checkpoint"),
    CliCase("truncated-ckpt", lambda w: w.run(w.photos(), model=w.model_variant(_truncated_ckpt)), 2,
            "not a readable PyTorch checkpoint", "a truncated checkpoint download"),
    CliCase("model-path-typo", lambda w: w.run(w.photos(), model=w.tmp / "no_such_model"), 2,
            "no such directory", "a model path that does not exist"),
    CliCase("foreign-shard", _foreign_shard, 2, "never taken as finished",
            "a shard-00000.parquet of someone else in --output"),
    CliCase("type-change", _type_change_on_rerun, 2, "passthrough columns changed",
            "a passthrough column whose type changes on a rerun"),
    CliCase("other-input", _other_input, 2, "holds the labels of input", "a rerun with another --input",
            needs_job=True),
    CliCase("replaced-ckpt", _replaced_checkpoint, 2, "checkpoint sha256",
            "a rerun after the checkpoint was replaced in place", needs_job=True),
    CliCase("lost-listing", _lost_listing, 2, "_inputs.parquet (the listing", "a rerun after _inputs.parquet was deleted",
            needs_job=True),
    CliCase("foreign-listing", _foreign_listing, 2, "belongs to job", "an _inputs.parquet of another job",
            needs_job=True),
    CliCase("lost-config", _lost_config, 2, "no _config.json", "a rerun after _config.json was deleted",
            needs_job=True),
    CliCase("parse-missing", _parse_missing, 1, "2 of 3 input(s) skipped",
            "parse with a missing file and a directory (skipped, the rest parsed, exit 1)"),
    CliCase("report-truncated", _report_truncated, 0, "not committed", "report on a truncated shard (read without it, named)", needs_job=True),
    CliCase("report-foreign", _report_foreign, 2, "has no shard-NNNNN.parquet files of a job output", "report on a Parquet dir of another tool"),
    CliCase("report-foreign-shard", _report_foreign_shard, 2, "not an m2fp-batch job output",
            "report on another tool's Parquet named shard-00000.parquet"),
]  # fmt: skip


@pytest.fixture()
def world(request, tmp_path, tiny_model):
    case: CliCase = request.node.callspec.params["case"]
    w = World(tmp_path, tiny_model, request.getfixturevalue("row_job") if case.needs_job else None)
    yield w
    while _RESTORE:
        _RESTORE.pop()()


def _ray_started() -> bool:
    ray = sys.modules.get("ray")
    return bool(ray is not None and ray.is_initialized())


@pytest.mark.parametrize("case", CLI_CASES, ids=[c.id for c in CLI_CASES])
def test_cli_case(case: CliCase, world: World, capsys, caplog):
    argv = case.argv(world)
    out_dir = Path(argv[argv.index("--output") + 1]) if "--output" in argv else None
    existed = out_dir.exists() if out_dir else False
    t0 = time.time()
    rc = cli.main(argv)
    seconds = time.time() - t0
    cap = capsys.readouterr()
    text = cap.out + cap.err + caplog.text
    assert "Traceback" not in text
    assert rc == case.rc, text[-2000:]
    if case.rc == 2:
        lines = [ln for ln in cap.err.splitlines() if ln.strip()]
        assert lines and lines[-1].startswith(f"m2fp-batch {argv[0]}: "), cap.err
        assert case.says in lines[-1], lines[-1]
        assert not _ray_started()
        if out_dir is not None and not existed:
            assert not out_dir.exists() or out_dir.is_file(), "the output dir is created only for an accepted input"
    else:
        assert case.says in text
    assert seconds < 120


def test_parse_unique_output_names(tmp_path, tiny_model, capsys):
    w = World(tmp_path, tiny_model)
    assert cli.main(_parse_same_stem(w)) == 0
    names = sorted(p.name for p in (tmp_path / "parsed").glob("*_parse.png"))
    assert names == ["a_2_2_parse.png", "a_2_parse.png", "a_parse.png"]
    summary = json.loads((tmp_path / "parsed" / "summary.json").read_text())
    assert [i["outputs"].split("_parse")[0] for i in summary["images"]] == ["a", "a_2", "a_2_2"]


def test_half_written_shard_is_not_finished(row_job, tmp_path, tiny_model):
    """A shard whose Parquet does not match its commit marker (truncated, replaced) is relabelled."""
    from m2fp_batch.inference.loading import load_model
    from m2fp_batch.pipeline.config import JobSettings
    from m2fp_batch.pipeline.resume import prepare
    from m2fp_batch.storage import Filesystems

    src, out, _ = row_job
    copy = tmp_path / "out"
    shutil.copytree(out, copy, symlinks=True)
    cfg = JobSettings.from_sources(
        None,
        {"input": str(src), "output": str(copy), "model": str(tiny_model), "max_bytes": MAX_BYTES, "shard_size": 8,
         "batch_size": 2},
    )  # fmt: skip
    sha = load_model(str(tiny_model)).info.checkpoint_sha256
    assert set(prepare(cfg, Filesystems(), sha).finished) == {0, 1, 2}
    shard = copy / "shard-00001.parquet"
    shard.write_bytes(shard.read_bytes()[:-10])
    (copy / "_stats" / "shard-00002.json").write_text("{")
    assert set(prepare(cfg, Filesystems(), sha).finished) == {0}


def test_bad_name_row_is_relabelled_exactly_once_on_a_rerun(row_job, tmp_path, tiny_model):
    """The shard holding the non-UTF-8 name, deleted, is labelled again by a rerun: the same uri,
    one row per input, every other input still labelled."""
    src, out, proc = row_job
    assert proc.returncode == 0, proc.stderr[-2000:]
    copy = tmp_path / "out"
    shutil.copytree(out, copy, symlinks=True)
    bad_uri = str(src) + "/caf\\xe9.jpg"  # the bytes b"caf\xe9.jpg", escaped by hand
    shard = pq.read_table(copy, filters=[("uri", "=", bad_uri)]).column("shard")[0].as_py()
    (copy / f"shard-{shard:05d}.parquet").unlink()
    (copy / "_stats" / f"shard-{shard:05d}.json").unlink()
    argv = list(proc.args)
    argv[argv.index("--output") + 1] = str(copy)
    ray_tmp = Path(f"/tmp/rb{os.getpid()}")  # short: Ray's socket paths are bounded
    rerun = subprocess.run(argv, env=_ray_env(ray_tmp), capture_output=True, text=True, timeout=600, cwd=REPO)
    shutil.rmtree(ray_tmp, ignore_errors=True)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    rows = pq.read_table(copy).to_pylist()
    assert sorted(r["uri"] for r in rows) == sorted(r["uri"] for r in pq.read_table(out).to_pylist())
    assert len(rows) == len({r["uri"] for r in rows}) == len(ROW_CASES)
    bad = [r for r in rows if r["uri"] == bad_uri]
    assert [(r["status"], r["error_kind"]) for r in bad] == [("error", "bad_name")]
    assert json.loads((copy / "_run.json").read_text())["complete"]


# ----------------------------------------------------------------------------- own process
def _run_proc(argv: list[str], env: dict[str, str], timeout: float) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.time()
    proc = subprocess.run([*M2FP, *argv], env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    return proc, time.time() - t0


def test_offline_default_model_exits_2_fast_without_ray(tmp_path):
    d = World(tmp_path, tmp_path).photos(1)
    env = {**_ray_env(tmp_path / "ray"), "MODELSCOPE_CACHE": str(tmp_path / "ms"), "MODELSCOPE_DOMAIN": "127.0.0.1:9"}
    proc, seconds = _run_proc(["run", "--input", str(d), "--output", str(tmp_path / "out")], env, 60)
    assert proc.returncode == 2 and seconds < 30, (seconds, proc.stderr[-2000:])
    last = proc.stderr.strip().splitlines()[-1]
    assert "damo/cv_resnet101_image-multiple-human-parsing" in last and "--model DIR" in last
    assert "Traceback" not in proc.stderr and "Ray" not in proc.stderr
    assert not (tmp_path / "ray").exists() and not (tmp_path / "out").exists()


def test_unreachable_address_fails_in_bounded_time(tmp_path, tiny_model):
    d = World(tmp_path, tiny_model).photos(1)
    argv = ["run", "--input", str(d), "--output", str(tmp_path / "out"), "--model", str(tiny_model),
            "--address", "127.0.0.1:1"]  # fmt: skip
    proc, seconds = _run_proc(argv, _ray_env(tmp_path / "ray"), 60)
    assert proc.returncode == 2 and seconds < 45, (seconds, proc.stderr[-2000:])
    assert "no Ray cluster answers at '127.0.0.1:1'" in proc.stderr.strip().splitlines()[-1]
    assert "Traceback" not in proc.stderr and not (tmp_path / "out").exists()


def _cmdline(pid: int) -> str:
    """The command line and state of ``pid``, e.g. ``'ray::IDLE [S]'``."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()[:120]
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0].decode()
        return f"{cmd} [{state}]"
    except (OSError, IndexError):
        return "?"


@pytest.fixture(scope="module")
def six_photos(tmp_path_factory, tiny_model) -> Path:
    """One input dir of 6 photos for every job started by a process test."""
    return World(tmp_path_factory.mktemp("six"), tiny_model).photos(6)


def _start_job(src: Path, out: Path, tiny_model: Path, ray_tmp: Path) -> tuple[subprocess.Popen, list[str]]:
    """A job on ``src`` (one photo per shard, a progress line per batch), its stderr lines."""
    argv = [*M2FP, "run", "--input", str(src), "--output", str(out), "--model", str(tiny_model),
            "--num-cpus", "2", "--batch-size", "1", "--shard-size", "1", "--set", "progress_interval_s=0.01"]  # fmt: skip
    proc = subprocess.Popen(argv, env=_ray_env(ray_tmp), cwd=REPO, stderr=subprocess.PIPE, text=True)
    return proc, []


def _wait_for(proc: subprocess.Popen, log: list[str], needle: str) -> bool:
    """Read the job's stderr up to the first line holding ``needle``; False if it ended first."""
    for line in proc.stderr:
        log.append(line)
        if needle in line:
            return True
    return False


def _assert_none_left(ray_tmp: Path, seconds: float = 60) -> None:
    end = time.time() + seconds
    while processes_using(ray_tmp) and time.time() < end:
        time.sleep(0.5)
    left = {pid: _cmdline(pid) for pid in processes_using(ray_tmp)}  # named before they are killed
    for pid in left:  # clean up what this test started before failing
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert not left, f"Ray processes of this job are left: {left}"


@pytest.mark.slow
def test_driver_kill_9_leaves_no_ray_processes(tmp_path, tiny_model, six_photos):
    ray_tmp = Path(f"/tmp/rk{os.getpid()}")
    proc, log = _start_job(six_photos, tmp_path / "out", tiny_model, ray_tmp)
    assert _wait_for(proc, log, "actor pool:"), "".join(log)[-3000:]
    proc.kill()
    proc.communicate(timeout=60)
    try:
        _assert_none_left(ray_tmp)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


# Where a Ctrl-C lands, named by the job's log line it follows: Ray up, the pool not yet
# ("actor pool:"); Ray Data starting its executor and the pool's actors, the window where a
# Ctrl-C was once lost ("Starting execution"); rows labelled and more in flight ("progress:");
# a shard being written ("committing shard").
CTRL_C_POINTS = {
    "before-pool": "actor pool:",
    "actors-starting": "Starting execution",
    "rows-in-flight": "progress:",
    "shard-commit": "committing shard",
}
CTRL_C_RUNS = 5


@pytest.mark.slow
@pytest.mark.parametrize("run", range(CTRL_C_RUNS))
@pytest.mark.parametrize("point", CTRL_C_POINTS)
def test_ctrl_c_is_a_sentence_exit_130_and_no_ray_left(tmp_path, tiny_model, six_photos, point, run):
    ray_tmp = Path(f"/tmp/rc{os.getpid()}{run}")
    proc, log = _start_job(six_photos, tmp_path / "out", tiny_model, ray_tmp)
    try:
        reached = _wait_for(proc, log, CTRL_C_POINTS[point])
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=180)
        text = "".join(log) + rest
        assert reached, f"the job ended before {CTRL_C_POINTS[point]!r}: {text[-3000:]}"
        assert proc.returncode == 130, text[-3000:]
        assert "interrupted (Ctrl-C)" in text.strip().splitlines()[-1] and "Traceback" not in text, text[-3000:]
        _assert_none_left(ray_tmp)
    finally:
        if proc.poll() is None:
            proc.kill()
        shutil.rmtree(ray_tmp, ignore_errors=True)


# ----------------------------------------------------------------------------- the docs table
def markdown_table() -> str:
    """The corpus as the Markdown table of docs/job.md (kept in sync by the test below)."""
    lines = ["| # | case | outcome |", "|---|---|---|"]
    n = 0
    for c in ROW_CASES:
        n += 1
        outcome = "row `ok`" if c.status == "ok" else f"error row `{c.error_kind}`"
        lines.append(f"| {n} | {c.what} | {outcome} |")
    for c in CLI_CASES:
        n += 1
        says = f": “…{c.says}…”" if c.says else ": one sentence"
        lines.append(f"| {n} | {c.what} (`{c.id}`) | exit {c.rc}{says} |")
    for what, outcome in OWN_PROCESS_CASES:
        n += 1
        lines.append(f"| {n} | {what} | {outcome} |")
    return "\n".join(lines) + "\n"


OWN_PROCESS_CASES = [
    (
        "the default model offline (no cache, hub unreachable)",
        "exit 2 in < 30 s naming the id and `--model DIR`, no Ray",
    ),
    ("`--address 127.0.0.1:1` (nothing listens)", "exit 2 within ~10 s: “no Ray cluster answers…”"),
    (
        "Ctrl-C before the pool is up, while its actors start, with rows in flight, while a shard commits",
        "exit 130: “interrupted (Ctrl-C)…”, no Ray process of the job left (each point 5 times)",
    ),
    ("`kill -9` of the driver while the job runs", "no Ray process of the job left (fate-sharing watcher)"),
    ("parse `x/a.jpg y/a.jpg a_2.jpg`", "exit 0, outputs `a_*`, `a_2_*`, `a_2_2_*`"),
    ("a shard's Parquet truncated, or its stats half-written", "not finished: relabelled on the rerun"),
]


def test_docs_list_every_case():
    doc = (REPO / "docs" / "job.md").read_text()
    assert markdown_table() in doc, "docs/job.md is stale: paste tests/pipeline/test_hostile.py markdown_table()"
