"""Every filter and every function, with their errors."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from headwater.daemon.errors import HeadwaterError
from headwater.daemon.expressions import ExpressionError, Limits, RenderContext, parse, render
from headwater.daemon.expressions.filters import FILTERS
from headwater.daemon.expressions.functions import FUNCTIONS

pytestmark = pytest.mark.unit

SECRETS = {"DB_PASSWORD": "hunter2"}
FILES = {"queries/q.sql": "SELECT 1", "tpl.txt": "hi {{ inputs.name }}"}
NOW = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


def context(**variables: Any) -> RenderContext:
    return RenderContext(
        variables={"inputs": {"name": "World", "list": [3, 1, 2]}, **variables},
        secret=lambda name: SECRETS[name],
        read=lambda path: FILES[path],
        now=lambda: NOW,
    )


def r(source: str, **variables: Any) -> str:
    return render(source, context(**variables))


def value(source: str, **variables: Any) -> Any:
    return parse(source).evaluate(context(**variables))


def fails(source: str, **variables: Any) -> ExpressionError:
    with pytest.raises(ExpressionError) as caught:
        r(source, **variables)
    return caught.value


# -- the tables ------------------------------------------------------------------------


def test_every_filter_and_function_is_covered_below() -> None:
    with open(__file__, encoding="utf-8") as handle:
        text = handle.read()
    for name in FILTERS:
        assert re.search(rf"\| {name}\b", text), f"no test uses filter {name}"
    for name in FUNCTIONS:
        assert re.search(rf"\b{name}\(", text), f"no test calls function {name}"


# -- text filters ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ 'Hello' | upper }}", "HELLO"),
        ("{{ 'Hello' | lower }}", "hello"),
        ("{{ 12 | upper }}", "12"),
        ("{{ '  x y  ' | trim }}", "x y"),
        ("{{ null | upper }}", ""),
        ("{{ 'hello world' | capitalize }}", "Hello world"),
        ("{{ 'hello  big world' | title }}", "Hello  Big World"),
        ("{{ 'hello world' | abbreviate(8) }}", "hello..."),
        ("{{ 'short' | abbreviate(8) }}", "short"),
        ("{{ 'Héllo, World! 2024' | slugify }}", "hello-world-2024"),
        ("{{ '  --A  b__c-- ' | slugify }}", "a-b-c"),
        ("{{ 'a.b.c' | replace({'.': '/', 'a': 'A'}) }}", "A/b/c"),
        ("{{ 'a.b.c' | replace('.', '-') }}", "a-b-c"),
        ("{{ 'a*b' | replace('*', '.') }}", "a.b"),
        ("{{ 'a,b,,c,,' | split(',') }}", '["a","b","","c"]'),
        ("{{ 'a,b,c' | split(',', 2) }}", '["a","b,c"]'),
        ("{{ 'abc' | split(',') }}", '["abc"]'),
        ("{{ 'a.b' | split('.') }}", '["a","b"]'),
        ("{{ 'report.csv' | startsWith('rep') }}", "true"),
        ("{{ 'report.csv' | endsWith('.csv') }}", "true"),
        ("{{ 'report.csv' | endsWith('.txt') }}", "false"),
        ("{{ 'a/b/c' | substringBefore('/') }}", "a"),
        ("{{ 'a/b/c' | substringAfter('/') }}", "b/c"),
        ("{{ 'a/b/c' | substringBeforeLast('/') }}", "a/b"),
        ("{{ 'a/b/c' | substringAfterLast('/') }}", "c"),
        ("{{ 'abc' | substringBefore('x') }}", "abc"),
        ("{{ 'abc' | substringAfter('x') }}", ""),
        ("{{ 'a b&c=d/é' | urlencode }}", "a+b%26c%3Dd%2F%C3%A9"),
        ("{{ 12.5 | string ~ '!' }}", "12.5!"),
        ("{{ [1, 'a'] | string }}", '[1,"a"]'),
    ],
)
def test_text_filters(source: str, expected: str) -> None:
    assert r(source) == expected


def test_split_rejects_an_empty_delimiter() -> None:
    assert fails("{{ 'abc' | split('') }}").message == (
        "filter 'split': the delimiter must not be empty"
    )


def test_replace_needs_a_map_or_two_texts() -> None:
    assert fails("{{ 'a' | replace('a') }}").message == (
        "filter 'replace': needs a map, or the text to find and its replacement"
    )


def test_text_filters_refuse_lists() -> None:
    assert fails("{{ [1] | upper }}").message == "filter 'upper': expects text, got a list"


# -- JSON, hashes, base64 ------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ {'a': [1, 2.5, null, true], 'é': 'ü'} | json }}", '{"a":[1,2.5,null,true],"é":"ü"}'),
        ("{{ 'text' | toJson }}", '"text"'),
        ("{{ null | json }}", "null"),
        ("{{ 3 | json }}", "3"),
        (
            "{{ 'abc' | sha256 }}",
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        ),
        ("{{ 'abc' | md5 }}", "900150983cd24fb0d6963f7d28e17f72"),
        ("{{ 'abc' | sha1 }}", "a9993e364706816aba3e25717850c26c9cd0d89d"),
        ("{{ 'abc' | sha512 | length }}", "128"),
        ("{{ 'héllo' | b64encode }}", "aMOpbGxv"),
        ("{{ 'aMOpbGxv' | b64decode }}", "héllo"),
        ("{{ 'hi' | base64encode }}", "aGk="),
        ("{{ 'aGk=' | base64decode }}", "hi"),
    ],
)
def test_encoding_filters(source: str, expected: str) -> None:
    assert r(source) == expected


def test_json_of_a_date_is_its_iso_text() -> None:
    assert r("{{ d | json }}", d=datetime(2024, 1, 2, tzinfo=UTC)) == '"2024-01-02T00:00:00Z"'


def test_b64decode_of_garbage_is_an_error() -> None:
    assert fails("{{ '***' | b64decode }}").message == (
        "filter 'b64decode': not valid base64 text (or not UTF-8 once decoded)"
    )


# -- collections ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ missing | default('d') }}", "d"),
        ("{{ inputs.nope | default('d') }}", "d"),
        ("{{ null | default('d') }}", "d"),
        ("{{ '' | default('d') }}", "d"),
        ("{{ [] | default('d') }}", "d"),
        ("{{ 0 | default('d') }}", "0"),
        ("{{ false | default('d') }}", "false"),
        ("{{ 'x' | default('d') }}", "x"),
        ("{{ inputs.list | length }}", "3"),
        ("{{ 'abcd' | length }}", "4"),
        ("{{ {'a': 1} | length }}", "1"),
        ("{{ null | length }}", "0"),
        ("{{ inputs.list | join }}", "312"),
        ("{{ inputs.list | join(', ') }}", "3, 1, 2"),
        ("{{ ['a', null, true, [1]] | join('|') }}", "a||true|[1]"),
        ("{{ inputs.list | first }}", "3"),
        ("{{ inputs.list | last }}", "2"),
        ("{{ 'abc' | first }}", "a"),
        ("{{ 'abc' | last }}", "c"),
        ("{{ [] | first }}", ""),
        ("{{ {'b': 1, 'a': 2} | keys }}", '["b","a"]'),
        ("{{ {'b': 1, 'a': 2} | values }}", "[1,2]"),
        ("{{ inputs.list | sort }}", "[1,2,3]"),
        ("{{ ['b', 'c', 'a'] | sort }}", '["a","b","c"]'),
        ("{{ inputs.list | rsort }}", "[3,2,1]"),
        ("{{ inputs.list | reverse }}", "[2,1,3]"),
        ("{{ 'abc' | reverse }}", "cba"),
        ("{{ [1, 2, 1, 1.0, true, 'a', 'a', [1], [1]] | unique }}", '[1,2,true,"a",[1]]'),
        ("{{ [1, 1] | distinct }}", "[1]"),
        ("{{ [1, 2, 3, 4] | slice(1, 3) }}", "[2,3]"),
        ("{{ 'abcdef' | slice(2) }}", "cdef"),
        ("{{ 'abcdef' | slice(fromIndex=1, toIndex=2) }}", "b"),
        ("{{ null | default(default='d') }}", "d"),
        ("{{ [1, 2, 3, 4, 5] | chunk(2) }}", "[[1,2],[3,4],[5]]"),
        ("{{ [1] | merge([2]) }}", "[1,2]"),
        ("{{ {'a': 1, 'b': 1} | merge({'b': 2}) }}", '{"a":1,"b":2}'),
    ],
)
def test_collection_filters(source: str, expected: str) -> None:
    assert r(source) == expected


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ 3 | length }}", "filter 'length': has no length for a number"),
        ("{{ 'a' | join }}", "filter 'join': expects a list, got text"),
        ("{{ [1] | keys }}", "filter 'keys': expects a map, got a list"),
        (
            "{{ [1, 'a'] | sort }}",
            "filter 'sort': can only sort a list of texts or a list of numbers",
        ),
        ("{{ [1] | chunk(0) }}", "filter 'chunk': size must be at least 1"),
        ("{{ [1] | slice('a') }}", "filter 'slice': fromIndex must be a whole number, got text"),
    ],
)
def test_collection_filter_errors(source: str, message: str) -> None:
    assert fails(source).message == message


# -- numbers --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ '12' | number }}", 12),
        ("{{ ' -3 ' | number }}", -3),
        ("{{ '1.5' | number }}", 1.5),
        ("{{ '1e3' | number }}", 1000.0),
        ("{{ '7' | number('FLOAT') }}", 7.0),
        ("{{ '7' | number('DOUBLE') }}", 7.0),
        ("{{ '7' | number('INT') }}", 7),
        ("{{ '7' | number(type='LONG') }}", 7),
        ("{{ 2.0 | number('INT') }}", 2),
        ("{{ '12' | number + 1 }}", 13),
        ("{{ -4 | abs }}", 4),
        ("{{ (-4) | abs }}", 4),
        ("{{ (-2.5) | abs }}", 2.5),
        ("{{ 2.5 | round }}", 3),
        ("{{ (-2.5) | round }}", -3),
        ("{{ 2.4 | round }}", 2),
        ("{{ 2.345 | round(2) }}", 2.35),
        ("{{ 1234 | round(-2) }}", 1200),
    ],
)
def test_number_filters(source: str, expected: Any) -> None:
    result = value(source)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ 'abc' | number }}", "filter 'number': cannot read 'abc' as a number"),
        ("{{ '1.5' | number('INT') }}", "filter 'number': cannot read '1.5' as a number"),
        (
            "{{ '1' | number('BYTE') }}",
            "filter 'number': unknown number type 'BYTE'; use INT, LONG, FLOAT or DOUBLE",
        ),
        ("{{ 'a' | abs }}", "filter 'abs': expects a number, got text"),
        ("{{ 'a' | round }}", "filter 'round': expects a number, got text"),
    ],
)
def test_number_filter_errors(source: str, message: str) -> None:
    assert fails(source).message == message


# -- date filters (patterns in depth: test_expressions_dates.py) ----------------------


def test_date_timestamp_and_date_add_filters() -> None:
    d = datetime(2024, 3, 9, 14, 5, 7, 250000, tzinfo=UTC)
    assert r("{{ d | date('yyyy-MM-dd') }}", d=d) == "2024-03-09"
    assert r("{{ d | date }}", d=d) == "2024-03-09T14:05:07.250000Z"
    assert r("{{ d | dateAdd(1, 'DAYS') }}", d=d) == "2024-03-10T14:05:07.250000Z"
    assert r("{{ d | dateAdd(1, 'DAYS', format='yyyy-MM-dd') }}", d=d) == "2024-03-10"
    assert r("{{ d | timestamp }}", d=d) == "1709993107"
    assert r("{{ d | timestampMilli }}", d=d) == "1709993107250"
    assert r("{{ d | timestampMicro }}", d=d) == "1709993107250000"
    assert r("{{ d | timestampNano }}", d=d) == "1709993107250000000"


# -- functions -----------------------------------------------------------------------


def test_now_uses_the_callers_clock() -> None:
    assert value("{{ now() }}") == NOW
    assert r("{{ now() }}") == "2024-01-02T03:04:05Z"
    assert r("{{ now() | date('yyyy') }}") == "2024"


def test_now_reads_a_naive_clock_as_utc() -> None:
    ctx = RenderContext(variables={}, now=lambda: datetime(2024, 1, 1))
    assert parse("{{ now() }}").evaluate(ctx) == datetime(2024, 1, 1, tzinfo=UTC)


def test_now_defaults_to_the_real_clock_in_utc() -> None:
    got = parse("{{ now() }}").evaluate(RenderContext(variables={}))
    assert got.tzinfo is not None
    assert abs(got - datetime.now(UTC)) < timedelta(seconds=5)


def test_secret_calls_the_callback() -> None:
    assert r("{{ secret('DB_PASSWORD') }}") == "hunter2"


@pytest.mark.parametrize(
    ("lookup", "message"),
    [
        (None, "secret 'API_KEY' cannot be read here: no secret store is set up"),
        (lambda name: SECRETS[name], "secret 'API_KEY' is not defined"),
        (lambda name: None, "secret 'API_KEY' is not defined"),
        (lambda name: 42, "secret 'API_KEY' is not text"),
    ],
)
def test_secret_errors_name_the_secret(lookup: Any, message: str) -> None:
    ctx = RenderContext(variables={}, secret=lookup)
    with pytest.raises(ExpressionError) as caught:
        render("{{ secret('API_KEY') }}", ctx)
    assert caught.value.message == message
    assert caught.value.expression == "{{ secret('API_KEY') }}"


def test_secret_errors_never_hold_a_value() -> None:
    def broken(name: str) -> str:
        raise RuntimeError("the value is s3cr3t")

    def store_error(name: str) -> str:
        raise HeadwaterError("secrets file /etc/hw/secrets is not readable")

    with pytest.raises(ExpressionError) as caught:
        render("{{ secret('K') }}", RenderContext(variables={}, secret=broken))
    assert "s3cr3t" not in str(caught.value)
    assert caught.value.message == "secret 'K' cannot be read (RuntimeError)"
    with pytest.raises(ExpressionError) as caught:
        render("{{ secret('K') }}", RenderContext(variables={}, secret=store_error))
    assert caught.value.message == (
        "secret 'K' cannot be read: secrets file /etc/hw/secrets is not readable"
    )


def test_secret_name_must_be_text() -> None:
    assert fails("{{ secret(1) }}").message == (
        "the secret's name must be non-empty text, got a number"
    )


def test_read_calls_the_callback() -> None:
    assert r("{{ read('queries/q.sql') }}") == "SELECT 1"


def test_read_errors() -> None:
    assert fails("{{ read('nope.txt') }}").message == "file 'nope.txt' not found"
    with pytest.raises(ExpressionError) as caught:
        render("{{ read('a') }}", RenderContext(variables={}))
    assert caught.value.message == "cannot read 'a': reading files is not available here"


def test_render_renders_text_holding_expressions() -> None:
    assert r("{{ render('{{ inputs.name }}!') }}") == "World!"
    assert r("{{ render(read('tpl.txt')) }}") == "hi World"
    assert r("{% set t = '{{ x * 2 }}' %}{% set x = 21 %}{{ render(t) }}") == "42"
    assert value("{{ render(5) }}") == 5


def test_render_errors_say_they_come_from_render() -> None:
    error = fails("{{ render('{{ nope }}') }}")
    assert error.expression == "{{ render('{{ nope }}') }}"
    assert error.message.startswith("render(): {{ nope }}: `nope` is undefined")
    error = fails("{{ render('{{ 1 + }}') }}")
    assert error.message == (
        "render(): line 1, column 8: unexpected '}}' in expression: expected a value"
    )


def test_json_and_from_json_parse_json_text() -> None:
    assert value("{{ fromJson('{\"a\": [1, 2]}') }}") == {"a": [1, 2]}
    assert r("{{ fromJson('{\"a\": [1, 2]}').a[1] }}") == "2"
    assert value("{{ json('[true, null]') }}") == [True, None]
    assert fails("{{ fromJson('{nope') }}").message.startswith("not valid JSON: ")
    assert fails("{{ json(1) }}").message == "expects JSON text, got a number"


def test_uuid_is_a_fresh_uuid4() -> None:
    first, second = r("{{ uuid() }}"), r("{{ uuid() }}")
    assert re.fullmatch(
        r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", first
    )
    assert first != second


def test_range_max_min() -> None:
    assert r("{{ range(1, 3) }}") == "[1,2,3]"
    assert r("{{ range(0, 10, 5) }}") == "[0,5,10]"
    assert r("{{ range(3, 1, -1) }}") == "[3,2,1]"
    assert r("{{ max(1, 5, 3) }}") == "5"
    assert r("{{ min(4, 2, 9) }}") == "2"
    assert r("{{ max(inputs.list) }}") == "3"
    assert r("{{ min(['b', 'a']) }}") == "a"
    assert fails("{{ range(1, 2, 0) }}").message == "range step must not be 0"
    assert fails("{{ max(1, 'a') }}").message == "cannot compare text with a number"


def test_range_is_bounded_by_the_size_budget() -> None:
    error = fails("{{ range(1, 100000000000) }}")
    assert error.message == "result is longer than 1000000 characters or items"


def test_filters_respect_a_small_output_budget() -> None:
    ctx = RenderContext(variables={"x": "ab" * 10}, limits=Limits(max_output_chars=50))
    with pytest.raises(ExpressionError) as caught:
        render("{{ x | replace('a', 'aaaaaaaaaa') }}", ctx)
    assert caught.value.message == "result is longer than 50 characters or items"
    with pytest.raises(ExpressionError):
        render("{{ [x, x, x] | join }}", ctx)
    with pytest.raises(ExpressionError):
        render("{{ x ~ x ~ x | b64encode }}", ctx)


def test_filter_given_a_timezone_aware_offset() -> None:
    d = datetime(2024, 1, 1, 23, 30, tzinfo=timezone(timedelta(hours=-5)))
    assert r("{{ d | date('yyyy-MM-dd HH:mm XXX') }}", d=d) == "2024-01-01 23:30 -05:00"
