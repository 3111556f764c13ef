"""Settings: the documented YAML lists every setting with its default; overrides and checks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from m2fp_batch.pipeline.config import JobSettings, JobSettingsError, parse_set
from m2fp_batch.settings import EngineSettings
from m2fp_batch.storage import S3Options

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_default_yaml_documents_every_setting():
    doc = yaml.safe_load((CONFIGS / "default.yaml").read_text())
    defaults = JobSettings().to_dict(redact=False)
    assert set(doc) == set(defaults) - {"overwrite"}
    for k, v in doc.items():
        assert v == defaults[k], k


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_validate(path):
    JobSettings.from_sources(str(path), {"input": "in", "output": "out"})


def test_precedence_and_coercion(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("batch_size: 3\nshard_size: 10\nmax_actors: null\n")
    cfg = JobSettings.from_sources(
        str(f), {"input": "a", "output": "b", **parse_set(["shard_size=20", "cpus_per_actor=1.5"])}
    )
    assert (cfg.batch_size, cfg.shard_size, cfg.cpus_per_actor, cfg.max_actors) == (3, 20, 1.5, None)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"output": None}, "no output"),
        ({"min_actors": 3, "max_actors": 2}, "max_actors"),
        ({"cpus_per_actor": 0}, "cpus_per_actor must be > 0"),
        ({"compression": "zip"}, "compression must be one of"),
        ({"batch_size": 2.5}, "batch_size: expected int"),
        ({"overwrite": "perhaps"}, "overwrite: expected bool"),
        ({"uri_column": "id", "image_id_column": "id"}, "must differ"),
    ],
)
def test_bad_values_name_the_setting(overrides, message):
    with pytest.raises(JobSettingsError, match=message):
        JobSettings.from_sources(None, {"input": "a", "output": "b", **overrides})


def test_secrets_are_redacted_and_do_not_change_what_resume_compares():
    a = JobSettings(input="a", output="b", s3_secret_key="hunter2", s3_access_key="AK")
    b = JobSettings(input="a", output="b")
    assert "hunter2" not in str(a.to_dict()) and a.to_dict()["s3_secret_key"] == "***"
    assert a.engine.label_hash() == b.engine.label_hash() and a.resume_settings() == b.resume_settings()
    # a decode guard decides which photos get labels: compared on resume, not in the label hash
    guarded = JobSettings.from_sources(None, {"input": "a", "output": "b", "max_pixels": 10})
    assert guarded.resume_settings() != b.resume_settings() and guarded.engine.label_hash() == b.engine.label_hash()
    assert JobSettings.from_sources(None, {"input": "a", "output": "b", "shard_size": 9}).resume_settings() != (
        b.resume_settings()
    )


def test_engine_keys_are_flat_and_old_names_still_work(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("model_revision: v1.0.2\nshort_edge: 512\nadaptive_brightness: true\n")
    cfg = JobSettings.from_sources(str(f), {"input": "a", "output": "b", **parse_set(["max_size=1000"])})
    assert cfg.engine == EngineSettings(revision="v1.0.2", short_edge=512, adaptive_brightness=True, max_size=1000)
    assert cfg.to_dict()["revision"] == "v1.0.2" and cfg.to_dict()["short_edge"] == 512
    with pytest.raises(JobSettingsError, match=r"short_edge \(--short-edge\) must be an integer >= 1"):
        JobSettings.from_sources(None, {"input": "a", "output": "b", "short_edge": 0})


def test_s3_options_from_environment(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AK")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "SK")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:8333")
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    o = S3Options.from_config(JobSettings(s3_region="eu-west-1"))
    assert (o.access_key, o.secret_key, o.endpoint, o.region) == ("AK", "SK", "http://127.0.0.1:8333", "eu-west-1")
    o2 = S3Options.from_config(JobSettings(s3_endpoint="http://10.0.0.1:9000"))
    assert o2.endpoint == "http://10.0.0.1:9000"


def test_resume_compares_label_settings_guards_and_shard_size():
    from m2fp_batch.pipeline.resume import check_same_job

    cfg = JobSettings.from_sources(None, {"input": "/in", "output": "/out"})
    saved = {"job_id": "j", "input": "/in", "checkpoint_sha256": "c" * 64, "config_hash": cfg.engine.label_hash()}
    check_same_job({**saved, "settings": cfg.resume_settings()}, cfg, "c" * 64)  # the same job: resumes
    for key, value in (("short_edge", 512), ("max_pixels", 10), ("shard_size", 3)):
        other = {**cfg.resume_settings(), key: value}
        with pytest.raises(JobSettingsError, match=f"other settings {{'{key}'"):
            check_same_job({**saved, "settings": other}, cfg, "c" * 64)
    # an output of an older version: the old key name is understood, the other hash is refused in words
    old = {("model_revision" if k == "revision" else k): v for k, v in cfg.resume_settings().items()}
    with pytest.raises(JobSettingsError, match="version whose config_hash covers other settings"):
        check_same_job({**saved, "settings": old, "config_hash": "0" * 16}, cfg, "c" * 64)


@pytest.mark.parametrize(
    ("config", "extra", "sentence"),
    [
        (
            "batch_size: 2\nshard_size: 8\nbatch_size: 4\n",
            [],
            "m2fp-batch run: config file '{tmp}/c.yaml': the key 'batch_size' is given twice (line 1 and line 3); "
            "keep one",
        ),
        (
            "shard_size: 8\n",
            ["--set", "s3_endpoint={a: 1, a: 2}"],
            "m2fp-batch run: --set 's3_endpoint={a: 1, a: 2}': the key 'a' is given twice (line 1 and line 1); "
            "keep one",
        ),
    ],
)
def test_duplicate_key_is_one_sentence_and_exit_2(tmp_path, config, extra, sentence):
    """The last value does not silently win: the job refuses before it lists or starts Ray."""
    (tmp_path / "c.yaml").write_text(config)
    argv = ["run", "--config", str(tmp_path / "c.yaml"), "--input", str(tmp_path), "--output", str(tmp_path / "o")]
    env = {**os.environ, "PYTHONPATH": str(CONFIGS.parent), "RAY_USAGE_STATS_ENABLED": "0"}
    proc = subprocess.run(
        [sys.executable, "-m", "m2fp_batch.cli", *argv, *extra], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [sentence.replace("{tmp}", str(tmp_path))]
    assert not (tmp_path / "o").exists()
