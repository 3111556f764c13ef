"""The engine on the tiny model: batching never changes a result; result invariants."""

import numpy as np
import pytest
from PIL import Image

from m2fp_batch.decode import decode_image
from m2fp_batch.inference import M2FPParser, load_image


def _same(a, b):
    np.testing.assert_array_equal(a.semantic, b.semantic)
    np.testing.assert_allclose(a.semantic_score, b.semantic_score, atol=1e-3)  # float16: one ulp at 1
    np.testing.assert_allclose(a.pred_logits, b.pred_logits, atol=1e-4)
    assert list(a.parts.labels) == list(b.parts.labels)
    assert list(a.humans.labels) == list(b.humans.labels)


def _close(a, b):
    """Equal up to float rounding (oneDNN picks channels-last kernels by batch size, and a pixel
    near a threshold of the random tiny model can flip): the parity criteria's tolerance."""
    assert (a.semantic == b.semantic).mean() >= 0.999
    np.testing.assert_allclose(a.pred_logits, b.pred_logits, atol=5e-2, rtol=1e-3)
    assert abs(len(a.parts) - len(b.parts)) <= 1 and abs(len(a.humans) - len(b.humans)) <= 1


@pytest.mark.parametrize("fast_backbone", [False, True], ids=["official-order", "folded-channels-last"])
def test_batching_does_not_change_results(tiny_model_dir, astronaut, fast_backbone):
    single = M2FPParser.from_pretrained(str(tiny_model_dir), max_batch=1, fast_backbone=fast_backbone)
    batched = M2FPParser.from_pretrained(str(tiny_model_dir), max_batch=4, fast_backbone=fast_backbone)
    imgs = [astronaut, astronaut[:, ::-1].copy(), astronaut[:300], astronaut[::2, ::2].copy()]
    one = [single.parse_one(im) for im in imgs]
    many = batched.parse(imgs)
    assert [r.timings["batch_size"] for r in many] == [3, 3, 1, 3]  # 512x512, flipped, 300x512 alone, 256x256->640
    for a, b in zip(one, many):
        (_close if fast_backbone else _same)(a, b)  # the default engine is batch-invariant, bit for bit


def test_result_invariants(tiny_parser, astronaut):
    r = tiny_parser.parse_one(astronaut)
    h, w = astronaut.shape[:2]
    assert r.image_size == (h, w) and r.input_size == (640, 640) and r.padded_size == (640, 640)
    assert r.semantic.shape == (h, w) and r.semantic.dtype == np.uint8 and r.semantic.max() < 20
    assert r.semantic_score.shape == (h, w) and (r.semantic_score >= 0).all()
    assert r.semantic_score.dtype == np.float16  # 2 bytes a pixel (the actor memory budget)
    assert len(r.persons) == len(r.humans)
    for i, p in enumerate(r.persons):
        full = r.humans.mask(i)
        np.testing.assert_array_equal(p.full_mask((h, w)), full)
        x0, y0, x1, y1 = p.bbox
        assert full[y0:y1, x0:x1].sum() == full.sum() == p.area
        np.testing.assert_array_equal(p.part_map, np.where(p.mask, r.semantic[y0:y1, x0:x1], 0))
    assert all(0 < lab < 20 for lab in r.parts.labels) and all(s >= 0.1 for s in r.parts.scores)
    assert all(lab == 20 for lab in r.humans.labels) and all(s > 0.1 for s in r.humans.scores)


def test_decode_image_modes_and_exif(tmp_path, astronaut):
    rgba = np.dstack([astronaut, np.full(astronaut.shape[:2], 128, np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "a.png")
    np.testing.assert_array_equal(decode_image((tmp_path / "a.png").read_bytes()), astronaut)
    Image.fromarray(astronaut[..., 0]).save(tmp_path / "g.png")
    g = decode_image((tmp_path / "g.png").read_bytes())
    assert g.shape == astronaut.shape and (g[..., 0] == g[..., 2]).all()
    im = Image.fromarray(astronaut[:, :400])
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    im.save(tmp_path / "r.jpg", exif=exif)
    assert decode_image((tmp_path / "r.jpg").read_bytes()).shape == (400, 512, 3)


def test_load_image_is_the_decoder_with_a_deprecation(tmp_path, astronaut):
    Image.fromarray(astronaut).save(tmp_path / "a.png")
    with pytest.warns(DeprecationWarning, match="decode_image"):
        np.testing.assert_array_equal(load_image(tmp_path / "a.png"), astronaut)


def test_rejects_non_rgb_arrays(tiny_parser):
    with pytest.raises(ValueError, match="uint8 RGB"):
        tiny_parser.parse([np.zeros((10, 10), np.uint8)])
