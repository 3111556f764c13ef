"""Loading: safe unpickling, strict keys, clear errors, provenance."""

import hashlib
import logging
import os
import shutil

import pytest
import torch

from m2fp_batch.inference import M2FPParser, ModelLoadError, load_model
from m2fp_batch.inference.loading import UntrustedCheckpointError, looks_like_model_id
from m2fp_batch.model.checkpoint import CheckpointMismatchError, remap_state_dict


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def _state(path):
    return torch.load(path / "pytorch_model.pt", weights_only=True)["model"]


def test_loads_and_records_sha256(tiny_model_dir):
    loaded = load_model(str(tiny_model_dir))
    net, cfg, info = loaded.net, loaded.config, loaded.info
    digest = hashlib.sha256((tiny_model_dir / "pytorch_model.pt").read_bytes()).hexdigest()
    assert info.checkpoint_sha256 == digest
    assert info.model_id is None and info.model_dir == str(tiny_model_dir)
    assert not net.training
    assert cfg.classes[-1] == "Human"


def test_missing_keys_are_listed(tiny_model_dir, tmp_path):
    d = _copy(tiny_model_dir, tmp_path / "m")
    sd = _state(d)
    del sd["sem_seg_head.predictor.class_embed.weight"]
    del sd["backbone.stem.conv1.weight"]
    torch.save({"model": sd}, d / "pytorch_model.pt")
    with pytest.raises(CheckpointMismatchError) as e:
        load_model(str(d))
    assert "class_embed.weight" in str(e.value) and "backbone.stem.conv1.weight" in str(e.value)


def test_wrong_shapes_are_listed(tiny_model_dir, tmp_path):
    d = _copy(tiny_model_dir, tmp_path / "m")
    sd = _state(d)
    sd["sem_seg_head.predictor.query_feat.weight"] = torch.zeros(3, 3)
    torch.save({"model": sd}, d / "pytorch_model.pt")
    with pytest.raises(CheckpointMismatchError, match=r"query_feat.weight: checkpoint \(3, 3\)"):
        load_model(str(d))


def test_unexpected_keys_warn(tiny_model_dir, tmp_path, caplog):
    d = _copy(tiny_model_dir, tmp_path / "m")
    sd = _state(d)
    sd["extra.head.weight"] = torch.zeros(2)
    torch.save({"model": sd}, d / "pytorch_model.pt")
    with caplog.at_level(logging.WARNING):
        info = load_model(str(d)).info
    assert info.unexpected_keys == ("extra.head.weight",)
    assert "extra.head.weight" in caplog.text


class Payload:
    """Any non-tensor object: unpickling it needs arbitrary code."""

    def __init__(self):
        self.note = "not a tensor"


def test_pickle_checkpoint_refused_unless_trusted(tiny_model_dir, tmp_path):
    d = _copy(tiny_model_dir, tmp_path / "m")
    sd = _state(d)
    torch.save({"model": sd, "meta": Payload()}, d / "pytorch_model.pt")
    with pytest.raises(UntrustedCheckpointError, match="--trust-checkpoint"):
        load_model(str(d))
    net = load_model(str(d), trust_checkpoint=True).net
    torch.testing.assert_close(
        net.state_dict()["sem_seg_head.predictor.query_feat.weight"], sd["sem_seg_head.predictor.query_feat.weight"]
    )


def test_truncated_checkpoint(tiny_model_dir, tmp_path):
    d = _copy(tiny_model_dir, tmp_path / "m")
    data = (d / "pytorch_model.pt").read_bytes()
    (d / "pytorch_model.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="truncated or corrupt"):
        load_model(str(d))


def test_missing_files_and_bad_paths(tmp_path):
    with pytest.raises(ModelLoadError, match="configuration.json"):
        load_model(str(tmp_path))
    with pytest.raises(ModelLoadError, match="no such directory"):
        load_model(str(tmp_path / "nope" / "deeper"))
    assert looks_like_model_id("damo/cv_resnet101_image-multiple-human-parsing")
    assert not looks_like_model_id("./rel/dir")


def test_remap_strips_data_parallel_prefix():
    t = torch.zeros(1)
    assert remap_state_dict({"module.backbone.x": t, "y": t}) == {"backbone.x": t, "y": t}


@pytest.mark.slow
def test_unknown_id_offline_names_the_id_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ModelLoadError) as e:
        M2FPParser.from_pretrained("no-such-owner/no-such-m2fp-model", cache_dir=str(tmp_path / "cache"))
    msg = str(e.value)
    assert "no-such-owner/no-such-m2fp-model" in msg and "--model DIR" in msg
    assert os.environ["MODELSCOPE_CACHE"] == str(tmp_path / "cache")
