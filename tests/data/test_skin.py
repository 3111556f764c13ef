"""Which stored tones are kept and which are derived (``m2fp_batch.data.skin``), on a real photo."""

from __future__ import annotations

import numpy as np
from skimage import data

from m2fp_batch.annotate.palette import CIHP_CLASSES
from m2fp_batch.data.skin import count_sources, person_tones, present_sources
from m2fp_batch.labels import skin_tone_source

FACE, HAIR = CIHP_CLASSES.index("Face"), CIHP_CLASSES.index("Hair")


def test_stored_source_rules():
    assert skin_tone_source(None) is None and skin_tone_source({}) is None and skin_tone_source({"group": None}) is None
    assert skin_tone_source({"group": "dark"}) == "measured"  # schema v2: the job measured it
    assert skin_tone_source({"group": "dark", "source": "reviewed"}) == "reviewed"
    assert skin_tone_source({"group": "unknown", "source": None}) is None  # v3: a reviewer-added person
    assert skin_tone_source({"group": "dark", "source": "guessed"}) is None  # not a source we know


def test_missing_tones_are_derived_from_the_ground_truth_and_stored_ones_kept():
    image = data.astronaut().copy()  # a real photo; person 2's face is painted a dark tone
    semantic, humans = np.zeros(image.shape[:2], np.int64), np.zeros(image.shape[:2], np.int64)
    for pid, (y0, x0) in enumerate(((40, 40), (300, 300)), start=1):
        humans[y0 : y0 + 120, x0 : x0 + 80] = pid
        semantic[y0 : y0 + 20, x0 : x0 + 80] = HAIR
        semantic[y0 + 20 : y0 + 120, x0 : x0 + 80] = FACE
    image[320:420, 300:380] = (110, 72, 52)
    stored = [{"group": "light", "ita": 50.0, "source": "reviewed"}, {"group": "unknown", "source": None}]
    tones = person_tones(image, semantic, humans, stored)
    assert {k: v for k, v in tones[0].items() if v is not None} == stored[0]  # kept as it is
    assert set(tones[0]) == set(tones[1])  # every person's tone has the same keys (Ray records, JSON)
    assert tones[1]["source"] == "derived" and tones[1]["group"] == "dark" and tones[1]["pixels"] >= 200
    # a person id the data has no entry for at all is derived too
    humans[200:260, 200:240], semantic[200:260, 200:240] = 3, FACE
    assert person_tones(image, semantic, humans, stored)[2]["source"] == "derived"
    # counts: only people present in the map, every source named
    humans[humans == 1] = 0
    sources = present_sources(humans, ["reviewed", "derived", "derived"])
    assert sources == ["derived", "derived"]
    assert count_sources([sources, ["measured"]]) == {"measured": 1, "derived": 2, "reviewed": 0}
