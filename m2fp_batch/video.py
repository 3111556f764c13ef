"""Video inputs: recognising a video by its bytes, probing it and decoding only the sampled frames.

PyAV (FFmpeg) demuxes and decodes one frame at a time; a sampled frame is converted to RGB (rotation
metadata applied) and handed on, every other frame is dropped as soon as it is decoded, so a video of
any length holds one decoded frame (plus FFmpeg's own reference frames) at a time. Failures are data:
:func:`sample_frames` yields :class:`VideoFailure` (after the frames decoded before the damage)
instead of raising.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

__all__ = [
    "SNIFF_BYTES",
    "VIDEO_EXTENSIONS",
    "Sampling",
    "SampledFrame",
    "VideoFailure",
    "VideoInfo",
    "frame_image_id",
    "has_video_extension",
    "looks_like_video",
    "read_frame",
    "sample_frames",
]

VIDEO_EXTENSIONS = (".mp4", ".mov", ".webm", ".mkv", ".avi", ".m4v")
SNIFF_BYTES = 16  # what looks_like_video needs of a file's start


def has_video_extension(uri: str) -> bool:
    """True when the name ends with a video extension (case-insensitive)."""
    return uri.lower().endswith(VIDEO_EXTENSIONS)


def looks_like_video(head: bytes) -> bool:
    """True when the first bytes are a video container's signature: ISO BMFF (mp4, mov: ``ftyp``,
    ``moov``, ``mdat``, ``wide``, ``free`` box at offset 4), Matroska/WebM (EBML magic) or AVI (RIFF AVI)."""
    if len(head) < 12:
        return False
    if head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip"):
        return head[4:8] != b"ftyp" or head[8:12] not in (b"avif", b"avis", b"heic", b"heix", b"mif1", b"msf1")
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return True
    return head[:4] == b"RIFF" and head[8:12] == b"AVI "


@dataclass(frozen=True)
class Sampling:
    """Which frames of a video become rows: ``fps`` frames a second (by presentation time), or every
    ``every_nth`` decoded frame when set; at most ``max_frames`` frames and the first ``max_seconds``."""

    fps: float = 1.0
    every_nth: int | None = None
    max_frames: int | None = None
    max_seconds: float | None = None


@dataclass(frozen=True)
class VideoInfo:
    """What the container says of its first video stream: average frame rate, coded frame size (before
    any rotation metadata, which each frame's pixels have applied) and duration (None: unknown)."""

    fps: float | None
    width: int
    height: int
    duration_s: float | None


@dataclass(frozen=True)
class SampledFrame:
    """One sampled frame: its index among the decoded frames, presentation time and RGB pixels."""

    frame_index: int
    pts_seconds: float
    rgb: np.ndarray


@dataclass(frozen=True)
class VideoFailure:
    """Why decoding stopped (or never started): an error kind, a sentence, the time reached (None: before
    the first frame) and the frames yielded before it."""

    kind: str
    message: str
    position_s: float | None
    frames_before: int


def frame_image_id(video_id: str, frame_index: int) -> str:
    """The image_id of a sampled frame: the video's id and the frame index (``<video_id>#f000123``)."""
    return f"{video_id}#f{frame_index:06d}"


def _info(stream) -> VideoInfo:
    rate = stream.average_rate or stream.guessed_rate
    fps = float(rate) if rate else None
    duration = None
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    elif stream.container.duration is not None:
        duration = stream.container.duration / 1_000_000
    return VideoInfo(fps, stream.codec_context.width, stream.codec_context.height, duration)


def _rgb(frame) -> np.ndarray:
    rgb = frame.to_ndarray(format="rgb24")
    turns = (int(frame.rotation or 0) // 90) % 4  # the display matrix's counter-clockwise degrees
    return np.ascontiguousarray(np.rot90(rgb, k=turns)) if turns else rgb


class _Sampler:
    """Decides frame by frame whether a decoded frame is sampled."""

    def __init__(self, sampling: Sampling) -> None:
        self.s = sampling
        self.next_t = 0.0
        self.taken = 0

    def done(self, pts: float) -> bool:
        if self.s.max_frames is not None and self.taken >= self.s.max_frames:
            return True
        return self.s.max_seconds is not None and pts >= self.s.max_seconds

    def take(self, index: int, pts: float) -> bool:
        if self.s.every_nth is not None:
            hit = index % self.s.every_nth == 0
        else:
            hit = pts >= self.next_t - 1e-6
            if hit:  # the next sample time after this frame (variable frame rate: by time, not index)
                step = 1.0 / self.s.fps
                self.next_t = (math.floor(pts * self.s.fps + 1e-6) + 1) * step
        self.taken += hit
        return hit


def _open(source: str | BinaryIO, max_pixels: int) -> tuple[object, object, VideoInfo] | VideoFailure:
    import av

    try:
        container = av.open(source, mode="r")
    except (av.error.FFmpegError, OSError, ValueError) as e:
        return VideoFailure("not_a_video", f"not a video container FFmpeg can open: {e}", None, 0)
    if not container.streams.video:
        container.close()
        return VideoFailure("not_a_video", "the container has no video stream", None, 0)
    stream = container.streams.video[0]
    info = _info(stream)
    if info.width * info.height > max_pixels:
        container.close()
        msg = f"video frames of {info.width}x{info.height} pixels exceed max_pixels={max_pixels}"
        return VideoFailure("too_large", msg, None, 0)
    if info.width <= 0 or info.height <= 0:
        container.close()
        return VideoFailure("not_a_video", "the video stream has no frame size", None, 0)
    return container, stream, info


def sample_frames(
    source: str | BinaryIO, sampling: Sampling, max_pixels: int
) -> Iterator[VideoInfo | SampledFrame | VideoFailure]:
    """Yield the video's :class:`VideoInfo` first, then each sampled :class:`SampledFrame` in order, and a
    :class:`VideoFailure` last if decoding failed (or only that, if the video never opened).

    A frame larger than ``max_pixels`` (the photos' decompression-bomb guard) fails the video before
    any frame is decoded."""
    import av

    opened = _open(source, max_pixels)
    if isinstance(opened, VideoFailure):
        yield opened
        return
    container, stream, info = opened
    yield info
    sampler, index, pts, yielded, failed, stopped = _Sampler(sampling), 0, None, 0, False, False
    try:
        for frame in container.decode(stream):
            if frame.width * frame.height > max_pixels:
                msg = f"a frame of {frame.width}x{frame.height} pixels exceeds max_pixels={max_pixels}"
                yield VideoFailure("too_large", msg, pts, yielded)
                return
            pts = float(frame.time) if frame.time is not None else index / (info.fps or 1.0)
            if sampler.done(pts):
                stopped = True
                break
            if sampler.take(index, pts):
                yield SampledFrame(index, pts, _rgb(frame))
                yielded += 1
            index += 1
    except (av.error.FFmpegError, OSError, ValueError, MemoryError) as e:
        where = f"after {pts:.3f} s (frame {index})" if pts is not None else "before the first frame"
        yield VideoFailure("video_error", f"the video is damaged {where}: {e}", pts, yielded)
        failed = True
    finally:
        container.close()
    if index == 0 and not failed:
        yield VideoFailure("video_error", "the video stream has no decodable frame", None, 0)
    elif not (failed or stopped) and _ends_early(info, pts):
        msg = f"the video ends at {pts:.3f} s (frame {index}), before its stated duration of {info.duration_s:.3f} s"
        yield VideoFailure("video_error", msg + " (truncated)", pts, yielded)


def _ends_early(info: VideoInfo, last_pts: float | None) -> bool:
    """True when the last decoded frame is more than two frame intervals before the stated duration
    (a truncated Matroska or AVI file decodes without an error: its header still states the length)."""
    if info.duration_s is None or last_pts is None:
        return False
    interval = 1.0 / info.fps if info.fps else 0.1
    return last_pts + 2 * interval < info.duration_s


def read_frame(source: str | BinaryIO, pts_seconds: float, max_pixels: int) -> np.ndarray:
    """The RGB pixels (rotation applied) of the frame presented at ``pts_seconds``: a job row's frame,
    read again by the readers of the output. Seeks to the key frame before it and decodes forward, so
    the pixels are those :func:`sample_frames` gave.

    Raises:
        ValueError: the video cannot be opened, its frames exceed ``max_pixels``, or no frame is
            presented at that time (the file changed since the job).
    """
    import av

    opened = _open(source, max_pixels)
    if isinstance(opened, VideoFailure):
        raise ValueError(opened.message)
    container, stream, info = opened
    tolerance = 0.5 / info.fps if info.fps else 1e-3
    try:
        if stream.time_base is not None and pts_seconds > 0:
            container.seek(int(pts_seconds / stream.time_base), stream=stream, backward=True, any_frame=False)
        for frame in container.decode(stream):
            t = float(frame.time) if frame.time is not None else None
            if t is not None and abs(t - pts_seconds) <= tolerance:
                return _rgb(frame)
            if t is not None and t > pts_seconds + tolerance:
                break
    except (av.error.FFmpegError, OSError, ValueError, MemoryError) as e:
        raise ValueError(f"the video could not be decoded at {pts_seconds:.3f} s: {e}") from e
    finally:
        container.close()
    raise ValueError(f"no frame at {pts_seconds:.3f} s: the video changed since the job labelled it")
