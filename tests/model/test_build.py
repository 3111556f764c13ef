"""The network built from configuration.json has exactly the official state-dict keys."""

import json

import pytest
from tiny_model import REFERENCE, tiny_config

from m2fp_batch.model import build_m2fp
from m2fp_batch.model.build import ModelConfigError


def _official_keys():
    rows = (REFERENCE / "state_dict_keys.tsv").read_text().splitlines()[1:]
    return {k: s for k, s, _ in (r.split("\t") for r in rows)}


def test_full_config_has_official_keys_and_shapes():
    net = build_m2fp(json.loads((REFERENCE / "configuration.json").read_text()))
    sd = net.state_dict()
    official = _official_keys()
    assert set(sd) == set(official)
    assert {k: str(tuple(v.shape)) for k, v in sd.items()} == official
    assert abs(sum(p.numel() for p in net.parameters()) / 1e6 - 63.12) < 0.01


def test_architecture_numbers_come_from_config():
    cfg = tiny_config()
    net = build_m2fp(cfg)
    assert net.num_queries == 20
    assert len(net.sem_seg_head.predictor.transformer_self_attention_layers) == 3
    assert net.backbone.stem.conv1.out_channels == 8
    cfg["model"]["decoder"]["dec_layers"] = 5
    assert len(build_m2fp(cfg).sem_seg_head.predictor.transformer_ffn_layers) == 5


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda m: m.pop("decoder"), "lacks"),
        (lambda m: m["backbone"].update(depth=34), "depth"),
        (lambda m: m.update(single_human=True), "single_human"),
        (lambda m: m["classes"].pop(), "class names"),
        (lambda m: m["encoder"].pop("conv_dim"), "conv_dim"),
    ],
)
def test_bad_config_is_explained(mutate, message):
    cfg = tiny_config()
    cfg["model"]["backbone"].pop("num_blocks")
    mutate(cfg["model"])
    with pytest.raises(ModelConfigError, match=message):
        build_m2fp(cfg)
