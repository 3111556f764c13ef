"""Model dirs for tests: a tiny M2FP configuration with seeded random weights, and the
full-size seed-3 checkpoint of the parity fixture. Both are written by the official
fixture's ``gen_checkpoint.py`` (shared/reference), from the key list of our own network."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("M2FP_SHARED_DIR", REPO.parent / "shared")).resolve()
REFERENCE = SHARED / "reference"
GEN_CHECKPOINT = REFERENCE / "gen_checkpoint.py"


def tiny_config() -> dict:
    """The official configuration.json with every architecture number shrunk."""
    cfg = copy.deepcopy(json.loads((REFERENCE / "configuration.json").read_text()))
    m = cfg["model"]
    m["backbone"].update(stem_out_channels=16, res2_out_channels=32, width_per_group=8, num_blocks=[1, 1, 1, 1])
    m["encoder"].update(
        conv_dim=32, mask_dim=32, transformer_nheads=4, transformer_dim_feedforward=64, transformer_enc_layers=1
    )
    m["decoder"].update(hidden_dim=32, mask_dim=32, nheads=4, num_queries=20, dim_feedforward=64, dec_layers=3)
    return cfg


def write_model_dir(out: Path, config: dict, seed: int) -> Path:
    """Write configuration.json and pytorch_model.pt with gen_checkpoint.py's seeded values."""
    from m2fp_batch.model import build_m2fp

    out.mkdir(parents=True, exist_ok=True)
    cfg_path = out / "config.src.json"
    cfg_path.write_text(json.dumps(config, indent=2))
    sd = build_m2fp(config).state_dict()
    keys = out / "keys.tsv"
    with keys.open("w") as f:
        f.write("key\tshape\tdtype\n")
        for k, v in sd.items():
            f.write(f"{k}\t{tuple(v.shape)}\t{str(v.dtype).replace('torch.', '')}\n")
    subprocess.run(
        [
            sys.executable,
            str(GEN_CHECKPOINT),
            "--keys",
            str(keys),
            "--config",
            str(cfg_path),
            "--seed",
            str(seed),
            "--out",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    cfg_path.unlink()
    keys.unlink()
    return out


def write_tiny_model(out: Path, seed: int = 0) -> Path:
    return write_model_dir(out, tiny_config(), seed)


def write_reference_model(out: Path, seed: int = 3) -> Path:
    """The fixture's full-size checkpoint, exactly as the official outputs were made."""
    subprocess.run(
        [
            sys.executable,
            str(GEN_CHECKPOINT),
            "--keys",
            str(REFERENCE / "state_dict_keys.tsv"),
            "--config",
            str(REFERENCE / "configuration.json"),
            "--seed",
            str(seed),
            "--out",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    return out


if __name__ == "__main__":  # python tests/tiny_model.py OUT_DIR [tiny|reference]
    kind = sys.argv[2] if len(sys.argv) > 2 else "tiny"
    path = (write_tiny_model if kind == "tiny" else write_reference_model)(Path(sys.argv[1]))
    print(path)
