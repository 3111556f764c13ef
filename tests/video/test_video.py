"""m2fp_batch.video on real videos encoded from photos: sampling, rotation and the hostile files."""

from __future__ import annotations

import math

import numpy as np
import pytest
from videos import audio_only, pan_frames, write_video

from m2fp_batch.video import (
    SampledFrame,
    Sampling,
    VideoFailure,
    VideoInfo,
    frame_image_id,
    has_video_extension,
    looks_like_video,
    read_frame,
    sample_frames,
)

BIG = 10**8


def _split(items):
    items = list(items)
    info = [i for i in items if isinstance(i, VideoInfo)]
    frames = [i for i in items if isinstance(i, SampledFrame)]
    fails = [i for i in items if isinstance(i, VideoFailure)]
    return info, frames, fails


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """3.2 s at 10 fps, 160x120: 32 frames of a pan over the astronaut photo."""
    frames = pan_frames(32)
    return write_video(tmp_path_factory.mktemp("v") / "pan.mp4", frames), frames


@pytest.mark.parametrize("fps", [1.0, 2.0, 2.5, 10.0])
def test_fps_sampling_count_is_exact(clip, fps):
    info, frames, fails = _split(sample_frames(str(clip[0]), Sampling(fps=fps), BIG))
    assert not fails
    assert info[0].fps == 10.0 and (info[0].width, info[0].height) == (160, 120)
    assert info[0].duration_s == pytest.approx(3.2, abs=0.05)
    assert len(frames) == math.ceil(3.2 * fps - 1e-9)
    assert [f.pts_seconds for f in frames] == pytest.approx([i / fps for i in range(len(frames))], abs=1e-6)
    assert [f.frame_index for f in frames] == [round(f.pts_seconds * 10) for f in frames]


def test_sampled_pixels_are_the_encoded_frames(clip):
    _, frames, _ = _split(sample_frames(str(clip[0]), Sampling(every_nth=8), BIG))
    assert [f.frame_index for f in frames] == [0, 8, 16, 24]
    for f in frames:  # H.264 is lossy: near the source photo's pixels, and each frame its own
        assert f.rgb.shape == (120, 160, 3) and f.rgb.dtype == np.uint8
        assert np.abs(f.rgb.astype(int) - clip[1][f.frame_index]).mean() < 8


def test_guards_stop_sampling(clip):
    _, frames, fails = _split(sample_frames(str(clip[0]), Sampling(fps=10, max_frames=5), BIG))
    assert len(frames) == 5 and not fails
    _, frames, fails = _split(sample_frames(str(clip[0]), Sampling(fps=10, max_seconds=1.05), BIG))
    assert len(frames) == 11 and not fails


def test_frame_bomb_hits_max_pixels(clip):
    items = list(sample_frames(str(clip[0]), Sampling(), 160 * 120 - 1))
    assert len(items) == 1 and items[0].kind == "too_large" and "max_pixels" in items[0].message


def test_rotated_phone_video_is_upright(tmp_path):
    src = pan_frames(10, size=(160, 96))
    path = write_video(tmp_path / "phone.mov", src, rotation=90)
    _, frames, fails = _split(sample_frames(str(path), Sampling(fps=10), BIG))
    assert not fails and len(frames) == 10
    upright = np.rot90(src[0], k=1)  # 90 degrees counter-clockwise, as a player shows it
    assert frames[0].rgb.shape == (160, 96, 3)
    assert np.abs(frames[0].rgb.astype(int) - upright).mean() < 8


def test_variable_frame_rate_samples_by_time(tmp_path):
    pts = [0, 100, 150, 900, 1000, 1050, 1100, 2300, 2400, 3100]
    path = write_video(tmp_path / "vfr.mkv", pan_frames(len(pts)), pts_ms=pts)
    _, frames, fails = _split(sample_frames(str(path), Sampling(fps=1), BIG))
    assert not fails
    # one frame per second: the first frame at or after 0, 1, 2 and 3 s
    assert [f.pts_seconds for f in frames] == pytest.approx([0.0, 1.0, 2.3, 3.1])
    assert [f.frame_index for f in frames] == [0, 4, 7, 9]


@pytest.mark.parametrize("suffix,options", [(".mp4", {"movflags": "faststart"}), (".mkv", None), (".avi", None)])
def test_truncated_video_keeps_frames_before_the_damage(tmp_path, suffix, options):
    path = write_video(tmp_path / f"t{suffix}", pan_frames(30), options=options)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 6 // 10])
    _, frames, fails = _split(sample_frames(str(path), Sampling(fps=10), BIG))
    assert 1 <= len(frames) < 30
    assert len(fails) == 1 and fails[0].kind == "video_error"
    assert fails[0].frames_before == len(frames)
    assert fails[0].position_s == pytest.approx(frames[-1].pts_seconds, abs=0.21)
    assert f"{fails[0].position_s:.3f} s" in fails[0].message


def test_damaged_video_middle(tmp_path):
    path = write_video(tmp_path / "d.mp4", pan_frames(30), options={"movflags": "faststart"})
    data = bytearray(path.read_bytes())
    half = len(data) // 2
    data[half:] = np.random.default_rng(1).integers(0, 256, len(data) - half, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    _, frames, fails = _split(sample_frames(str(path), Sampling(fps=10), BIG))
    assert 0 < len(frames) < 30 and [f.kind for f in fails] == ["video_error"]


@pytest.mark.parametrize(
    "make",
    [
        lambda p: p.write_bytes(b""),
        lambda p: p.write_bytes(b"this is a text file, not a video\n" * 20),
        lambda p: audio_only(p),
    ],
    ids=["zero_length", "text_with_video_name", "no_video_stream"],
)
def test_not_a_video(tmp_path, make):
    path = tmp_path / "x.mkv"
    make(path)
    items = list(sample_frames(str(path), Sampling(), BIG))
    assert len(items) == 1 and items[0].kind == "not_a_video" and items[0].frames_before == 0


def test_recognised_by_content(clip, tmp_path):
    for suffix in (".mp4", ".mkv", ".avi", ".mov"):
        p = write_video(tmp_path / f"c{suffix}", pan_frames(2))
        assert looks_like_video(p.read_bytes()[:16]), suffix
    assert not looks_like_video(b"\x89PNG\r\n\x1a\n" + b"\0" * 8)
    assert not looks_like_video(b"\0\0\0\x1cftypavif" + b"\0" * 4)  # an AVIF photo is ISO BMFF too
    assert not looks_like_video(b"RIFF\0\0\0\0WEBPVP8 ")
    assert has_video_extension("s3://b/a/CLIP.MP4") and not has_video_extension("a.jpg")
    assert frame_image_id("abc", 12) == "abc#f000012"


@pytest.mark.parametrize(
    "name,kw", [("gop.mp4", {"fps": 10, "gop": 12}), ("vfr.mkv", {}), ("rot.mp4", {"rotation": 90})]
)
def test_read_frame_gives_the_sampled_frames_pixels_after_a_seek(tmp_path, name, kw):
    pts = [0, 100, 150, 900, 1000, 1050, 1100, 2300, 2400, 3100]
    n = len(pts) if name == "vfr.mkv" else 60
    path = str(write_video(tmp_path / name, pan_frames(n), pts_ms=pts if name == "vfr.mkv" else None, **kw))
    _, frames, _ = _split(sample_frames(path, Sampling(fps=3), BIG))
    assert len(frames) >= 6
    for f in frames:
        np.testing.assert_array_equal(read_frame(path, f.pts_seconds, BIG), f.rgb)
    with pytest.raises(ValueError, match="no frame at 100.000 s"):
        read_frame(path, 100.0, BIG)
    with pytest.raises(ValueError, match="max_pixels"):
        read_frame(path, 0.0, 100)
