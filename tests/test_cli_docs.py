"""docs/cli.md is the parsers' --help, current: a flag changed without regenerating fails here."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from m2fp_batch.cli_docs import COLUMNS, REGENERATE, help_texts, markdown

REPO = Path(__file__).resolve().parents[1]


def test_committed_cli_docs_are_current():
    committed = (REPO / "docs" / "cli.md").read_text()
    assert committed == markdown(), f"docs/cli.md is stale: run `{REGENERATE}` (or `make docs`)"


def test_cli_docs_cover_every_subcommand():
    from m2fp_batch.cli import SUBCOMMANDS

    progs = set(help_texts())
    assert {f"m2fp-batch {name}" for name in SUBCOMMANDS} <= progs
    doc = (REPO / "docs" / "cli.md").read_text()
    assert all(f"\n## {prog}\n" in doc for prog in progs)


def test_cli_docs_block_is_what_help_prints():
    """The block of `run` equals `COLUMNS=100 m2fp-batch run --help` from the real entry point."""
    env = {**os.environ, "COLUMNS": str(COLUMNS), "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-m", "m2fp_batch.cli", "run", "--help"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert out.startswith("usage: m2fp-batch run")
    assert f"```text\n{out.rstrip()}\n```" in (REPO / "docs" / "cli.md").read_text()
