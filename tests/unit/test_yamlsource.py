"""Reading YAML safely: positions, duplicate keys, tags, bombs, size and depth limits."""

from __future__ import annotations

import time

import pytest

from headwater.daemon import defaults, yamlsource
from headwater.daemon.errors import ValidationFailed

HANG = 30.0  # seconds: a parse this long expanded what it should have refused


def _error(text: str) -> str:
    with pytest.raises(ValidationFailed) as caught:
        yamlsource.load(text, "f.yaml")
    assert len(caught.value.diagnostics) == 1
    return str(caught.value.diagnostics[0])


def test_values_keep_their_positions() -> None:
    doc = yamlsource.load("id: a\ntasks:\n  - id: t\n    message: hi\n", "f.yaml")
    assert doc.data == {"id": "a", "tasks": [{"id": "t", "message": "hi"}]}
    assert str(doc.position(("tasks", 0, "message"))) == "f.yaml:4:14"
    assert str(doc.position(("tasks", 0, "message"), key=True)) == "f.yaml:4:5"


def test_missing_path_points_at_deepest_existing_node() -> None:
    doc = yamlsource.load("tasks:\n  - id: t\n", "f.yaml")
    assert str(doc.position(("tasks", 0, "retry", "interval"))) == "f.yaml:2:5"
    assert doc.node_at(("tasks", 0, "retry"), exact=True) is None


def test_keys_stay_strings_and_dates_stay_text() -> None:
    doc = yamlsource.load("on: CREATE\n1: x\nyes: 2\nday: 2024-01-31\nflag: true\n", "f.yaml")
    assert doc.data == {"on": "CREATE", "1": "x", "yes": 2, "day": "2024-01-31", "flag": True}


def test_only_true_and_false_are_booleans() -> None:
    doc = yamlsource.load("a: yes\nb: NO\nc: off\nd: False\ne: TRUE\nf: 18:30:00\n", "f.yaml")
    assert doc.data == {"a": "yes", "b": "NO", "c": "off", "d": False, "e": True, "f": "18:30:00"}


def test_scalar_types() -> None:
    doc = yamlsource.load("a: 0x10\nb: 1.5\nc: ~\nd: '3'\ne: -7\nf: .inf\n", "f.yaml")
    assert doc.data["a"] == 16
    assert doc.data["b"] == 1.5
    assert doc.data["c"] is None
    assert doc.data["d"] == "3"
    assert doc.data["e"] == -7
    assert doc.data["f"] == float("inf")


def test_duplicate_key_is_an_error_at_the_second_key() -> None:
    assert _error("id: a\nnamespace: n\nid: b\n") == (
        "f.yaml:3:1: error: duplicate key 'id' (first written at line 1)"
    )


def test_application_tags_are_refused() -> None:
    message = _error("id: !!python/object/apply:os.system ['echo hi']\n")
    assert message.startswith("f.yaml:1:5: error: YAML tag 'tag:yaml.org,2002:python/object/apply")
    assert "not allowed" in message
    assert "not allowed" in _error("id: !custom x\n")


def test_merge_keys_are_refused_clearly() -> None:
    message = _error("base: &b {a: 1}\nother:\n  <<: *b\n")
    assert message == "f.yaml:3:3: error: merge keys ('<<') are not supported; write the keys out"


def test_billion_laughs_is_refused_without_expanding_it() -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        refs = ",".join([f"*{prev}"] * 9)
        lines.append(f"{name}: &{name} [{refs}]")
    started = time.perf_counter()
    message = _error("\n".join(lines) + "\n")
    assert time.perf_counter() - started < HANG  # expanding it would take far longer
    assert f"YAML expands to more than {defaults.MAX_YAML_NODES} values" in message
    assert message.startswith("f.yaml:6:4: error:")


def test_recursive_alias_is_refused() -> None:
    assert _error("a: &a [*a]\n") == (
        "f.yaml:1:4: error: a YAML alias refers to itself (recursive anchor)"
    )


def test_small_aliases_are_fine() -> None:
    doc = yamlsource.load("a: &x {k: 1}\nb: *x\nc: a && b\n", "f.yaml")
    assert doc.data == {"a": {"k": 1}, "b": {"k": 1}, "c": "a && b"}
    doc.data["a"]["k"] = 2
    assert doc.data["b"]["k"] == 1  # expanded copies, not shared objects


def test_deep_nesting_is_refused_without_crashing() -> None:
    depth = 100_000  # libyaml's composer would overflow the C stack on this
    message = _error("[" * depth + "]" * depth)
    # The column is where the limit was hit: ours (201), or libyaml's own (1001) in
    # builds whose libyaml refuses deep nesting while scanning ahead.
    assert message.startswith("f.yaml:1:")
    assert message.endswith(": error: YAML nests deeper than 200 levels")


def test_moderate_block_nesting_is_refused_by_the_builder() -> None:
    text = "".join("  " * i + f"k{i}:\n" for i in range(250)) + "  " * 250 + "v: 1\n"
    assert "YAML nests deeper than 200 levels" in _error(text)


def test_oversized_file_is_refused_before_parsing() -> None:
    text = "id: a\ndescription: " + "x" * defaults.MAX_FLOW_FILE_BYTES + "\n"
    assert _error(text) == "f.yaml:1:1: error: file is larger than 1048576 bytes"


def test_syntax_error_has_line_and_column() -> None:
    # Each common mistake has its own message (tests/unit/test_yaml_mistakes.py).
    assert _error("id: a\ntasks:\n  - id: t\n   bad: x\n").startswith(
        "f.yaml:4:4: error: invalid YAML: wrong indentation: 'bad' starts in column 4"
    )
    assert _error('id: a\nmessage: "unclosed\n').startswith(
        "f.yaml:2:10: error: invalid YAML: unclosed double quote:"
    )
    assert _error("a: {b\n") == (
        "f.yaml:2:1: error: invalid YAML: while parsing a flow mapping; "
        "did not find expected ',' or '}'"
    )


def test_second_document_is_refused() -> None:
    message = _error("id: a\n---\nid: b\n")
    assert message == (
        "f.yaml:2:1: error: invalid YAML: a flow file holds exactly one YAML document "
        "(found a second '---')"
    )


def test_empty_document_has_no_data() -> None:
    assert yamlsource.load("# only a comment\n", "f.yaml").data is None


def test_libyaml_is_used() -> None:
    assert yamlsource.LIBYAML, "PyYAML was built without libyaml; parsing is 15x slower"
