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


def test_every_subcommand_follows_the_vocabulary():
    from m2fp_batch.cli_docs import vocabulary_problems

    assert vocabulary_problems() == []


def test_the_vocabulary_check_names_each_break():
    """The breaks the CLI had (issue 25), rebuilt in one parser: the check names every one of them."""
    import argparse

    from m2fp_batch.cli_docs import parser_problems
    from m2fp_batch.settings import add_engine_arguments

    p = argparse.ArgumentParser(prog="m2fp-batch old")
    p.add_argument("source", metavar="OUT")
    p.add_argument("--out", required=True)
    p.add_argument("--include-errors", choices=["no"], default="no")
    p.add_argument("--model")  # declared again, and no --revision
    add_engine_arguments(p, only=("short_edge",))
    problems = parser_problems(p)
    assert len(problems) == 4, problems
    assert any("positional 'OUT'" in x for x in problems)
    assert any("--include-errors accepts a single value" in x for x in problems)
    assert any("no --revision" in x for x in problems)
    assert any("declares --model itself" in x for x in problems)
    dest = argparse.ArgumentParser(prog="m2fp-batch dest")
    dest.add_argument("dest", metavar="DEST")
    dest.add_argument("--out")
    assert parser_problems(dest) == ["m2fp-batch dest: positional DEST beside --out (two names for a destination)"]


def test_the_summary_check_finds_prose_on_stdout():
    from m2fp_batch.cli_docs import summary_problems

    source = (
        "import json, sys\n"
        "def main(args):\n"
        "    print(json.dumps({'a': 1}))\n"
        "    print('oops', file=sys.stderr)\n"
        "    if args.human:\n"
        "        print('prose')\n"
        "    print(table() if args.human else json.dumps({}))\n"
        "    print(f'report: {args.out}')\n"
    )
    assert summary_problems(source, "m.py") == [
        "m.py:8: prints prose on stdout (print json.dumps(...), prose under --human)"
    ]
