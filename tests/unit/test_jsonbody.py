"""web/jsonbody.py: JSON bodies with a bound on their nesting."""

from __future__ import annotations

import json

import pytest

from headwater.web import jsonbody
from headwater.web.jsonbody import MAX_DEPTH, TooDeep


def nested(depth: int, kind: str = "array") -> str:
    if kind == "array":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


@pytest.mark.parametrize("kind", ["array", "object"])
def test_the_bound_itself_is_taken_and_one_more_level_is_refused(kind: str) -> None:
    assert jsonbody.loads(nested(MAX_DEPTH, kind)) == json.loads(nested(MAX_DEPTH, kind))
    with pytest.raises(TooDeep, match=f"deeper than {MAX_DEPTH} levels"):
        jsonbody.loads(nested(MAX_DEPTH + 1, kind))


def test_a_body_deeper_than_the_parser_can_go_is_refused_not_crashed() -> None:
    with pytest.raises(TooDeep):
        jsonbody.loads(nested(100_000))
    with pytest.raises(TooDeep):
        jsonbody.loads(("[" * 100_000).encode())  # unclosed: the parser gives up first


def test_brackets_in_strings_and_wide_bodies_are_not_depth() -> None:
    text = json.dumps({"s": "[" * 500, "rows": [[i, {"k": [i]}] for i in range(1000)]})
    assert jsonbody.loads(text)["s"] == "[" * 500
    assert jsonbody.loads(text.encode())["rows"][3] == [3, {"k": [3]}]


def test_bad_json_is_a_value_error_and_too_deep_is_one_too() -> None:
    with pytest.raises(ValueError) as bad:
        jsonbody.loads("{not json")
    assert not isinstance(bad.value, TooDeep)
    assert issubclass(TooDeep, ValueError)  # callers answering 400 to bad JSON also do here
    assert jsonbody.loads("3") == 3


def test_mixed_nesting_is_measured_along_the_deepest_branch() -> None:
    value = {"a": [1, {"b": [[{"c": []}]]}], "d": []}  # a > [ > { > [ > [ > { > []: 7
    assert not jsonbody.nests_deeper(value, 7)
    assert jsonbody.nests_deeper(value, 6)
    assert not jsonbody.nests_deeper("scalar", 0)
