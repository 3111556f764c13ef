"""Real videos for the tests, encoded with PyAV from scikit-image photos: a pan and zoom over a photo,
and the hostile files of issue 29 (truncated, damaged, no video stream, variable frame rate, rotated)."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import skimage.data
from PIL import Image

__all__ = ["audio_only", "pan_frames", "write_video"]


def pan_frames(n: int, size: tuple[int, int] = (160, 120), photo: np.ndarray | None = None) -> list[np.ndarray]:
    """``n`` RGB frames of ``size`` (w, h): a window panning left to right and zooming in over a photo."""
    photo = skimage.data.astronaut() if photo is None else photo
    ph, pw = photo.shape[:2]
    w, h = size
    frames = []
    for i in range(n):
        t = i / max(n - 1, 1)
        zoom = 1.0 - 0.3 * t
        cw, ch = int(pw * 0.7 * zoom), int(pw * 0.7 * zoom * h / w)
        x0, y0 = int((pw - cw) * t), (ph - ch) // 2
        crop = Image.fromarray(photo[y0 : y0 + ch, x0 : x0 + cw])
        frames.append(np.asarray(crop.resize((w, h), Image.BILINEAR)))
    return frames


def write_video(
    path: Path,
    frames: Sequence[np.ndarray],
    fps: int = 10,
    pts_ms: Sequence[int] | None = None,
    rotation: int = 0,
    options: dict | None = None,
    gop: int | None = None,
) -> Path:
    """Encode ``frames`` (H.264, or MPEG-4 part 2 for .avi) into the container the suffix names.

    ``pts_ms``: each frame's presentation time in milliseconds (a variable frame rate); ``rotation``:
    display-matrix rotation in counter-clockwise degrees (a phone video); ``gop``: frames between key frames."""
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w", options=options or {}) as c:
        s = c.add_stream("mpeg4" if path.suffix == ".avi" else "libx264", rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        if gop:  # a key frame every ``gop`` frames (seeking lands on them)
            s.codec_context.gop_size = gop
        if pts_ms is not None:
            s.time_base = s.codec_context.time_base = Fraction(1, 1000)
        if rotation:
            s.set_display_rotation(rotation)
        for i, rgb in enumerate(frames):
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            if pts_ms is not None:
                f.pts, f.time_base = pts_ms[i], Fraction(1, 1000)
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def audio_only(path: Path, seconds: float = 1.0) -> Path:
    """A Matroska file with one audio stream (a sine) and no video stream."""
    rate = 16000
    with av.open(str(path), "w") as c:
        s = c.add_stream("pcm_s16le", rate=rate)
        t = np.arange(int(rate * seconds)) / rate
        samples = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)[None, :]
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = rate
        for p in s.encode(frame):
            c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path
