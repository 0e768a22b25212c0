"""Rendering: operators and precedence, undefined values, tags, printing, errors."""

from __future__ import annotations

import pickle
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest

from headwater.daemon.expressions import (
    ExpressionError,
    RenderContext,
    parse,
    render,
    truthy,
)

pytestmark = pytest.mark.unit

VARIABLES: dict[str, Any] = {
    "inputs": {"name": "World", "n": 7, "none": None, "list": [3, 1, 2], "empty": ""},
    "outputs": {"a": {"rows": 5}, "b": {"value": "x"}, "t": {"k1": {"v": 1}, "k2": {"v": 2}}},
    "taskrun": {"value": "k2"},
    "vars": {},
}


def r(source: str, **variables: Any) -> str:
    return render(source, RenderContext(variables={**VARIABLES, **variables}))


def fails(source: str, **variables: Any) -> ExpressionError:
    with pytest.raises(ExpressionError) as caught:
        r(source, **variables)
    return caught.value


# -- arithmetic and Pebble's (Java's) number semantics ----------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ 1 + 2 }}", "3"),
        ("{{ 5 - 7 }}", "-2"),
        ("{{ 6 * 7 }}", "42"),
        ("{{ 7 / 2 }}", "3"),
        ("{{ -7 / 2 }}", "-3"),
        ("{{ 7.0 / 2 }}", "3.5"),
        ("{{ 8 / 2 }}", "4"),
        ("{{ 7 % 3 }}", "1"),
        ("{{ -7 % 3 }}", "-1"),
        ("{{ 7 % -3 }}", "1"),
        ("{{ 7.5 % 2 }}", "1.5"),
        ("{{ 1.5 + 1 }}", "2.5"),
        ("{{ 0.1 + 0.2 }}", "0.30000000000000004"),
        ("{{ -inputs.n }}", "-7"),
        ("{{ +inputs.n }}", "7"),
        ("{{ 'ab' + 'cd' }}", "abcd"),
        ("{{ [1] + [2, 3] }}", "[1,2,3]"),
        ("{{ 1e3 }}", "1000.0"),
    ],
)
def test_arithmetic(source: str, expected: str) -> None:
    assert r(source) == expected


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ 1 / 0 }}", "division by zero"),
        ("{{ 1 % 0 }}", "division by zero"),
        ("{{ 1.0 / 0 }}", "division by zero"),
        ("{{ 'x' * 3 }}", "cannot apply '*' to text and a number"),
        ("{{ 'a' + 1 }}", "cannot apply '+' to text and a number"),
        ("{{ true + 1 }}", "cannot apply '+' to a boolean and a number"),
        ("{{ [1] - [1] }}", "cannot apply '-' to a list and a list"),
        ("{{ -'a' }}", "cannot apply '-' to text"),
        ("{{ 9223372036854775807 + 1 }}", "integer overflow: the result does not fit in 64 bits"),
        ("{{ 4294967296 * 4294967296 }}", "integer overflow: the result does not fit in 64 bits"),
    ],
)
def test_arithmetic_errors(source: str, message: str) -> None:
    error = fails(source)
    assert error.message == message
    assert error.expression == source


def test_int_range_is_javas_long() -> None:
    assert r("{{ 9223372036854775807 }}") == "9223372036854775807"
    assert r("{{ -9223372036854775807 - 1 }}") == "-9223372036854775808"


# -- comparison, membership, logic ---------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ 1 == 1.0 }}", "true"),
        ("{{ '1' == 1 }}", "false"),
        ("{{ true == 1 }}", "false"),
        ("{{ null == null }}", "true"),
        ("{{ none == null }}", "true"),
        ("{{ 1 != 2 }}", "true"),
        ("{{ 1 equals 1 }}", "true"),
        ("{{ 'a' equals 'b' }}", "false"),
        ("{{ [1, {'a': 2}] == [1, {'a': 2}] }}", "true"),
        ("{{ {'a': 1} == {'a': 2} }}", "false"),
        ("{{ 1 < 2 }}", "true"),
        ("{{ 2 <= 2 }}", "true"),
        ("{{ 3 > 2.5 }}", "true"),
        ("{{ 'b' >= 'a' }}", "true"),
        ("{{ 2 in [1, 2] }}", "true"),
        ("{{ 2.0 in [1, 2] }}", "true"),
        ("{{ 'at' in 'cat' }}", "true"),
        ("{{ 'x' not in 'cat' }}", "true"),
        ("{{ 'name' in inputs }}", "true"),
        ("{{ 'nope' in inputs }}", "false"),
        ("{{ 1 in null }}", "false"),
        ("{{ [1, 2] contains 2 }}", "true"),
        ("{{ 'abc' contains 'b' }}", "true"),
        ("{{ true and false }}", "false"),
        ("{{ true && true }}", "true"),
        ("{{ false or true }}", "true"),
        ("{{ false || false }}", "false"),
        ("{{ not true }}", "false"),
        ("{{ !false }}", "true"),
        ("{{ 'yes' and 1 }}", "true"),
        ("{{ 0 or '' }}", "false"),
    ],
)
def test_comparison_membership_logic(source: str, expected: str) -> None:
    assert r(source) == expected


def test_dates_compare() -> None:
    early = datetime(2024, 1, 1, tzinfo=UTC)
    late = datetime(2024, 1, 1, 1, tzinfo=timezone(timedelta(hours=-1)))
    assert r("{{ a < b }}", a=early, b=late) == "true"
    assert r("{{ a == b }}", a=early, b=datetime(2024, 1, 1)) == "true"  # naive is UTC


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ 'a' < 1 }}", "cannot compare text with a number using '<'"),
        ("{{ [1] > [0] }}", "cannot compare a list with a list using '>'"),
        ("{{ 1 in 'abc' }}", "cannot look for a number in text"),
        ("{{ 1 in 5 }}", "cannot look into a number"),
    ],
)
def test_comparison_errors(source: str, message: str) -> None:
    assert fails(source).message == message


def test_and_or_short_circuit_around_undefined() -> None:
    assert r("{{ inputs.missing is defined and inputs.missing }}") == "false"
    assert r("{{ inputs.missing is null or inputs.missing }}") == "true"


# -- ~ concatenation and ranges ---------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ 'a' ~ 'b' }}", "ab"),
        ("{{ 'n=' ~ 1 }}", "n=1"),
        ("{{ 'x' ~ true ~ null ~ 1.0 }}", "xtrue1.0"),
        ("{{ 'l=' ~ [1, 'a'] }}", 'l=[1,"a"]'),
        ("{{ 1..4 }}", "[1,2,3,4]"),
        ("{{ 3..1 }}", "[]"),
        ("{{ 2..2 }}", "[2]"),
    ],
)
def test_concatenation_and_range(source: str, expected: str) -> None:
    assert r(source) == expected


def test_range_bounds_must_be_whole_numbers() -> None:
    assert fails("{{ 'a'..3 }}").message == "range bounds must be whole numbers, got text"


# -- precedence -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ 1 + 2 * 3 }}", "7"),
        ("{{ (1 + 2) * 3 }}", "9"),
        ("{{ 10 - 2 - 3 }}", "5"),
        ("{{ 100 / 10 / 5 }}", "2"),
        ("{{ 2 * 3 % 4 }}", "2"),
        ("{{ - 2 * 3 }}", "-6"),
        ("{{ 2 * -3 }}", "-6"),
        # filters bind tighter than unary minus and every binary operator
        ("{{ -2 | abs }}", "2"),  # unary minus binds tighter than a filter (Pebble)
        ("{{ (-2) | abs }}", "2"),
        ("{{ [1, 2] | length * 2 }}", "4"),
        ("{{ 'a' ~ 'b' | upper }}", "AB"),  # ~ binds tighter than | (Pebble)
        ("{{ ('a' ~ 'b') | upper }}", "AB"),
        ("{{ inputs.name | upper }}", "WORLD"),
        # ~ is looser than + and -
        ("{{ (1 + 2) ~ (3 + 4) }}", "37"),
        ("{{ 'a' ~ (1 + 2) }}", "a3"),
        # .. is looser than + and ~ tighter than comparisons
        ("{{ 1..1 + 2 }}", "[1,2,3]"),
        ("{{ 3 in 1..1 + 2 }}", "true"),
        ("{{ 'a' ~ 'b' == 'ab' }}", "true"),
        # comparisons and in are looser than arithmetic
        ("{{ 1 + 1 == 2 }}", "true"),
        ("{{ 1 + 1 in [2] }}", "true"),
        ("{{ 1 < 2 == true }}", "true"),
        # not is looser than comparisons, tighter than and/or
        ("{{ not 1 == 2 }}", "true"),
        ("{{ not true and false }}", "false"),
        ("{{ not false or false }}", "true"),
        ("{{ true and not false }}", "true"),
        ("{{ not inputs.missing is defined }}", "true"),
        # ! binds like unary minus
        ("{{ !true == false }}", "true"),
        # and is tighter than or
        ("{{ true or false and false }}", "true"),
        ("{{ false and true or true }}", "true"),
        # the ternary is looser than or, right-associative
        ("{{ false or true ? 'y' : 'n' }}", "y"),
        ("{{ false ? 1 : true ? 2 : 3 }}", "2"),
        ("{{ true ? 'a' : 'b' ~ 'c' }}", "a"),
        ("{{ false ? 'a' : 'b' ~ 'c' }}", "bc"),
        # ?? is the loosest
        ("{{ inputs.missing ?? 'a' ~ 'b' }}", "ab"),
        ("{{ inputs.missing ?? false ? 'y' : 'n' }}", "n"),
        ("{{ inputs.name ?? false ? 'y' : 'n' }}", "y"),  # ?? binds tighter than ?:
        ("{{ (inputs.missing ?? false) ? 'y' : 'n' }}", "n"),
        ("{{ true ? inputs.missing ?? 'd' : 'e' }}", "d"),
        ("{{ false ? 1 : inputs.missing ?? 'd' }}", "d"),
        ("{{ 1 + inputs.missing ?? 5 }}", "6"),  # ?? binds tighter than + (Pebble)
        # postfix binds tightest
        ("{{ outputs.a.rows * 2 }}", "10"),
        ("{{ -inputs.list[0] }}", "-3"),
        ("{{ {'a': [10, 20]}['a'][1] }}", "20"),
    ],
)
def test_precedence(source: str, expected: str) -> None:
    assert r(source) == expected


# -- ?? and ??? ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ inputs.missing ?? 'd' }}", "d"),
        ("{{ inputs.none ?? 'd' }}", "d"),
        ("{{ inputs.name ?? 'd' }}", "World"),
        ("{{ inputs.empty ?? 'd' }}", ""),
        ("{{ 0 ?? 'd' }}", "0"),
        ("{{ false ?? 'd' }}", "false"),
        ("{{ missing ?? 'd' }}", "d"),
        ("{{ missing.deeper.still ?? 'd' }}", "d"),
        ("{{ inputs.missing ?? inputs.none ?? 'last' }}", "last"),
        ("{{ inputs.missing ?? inputs.n ?? 'last' }}", "7"),
        ("{{ outputs.t[taskrun.value].v ?? 0 }}", "2"),
        ("{{ outputs.t['zz'].v ?? 0 }}", "0"),
        ("{{ inputs.none ??? 'd' }}", ""),
        ("{{ inputs.missing ??? 'd' }}", "d"),
    ],
)
def test_null_coalescing(source: str, expected: str) -> None:
    assert r(source) == expected


def test_coalescing_recovers_from_undefined_values_anywhere_on_the_left() -> None:
    assert r("{{ outputs.x.rows | length ?? 0 }}") == "0"
    assert r("{{ (inputs.missing + 1) ?? 'd' }}") == "d"
    assert r("{{ inputs.missing | upper ??? 'd' }}") == "d"


def test_coalescing_does_not_hide_other_errors() -> None:
    assert fails("{{ (1 / 0) ?? 'd' }}").message == "division by zero"


def test_coalescing_to_an_undefined_right_side_still_fails() -> None:
    error = fails("{{ inputs.missing ?? inputs.other }}")
    assert error.message.startswith("`inputs.other` is undefined")


# -- ternary ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ inputs.n > 5 ? 'big' : 'small' }}", "big"),
        ("{{ inputs.n > 50 ? 'big' : 'small' }}", "small"),
        ("{{ inputs.none ? 'y' : 'n' }}", "n"),
        ("{{ 'false' ? 'y' : 'n' }}", "n"),
        ("{{ inputs.list ? inputs.list[0] : 0 }}", "3"),
        ("{{ inputs.missing is defined ? inputs.missing : 'absent' }}", "absent"),
        ("{{ true ? (false ? 1 : 2) : 3 }}", "2"),
        ("{{ {'k': true ? 1 : 2} }}", '{"k":1}'),
    ],
)
def test_ternary(source: str, expected: str) -> None:
    assert r(source) == expected


def test_ternary_evaluates_only_the_chosen_branch() -> None:
    assert r("{{ true ? 1 : missing }}") == "1"
    assert r("{{ false ? 1 / 0 : 2 }}") == "2"


# -- tests (is …) --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ inputs.missing is defined }}", "false"),
        ("{{ inputs.none is defined }}", "true"),
        ("{{ inputs.name is not defined }}", "false"),
        ("{{ missing is defined }}", "false"),
        ("{{ inputs.none is null }}", "true"),
        ("{{ inputs.missing is null }}", "true"),
        ("{{ inputs.n is null }}", "false"),
        ("{{ inputs.n is not null }}", "true"),
        ("{{ inputs.none is none }}", "true"),
        ("{{ [] is empty }}", "true"),
        ("{{ {} is empty }}", "true"),
        ("{{ '  ' is empty }}", "true"),
        ("{{ null is empty }}", "true"),
        ("{{ 'x' is empty }}", "false"),
        ("{{ 0 is empty }}", "false"),
        ("{{ [0] is not empty }}", "true"),
        ("{{ 4 is even }}", "true"),
        ("{{ 3 is even }}", "false"),
        ("{{ 3 is odd }}", "true"),
        ("{{ -3 is odd }}", "true"),
        ("{{ 4.0 is even }}", "true"),
        ("{{ inputs.list is iterable }}", "true"),
        ("{{ 'abc' is iterable }}", "false"),
        ("{{ inputs is map }}", "true"),
        ("{{ inputs.list is map }}", "false"),
    ],
)
def test_is_tests(source: str, expected: str) -> None:
    assert r(source) == expected


def test_is_even_needs_a_whole_number() -> None:
    assert fails("{{ 'a' is even }}").message == "test 'even' needs a whole number, got text"


def test_is_empty_on_undefined_fails() -> None:
    assert fails("{{ inputs.missing is empty }}").message.startswith("`inputs.missing` is")


# -- undefined values ----------------------------------------------------------------


def test_undefined_name_is_an_error_that_lists_the_variables() -> None:
    error = fails("{{ missing }}")
    assert error.message == (
        "`missing` is undefined: there is no variable `missing`;"
        " variables are: inputs, outputs, taskrun, vars"
    )
    assert error.expression == "{{ missing }}"
    assert str(error) == f"{{{{ missing }}}}: {error.message}"


def test_undefined_key_names_the_map_and_its_keys() -> None:
    ctx = RenderContext(variables={"outputs": {"a": 1, "b": 2}})
    with pytest.raises(ExpressionError) as caught:
        render("{{ outputs.extract.rows }}", ctx)
    assert caught.value.message == (
        "`outputs.extract.rows` is undefined: `outputs` has no key `extract`; it has: a, b"
    )


def test_undefined_key_suggests_a_near_name() -> None:
    error = fails("{{ outputs.b.valeu }}")
    assert error.message == (
        "`outputs.b.valeu` is undefined: `outputs.b` has no key `valeu`"
        " (did you mean `value`?); it has: value"
    )


def test_undefined_variable_suggests_a_near_name() -> None:
    assert "(did you mean `inputs`?)" in fails("{{ input.name }}").message


def test_undefined_key_of_an_empty_map() -> None:
    error = fails("{{ vars.x }}")
    assert error.message == "`vars.x` is undefined: `vars` has no key `x`; it is empty"


def test_many_keys_are_listed_up_to_twenty() -> None:
    big = {f"k{i:02d}": i for i in range(30)}
    error = fails("{{ big.nope }}", big=big)
    assert error.message.endswith("k17, k18, k19, …")


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            "{{ inputs.none.x }}",
            "`inputs.none.x` is undefined: `inputs.none` is null, which has no keys",
        ),
        (
            "{{ inputs.n.x }}",
            "`inputs.n.x` is undefined: `inputs.n` is a number, which has no keys",
        ),
        (
            "{{ inputs.name.length }}",
            "`inputs.name.length` is undefined: `inputs.name` is text, which has no keys",
        ),
        (
            "{{ inputs.list[5] }}",
            "`inputs.list[5]` is undefined: `inputs.list` has 3 items, so there is no item 5",
        ),
        (
            "{{ inputs.list.size }}",
            "`inputs.list.size` is undefined: `inputs.list` is a list;"
            " index it with a number, as in `inputs.list[0]`",
        ),
        (
            "{{ outputs.t[taskrun.name].v }}",
            "`taskrun.name` is undefined: `taskrun` has no key `name`; it has: value",
        ),
        (
            "{{ outputs.t['k3'].v }}",
            "`outputs.t['k3'].v` is undefined: `outputs.t` has no key `k3`; it has: k1, k2",
        ),
        (
            "{{ (inputs.none ?? {}).x }}",
            "`(inputs.none ?? {}).x` is undefined:"
            " `(inputs.none ?? {})` has no key `x`; it is empty",
        ),
    ],
)
def test_undefined_reasons(source: str, message: str) -> None:
    assert fails(source).message == message


@pytest.mark.parametrize(
    "source",
    [
        "{{ inputs.missing + 1 }}",
        "{{ inputs.missing ~ 'x' }}",
        "{{ inputs.missing | upper }}",
        "{{ 'x' | join(inputs.missing) }}",
        "{{ [inputs.missing] }}",
        "{{ {'a': inputs.missing} }}",
        "{{ secret(inputs.missing) }}",
        "{{ inputs.missing ? 1 : 2 }}",
        "{{ not inputs.missing }}",
        "{% if inputs.missing %}x{% endif %}",
        "{% for x in inputs.missing %}x{% endfor %}",
        "{% set y = inputs.missing %}",
        "{{ inputs.list[inputs.missing] }}",
    ],
)
def test_using_an_undefined_value_is_an_error(source: str) -> None:
    assert fails(source).message.startswith("`inputs.missing` is undefined: `inputs` has no key")


def test_lenient_mode_prints_undefined_as_nothing() -> None:
    ctx = RenderContext(variables={"a": {}}, strict=False)
    assert render("[{{ a.b }}]", ctx) == "[]"
    assert parse("{{ a.b }}").evaluate(ctx) is None
    with pytest.raises(ExpressionError):
        render("{{ a.b + 1 }}", ctx)


# -- evaluate -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ inputs.n }}", 7),
        ("  {{ inputs.list }}\n", [3, 1, 2]),
        ("{{ true }}", True),
        ("{{ inputs.none }}", None),
        ("{{ {'a': 1} }}", {"a": 1}),
        ("{{ 1.5 }}", 1.5),
        ("n={{ inputs.n }}", "n=7"),
        ("{{ inputs.n }}{{ inputs.n }}", "77"),
        ("{# c #}{{ inputs.n }}", 7),
        ("plain", "plain"),
        ("{% if true %}{{ 1 }}{% endif %}", "1"),
    ],
)
def test_evaluate_returns_native_values_for_a_lone_expression(source: str, expected: Any) -> None:
    value = parse(source).evaluate(RenderContext(variables=VARIABLES))
    assert value == expected
    assert type(value) is type(expected)


def test_evaluate_of_undefined_is_an_error() -> None:
    with pytest.raises(ExpressionError) as caught:
        parse("{{ inputs.missing }}").evaluate(RenderContext(variables=VARIABLES))
    assert caught.value.expression == "{{ inputs.missing }}"


# -- printing values ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, ""),
        (True, "true"),
        (False, "false"),
        (3, "3"),
        (1.0, "1.0"),
        (2.5, "2.5"),
        (1e20, "1e+20"),
        (float("nan"), "NaN"),
        (float("inf"), "Infinity"),
        ("text", "text"),
        ([1, "a", None, True], '[1,"a",null,true]'),
        ({"k": "é", "n": [1.5]}, '{"k":"é","n":[1.5]}'),
        ((1, 2), "[1,2]"),
        (datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC), "2024-05-06T07:08:09Z"),
        (datetime(2024, 5, 6, 7, 8, 9, 120000, tzinfo=UTC), "2024-05-06T07:08:09.120000Z"),
        (
            datetime(2024, 5, 6, 7, 8, tzinfo=timezone(timedelta(hours=2))),
            "2024-05-06T07:08:00+02:00",
        ),
        (date(2024, 5, 6), "2024-05-06"),
        ([datetime(2024, 5, 6, tzinfo=UTC)], '["2024-05-06T00:00:00Z"]'),
    ],
)
def test_printing(value: Any, expected: str) -> None:
    assert r("{{ v }}", v=value) == expected


def test_printing_an_unsupported_object_is_an_error_not_its_repr() -> None:
    class Secretive:
        def __repr__(self) -> str:
            return "LEAKED"

        def __str__(self) -> str:
            return "LEAKED"

    error = fails("{{ v }}", v=Secretive())
    assert error.message == "cannot print an unsupported value"
    assert "LEAKED" not in str(error)
    assert "LEAKED" not in str(fails("{{ [v] }}", v=Secretive()))


# -- truthiness ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [False, None, 0, 0.0, "", "  ", "false", "False", " FALSE ", "0", "-0", [], {}, ()],
)
def test_falsy_values(value: Any) -> None:
    assert r("{% if v %}yes{% else %}no{% endif %}", v=value) == "no"
    assert truthy(value) is False


@pytest.mark.parametrize("value", [True, 1, -1, 0.5, "x", "true", "no", "00", [0], {"a": 0}])
def test_truthy_values(value: Any) -> None:
    assert r("{% if v %}yes{% else %}no{% endif %}", v=value) == "yes"
    assert truthy(value) is True


# -- tags ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "expected"),
    [(20, "big"), (7, "mid"), (1, "small")],
)
def test_if_elseif_else(n: int, expected: str) -> None:
    source = "{% if n > 10 %}big{% elseif n > 5 %}mid{% else %}small{% endif %}"
    assert r(source, n=n) == expected
    assert r(source.replace("elseif", "elif"), n=n) == expected


def test_if_without_else_renders_nothing_when_false() -> None:
    assert r("a{% if false %}b{% endif %}c") == "ac"


def test_nested_if() -> None:
    source = "{% if a %}{% if b %}ab{% else %}a{% endif %}{% else %}none{% endif %}"
    assert r(source, a=True, b=False) == "a"
    assert r(source, a=False, b=True) == "none"


def test_for_with_loop_variables() -> None:
    source = (
        "{% for x in ['a', 'b', 'c'] %}"
        "{{ loop.index }}{{ x }}{{ loop.first ? '^' : '' }}{{ loop.last ? '$' : '' }}"
        "/{{ loop.length }}/{{ loop.revindex }} {% endfor %}"
    )
    assert r(source) == "0a^/3/2 1b/3/1 2c$/3/0 "


def test_for_else_runs_for_empty_and_null() -> None:
    source = "{% for x in v %}{{ x }}{% else %}empty{% endfor %}"
    assert r(source, v=[]) == "empty"
    assert r(source, v=None) == "empty"
    assert r(source, v=[1]) == "1"


def test_for_over_a_map_gives_key_value_entries() -> None:
    source = "{% for e in {'a': 1, 'b': 2} %}{{ e.key }}={{ e.value }};{% endfor %}"
    assert r(source) == "a=1;b=2;"


def test_for_over_a_range() -> None:
    assert r("{% for i in 1..3 %}{{ i }}{% endfor %}") == "123"


def test_nested_loops_see_their_own_loop() -> None:
    source = (
        "{% for a in [1, 2] %}{% for b in [1, 2] %}{{ loop.index }}{% endfor %}"
        "{{ loop.index }};{% endfor %}"
    )
    assert r(source) == "010;011;"


def test_for_over_text_is_an_error() -> None:
    error = fails("{% for c in 'abc' %}{{ c }}{% endfor %}")
    assert error.message == "cannot loop over text"
    assert error.expression == "{% for c in 'abc' %}"


def test_set_and_accumulate_in_a_loop() -> None:
    source = "{% set total = 0 %}{% for i in [1, 2, 3] %}{% set total = total + i %}{% endfor %}"
    assert r(source + "{{ total }}") == "6"


def test_loop_variables_do_not_outlive_the_loop() -> None:
    assert fails("{% for i in [1] %}{% endfor %}{{ i }}").message.startswith("`i` is undefined")


def test_set_shadows_a_context_variable() -> None:
    assert r("{% set inputs = 'mine' %}{{ inputs }}") == "mine"


def test_raw_and_verbatim_print_tags_as_text() -> None:
    assert r("{% raw %}{{ not.rendered }} {% if %}{% endraw %}") == "{{ not.rendered }} {% if %}"
    assert r("{% verbatim %}{{ x }}{% endverbatim %}") == "{{ x }}"
    assert r("a {%- raw -%} {{ x }} {%- endraw -%} b") == "a{{ x }}b"


def test_comments_render_nothing() -> None:
    assert r("a{# {{ anything }} %} #}b") == "ab"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("a  {{- 'b' }}  c", "ab  c"),
        ("a  {{ 'b' -}}  c", "a  bc"),
        ("a \n {{- 'b' -}} \n c", "abc"),
        ("a  {%- if true -%}  b  {%- endif -%}  c", "abc"),
        ("a  {#- note -#}  b", "ab"),
        ("{% if true %}\nline\n{% endif %}\n", "\nline\n\n"),
        ("{{ 'x' }}\n", "x\n"),
    ],
)
def test_whitespace_control(source: str, expected: str) -> None:
    assert r(source) == expected


def test_map_literal_closing_braces_next_to_the_tag_end() -> None:
    assert r("{{ {'a': {'b': 1}}}}") == '{"a":{"b":1}}'
    assert r("{% set m = {'a': {'b': 2}}%}{{ m.a.b }}") == "2"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ 'it\\'s' }}", "it's"),
        ('{{ "say \\"hi\\"" }}', 'say "hi"'),
        ("{{ 'a\\nb' }}", "a\nb"),
        ("{{ 'tab\\there' }}", "tab\there"),
        ("{{ '\\u00e9' }}", "é"),
        ("{{ 'back\\\\slash' }}", "back\\slash"),
        ("{{ '}}' }}", "}}"),
        ('{{ "%}" }}', "%}"),
    ],
)
def test_string_literals(source: str, expected: str) -> None:
    assert r(source) == expected


def test_list_index_attribute_forms() -> None:
    assert r("{{ inputs.list.0 }}{{ inputs.list[1] }}{{ inputs.list[-1] }}") == "312"
    assert r("{{ m.0.1 }}", m=[[5, 6]]) == "6"
    assert r("{{ m['1'] }}{{ m[1] }}", m={"1": "one"}) == "oneone"


# -- runtime errors name the failing tag ---------------------------------------------


def test_runtime_error_names_the_tag_and_its_offset() -> None:
    source = "ok {{ 1 }} then {{ 1 / 0 }}"
    with pytest.raises(ExpressionError) as caught:
        render(source, RenderContext(variables={}))
    error = caught.value
    assert error.expression == "{{ 1 / 0 }}"
    assert error.offset == source.index("{{ 1 / 0 }}")
    assert str(error) == "{{ 1 / 0 }}: division by zero"


def test_runtime_error_in_elseif_names_the_elseif() -> None:
    error = fails("{% if false %}{% elseif 1 / 0 %}{% endif %}")
    assert error.expression == "{% elseif 1 / 0 %}"


def test_runtime_error_inside_a_loop_names_the_inner_tag() -> None:
    error = fails("{% for x in [1, 0] %}{{ 1 / x }}{% endfor %}")
    assert error.expression == "{{ 1 / x }}"


def test_runtime_error_in_set_names_the_set() -> None:
    error = fails("{% set x = 1 / 0 %}")
    assert error.expression == "{% set x = 1 / 0 %}"


def test_expression_error_pickles() -> None:
    error = fails("{{ 1 / 0 }}")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.message, copy.expression, copy.offset) == ("division by zero", "{{ 1 / 0 }}", 0)


def test_templates_are_reusable_and_independent_between_renders() -> None:
    template = parse("{% set x = (x ?? 0) + 1 %}{{ x }}")
    ctx = RenderContext(variables={})
    assert [template.render(ctx) for _ in range(3)] == ["1", "1", "1"]


def test_coalesce_then_filter_formats_the_chosen_side() -> None:
    """Kestra's `a ?? b | date(...)` formats whichever value `??` chose."""
    from headwater.daemon.expressions import RenderContext, parse

    template = parse("{{ trigger.date ?? execution.startDate | date('yyyy-MM-dd') }}")
    context = {"trigger": {}, "execution": {"startDate": "2024-03-05T10:00:00Z"}}
    assert template.render(RenderContext(variables=context)) == "2024-03-05"
    context = {"trigger": {"date": "2023-01-02T00:00:00Z"}, "execution": context["execution"]}
    assert template.render(RenderContext(variables=context)) == "2023-01-02"
