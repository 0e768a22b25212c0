"""Templates cannot reach Python internals, and cannot exhaust time, memory or the stack."""

from __future__ import annotations

import time
from typing import Any

import pytest

from headwater.daemon.expressions import (
    ExpressionError,
    ExpressionSyntaxError,
    Limits,
    RenderContext,
    parse,
    render,
)

pytestmark = pytest.mark.unit

LEAK_MARKERS = ("<class", "<function", "<built-in", "<module", "object at 0x", "<frame")


def context(**variables: Any) -> RenderContext:
    return RenderContext(
        variables={"inputs": {"name": "x"}, **variables},
        secret=lambda name: "s3cr3t",
        read=lambda path: "file",
    )


def refused(source: str, **variables: Any) -> str:
    """The error text for `source`, which must fail to parse or to render."""
    with pytest.raises((ExpressionError, ExpressionSyntaxError)) as caught:
        render(source, context(**variables))
    text = str(caught.value)
    assert not any(marker in text for marker in LEAK_MARKERS), text
    return text


# -- escape attempts -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("{{ ''.__class__ }}", "`''` is text, which has no keys"),
        ("{{ ''.__class__.__mro__[1] }}", "`''` is text, which has no keys"),
        ("{{ [].__class__ }}", "`[]` is a list; index it with a number"),
        ("{{ {}.__class__ }}", "`{}` has no key `__class__`; it is empty"),
        ("{{ 1 .__class__ }}", "`1` is a number, which has no keys"),
        ("{{ now.__globals__ }}", "there is no variable `now`"),
        ("{{ secret.__init__ }}", "there is no variable `secret`"),
        ("{{ (now) }}", "there is no variable `now`"),
        ("{{ now }}", "there is no variable `now`"),
        ("{{ self }}", "there is no variable `self`"),
        ("{{ _self }}", "there is no variable `_self`"),
        ("{{ _context }}", "there is no variable `_context`"),
        ("{{ config }}", "there is no variable `config`"),
        ("{{ request }}", "there is no variable `request`"),
        ("{{ lipsum.__globals__ }}", "there is no variable `lipsum`"),
        ("{{ cycler.__init__.__globals__.os }}", "there is no variable `cycler`"),
        ("{{ joiner.__init__ }}", "there is no variable `joiner`"),
        ("{{ namespace }}", "there is no variable `namespace`"),
        ("{{ range.__globals__ }}", "there is no variable `range`"),
        ("{{ __builtins__ }}", "there is no variable `__builtins__`"),
        ("{{ inputs.__class__ }}", "`inputs` has no key `__class__`"),
        ("{{ inputs.name.__len__ }}", "`inputs.name` is text, which has no keys"),
        ("{{ inputs['__class__'] }}", "`inputs` has no key `__class__`"),
        ("{{ inputs.keys }}", "`inputs` has no key `keys`"),
        ("{{ loop.__class__ }}", "there is no variable `loop`"),
        ("{{ 'abc'[0] }}", "`'abc'` is text, which has no keys"),
    ],
)
def test_attribute_escapes_are_undefined(source: str, reason: str) -> None:
    assert reason in refused(source)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            "{{ ''.__class__.__mro__[1].__subclasses__() }}",
            "only functions can be called, and only by name, as in now()",
        ),
        ("{{ '{0.__class__}'.format(inputs) }}", "only functions can be called"),
        ("{{ [].pop() }}", "only functions can be called"),
        ("{{ (now)() }}", "only functions can be called"),
        ("{{ __import__('os') }}", "unknown function '__import__'"),
        ("{{ getattr(inputs, '__class__') }}", "unknown function 'getattr'"),
        ("{{ eval('1') }}", "unknown function 'eval'"),
        ("{{ inputs | attr('__class__') }}", "unknown filter 'attr'"),
        ("{{ inputs | __class__ }}", "unknown filter '__class__'"),
        ("{{ 'x' | format(1) }}", "unknown filter 'format'"),
        ("{{ 'x' | date(__class__=1) }}", "filter 'date': no argument named '__class__'"),
        ("{{ 'x' | upper(rt=1) }}", "filter 'upper': no argument named 'rt'"),
        ("{{ now(rt=1) }}", "function 'now': no argument named 'rt'"),
        ("{% import 'os' %}", "tag 'import' is not supported"),
        ("{% include '/etc/passwd' %}", "tag 'include' is not supported"),
        ("{% macro m() %}{% endmacro %}", "tag 'macro' is not supported"),
    ],
)
def test_calls_on_values_and_unknown_callables_are_syntax_errors(source: str, message: str) -> None:
    with pytest.raises(ExpressionSyntaxError) as caught:
        parse(source)
    assert message in caught.value.message


def test_python_string_formatting_is_not_reachable() -> None:
    assert "cannot apply '%' to text and a number" in refused("{{ '%s' % 1 }}")


def test_a_dunder_key_in_data_is_just_data() -> None:
    assert render("{{ x.__dict__ }}", context(x={"__dict__": "plain"})) == "plain"
    assert "`x` has no key `__dict__`" in refused("{{ x.__dict__ }}", x={})


class Spy:
    """A Python object put in the context by mistake; records any attribute read."""

    touched: list[str] = []

    def __getattribute__(self, name: str) -> Any:
        Spy.touched.append(name)
        return object.__getattribute__(self, name)

    def __repr__(self) -> str:
        return "<Spy object at 0xdeadbeef>"


def test_python_objects_in_the_context_are_opaque() -> None:
    Spy.touched.clear()
    spy = Spy()
    for source in ("{{ x.__class__ }}", "{{ x.secret }}", "{{ x['__dict__'] }}", "{{ x }}"):
        text = refused(source, x=spy)
        assert "0xdeadbeef" not in text
    assert "which has no keys" in refused("{{ x.__class__ }}", x=spy)
    # isinstance() may look at __class__; no name a template chose is ever read.
    assert set(Spy.touched) <= {"__class__"}


def test_functions_are_not_values() -> None:
    assert "`now` is undefined" in refused("{{ [now] }}")
    assert "`now` is undefined" in refused("{% set f = now %}")
    assert "`upper` is undefined" in refused("{{ 'x' | default(upper) }}")


def test_secret_values_are_only_where_asked_for() -> None:
    assert render("{{ secret('A') }}", context()) == "s3cr3t"
    assert "s3cr3t" not in refused("{{ secret('A') + 1 }}")


# -- resource bombs: each must fail fast with a clear message ---------------------------

HANG = 60.0  # seconds: a bomb that takes this long was not stopped by any budget
# Budgets other than time, tested on their own: on a busy machine the one-second time
# budget could otherwise stop a render before the budget a test is about.
NO_TIME_BUDGET = Limits(max_seconds=HANG)


def bomb(source: str, limits: Limits | None = None, **variables: Any) -> str:
    ctx = RenderContext(variables=variables, limits=limits or NO_TIME_BUDGET)
    started = time.perf_counter()
    with pytest.raises((ExpressionError, ExpressionSyntaxError)) as caught:
        render(source, ctx)
    assert time.perf_counter() - started < HANG
    return str(caught.value)


def test_huge_range_in_a_for_loop() -> None:
    text = bomb("{% for i in 1..100000000 %}{{ i }}{% endfor %}")
    assert "result is longer than 1000000 characters or items" in text


def test_long_loop_runs_out_of_steps() -> None:
    text = bomb("{% for i in range(1, 900000) %}{{ i }}{% endfor %}")
    assert text.endswith(": evaluation took more than 100000 steps")


def test_nested_loops_run_out_of_steps() -> None:
    source = "{% for a in 1..1000 %}{% for b in 1..1000 %}{% endfor %}{% endfor %}"
    assert "evaluation took more than 100000 steps" in bomb(source)


def test_slow_loop_runs_out_of_time() -> None:
    limits = Limits(max_steps=10**12, max_seconds=0.05)
    source = "{% for i in 1..900000 %}{% set x = i ~ i %}{% endfor %}"
    assert "evaluation took longer than 0.05 s" in bomb(source, limits)


def test_string_doubling_with_set_in_a_loop() -> None:
    source = "{% set s = 'x' %}{% for i in 1..100 %}{% set s = s ~ s %}{% endfor %}{{ s }}"
    assert "result is longer than 1000000 characters or items" in bomb(source)


def test_list_doubling_with_set_in_a_loop() -> None:
    source = "{% set l = [1] %}{% for i in 1..100 %}{% set l = l + l %}{% endfor %}"
    assert "result is longer than 1000000 characters or items" in bomb(source)


def test_output_growth_is_bounded() -> None:
    limits = Limits(max_output_chars=1000)
    text = bomb("{% for i in 1..1000 %}xxxxxxxxxx{% endfor %}", limits)
    assert "output is longer than 1000 characters" in text


def test_join_is_bounded() -> None:
    text = bomb("{{ range(1, 50000) | join('------------------------------') }}")
    assert "result is longer than 1000000 characters or items" in text
    assert "evaluation took more than 100000 steps" in bomb("{{ range(1, 400000) | join }}")


def test_work_on_big_lists_from_outputs_is_metered() -> None:
    rows = list(range(500_000))
    assert "evaluation took more than 100000 steps" in bomb("{{ rows | sort }}", rows=rows)
    assert "evaluation took more than 100000 steps" in bomb("{{ -1 in rows }}", rows=rows)
    assert "evaluation took more than 100000 steps" in bomb("{{ rows == rows }}", rows=rows)


def test_shared_structure_bomb_cannot_be_printed() -> None:
    source = (
        "{% set a = [1,1,1,1,1,1,1,1,1,1] %}{% set b = [a,a,a,a,a,a,a,a,a,a] %}"
        "{% set c = [b,b,b,b,b,b,b,b,b,b] %}{% set d = [c,c,c,c,c,c,c,c,c,c] %}"
        "{% set e = [d,d,d,d,d,d,d,d,d,d] %}{% set f = [e,e,e,e,e,e,e,e,e,e] %}"
        "{% set g = [f,f,f,f,f,f,f,f,f,f] %}{% set h = [g,g,g,g,g,g,g,g,g,g] %}"
    )
    assert "value is too large to print" in bomb(source + "{{ h }}")
    assert "value is too large to print" in bomb(source + "{{ h | json }}")
    assert "evaluation took more than 100000 steps" in bomb(source + "{{ h == h }}")
    assert "evaluation took more than 100000 steps" in bomb(source + "{{ h in [h] }}")


def test_cyclic_data_from_the_caller_cannot_hang_printing() -> None:
    loop: list[Any] = []
    loop.append(loop)
    assert "value is too large to print" in bomb("{{ x }}", x=loop)


def test_recursive_render_is_bounded() -> None:
    text = bomb("{% set x = '{{ render(x) }}' %}{{ render(x) }}")
    assert "render() nested more than 5 levels deep" in text


def test_fanning_out_render_is_bounded() -> None:
    source = "{% set x = '{{ render(x) ~ render(x) ~ render(x) ~ render(x) }}' %}{{ render(x) }}"
    assert "render() nested more than 5 levels deep" in bomb(source)


def test_integer_growth_overflows() -> None:
    source = "{% set x = 2 %}{% for i in 1..100 %}{% set x = x * x %}{% endfor %}"
    assert "integer overflow" in bomb(source)


def test_there_is_no_power_operator() -> None:
    assert "'**' is not supported" in bomb("{{ 9 ** 9 ** 9 }}")


def test_string_repetition_does_not_exist() -> None:
    assert "cannot apply '*' to text and a number" in bomb("{{ 'x' * 100000000 }}")


def test_deeply_nested_json_is_refused() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    assert "JSON nested too deeply" in bomb("{{ fromJson(s) }}", s=deep)


def test_deep_parentheses_are_a_syntax_error() -> None:
    text = bomb("{{ " + "(" * 10_000 + "1" + ")" * 10_000 + " }}")
    assert "too deeply nested" in text


def test_deep_render_of_a_nested_template_text() -> None:
    text = bomb("{{ render(s) }}", s="{{ " + "[" * 10_000 + "]" * 10_000 + " }}")
    assert "too deeply nested" in text


def test_small_limits_are_honoured() -> None:
    limits = Limits(max_steps=10)
    assert "evaluation took more than 10 steps" in bomb("{{ [1,2,3,4,5,6,7,8,9,10,11] }}", limits)
    limits = Limits(max_render_depth=1)
    assert "render() nested more than 1 levels deep" in bomb(
        "{{ render('{{ render(\"x\") }}') }}", limits
    )
