"""YAML read strictly: the one loader for every YAML the product reads (job settings files,
``configs/*.yaml``, ``--set`` values). PyYAML's ``safe_load`` keeps the last of two equal keys
silently; here a duplicate key is a :class:`DuplicateKeyError` naming the key and both lines."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import yaml

from m2fp_batch.errors import UserError

__all__ = ["DuplicateKeyError", "strict_load"]


class DuplicateKeyError(UserError, ValueError):
    """A mapping in a YAML text holds the same key twice."""


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (merge keys ``<<`` may
    still be overridden, as YAML's merge rule says)."""

    source = "YAML"

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):  # SafeLoader's own error says so below
                continue
            line = key_node.start_mark.line + 1
            if key in seen:
                raise DuplicateKeyError(
                    f"{self.source}: the key {key!r} is given twice (line {seen[key]} and line {line}); keep one"
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def strict_load(text: str, source: str = "YAML") -> Any:
    """``yaml.safe_load(text)``, except that a duplicate key raises :class:`DuplicateKeyError`
    (``source`` names the text in the sentence: a file name, ``--set KEY``). Syntax errors stay
    ``yaml.YAMLError`` for the caller to word."""
    loader = _StrictLoader(text)
    loader.source = source
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()
