"""``docs/cli.md``: every subcommand's ``--help``, generated from the argparse parsers.

Regenerate with ``python -m m2fp_batch.cli_docs > docs/cli.md`` (or ``make docs``);
``tests/test_cli_docs.py`` fails when the committed file differs from this output. Each block is
exactly what ``COLUMNS=100 m2fp-batch CMD --help`` prints.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["COLUMNS", "REGENERATE", "help_texts", "markdown"]

COLUMNS = 100  # the terminal width the help is formatted for (argparse reads $COLUMNS)
REGENERATE = "python -m m2fp_batch.cli_docs > docs/cli.md"


@contextmanager
def _columns(width: int) -> Iterator[None]:
    """``$COLUMNS`` set to ``width`` while argparse formats, then restored."""
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(width)
    try:
        yield
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old


def _walk(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """The parser, then its subcommands' parsers depth first, in the order they were added."""
    yield parser
    seen: set[int] = set()
    for action in parser._actions:  # argparse keeps subparsers only here
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                if id(sub) not in seen:  # an alias maps to the same parser
                    seen.add(id(sub))
                    yield from _walk(sub)


def help_texts(width: int = COLUMNS) -> dict[str, str]:
    """``prog`` -> its ``--help`` text at ``width`` columns, for the top level and every subcommand."""
    from m2fp_batch.cli import build_parser

    with _columns(width):
        return {p.prog: p.format_help() for p in _walk(build_parser())}


def _anchor(prog: str) -> str:
    return prog.replace(" ", "-")


def markdown(width: int = COLUMNS) -> str:
    """The whole of ``docs/cli.md``."""
    texts = help_texts(width)
    lines = [
        "# Command line reference",
        "",
        f"<!-- Generated from the parsers by `{REGENERATE}` (`make docs`). Do not edit by hand:",
        "     tests/test_cli_docs.py fails when this file differs from the parsers. -->",
        "",
        f"Each block is what `COLUMNS={width} m2fp-batch CMD --help` prints. The walk-through of the",
        "commands is in the [README](../README.md).",
        "",
    ]
    lines += [f"- [`{prog}`](#{_anchor(prog)})" for prog in texts]
    for prog, text in texts.items():
        lines += ["", f"## {prog}", "", "```text", text.rstrip("\n"), "```"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
