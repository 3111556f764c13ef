"""What ``make image`` built: its config and history (labels, user, entrypoint, no secret), what it holds
(the torch CPU pin, Ray, no review tools, jobs/configs/deploy), and the deploy files that name it."""

from __future__ import annotations

import json
import re

import pytest
import tomllib
import yaml
from container import MODEL_MOUNT, REPO, podman

pytestmark = [pytest.mark.container, pytest.mark.slow, pytest.mark.timeout(1800)]

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
DEPLOY_FILES = ("rayjob.yaml", "rayservice.yaml")
# what a secret looks like in an image's config or history: cloud keys, tokens, passwords, private keys
SECRET = re.compile(
    r"AWS_[A-Z_]+|AKIA[0-9A-Z]{16}|(?i:token|secret|passw(or)?d|api[_-]?key|private[_-]?key|credential)"
    r"|-----BEGIN [A-Z ]*PRIVATE KEY"
)


def _inspect(image) -> dict:
    return json.loads(podman("image", "inspect", image.name))[0]


def _history(image) -> list[dict]:
    return json.loads(podman("history", "--no-trunc", "--format", "json", image.name))


def _pods(doc: dict) -> list[dict]:
    """Every pod template of a RayJob or RayService: the head's and each worker group's."""
    cluster = doc["spec"].get("rayClusterSpec") or doc["spec"]["rayClusterConfig"]
    return [cluster["headGroupSpec"]["template"]["spec"]] + [g["template"]["spec"] for g in cluster["workerGroupSpecs"]]


def test_config_labels_user_and_entrypoint(image):
    info = _inspect(image)
    config, labels = info["Config"], info["Labels"]
    assert image.name == f"localhost/m2fp-batch:{PYPROJECT['version']}"
    assert labels["org.opencontainers.image.version"] == PYPROJECT["version"]
    assert labels["org.opencontainers.image.source"] and labels["org.opencontainers.image.revision"]
    assert labels["org.opencontainers.image.licenses"] == PYPROJECT["license"]["text"]
    assert labels["ai.m2fp.weights.license"] == "CC-BY-NC-4.0"
    assert config["Entrypoint"] == ["m2fp-batch"] and config["WorkingDir"] == "/app"
    assert config["User"] == "m2fp"
    assert len(info["RootFS"]["Layers"]) <= 3, "few layers: storage without overlays copies each one"
    print(f"{image.name}: {info['Size'] / 1e6:.0f} MB, {len(info['RootFS']['Layers'])} layers")


def test_no_secret_in_config_or_history(image):
    info = _inspect(image)
    config = info["Config"]
    texts = [*config.get("Env", []), *(f"{k}={v}" for k, v in info["Labels"].items())]
    texts += [json.dumps(config.get(k)) for k in ("Cmd", "Entrypoint", "Volumes", "ExposedPorts")]
    texts += [f"{step.get('CreatedBy', '')} {step.get('comment', '')}" for step in _history(image)]
    assert any("COPY" in t and "/opt/venv" in t for t in texts), texts  # the history is there to read
    found = [t[:200] for t in texts if SECRET.search(t)]
    assert not found, f"secret-looking text in the image's config or history: {found}"
    # nothing of the host's home or Ray token was copied into the image
    res = image.run("-c", "ls -A /home/m2fp /root /app/deploy 2>&1", entrypoint="sh")
    assert ".ray" not in res.stdout and "auth_token" not in res.stdout, res.stdout


def test_image_holds_the_torch_pin_ray_and_no_review_tools(image):
    code = (
        "import json, importlib.util as u, torch, ray, m2fp_batch, pathlib; "
        "print(json.dumps({'torch': torch.__version__, 'cuda': torch.version.cuda, 'ray': ray.__version__, "
        "'review': [m for m in ('fiftyone', 'label_studio', 'datumaro') if u.find_spec(m)], "
        "'serve': u.find_spec('ray.serve') is not None, 'app': sorted(p.name for p in pathlib.Path('/app').iterdir()), "
        "'models': sorted(p.name for p in pathlib.Path('/models').iterdir())}))"
    )
    res = image.run("-c", code, entrypoint="python")
    assert res.returncode == 0, res.stderr[-3000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    torch_pin = next(d for d in PYPROJECT["dependencies"] if d.startswith("torch=="))
    assert got["torch"].split("+")[0] == torch_pin.split("==")[1] and got["cuda"] is None, got
    assert got["review"] == [] and got["serve"], got
    assert got["app"] == ["configs", "deploy", "jobs"] and got["models"] == [], "no model baked in by default"
    for name in DEPLOY_FILES:
        doc = yaml.safe_load((REPO / "deploy" / name).read_text())
        cluster = doc["spec"].get("rayClusterSpec") or doc["spec"]["rayClusterConfig"]
        assert cluster["rayVersion"] == got["ray"], f"deploy/{name}: rayVersion != the image's Ray"


def test_deploy_files_name_the_image_entrypoint_and_mounts_tested(image):
    """Image repository and tag, the model's mount and the entrypoint: those the container tests ran."""
    repo_tag = image.name.split("/", 1)[1]  # m2fp-batch:VERSION; the registry is the user's
    for name in DEPLOY_FILES:
        doc = yaml.safe_load((REPO / "deploy" / name).read_text())
        for pod in _pods(doc):
            (container,) = pod["containers"]
            assert container["image"].rsplit("/", 1)[-1] == repo_tag, f"deploy/{name}: {container['image']}"
            assert container["workingDir"] == _inspect(image)["Config"]["WorkingDir"]
            (mount,) = container["volumeMounts"]
            assert mount["mountPath"] == MODEL_MOUNT and mount["readOnly"] is True, f"deploy/{name}: {mount}"
            assert {v["name"] for v in pod["volumes"]} == {mount["name"]}
    job = yaml.safe_load((REPO / "deploy" / "rayjob.yaml").read_text())["spec"]["entrypoint"].split()
    assert job[:2] == ["python", "jobs/parse_images.py"] and job[job.index("--model") + 1] == MODEL_MOUNT
    res = image.run("-c", f"test -f {job[1]} && test -f {job[job.index('--config') + 1]}", entrypoint="sh")
    assert res.returncode == 0, "the RayJob's entrypoint and config are in the image's WORKDIR"
    serve = yaml.safe_load(yaml.safe_load((REPO / "deploy" / "rayservice.yaml").read_text())["spec"]["serveConfigV2"])
    (app,) = serve["applications"]
    assert app["import_path"] == "m2fp_batch.serve.cli:application" and app["args"]["model"] == MODEL_MOUNT
