"""Skin tone of a person from the skin pixels M2FP found (pure numpy / scikit-image).

The estimate uses the ORIGINAL pixels (never a brightened model input) of the union of the
skin parts (Face, Left-arm, Right-arm, Left-leg, Right-leg, Torso-skin):

1. the skin mask is eroded (a disk of ``erosion_radius`` pixels, the image border counts as
   outside) so that pixels blended with hair, clothes or background at the part edges drop out;
2. the remaining pixels are converted to CIELAB (sRGB, D65) and trimmed by L*: pixels below the
   ``trim[0]`` percentile (deep shadows) and above the ``trim[1]`` percentile (highlights) drop out;
3. with fewer than ``min_pixels`` pixels left the tone is ``unknown``; otherwise the median L*, a*,
   b* is the skin colour, its Individual Typology Angle ``ITA = atan2(L* - 50, b*)`` (degrees)
   gives the ITA category (Chardon et al. thresholds 55, 41, 28, 10, -30) and the group, and the
   nearest Monk Skin Tone (CIEDE2000) is recorded, with its stated uncertainty (``MONK_UNCERTAINTY``);
4. the CIELAB hue angle ``h* = atan2(b*, a*)`` of the same median is recorded beside ITA (a second
   axis: ITA mixes lightness and yellowness, h* separates redder from yellower skin).

``source`` says how a tone was obtained: ``measured`` by the job, ``derived`` from a dataset's
ground-truth skin parts (the dataset had none, :mod:`m2fp_batch.data.skin`), ``reviewed`` by a person.

Groups follow the three Fitzpatrick-style bins of common fairness tables (I-II, III-IV, V-VI),
mapped from ITA by convention: ``light`` ITA > 41, ``medium`` 10 < ITA <= 41, ``dark`` ITA <= 10.
See ``docs/skin_tone.md`` for the method, its limits (lighting, white balance, make-up) and the
measured confusion matrix.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from skimage import color
from skimage.morphology import disk, erosion

from m2fp_batch.annotate.palette import CIHP_CLASSES, SKIN_CLASSES
from m2fp_batch.schema import SKIN_SOURCES

SKIN_CLASS_IDS: tuple[int, ...] = tuple(CIHP_CLASSES.index(name) for name in SKIN_CLASSES)

ITA_CATEGORIES: tuple[str, ...] = ("very light", "light", "intermediate", "tan", "brown", "dark", "unknown")
# Lower bounds (exclusive) of the ITA categories, in degrees; below the last one is "dark".
ITA_THRESHOLDS: tuple[tuple[float, str], ...] = (
    (55.0, "very light"),
    (41.0, "light"),
    (28.0, "intermediate"),
    (10.0, "tan"),
    (-30.0, "brown"),
)
GROUP_LIGHT_ABOVE = 41.0  # ITA > 41: light (Fitzpatrick I-II by convention)
GROUP_MEDIUM_ABOVE = 10.0  # 10 < ITA <= 41: medium (III-IV); ITA <= 10: dark (V-VI)

# Google's Monk Skin Tone scale, published sRGB values, tones 1..10.
MONK_HEX: tuple[str, ...] = (
    "#f6ede4",
    "#f3e7db",
    "#f7ead0",
    "#eadaba",
    "#d7bd96",
    "#a07e56",
    "#825c43",
    "#604134",
    "#3a312a",
    "#292420",
)
MONK_RGB = np.array([[int(h[i : i + 2], 16) for i in (1, 3, 5)] for h in MONK_HEX], dtype=np.uint8)
MONK_LAB = color.rgb2lab(MONK_RGB[None].astype(np.float64) / 255.0)[0]

DEFAULT_MIN_PIXELS = 200
DEFAULT_EROSION_RADIUS = 2
DEFAULT_TRIM = (10.0, 90.0)
# How a tone was obtained (SkinTone.source; the schema's skin_tone.source).
SOURCES: tuple[str, ...] = SKIN_SOURCES
SOURCE_MEASURED, SOURCE_DERIVED, SOURCE_REVIEWED = SKIN_SOURCES

# Hue angle h* bins of the report's tone x hue table: a convention of this tool (docs/skin_tone.md).
HUE_RED_AT_MOST = 55.0
HUE_BINS: tuple[str, ...] = ("red", "yellow", "unknown")

# The stated uncertainty of the Monk tone, in tones (+-): measured by benchmarks/skin_tone_confusion.py
# (docs/skin_tone.md); classic colour estimators are not reliable to one tone of the 10-tone scale.
MONK_UNCERTAINTY = 1

# Skin pixels measured at most: beyond, an even stride over them in raster order (the Lab
# conversion takes ~150 bytes a pixel; a median over a million pixels does not need more).
MAX_SKIN_PIXELS = 1_000_000


@dataclass(frozen=True)
class SkinTone:
    """The skin tone of one person.

    Attributes:
        lab: median CIELAB (L*, a*, b*) of the kept skin pixels, or None when unknown.
        ita: Individual Typology Angle of ``lab`` in degrees, ``atan2(L* - 50, b*)``, or None.
        ita_category: ``very light``, ``light``, ``intermediate``, ``tan``, ``brown``, ``dark``
            (thresholds 55, 41, 28, 10, -30), or ``unknown``.
        group: ``light`` (ITA > 41), ``medium`` (10 < ITA <= 41), ``dark`` (ITA <= 10) or ``unknown``.
        monk: nearest Monk Skin Tone 1..10 by CIEDE2000, or None when unknown (uncertain by
            :data:`MONK_UNCERTAINTY` tones: :attr:`monk_range`).
        pixels: number of skin pixels the median was taken over (after erosion and trimming).
        confidence: 0..1; the share of kept pixels whose own ITA falls in ``group`` times
            ``min(1, pixels / (4 * min_pixels))``; 0 when unknown.
        hue: CIELAB hue angle h* = atan2(b*, a*) of ``lab`` in degrees [0, 360), or None.
        source: how the tone was obtained: ``measured`` (the job, on its own labels), ``derived``
            (from a dataset's ground-truth skin parts, the dataset had none) or ``reviewed`` (a
            reviewer set the group).
    """

    lab: tuple[float, float, float] | None
    ita: float | None
    ita_category: str
    group: str
    monk: int | None
    pixels: int
    confidence: float
    hue: float | None = None
    source: str = SOURCE_MEASURED

    @property
    def known(self) -> bool:
        return self.group != "unknown"

    @property
    def monk_range(self) -> tuple[int, int] | None:
        """The Monk tones within the stated uncertainty (:data:`MONK_UNCERTAINTY`) of ``monk``."""
        return None if self.monk is None else monk_range(self.monk)

    def to_dict(self) -> dict:
        """Plain-Python dict (lab as a list) for rows and JSON."""
        d = asdict(self)
        d["lab"] = None if self.lab is None else [float(v) for v in self.lab]
        return d


def ita_degrees(lightness: np.ndarray | float, b: np.ndarray | float) -> np.ndarray | float:
    """ITA = atan2(L* - 50, b*) in degrees (elementwise)."""
    return np.degrees(np.arctan2(np.asarray(lightness, dtype=np.float64) - 50.0, np.asarray(b, dtype=np.float64)))


def hue_degrees(a: np.ndarray | float, b: np.ndarray | float) -> np.ndarray | float:
    """CIELAB hue angle h* = atan2(b*, a*) in degrees, in [0, 360) (elementwise)."""
    return np.mod(np.degrees(np.arctan2(np.asarray(b, dtype=np.float64), np.asarray(a, dtype=np.float64))), 360.0)


def hue_bin(hue: float | None) -> str:
    """``red`` (h* <= 55), ``yellow`` (h* > 55) or ``unknown`` (no hue): this tool's convention."""
    if hue is None or not np.isfinite(hue):
        return "unknown"
    return HUE_BINS[0] if hue <= HUE_RED_AT_MOST else HUE_BINS[1]


def monk_range(monk: int) -> tuple[int, int]:
    """(lowest, highest) Monk tone within :data:`MONK_UNCERTAINTY` of ``monk``."""
    return max(1, monk - MONK_UNCERTAINTY), min(len(MONK_HEX), monk + MONK_UNCERTAINTY)


def ita_category(ita: float) -> str:
    """The ITA skin category (Chardon et al.): very light > 55 >= light > 41 >= intermediate > 28
    >= tan > 10 >= brown > -30 >= dark."""
    if not np.isfinite(ita):
        raise ValueError(f"ITA must be finite, got {ita}")
    for lower, name in ITA_THRESHOLDS:
        if ita > lower:
            return name
    return "dark"


def ita_group(ita: float) -> str:
    """The three-group convention: light ITA > 41, medium 10 < ITA <= 41, dark ITA <= 10."""
    if not np.isfinite(ita):
        raise ValueError(f"ITA must be finite, got {ita}")
    if ita > GROUP_LIGHT_ABOVE:
        return "light"
    if ita > GROUP_MEDIUM_ABOVE:
        return "medium"
    return "dark"


def nearest_monk(lab: np.ndarray | tuple[float, float, float]) -> int:
    """The Monk Skin Tone (1..10) nearest to a CIELAB colour by CIEDE2000."""
    lab_arr = np.broadcast_to(np.asarray(lab, dtype=np.float64), MONK_LAB.shape)
    return int(np.argmin(color.deltaE_ciede2000(lab_arr, MONK_LAB))) + 1


def skin_mask_from_labels(labels: np.ndarray) -> np.ndarray:
    """(H, W) CIHP class ids -> (H, W) bool mask of the skin classes."""
    return np.isin(labels, SKIN_CLASS_IDS)


def unknown_tone(pixels: int = 0, source: str = SOURCE_MEASURED) -> SkinTone:
    """The ``unknown`` tone (too few skin pixels: ``pixels`` were left)."""
    return SkinTone(
        lab=None,
        ita=None,
        ita_category="unknown",
        group="unknown",
        monk=None,
        pixels=pixels,
        confidence=0.0,
        hue=None,
        source=source,
    )


def _check_inputs(image: np.ndarray, skin_mask: np.ndarray, min_pixels: int, radius: int, trim: tuple) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be an (H, W, 3) uint8 RGB array, got shape {image.shape} dtype {image.dtype}")
    if skin_mask.shape != image.shape[:2] or skin_mask.dtype != np.bool_:
        raise ValueError(
            f"skin_mask must be an (H, W) bool array matching the image {image.shape[:2]}, "
            f"got shape {skin_mask.shape} dtype {skin_mask.dtype}"
        )
    if min_pixels < 1 or radius < 0 or not (0.0 <= trim[0] < trim[1] <= 100.0):
        raise ValueError(f"bad parameters: min_pixels={min_pixels}, erosion_radius={radius}, trim={trim}")


def _eroded(mask: np.ndarray, radius: int) -> np.ndarray:
    """The mask eroded by a disk of ``radius`` px, the image border counting as an edge."""
    if radius == 0 or not mask.any():
        return mask
    return erosion(np.pad(mask, radius), footprint=disk(radius))[radius:-radius, radius:-radius].astype(bool)


def _trimmed_lab(rgb: np.ndarray, trim: tuple[float, float]) -> np.ndarray:
    """(N, 3) uint8 sRGB -> (M, 3) CIELAB of the pixels inside the L* percentiles ``trim`` (strided above
    :data:`MAX_SKIN_PIXELS`)."""
    if len(rgb) > MAX_SKIN_PIXELS:
        rgb = rgb[:: -(-len(rgb) // MAX_SKIN_PIXELS)]
    lab = color.rgb2lab(rgb[None].astype(np.float64) / 255.0)[0]
    lo, hi = np.percentile(lab[:, 0], trim)
    return lab[(lab[:, 0] >= lo) & (lab[:, 0] <= hi)]


def _agreement(lab: np.ndarray, group: str) -> float:
    """The share of the pixels whose own ITA falls in ``group``."""
    pixel_itas = ita_degrees(lab[:, 0], lab[:, 2])
    if group == "light":
        agree = pixel_itas > GROUP_LIGHT_ABOVE
    elif group == "medium":
        agree = (pixel_itas > GROUP_MEDIUM_ABOVE) & (pixel_itas <= GROUP_LIGHT_ABOVE)
    else:
        agree = pixel_itas <= GROUP_MEDIUM_ABOVE
    return float(agree.mean())


def _tone_of(lab: np.ndarray, min_pixels: int, source: str) -> SkinTone:
    """The tone of the kept CIELAB pixels (at least ``min_pixels`` of them)."""
    n = int(lab.shape[0])
    med = np.median(lab, axis=0)
    ita = float(ita_degrees(med[0], med[2]))
    group = ita_group(ita)
    confidence = _agreement(lab, group) * min(1.0, n / (4.0 * min_pixels))
    return SkinTone(
        lab=(float(med[0]), float(med[1]), float(med[2])),
        ita=ita,
        ita_category=ita_category(ita),
        group=group,
        monk=nearest_monk(med),
        pixels=n,
        confidence=round(confidence, 4),
        hue=float(hue_degrees(med[1], med[2])),
        source=source,
    )


def estimate_skin_tone(
    image: np.ndarray,
    skin_mask: np.ndarray,
    *,
    min_pixels: int = DEFAULT_MIN_PIXELS,
    erosion_radius: int = DEFAULT_EROSION_RADIUS,
    trim: tuple[float, float] = DEFAULT_TRIM,
    source: str = SOURCE_MEASURED,
) -> SkinTone:
    """Estimate the skin tone from the pixels of ``image`` under ``skin_mask``.

    Args:
        image: (H, W, 3) uint8 sRGB, the original pixels (not brightened).
        skin_mask: (H, W) bool, the person's skin (union of the skin parts).
        min_pixels: fewer kept pixels than this gives ``unknown``.
        erosion_radius: disk radius in pixels of the erosion away from the mask edges (0: none).
        trim: (low, high) L* percentiles; pixels outside are dropped (shadows, highlights).
        source: recorded as the tone's ``source`` (one of :data:`SOURCES`).

    Above :data:`MAX_SKIN_PIXELS` skin pixels (a close-up on a very large photo), every k-th
    one in raster order is measured, so memory stays bounded; ``pixels`` counts those measured.

    Returns:
        A :class:`SkinTone`; ``group == "unknown"`` when too few skin pixels remain.
    """
    image = np.asarray(image)
    skin_mask = np.asarray(skin_mask)
    _check_inputs(image, skin_mask, min_pixels, erosion_radius, trim)
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    mask = _eroded(skin_mask, erosion_radius)
    if int(mask.sum()) < min_pixels:
        return unknown_tone(int(mask.sum()), source)
    lab = _trimmed_lab(image[mask], trim)
    if lab.shape[0] < min_pixels:
        return unknown_tone(int(lab.shape[0]), source)
    return _tone_of(lab, min_pixels, source)


def person_skin_tone(
    image: np.ndarray,
    bbox: tuple[int, int, int, int],
    part_map: np.ndarray,
    **kwargs,
) -> SkinTone:
    """Skin tone of one parsed person, working on its bounding box only.

    Args:
        image: (H, W, 3) uint8 sRGB, the original image.
        bbox: (x0, y0, x1, y1) end-exclusive, the person's box.
        part_map: (y1 - y0, x1 - x0) CIHP class ids of the person inside ``bbox`` (0 outside it).
        **kwargs: passed to :func:`estimate_skin_tone`.

    The crop gives the same answer as the full image: the erosion treats everything outside
    the box as non-skin, which it is (the box bounds the person's mask).
    """
    x0, y0, x1, y1 = (int(v) for v in bbox)
    if part_map.shape != (y1 - y0, x1 - x0):
        raise ValueError(f"part_map shape {part_map.shape} does not match bbox {bbox}")
    return estimate_skin_tone(image[y0:y1, x0:x1], skin_mask_from_labels(part_map), **kwargs)
