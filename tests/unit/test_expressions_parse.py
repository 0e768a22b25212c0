"""Parsing templates: the API, syntax errors with their place, names and references."""

from __future__ import annotations

import pickle

import pytest

from headwater.daemon.errors import HeadwaterError
from headwater.daemon.expressions import (
    ExpressionSyntaxError,
    RenderContext,
    Template,
    has_expression,
    parse,
    render,
)

pytestmark = pytest.mark.unit


def syntax_error(source: str) -> ExpressionSyntaxError:
    with pytest.raises(ExpressionSyntaxError) as caught:
        parse(source)
    return caught.value


# -- API -------------------------------------------------------------------------------


def test_parse_returns_a_template_with_its_source() -> None:
    template = parse("hello {{ inputs.name }}")
    assert isinstance(template, Template)
    assert template.source == "hello {{ inputs.name }}"


def test_parse_is_cached_by_source() -> None:
    assert parse("{{ a }} cached") is parse("{{ a }} cached")


def test_render_is_parse_then_render() -> None:
    ctx = RenderContext(variables={"a": 1})
    assert render("{{ a }}", ctx) == parse("{{ a }}").render(ctx) == "1"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain", False),
        ("{ not a tag }", False),
        ("{{ x }}", True),
        ("{% if x %}{% endif %}", True),
        ("{# comment #}", True),
        ("a } b { c", False),
    ],
)
def test_has_expression(text: str, expected: bool) -> None:
    assert has_expression(text) is expected


def test_text_without_tags_renders_as_is() -> None:
    assert render("just text, {not a tag}", RenderContext(variables={})) == (
        "just text, {not a tag}"
    )


def test_errors_are_headwater_errors() -> None:
    assert issubclass(ExpressionSyntaxError, HeadwaterError)


def test_syntax_error_pickles_with_its_position() -> None:
    error = syntax_error("line one\n  {{ 1 + }}")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.message, copy.offset, copy.line, copy.column) == (
        error.message,
        error.offset,
        error.line,
        error.column,
    )
    assert str(copy) == str(error)


# -- syntax errors: message, offset, line, column ----------------------------------


@pytest.mark.parametrize(
    ("source", "message", "line", "column"),
    [
        ("{{ 1 + }}", "unexpected '}}' in expression: expected a value", 1, 8),
        ("{{ }}", "empty expression", 1, 1),
        ("abc {{ x", "unclosed '{{' (opened at line 1, column 5)", 1, 5),
        ("a\nbc {{ x", "unclosed '{{' (opened at line 2, column 4)", 2, 4),
        ("{{ inputs.name | uper }}", "unknown filter 'uper'; did you mean 'upper'?", 1, 18),
        ("{{ nw() }}", "unknown function 'nw'; did you mean 'now'?", 1, 4),
        ("{{ zzzzz() }}", "unknown function 'zzzzz'", 1, 4),
        ("{{ x is defind }}", "unknown test 'defind'; did you mean 'defined'?", 1, 9),
        ("{{ 'abc }}", "unclosed string literal (missing ')", 1, 4),
        ("{{ a @ b }}", "unexpected character '@'", 1, 6),
        ("{{ a b }}", "unexpected 'b' in expression: expected '}}'", 1, 6),
        ("{{ a %}", "unexpected '%}': expected '}}'", 1, 6),
        ("{% if a }}", "unexpected '}}': expected '%}'", 1, 9),
        ("{{ (1 + 2 }}", "unexpected '}}' in expression: expected ')'", 1, 11),
        ("{{ [1, 2 }}", "unexpected '}}' in expression: expected ','", 1, 10),
        ("{{ a ? b }}", "unexpected '}}' in expression: expected ':'", 1, 10),
        ("{{ a. }}", "unexpected '}}' in expression: expected a name after '.'", 1, 7),
        ("{{ 2 ** 3 }}", "'**' is not supported: there is no power operator", 1, 6),
        ("{{ a.b() }}", "only functions can be called, and only by name, as in now()", 1, 7),
        ("{{ now()() }}", "only functions can be called, and only by name, as in now()", 1, 9),
        ("{{ now(1) }}", "function 'now': too many arguments (takes no arguments)", 1, 4),
        (
            "{{ x | date('y', tz='UTC') }}",
            "filter 'date': no argument named 'tz' (takes format=…, timeZone=…)",
            1,
            8,
        ),
        (
            "{{ x | dateAdd(1) }}",
            "filter 'dateAdd': missing argument 'unit' (takes amount, unit, format=…, timeZone=…)",
            1,
            8,
        ),
        ("{{ secret() }}", "function 'secret': missing argument 'name' (takes name)", 1, 4),
        ("{{ f(a=1, 2) }}", "unknown function 'f'", 1, 4),
        ("{{ x | join(sep=',', 1) }}", "positional argument after a named one", 1, 22),
        ("{{ x | replace(search=1, search=2) }}", "argument 'search' given twice", 1, 26),
        (
            "{{ x | abbreviate(3, length=2) }}",
            "filter 'abbreviate': argument 'length' given twice",
            1,
            8,
        ),
        ("{{ x |  }}", "unexpected '}}' in expression: expected a filter name after '|'", 1, 9),
        ("{# never closed", "unclosed '{#' (opened at line 1, column 1)", 1, 1),
        ("{% %}", "empty tag", 1, 1),
        ("{% 1 %}", "expected a tag name such as 'if', 'for' or 'set'", 1, 4),
        ("{% iff x %}", "unknown tag 'iff'; did you mean 'if'?", 1, 4),
        ("{% include 'x' %}", "tag 'include' is not supported", 1, 4),
        (
            "x\n{% if a %}yes",
            "unclosed '{% if %}' (opened at line 2, column 1): expected '{% endif %}'",
            2,
            1,
        ),
        ("{% endif %}", "'{% endif %}' without a matching '{% if %}'", 1, 1),
        (
            "{% if a %}{% endfor %}",
            "'{% endfor %}' does not close the '{% if %}' (opened at line 1, column 1)",
            1,
            11,
        ),
        ("{% else %}", "'{% else %}' without a matching '{% if %}'", 1, 1),
        (
            "{% if a %}{% else %}{% else %}{% endif %}",
            "'{% else %}' after '{% else %}' in the '{% if %}' (opened at line 1, column 1)",
            1,
            21,
        ),
        (
            "{% if a %}{% else %}{% elseif b %}{% endif %}",
            "'{% elseif %}' after '{% else %}' in the '{% if %}' (opened at line 1, column 1)",
            1,
            21,
        ),
        ("{% for x %}{% endfor %}", "unexpected '%}' in expression: expected 'in'", 1, 10),
        (
            "{% for 1 in x %}{% endfor %}",
            "unexpected number 1 in expression: expected a loop variable name",
            1,
            8,
        ),
        ("{% set x 1 %}", "unexpected number 1 in expression: expected '='", 1, 10),
        ("{% raw %}never closed", "unclosed '{% raw %}' (opened at line 1, column 1)", 1, 1),
        ("{% if a b %}{% endif %}", "unexpected 'b' in expression: expected '%}'", 1, 9),
        ("{{ a 'b' }}", "unexpected string 'b' in expression: expected '}}'", 1, 6),
    ],
)
def test_syntax_errors_say_what_and_where(
    source: str, message: str, line: int, column: int
) -> None:
    error = syntax_error(source)
    assert error.message == message
    assert (error.line, error.column) == (line, column)
    assert error.source == source
    assert str(error) == f"line {line}, column {column}: {message}"


def test_offset_is_zero_based_and_matches_line_and_column() -> None:
    source = "first line\nsecond {{ a + }}"
    error = syntax_error(source)
    assert source[error.offset :] == "}}"
    assert (error.line, error.column) == (2, 15)


def test_column_counts_from_the_start_of_its_line() -> None:
    error = syntax_error("{{ a }}\n\n   {{ b | nope }}")
    assert (error.line, error.column) == (3, 11)


# -- nesting is bounded ---------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "{{ " + "(" * 10_000 + "1" + ")" * 10_000 + " }}",
        "{{ " + "[" * 10_000 + " }}",
        "{{ " + "-" * 10_000 + "1 }}",
        "{{ " + "not " * 10_000 + "true }}",
        "{{ " + " + ".join(["1"] * 10_000) + " }}",
        "{{ a" + ".b" * 10_000 + " }}",
        "{{ a" + " | upper" * 10_000 + " }}",
        "{{ " + "a ? b : " * 10_000 + "c }}",
    ],
)
def test_deep_nesting_is_a_syntax_error_not_a_recursion_error(source: str) -> None:
    error = syntax_error(source)
    assert "too deeply nested or too long" in error.message


def test_deeply_nested_blocks_are_a_syntax_error() -> None:
    error = syntax_error("{% if true %}" * 10_000)
    assert error.message == "blocks nested too deeply (more than 50)"


def test_moderate_nesting_is_fine() -> None:
    source = "{{ " + "(" * 40 + "1" + ")" * 40 + " }}"
    assert render(source, RenderContext(variables={})) == "1"


# -- names and references -------------------------------------------------------------


def test_names_are_the_top_level_context_names() -> None:
    template = parse("{{ outputs.extract.rows }} {{ inputs.n + vars.x }}")
    assert template.names == {"outputs", "inputs", "vars"}


def test_references_are_dotted_paths_in_order() -> None:
    template = parse("{{ outputs.extract.rows }} {{ inputs.n + outputs.extract.rows }}")
    assert template.references == ["outputs.extract.rows", "inputs.n"]


def test_references_stop_at_computed_keys_and_include_the_key() -> None:
    template = parse("{{ outputs.t[taskrun.value].rows }}")
    assert template.references == ["taskrun.value", "outputs.t"]
    assert template.names == {"outputs", "taskrun"}


def test_references_follow_literal_subscripts_and_stop_at_indexes() -> None:
    assert parse("{{ inputs['my-key'].a }}").references == ["inputs.my-key.a"]
    assert parse("{{ outputs.list[0].a }}").references == ["outputs.list"]


def test_loop_and_set_variables_are_not_context_names() -> None:
    template = parse(
        "{% set total = 0 %}{% for row in outputs.q.rows %}"
        "{{ row.id }}{{ loop.index }}{{ total }}{% endfor %}{{ total }}"
    )
    assert template.names == {"outputs"}
    assert template.references == ["outputs.q.rows"]


def test_names_inside_filters_functions_and_conditions() -> None:
    template = parse(
        "{% if flow.id == 'x' %}{{ a | default(b) }}{% elseif c %}{{ secret(d) }}"
        "{% else %}{{ e ? f : g ?? h }}{% endif %}{{ [i, {'k': j}] }}"
    )
    assert template.names == set("abcdefghij") | {"flow"}


def test_references_returns_a_fresh_list() -> None:
    template = parse("{{ a.b }}")
    template.references.append("mutated")
    assert template.references == ["a.b"]
