"""``docs/cli.md``: every subcommand's ``--help``, generated from the argparse parsers, and the CLI's vocabulary.

Regenerate with ``python -m m2fp_batch.cli_docs > docs/cli.md`` (or ``make docs``);
``tests/test_cli_docs.py`` fails when the committed file differs from this output. Each block is
exactly what ``COLUMNS=100 m2fp-batch CMD --help`` prints.

:func:`vocabulary_problems` is the check of one vocabulary across the subcommands (the same test
fails on any problem it lists):

* a positional is named for what it is, one of :data:`POSITIONALS` (``LABELS`` for a job output,
  never ``OUT`` or ``DEST`` beside ``--out``, which names every destination);
* a subcommand that loads a model takes the shared engine flags (``settings.add_engine_arguments``:
  at least ``--model`` and ``--revision``), never its own declaration of one of them;
* no flag accepts a single value (a choice of one is a boolean flag, or no flag);
* every print on stdout of a subcommand's module is JSON (``json.dumps``), prose only under ``--human``.

Deprecated spellings kept for one release are hidden from ``--help`` (``argparse.SUPPRESS``) and
not checked.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "COLUMNS",
    "POSITIONALS",
    "REGENERATE",
    "help_texts",
    "markdown",
    "parser_problems",
    "summary_problems",
    "vocabulary_problems",
]

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


# The names a positional may have, and what each one is.
POSITIONALS = {
    "LABELS": "a job output (or an export-reviewed dir): what `run` wrote",
    "DATASET": "a FiftyOne review dataset's name",
    "IMAGE": "a photo file",
}


def _shown(action: argparse.Action) -> bool:
    return action.help != argparse.SUPPRESS and not isinstance(
        action, (argparse._HelpAction, argparse._SubParsersAction)
    )


def _positional_problems(parser: argparse.ArgumentParser) -> list[str]:
    flags = {o for a in parser._actions for o in a.option_strings}
    problems = []
    for a in parser._actions:
        if a.option_strings or not _shown(a):
            continue
        name = a.metavar or a.dest
        if name == "DEST" and "--out" in flags:
            problems.append(f"{parser.prog}: positional DEST beside --out (two names for a destination)")
        elif name not in POSITIONALS:
            problems.append(f"{parser.prog}: positional {name!r} is not one of {', '.join(POSITIONALS)}")
    return problems


def _engine_problems(parser: argparse.ArgumentParser) -> list[str]:
    from m2fp_batch.settings import ENGINE_GROUP, MODEL_FIELDS, EngineSettings

    engine_flags = {"--" + n.replace("_", "-") for n in EngineSettings.names()}
    shared = {
        o for g in parser._action_groups if g.title == ENGINE_GROUP for a in g._group_actions for o in a.option_strings
    }
    flags = {o for a in parser._actions for o in a.option_strings}
    if "--model" not in flags:
        return []
    problems = [
        f"{parser.prog}: loads a model but has no {flag} (settings.add_engine_arguments)"
        for flag in ("--" + n.replace("_", "-") for n in MODEL_FIELDS)
        if flag not in flags
    ]
    problems += [
        f"{parser.prog}: declares {flag} itself instead of taking the shared engine flag"
        for flag in sorted((flags & engine_flags) - shared)
    ]
    return problems


def parser_problems(parser: argparse.ArgumentParser) -> list[str]:
    """What breaks the vocabulary in one parser (its positionals, flags and engine flags)."""
    problems = _positional_problems(parser) + _engine_problems(parser)
    for a in parser._actions:
        if a.option_strings and _shown(a) and a.choices is not None and len(a.choices) == 1:
            problems.append(f"{parser.prog}: {a.option_strings[-1]} accepts a single value ({list(a.choices)[0]!r})")
    return problems


def _mentions_human(node: ast.AST) -> bool:
    return any(isinstance(n, (ast.Name, ast.Attribute)) and "human" in ast.unparse(n) for n in ast.walk(node))


def _is_json(node: ast.AST) -> bool:
    return isinstance(node, ast.Call) and ast.unparse(node.func) == "json.dumps"


def summary_problems(source: str, where: str) -> list[str]:
    """Prints on stdout in a subcommand module's ``source`` that are not JSON and not under ``--human``."""
    tree = ast.parse(source)
    human: set[int] = set()  # ids of nodes inside an `if ...human...:` body
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _mentions_human(node.test):
            human |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    problems = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print"):
            continue
        if any(k.arg == "file" for k in node.keywords) or id(node) in human or not node.args:
            continue
        arg = node.args[0]
        if _is_json(arg) or (isinstance(arg, ast.IfExp) and _mentions_human(arg.test) and _is_json(arg.orelse)):
            continue
        problems.append(f"{where}:{node.lineno}: prints prose on stdout (print json.dumps(...), prose under --human)")
    return problems


def vocabulary_problems() -> list[str]:
    """Every break of the CLI's vocabulary (see the module doc), over every subcommand; [] when none."""
    from m2fp_batch.cli import SUBCOMMANDS, build_parser

    problems = [p for parser in _walk(build_parser()) for p in parser_problems(parser)]
    for module, _ in SUBCOMMANDS.values():
        path = Path(importlib.util.find_spec(module).origin)
        problems += summary_problems(path.read_text(), f"{module.replace('.', '/')}.py")
    return problems


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
