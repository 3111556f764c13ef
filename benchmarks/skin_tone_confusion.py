"""Confusion matrix of the skin-tone estimator on synthetic faces in every Monk Skin Tone colour.

Each case is a face-like scene (background, hair cap over the forehead, face, neck, two arms,
a shirt) whose skin has one Monk Skin Tone (MST) colour, rendered under an illumination
(brightness x colour cast in linear RGB, smooth shading across the face, a specular highlight,
8-bit noise, blurred edges). The skin mask given to the estimator is the true skin region
dilated by 2 px, as a parser's mask bleeds into hair, clothes and background.

The true group of a case is the group of its MST colour's own ITA (not of the rendered
pixels), so the matrix measures the estimator, not the group convention:
MST 1-5 light, MST 6 medium (ITA 10.9, 0.9 degrees above the dark boundary), MST 7-10 dark.

"Normal light" cases: brightness 0.8-1.2 with a neutral or mild warm/cool cast. "Strong cast"
cases: a strong warm or cool cast. Run:

    .venv/bin/python benchmarks/skin_tone_confusion.py            # Markdown tables on stdout
    .venv/bin/python benchmarks/skin_tone_confusion.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import dataclass

import numpy as np
from skimage import draw, filters

from m2fp_batch.annotate.skin_tone import (
    MONK_LAB,
    MONK_RGB,
    estimate_skin_tone,
    ita_degrees,
    ita_group,
)
from m2fp_batch.schema import SKIN_GROUPS

BRIGHTNESS = (0.8, 0.9, 1.0, 1.1, 1.2)
MILD_CASTS = {"neutral": (1.0, 1.0, 1.0), "mild warm": (1.06, 1.0, 0.92), "mild cool": (0.94, 1.0, 1.08)}
STRONG_CASTS = {"strong warm": (1.2, 1.0, 0.75), "strong cool": (0.8, 1.0, 1.25)}
STRONG_BRIGHTNESS = (0.8, 1.0, 1.2)
SEEDS = (0, 1)

HAIR_RGB = (40, 28, 22)
SHIRT_RGB = (40, 90, 170)
BACKGROUND_RGB = (150, 160, 150)


@dataclass(frozen=True)
class Case:
    monk: int  # 1..10
    brightness: float
    cast: str
    seed: int

    @property
    def normal_light(self) -> bool:
        return self.cast in MILD_CASTS


def true_group(monk: int) -> str:
    """The group of the MST colour's own ITA."""
    lab = MONK_LAB[monk - 1]
    return ita_group(float(ita_degrees(lab[0], lab[2])))


def all_cases() -> list[Case]:
    cases = []
    for monk in range(1, 11):
        for seed in SEEDS:
            cases += [Case(monk, b, c, seed) for c in MILD_CASTS for b in BRIGHTNESS]
            cases += [Case(monk, b, c, seed) for c in STRONG_CASTS for b in STRONG_BRIGHTNESS]
    return cases


def _to_linear(srgb: np.ndarray) -> np.ndarray:
    c = np.asarray(srgb, dtype=np.float64) / 255.0
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def _to_srgb(lin: np.ndarray) -> np.ndarray:
    lin = np.clip(lin, 0.0, 1.0)
    return np.where(lin <= 0.0031308, lin * 12.92, 1.055 * lin ** (1 / 2.4) - 0.055) * 255.0


def render_face(
    skin_rgb: tuple[int, int, int] | np.ndarray,
    brightness: float = 1.0,
    cast: tuple[float, float, float] = (1.0, 1.0, 1.0),
    seed: int = 0,
    size: tuple[int, int] = (160, 128),
    mask_bleed: int = 2,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render one face-like scene.

    Returns:
        (image (H, W, 3) uint8, true skin (H, W) bool, skin mask as a parser would give it:
        the true skin dilated by ``mask_bleed`` px).
    """
    h, w = size
    rng = np.random.default_rng(seed)
    albedo = np.empty((h, w, 3))
    albedo[:] = _to_linear(BACKGROUND_RGB)
    skin = np.zeros((h, w), bool)

    cy, cx, ry, rx = int(h * 0.34), w // 2, int(h * 0.2), int(w * 0.2)
    shirt_top = int(h * 0.62)
    # shirt (torso) and arms at its sides
    albedo[shirt_top:, int(w * 0.2) : int(w * 0.8)] = _to_linear(SHIRT_RGB)
    for x0 in (int(w * 0.08), int(w * 0.8)):
        skin[shirt_top + 4 :, x0 : x0 + int(w * 0.12)] = True
    # neck
    skin[cy + ry - 4 : shirt_top, cx - int(w * 0.08) : cx + int(w * 0.08)] = True
    # face
    rr, cc = draw.ellipse(cy, cx, ry, rx, shape=(h, w))
    skin[rr, cc] = True
    albedo[skin] = _to_linear(skin_rgb)
    # hair cap over the forehead and the sides of the head
    rr, cc = draw.ellipse(cy - int(ry * 0.55), cx, int(ry * 0.7), int(rx * 1.15), shape=(h, w))
    hair = np.zeros((h, w), bool)
    hair[rr, cc] = True
    hair &= np.arange(h)[:, None] < cy - int(ry * 0.35)
    albedo[hair] = _to_linear(HAIR_RGB)
    skin &= ~hair

    # smooth shading: -12 % to +8 % around the albedo, darker away from the face centre and to the right
    yy, xx = np.mgrid[0:h, 0:w]
    r2 = ((yy - cy) / (h * 0.5)) ** 2 + ((xx - cx) / (w * 0.5)) ** 2
    shading = 1.08 - 0.12 * np.clip(r2, 0, 1) - 0.08 * (xx / w)
    light = np.asarray(cast) * brightness
    lin = albedo * shading[..., None] * light
    # specular highlight on the cheek (a white-ish spot in the light's colour)
    spot = np.exp(-(((yy - (cy + ry * 0.1)) / 4.0) ** 2 + ((xx - (cx - rx * 0.45)) / 5.0) ** 2))
    lin = lin + 0.35 * spot[..., None] * light
    img = _to_srgb(lin)
    img = filters.gaussian(img, sigma=0.8, channel_axis=2, preserve_range=True)  # edge blending
    img = img + rng.normal(0.0, 2.0, img.shape)
    image = np.clip(np.rint(img), 0, 255).astype(np.uint8)

    mask = skin.copy()
    for _ in range(mask_bleed):
        mask[1:] |= mask[:-1].copy()
        mask[:-1] |= mask[1:].copy()
        mask[:, 1:] |= mask[:, :-1].copy()
        mask[:, :-1] |= mask[:, 1:].copy()
    return image, skin, mask


def run_case(case: Case) -> str:
    casts = {**MILD_CASTS, **STRONG_CASTS}
    image, _, mask = render_face(MONK_RGB[case.monk - 1], case.brightness, casts[case.cast], case.seed)
    return estimate_skin_tone(image, mask).group


def evaluate(cases: list[Case] | None = None) -> list[tuple[Case, str, str]]:
    """(case, true group, predicted group) for every case."""
    cases = all_cases() if cases is None else cases
    return [(c, true_group(c.monk), run_case(c)) for c in cases]


def monk_errors(cases: list[Case] | None = None) -> dict[str, Counter]:
    """|estimated - true| Monk tone -> number of cases, for normal light and strong casts."""
    casts = {**MILD_CASTS, **STRONG_CASTS}
    out: dict[str, Counter] = {"normal light": Counter(), "strong cast": Counter()}
    for c in all_cases() if cases is None else cases:
        image, _, mask = render_face(MONK_RGB[c.monk - 1], c.brightness, casts[c.cast], c.seed)
        out["normal light" if c.normal_light else "strong cast"][
            abs(estimate_skin_tone(image, mask).monk - c.monk)
        ] += 1
    return out


def monk_markdown(errors: dict[str, Counter]) -> str:
    """The Monk tone error table (the stated uncertainty, ``MONK_UNCERTAINTY``, comes from it)."""
    lines = ["**Monk tone error** (share of cases by |estimated - true| MST)", ""]
    lines += ["| light | cases | 0 | <= 1 | <= 2 | > 2 |", "|---|---|---|---|---|---|"]
    for name, counts in errors.items():
        n = max(1, sum(counts.values()))
        within = [sum(v for d, v in counts.items() if d <= k) / n for k in (0, 1, 2)]
        lines.append(f"| {name} | {n} | " + " | ".join(f"{w:.0%}" for w in within) + f" | {1 - within[2]:.0%} |")
    return "\n".join(lines)


def confusion(results: list[tuple[Case, str, str]]) -> dict[str, dict[str, int]]:
    counts = Counter((t, p) for _, t, p in results)
    return {t: {p: counts[(t, p)] for p in SKIN_GROUPS} for t in SKIN_GROUPS[:3]}


def accuracy(results: list[tuple[Case, str, str]]) -> float:
    return sum(t == p for _, t, p in results) / max(1, len(results))


def markdown(results: list[tuple[Case, str, str]]) -> str:
    lines = []
    for title, subset in (
        ("Normal light", [r for r in results if r[0].normal_light]),
        ("Strong cast", [r for r in results if not r[0].normal_light]),
    ):
        lines += [f"**{title}** ({len(subset)} cases, accuracy {accuracy(subset):.1%})", ""]
        lines += ["| true \\ predicted | " + " | ".join(SKIN_GROUPS) + " |", "|---" * (len(SKIN_GROUPS) + 1) + "|"]
        for t, row in confusion(subset).items():
            lines.append(f"| {t} | " + " | ".join(str(row[p]) for p in SKIN_GROUPS) + " |")
        lines.append("")
    lines += ["**Per MST tone** (share of cases with the right group)", ""]
    lines += ["| MST | hex | ITA | true group | normal light | strong cast |", "|---|---|---|---|---|---|"]
    for monk in range(1, 11):
        lab = MONK_LAB[monk - 1]
        hexv = "#" + "".join(f"{v:02x}" for v in MONK_RGB[monk - 1])
        n = [r for r in results if r[0].monk == monk and r[0].normal_light]
        s = [r for r in results if r[0].monk == monk and not r[0].normal_light]
        lines.append(
            f"| {monk} | {hexv} | {float(ita_degrees(lab[0], lab[2])):.1f} | {true_group(monk)} "
            f"| {accuracy(n):.0%} | {accuracy(s):.0%} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="also write the confusion matrices as JSON here")
    args = ap.parse_args(argv)
    results = evaluate()
    errors = monk_errors()
    print(markdown(results) + "\n\n" + monk_markdown(errors))
    if args.json:
        out = {
            "normal_light": confusion([r for r in results if r[0].normal_light]),
            "strong_cast": confusion([r for r in results if not r[0].normal_light]),
            "accuracy_normal_light": accuracy([r for r in results if r[0].normal_light]),
            "accuracy_strong_cast": accuracy([r for r in results if not r[0].normal_light]),
            "monk_error": {k: {str(d): n for d, n in sorted(v.items())} for k, v in errors.items()},
        }
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
