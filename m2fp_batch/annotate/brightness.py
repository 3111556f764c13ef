"""Adaptive brightness for dark photos (the HSV rule of the M2FP web services), pure numpy.

Rule: with V = max(R, G, B) (the HSV value, 0..255) and ``mean_v`` its mean over the image,
``mean_v < 50`` scales V by 1.5, ``50 <= mean_v < 80`` by 1.2, otherwise nothing changes.
V is scaled with hue and saturation kept: each pixel's RGB is multiplied by
``min(round(V * factor), 255) / V`` (rounded; a lookup table), so a pixel that would pass 255 saturates at V = 255
without a hue shift (an HSV round trip in floating point, no 8-bit HSV quantisation).

This is meant for the MODEL INPUT only; skin tone is always measured on the original pixels.
"""

from __future__ import annotations

import numpy as np

from m2fp_batch.memory import STRIP_PIXELS

# (mean V strictly below, factor), checked in order.
BRIGHTNESS_RULE: tuple[tuple[float, float], ...] = ((50.0, 1.5), (80.0, 1.2))


def _check(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be an (H, W, 3) uint8 RGB array, got shape {image.shape} dtype {image.dtype}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image is empty: shape {image.shape}")
    return image


def _value(image: np.ndarray) -> np.ndarray:
    """(H, W) uint8 HSV value V = max(R, G, B)."""
    return np.maximum(np.maximum(image[..., 0], image[..., 1]), image[..., 2])


def mean_value(image: np.ndarray) -> float:
    """Mean HSV value V = max(R, G, B) over the image, on the 0..255 scale."""
    return float(_value(_check(image)).mean(dtype=np.float64))


def brightness_factor(mean_v: float) -> float:
    """The factor the rule applies for a mean V: 1.5 below 50, 1.2 below 80, else 1.0."""
    for below, factor in BRIGHTNESS_RULE:
        if mean_v < below:
            return factor
    return 1.0


def scale_value(image: np.ndarray, factor: float) -> np.ndarray:
    """Multiply the HSV value of every pixel by ``factor`` (clipped at 255), keeping H and S."""
    image = _check(image)
    if factor <= 0:
        raise ValueError(f"factor must be positive, got {factor}")
    levels = np.arange(256, dtype=np.float64)
    new_levels = np.minimum(np.rint(levels * factor), 255.0)
    ratio = np.divide(new_levels, levels, out=np.ones(256), where=levels > 0)  # new V / V per V
    # lut[V, c] = the new value of a channel c <= V of a pixel whose value is V
    lut = np.clip(np.rint(ratio[:, None] * levels[None, :]), 0, 255).astype(np.uint8).ravel()
    out = np.empty_like(image)
    step = max(1, STRIP_PIXELS // image.shape[1])  # int indices take 8 bytes a pixel: in strips
    for y in range(0, image.shape[0], step):
        strip = image[y : y + step]
        base = _value(strip).astype(np.intp) * 256
        for k in range(3):
            out[y : y + step, :, k] = lut[base + strip[..., k]]
    return out


def adaptive_brightness(image: np.ndarray) -> tuple[np.ndarray, float]:
    """Apply the adaptive-brightness rule.

    Args:
        image: (H, W, 3) uint8 RGB.

    Returns:
        (adjusted image, factor applied). With factor 1.0 the input array itself is returned
        (not a copy); otherwise a new array.
    """
    factor = brightness_factor(mean_value(image))
    if factor == 1.0:
        return image, 1.0
    return scale_value(image, factor), factor


def model_input(image: np.ndarray, adaptive: bool) -> tuple[np.ndarray, float]:
    """The image the model sees and the factor applied (1.0: the photo itself): brightened by
    :func:`adaptive_brightness` when ``adaptive`` (the engine setting ``adaptive_brightness``) is on."""
    return adaptive_brightness(image) if adaptive else (image, 1.0)
