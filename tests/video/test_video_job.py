"""The job over a directory that mixes photos and videos: one row per sampled frame (the count exact for
the fps), the hostile videos as rows, frames pixel-equal to ``parse`` on the same frames extracted
apart, tracks and per-track skin tone in the rows, and a shard relabelled once after its commit is lost."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import skimage.data
from PIL import Image
from videos import audio_only, pan_frames, write_video

ray = pytest.importorskip("ray")

from m2fp_batch.annotate import rle  # noqa: E402
from m2fp_batch.pipeline.commit import ShardCommitter  # noqa: E402
from m2fp_batch.pipeline.config import JobSettings, JobSettingsError  # noqa: E402
from m2fp_batch.pipeline.job import run_job  # noqa: E402
from m2fp_batch.video import frame_image_id  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
MAX_PIXELS = 20_000  # the 160x120 videos (19,200 px) pass; the 200x150 one (30,000 px) is a frame bomb
VFR_PTS_MS = [0, 100, 150, 900, 1000, 1050, 1100, 2300, 2400, 3100]


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _photo(path: Path, image: np.ndarray) -> Path:
    Image.fromarray(image).resize((128, 128)).save(path)
    return path


def _write_inputs(src: Path) -> dict[str, Path]:
    """Photos, videos and the hostile files of issue 29, under their names."""
    files = {
        "astronaut": _photo(src / "astronaut.jpg", skimage.data.astronaut()),
        "cat": _photo(src / "sub" / "cat.png", skimage.data.chelsea()),
        "clip": write_video(src / "clip.mp4", pan_frames(25), fps=10),  # 2.5 s
        "vfr": write_video(src / "vfr.mkv", pan_frames(len(VFR_PTS_MS)), pts_ms=VFR_PTS_MS),
        "rotated": write_video(src / "phone.mp4", pan_frames(10), fps=10, rotation=90),
        "mp4_as_jpg": write_video(src / "really_a_video.mp4", pan_frames(15), fps=10).rename(src / "video.jpg"),
        "bomb": write_video(src / "bomb.mp4", pan_frames(5, (200, 150)), fps=10),
        "audio": audio_only(src / "audio.mkv"),
    }
    truncated = write_video(src / "truncated.mkv", pan_frames(30), fps=10)
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size * 6 // 10])
    files["truncated"] = truncated
    (src / "empty.mp4").write_bytes(b"")
    (src / "text.webm").write_bytes(b"this is a text file, not a video\n" * 20)
    _photo(src / "photo.png", skimage.data.coffee()).rename(src / "photo_named.mov")
    files |= {"empty": src / "empty.mp4", "text": src / "text.webm", "photo_as_mov": src / "photo_named.mov"}
    return files


def _cfg(model: Path, src: Path, out: Path, **kw) -> JobSettings:
    base = dict(input=str(src), output=str(out), model=str(model), max_pixels=MAX_PIXELS, min_side=8)
    return JobSettings.from_sources(None, base | dict(shard_size=4, batch_size=2, progress_interval_s=1.0) | kw)


@pytest.fixture(scope="module")
def video_job(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("video_job")
    src = root / "in"
    (src / "sub").mkdir(parents=True)
    files = _write_inputs(src)
    out = root / "out"
    summary = run_job(_cfg(tiny_model_dir, src, out)).to_dict()
    rows = pq.read_table(out).to_pylist()
    by_uri: dict[str, list[dict]] = {}
    for r in rows:
        by_uri.setdefault(r["uri"], []).append(r)
    return {"root": root, "src": src, "out": out, "files": files, "summary": summary, "rows": rows, "by_uri": by_uri}


def _of(job, name: str) -> list[dict]:
    return job["by_uri"][str(job["files"][name])]


def _frames(job, name: str) -> list[dict]:
    return sorted((r for r in _of(job, name) if r["frame_index"] is not None), key=lambda r: r["frame_index"])


def test_one_row_per_sampled_frame_and_every_input_once(video_job):
    s = video_job["summary"]
    assert s["complete"] and s["inputs"] == 12
    clip = _frames(video_job, "clip")
    assert len(clip) == math.ceil(2.5 * 1.0)  # 1 frame a second over 2.5 s
    assert [r["frame_index"] for r in clip] == [0, 10, 20] and [r["pts_seconds"] for r in clip] == [0.0, 1.0, 2.0]
    video_id = clip[0]["video_id"]
    assert [r["image_id"] for r in clip] == [frame_image_id(video_id, i) for i in (0, 10, 20)]
    assert all(r["video_fps"] == 10 and (r["video_width"], r["video_height"]) == (160, 120) for r in clip)
    assert clip[0]["video_duration_s"] == pytest.approx(2.5, abs=0.11)
    assert all(r["status"] == "ok" and (r["width"], r["height"]) == (160, 120) for r in clip)
    # the variable frame rate is sampled by time: the first frame at or after 0, 1, 2, 3 s
    assert [r["frame_index"] for r in _frames(video_job, "vfr")] == [0, 4, 7, 9]
    # a video is known by its bytes: the .jpg that holds an mp4 gives frames, the .mov that holds a photo a row
    assert len(_frames(video_job, "mp4_as_jpg")) == 2
    (photo,) = _of(video_job, "photo_as_mov")
    assert photo["status"] == "ok" and photo["video_id"] is None and photo["frame_index"] is None
    ids = [r["image_id"] for r in video_job["rows"]]
    assert len(ids) == len(set(ids)) == s["rows"]


def test_hostile_videos_end_as_rows(video_job):
    rotated = _frames(video_job, "rotated")
    assert len(rotated) == 1 and (rotated[0]["width"], rotated[0]["height"]) == (120, 160)  # upright
    truncated = _of(video_job, "truncated")
    frames = [r for r in truncated if r["frame_index"] is not None]
    (error,) = [r for r in truncated if r["frame_index"] is None]
    assert len(frames) >= 1 and all(r["status"] == "ok" for r in frames)
    assert error["error_kind"] == "video_error" and error["image_id"] == error["video_id"] == frames[0]["video_id"]
    assert f"{error['pts_seconds']:.3f} s" in error["error"] and f"{len(frames)} frame(s) before it" in error["error"]
    kinds = {name: [r["error_kind"] for r in _of(video_job, name)] for name in ("bomb", "audio", "empty", "text")}
    assert kinds == {"bomb": ["too_large"], "audio": ["not_a_video"], "empty": ["empty"], "text": ["not_an_image"]}
    assert "max_pixels=20000" in _of(video_job, "bomb")[0]["error"]


def _semantic_map(row: dict) -> np.ndarray:
    out = np.zeros((row["height"], row["width"]), np.int64)
    for c in row["semantic"]:
        out[rle.decode(c["mask"])] = c["label_id"]
    return out


def test_frames_are_pixel_equal_to_parse_on_the_frames_extracted_apart(video_job, tiny_model_dir):
    """The frames FFmpeg decodes, saved as PNG files without the job (every frame, the sampled ones
    picked by index), parsed by ``m2fp-batch parse``: the same semantic maps as the job's frame rows."""
    clip = _frames(video_job, "clip")
    wanted = {r["frame_index"] for r in clip}
    pngs = []
    with av.open(str(video_job["files"]["clip"])) as c:
        for i, frame in enumerate(c.decode(video=0)):
            if i in wanted:
                pngs.append(video_job["root"] / f"frame{i:03d}.png")
                frame.to_image().save(pngs[-1])
    out = video_job["root"] / "parse"
    cmd = [sys.executable, "-m", "m2fp_batch.cli", "parse", *map(str, pngs), "--model", str(tiny_model_dir)]
    cmd += ["--threads", "1"]  # as the job's actors (1 CPU each): the same float sums, the same argmax
    res = subprocess.run([*cmd, "--out", str(out), "--raw", str(out / "raw.npz")], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    raw = np.load(out / "raw.npz")
    for k, row in enumerate(clip):
        theirs = raw[f"img{k}_semantic_label"]
        assert (theirs > 0).any()
        np.testing.assert_array_equal(_semantic_map(row), theirs)


def test_people_carry_tracks_and_one_tone_per_track(video_job):
    for name in ("clip", "vfr"):
        people = [p for r in _frames(video_job, name) for p in r["persons"]]
        assert people and all(p["track_id"] is not None and p["track_skin_tone"] is not None for p in people)
        tones: dict[int, dict] = {}
        for p in people:
            assert tones.setdefault(p["track_id"], p["track_skin_tone"]) == p["track_skin_tone"]
        for tid, tone in tones.items():
            itas = [p["skin_tone"]["ita"] for p in people if p["track_id"] == tid and p["skin_tone"]["ita"] is not None]
            assert tone["frames"] == len(itas)
            if itas:
                assert tone["ita"] == pytest.approx(float(np.median(itas)), abs=1e-3)
    photo = _of(video_job, "astronaut")[0]
    assert all(p["track_id"] is None and p["track_skin_tone"] is None for p in photo["persons"])


def test_a_lost_commit_relabels_its_shard_and_every_frame_stays_once(video_job, tiny_model_dir):
    """The shard that holds the clip loses its stats (its commit marker), as after a kill before the
    rename: the rerun labels that shard again, frame by frame, and each frame is in the output once."""
    out = video_job["out"]
    shard = _frames(video_job, "clip")[0]["shard"]
    (out / "_stats" / f"shard-{shard:05d}.json").unlink()
    summary = run_job(_cfg(tiny_model_dir, video_job["src"], out)).to_dict()
    assert summary["complete"] and summary["run"]["labelled_this_run"] == sum(
        1 for r in video_job["rows"] if r["shard"] == shard
    )
    again = pq.read_table(out).to_pylist()
    assert sorted(r["image_id"] for r in again) == sorted(r["image_id"] for r in video_job["rows"])
    before = {r["image_id"]: r["semantic"] for r in video_job["rows"]}
    assert all(before[r["image_id"]] == r["semantic"] for r in again)


def test_the_committer_counts_a_video_done_when_all_its_rows_arrived():
    """Frames reach the driver in any order: the row that carries the count may come first."""
    committer = ShardCommitter.__new__(ShardCommitter)
    committer.video_rows, committer.video_total = __import__("collections").Counter(), {}

    def part(videos: list[str | None], totals: list[int | None]) -> pa.Table:
        return pa.table({"video_id": pa.array(videos, pa.string()), "input_rows": pa.array(totals, pa.int32())})

    assert committer._inputs_done(0, part(["v", None, "v"], [3, None, None])) == 1  # the photo
    assert committer._inputs_done(0, part(["w"], [1])) == 1  # a one-row video (an error row)
    assert committer._inputs_done(0, part(["v"], [None])) == 1  # the video's third row
    assert not committer.video_rows and not committer.video_total


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"video_fps": 0}, "video_fps"),
        ({"video_fps": 1000}, "video_fps"),
        ({"video_every_nth": 0}, "video_every_nth"),
        ({"video_max_frames": 0}, "video_max_frames"),
        ({"video_max_seconds": -1}, "video_max_seconds"),
    ],
)
def test_video_settings_are_checked(tmp_path, kw, match):
    with pytest.raises(JobSettingsError, match=match):
        JobSettings.from_sources(None, {"input": str(tmp_path), "output": str(tmp_path / "o")} | kw)


def test_video_flags_reach_the_settings(tmp_path):
    from m2fp_batch.cli import build_parser
    from m2fp_batch.pipeline.cli import config_from_args

    args = build_parser().parse_args(
        ["run", "--input", str(tmp_path), "--out", str(tmp_path / "o"), "--video-fps", "2.5", "--video-max-frames", "7"]
    )
    cfg = config_from_args(args)
    assert (cfg.sampling.fps, cfg.sampling.max_frames, cfg.sampling.every_nth) == (2.5, 7, None)
    assert json.loads(json.dumps(cfg.resume_settings()))["video_fps"] == 2.5  # a rerun with another fps is refused


def test_the_fairness_report_counts_a_track_once_not_once_per_frame(video_job):
    from m2fp_batch.report.build import compute
    from m2fp_batch.report.data import load_output

    numbers, _ = compute(load_output(video_job["out"]))
    rows = video_job["rows"]
    photo_people = [p["skin_tone"]["group"] for r in rows if r["video_id"] is None for p in r["persons"] or []]
    tracks = {
        (r["video_id"], p["track_id"]): p["track_skin_tone"]["group"]
        for r in rows
        if r["frame_index"] is not None
        for p in r["persons"]
    }
    frame_people = sum(len(r["persons"] or []) for r in rows if r["frame_index"] is not None)
    assert frame_people > len(tracks) > 0  # people seen in several frames
    assert numbers["people"] == len(photo_people) + len(tracks)
    groups = photo_people + list(tracks.values())
    assert numbers["group_counts"] == {g: groups.count(g) for g in ("light", "medium", "dark", "unknown")}


def test_readers_get_a_frame_rows_pixels_from_its_video(video_job):
    from m2fp_batch.labels import is_frame, row_pixels
    from m2fp_batch.storage import Filesystems
    from m2fp_batch.video import SampledFrame, Sampling, sample_frames

    fss = Filesystems()
    for name in ("clip", "vfr", "rotated", "mp4_as_jpg"):
        rows = _frames(video_job, name)
        decoded = {
            f.frame_index: f.rgb
            for f in sample_frames(str(video_job["files"][name]), Sampling(fps=1.0), 10**8)
            if isinstance(f, SampledFrame)
        }
        assert sorted(decoded) == [r["frame_index"] for r in rows]
        for r in rows:
            assert is_frame(r)
            np.testing.assert_array_equal(row_pixels(r, fss), decoded[r["frame_index"]])
    photo = _of(video_job, "astronaut")[0]
    assert not is_frame(photo) and row_pixels(photo, fss).shape == (128, 128, 3)


def test_dataset_and_exports_read_the_jobs_frames(video_job):
    """ParsingDataset and export over the job's own output: frames read from their videos, grouped by
    video in frame order; cihp holds every labelled row, vip the frames only (photos counted)."""
    from m2fp_batch.data import ParsingDataset
    from m2fp_batch.formats.export import export
    from m2fp_batch.labels import is_frame, label_maps, row_pixels
    from m2fp_batch.storage import Filesystems

    ok = {r["image_id"]: r for r in video_job["rows"] if r["status"] == "ok"}
    ds, fss = ParsingDataset(video_job["out"]), Filesystems()
    assert sorted(ds.image_ids) == sorted(ok)
    clip = _frames(video_job, "clip")
    group = ds.videos()[clip[0]["video_id"]]
    assert [ds.image_ids[i] for i in group] == [r["image_id"] for r in clip]
    for i in group:
        s, row = ds[i], ok[ds.image_ids[i]]
        np.testing.assert_array_equal(s["image"], row_pixels(row, fss))
        np.testing.assert_array_equal(s["semantic"], label_maps(row).semantic)
        assert s["frame_index"] == row["frame_index"] and s["track_ids"] == [p["track_id"] for p in row["persons"]]
    frames = [r for r in ok.values() if is_frame(r)]
    cihp_summary = export(video_job["out"], video_job["root"] / "cihp", "cihp")
    assert cihp_summary.images == len(ok) and cihp_summary.unreadable_images == []
    vip_summary = export(video_job["out"], video_job["root"] / "vip", "vip")
    assert (vip_summary.images, vip_summary.skipped_photos) == (len(frames), len(ok) - len(frames))
    assert vip_summary.videos == len({r["video_id"] for r in frames})
    for r in frames:
        name = f"{r['video_id']}/{r['frame_index']:012d}"
        category = np.asarray(Image.open(video_job["root"] / "vip" / "Annotations" / "Category_ids" / f"{name}.png"))
        np.testing.assert_array_equal(category, label_maps(r).semantic)
