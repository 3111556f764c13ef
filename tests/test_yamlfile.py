"""The one strict YAML loader: a key given twice in any mapping is one sentence naming the key
and both lines; everything else loads as ``yaml.safe_load`` does."""

from __future__ import annotations

import pytest
import yaml

from m2fp_batch.errors import UserError, user_message
from m2fp_batch.yamlfile import DuplicateKeyError, strict_load

SAME_AS_SAFE_LOAD = [
    "batch_size: 3\nshard_size: 10\nmax_actors: null\n",
    "a: {x: 1, y: 2}\nb: [1, 2, {x: 1}]\n",
    "base: &b {p: 1, q: 2}\nd:\n  <<: *b\n  p: 3\n",  # a merge key may be overridden
    "1: one\n'1': the string one\n",  # two different keys
    "",
]


@pytest.mark.parametrize("text", SAME_AS_SAFE_LOAD)
def test_loads_like_safe_load(text):
    assert strict_load(text) == yaml.safe_load(text)


@pytest.mark.parametrize(
    ("text", "key", "lines"),
    [
        ("batch_size: 3\nshard_size: 10\nbatch_size: 4\n", "'batch_size'", (1, 3)),
        ("engine: torch\ns3:\n  region: a\n  region: b\n", "'region'", (3, 4)),  # nested
        ("x: [1, {k: 1, k: 2}]\n", "'k'", (1, 1)),  # flow mapping inside a list
        ("a: 1\n\n\n1.0: x\n1: y\n", "1", (4, 5)),  # 1.0 == 1 as YAML keys
    ],
)
def test_duplicate_key_is_one_sentence_with_key_and_lines(text, key, lines):
    with pytest.raises(DuplicateKeyError) as e:
        strict_load(text, "config file 'c.yaml'")
    assert isinstance(e.value, UserError)
    msg = user_message(e.value)
    assert msg == (
        f"config file 'c.yaml': the key {key} is given twice (line {lines[0]} and line {lines[1]}); keep one"
    )


def test_syntax_errors_stay_yaml_errors():
    with pytest.raises(yaml.YAMLError):
        strict_load("a: [1, 2\n")
