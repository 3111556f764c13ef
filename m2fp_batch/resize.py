"""The official resize of the model input: short side ``SHORT_EDGE``, long side capped at ``MAX_SIZE``.

Torch-free, so that the settings (their defaults), the service front end and the engine's
preprocess (:mod:`m2fp_batch.inference.preprocess`) share one definition.
"""

from __future__ import annotations

__all__ = ["MAX_SIZE", "SHORT_EDGE", "target_size"]

SHORT_EDGE = 640
MAX_SIZE = 1333


def target_size(h: int, w: int, short_edge: int = SHORT_EDGE, max_size: int = MAX_SIZE) -> tuple[int, int]:
    """The official resized (h, w): short side ``short_edge``, long side capped at ``max_size``,
    rounded with ``int(x + 0.5)``."""
    scale = short_edge * 1.0 / min(h, w)
    if h < w:
        newh, neww = short_edge * 1.0, scale * w
    else:
        newh, neww = scale * h, short_edge * 1.0
    if max(newh, neww) > max_size:
        s = max_size * 1.0 / max(newh, neww)
        newh, neww = newh * s, neww * s
    return int(newh + 0.5), int(neww + 0.5)
