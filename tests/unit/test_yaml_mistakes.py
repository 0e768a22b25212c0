"""Common YAML mistakes each get their own message, at the line of the mistake.

Checked through `validate_text`, the function `headwater validate` runs on each file.
"""

from __future__ import annotations

from headwater.daemon.flow.validate import validate_text

HEAD = "id: hello\nnamespace: demo\ntasks:\n  - id: t\n"
LOG = "    type: io.kestra.plugin.core.log.Log\n"


def _shown(text: str) -> str:
    """The one diagnostic for `text`, as `LINE:COL: MESSAGE`."""
    result = validate_text(text, "f.yaml")
    assert len(result.diagnostics) == 1, result.diagnostics
    d = result.diagnostics[0]
    return f"{d.position.line}:{d.position.column}: {d.message}"


TAB = (
    "invalid YAML: a tab character in the indentation: YAML indents with spaces only; "
    "replace the tab with spaces"
)


def test_tab_in_indentation() -> None:
    assert _shown(HEAD + "\ttype: io.kestra.plugin.core.log.Log\n") == f"5:1: {TAB}"
    assert _shown("id: hello\nnamespace: demo\ntasks:\n\t- id: t\n") == f"4:1: {TAB}"
    # after spaces, the column is the tab's
    assert _shown(HEAD + "  \t type: io.kestra.plugin.core.log.Log\n") == f"5:3: {TAB}"


def test_tab_in_the_indentation_of_a_block_text() -> None:
    text = HEAD + LOG + "    message: |\n      one\n\ttwo\n"
    assert _shown(text) == f"8:1: {TAB}"


def test_key_indented_deeper_than_its_sibling() -> None:
    assert _shown(HEAD + LOG + "     message: hi\n") == (
        "6:6: invalid YAML: wrong indentation: 'message' starts in column 6, but 'type' on "
        "line 5 starts in column 5; keys of one mapping start in the same column "
        '(libyaml: "mapping values are not allowed in this context at line 6, column 13")'
    )


def test_key_indented_less_than_its_sibling() -> None:
    assert _shown(HEAD + LOG + "   message: hi\n") == (
        "6:4: invalid YAML: wrong indentation: 'message' starts in column 4, but 'type' on "
        "line 5 starts in column 5; keys of one mapping start in the same column "
        "(libyaml: \"while parsing a block collection; did not find expected '-' indicator\")"
    )
    text = "id: hello\nnamespace: demo\nretry:\n  type: constant\n interval: PT1M\n"
    assert _shown(text).startswith(
        "5:2: invalid YAML: wrong indentation: 'interval' starts in column 2, but 'type' on "
        "line 4 starts in column 3;"
    )


def test_top_level_key_indented() -> None:
    assert _shown("id: hello\n namespace: demo\n").startswith(
        "2:2: invalid YAML: wrong indentation: 'namespace' starts in column 2, but 'id' on "
        "line 1 starts in column 1;"
    )


def test_missing_colon_points_at_the_key() -> None:
    # libyaml notices on the next line (6:5); the mistake is on line 5
    assert _shown(HEAD + "    type io.kestra.plugin.core.log.Log\n    message: hi\n") == (
        "5:5: invalid YAML: missing ':' after the key 'type': write "
        "'type: io.kestra.plugin.core.log.Log' (libyaml: \"while scanning a simple key; "
        "could not find expected ':' at line 6, column 5\")"
    )


def test_missing_colon_before_the_next_key_on_its_own_line() -> None:
    # `id hello` runs on into `namespace`, and libyaml stops at line 2's colon
    message = _shown("id hello\nnamespace: demo\n")
    assert message.startswith(
        "1:1: invalid YAML: missing ':' after the key 'id': write 'id: hello'"
    )
    assert "at line 2, column 10" in message


def test_missing_colon_after_a_key_with_a_nested_block() -> None:
    message = _shown("id: hello\nnamespace: demo\ntasks\n  - id: t\n" + LOG)
    assert message.startswith(
        "3:1: invalid YAML: missing ':' after the key 'tasks': write 'tasks:'"
    )


def test_missing_colon_on_the_last_line() -> None:
    message = _shown(HEAD + LOG + "    message hi\n")
    assert message.startswith("6:5: invalid YAML: missing ':' after the key 'message'")


def test_unclosed_double_quote_points_at_the_opening_quote() -> None:
    assert _shown(HEAD + LOG + '    message: "hi\n') == (
        "6:14: invalid YAML: unclosed double quote: the string that starts here has no "
        'closing " (it runs to the end of the file); close it where the value ends'
    )


def test_unclosed_single_quote_that_runs_on_to_a_later_quote() -> None:
    text = HEAD + LOG + "    message: 'hi\n  - id: u\n" + LOG + "    message: 'bye'\n"
    assert _shown(text) == (
        "6:14: invalid YAML: unclosed single quote: the string that starts here has no "
        "closing ' (it runs on to the quote on line 9); close it where the value ends"
    )


def test_quote_inside_a_quoted_string() -> None:
    assert _shown(HEAD + LOG + "    message: 'it's'\n").startswith(
        "6:17: invalid YAML: this ' ends the string, and text follows it: write a ' inside "
        "a '…' string as ''"
    )


def test_list_item_indented_more_than_the_one_above() -> None:
    text = HEAD + LOG + "   - id: u\n     type: io.kestra.plugin.core.log.Log\n"
    assert _shown(text) == (
        "6:4: invalid YAML: a list item at the wrong level: this '-' is in column 4, but the "
        "item above it (line 4) has its '-' in column 3; start every item of a list in the "
        "same column (libyaml: \"while parsing a block collection; did not find expected '-' "
        'indicator")'
    )


def test_list_item_at_other_wrong_levels() -> None:
    item = "- id: u\n"
    for indent, column in (("    ", 5), (" ", 2)):
        assert _shown(HEAD + LOG + indent + item).startswith(
            f"6:{column}: invalid YAML: a list item at the wrong level: this '-' is in column "
            f"{column}, but the item above it (line 4) has its '-' in column 3;"
        )
    text = "id: hello\nnamespace: demo\ntasks:\n- id: t\n  type: x\n  - id: u\n"
    assert _shown(text).startswith(
        "6:3: invalid YAML: a list item at the wrong level: this '-' is in column 3, but the "
        "item above it (line 4) has its '-' in column 1;"
    )


def test_at_sign_and_backquote_hint_only_where_it_applies() -> None:
    assert _shown(HEAD + LOG + "    message: @here done\n") == (
        '6:14: invalid YAML: a value cannot start with @ unless it is quoted: write "@here done"'
    )
    assert _shown(HEAD + LOG + "    message: `date`\n") == (
        '6:14: invalid YAML: a value cannot start with ` unless it is quoted: write "`date`"'
    )
    for text in (HEAD + "\ttype: x\n", HEAD + LOG + "   message: hi\n", 'a: "x\n'):
        assert "@" not in _shown(text)


def test_colon_inside_a_plain_value() -> None:
    assert _shown(HEAD + LOG + "    message: note: done\n") == (
        "6:18: invalid YAML: a value that holds ': ' must be quoted, or YAML reads a second "
        'key: write "note: done"'
    )


def test_other_syntax_errors_keep_libyaml_sentence_and_position() -> None:
    assert _shown("id: [a, b\n") == (
        "2:1: invalid YAML: while parsing a flow sequence; did not find expected ',' or ']'"
    )
