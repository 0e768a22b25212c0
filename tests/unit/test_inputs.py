"""Typed inputs: every type good and bad, defaults, dependsOn, files, several problems."""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from typing import Any

import pytest
from pydantic import TypeAdapter

from headwater.daemon.engine.inputs import (
    InputProblem,
    InputsRefused,
    UploadedFile,
    resolve_inputs,
    secret_values,
)
from headwater.daemon.errors import HeadwaterError
from headwater.daemon.flow.inputs import AnyInput, Input
from headwater.daemon.flow.model import Flow

pytestmark = pytest.mark.unit

ADAPTER: TypeAdapter[Input] = TypeAdapter(AnyInput)


def declare(**raw: Any) -> Input:
    return ADAPTER.validate_python(raw)


def refused(declared: Sequence[Input], given: dict[str, Any], **kwargs: Any) -> list[str]:
    with pytest.raises(InputsRefused) as caught:
        resolve_inputs(declared, given, **kwargs)
    return [str(p) for p in caught.value.problems]


def value_of(spec: dict[str, Any], given: Any) -> Any:
    return resolve_inputs([declare(id="x", **spec)], {"x": given})["x"]


def problem_of(spec: dict[str, Any], given: Any) -> str:
    problems = refused([declare(id="x", **spec)], {"x": given})
    assert len(problems) == 1
    return problems[0].removeprefix("input 'x': ")


class FakeStorage:
    """The internal-storage seam: records what it was asked to store."""

    def __init__(self) -> None:
        self.stored: list[tuple[str, str, bytes]] = []

    def __call__(self, input_id: str, upload: UploadedFile) -> str:
        self.stored.append((input_id, upload.filename, upload.data))
        return f"hw://inputs/{input_id}/{upload.filename}"


# -- every type, good ----------------------------------------------------------------------

GOOD: list[tuple[dict[str, Any], Any, Any]] = [
    ({"type": "STRING"}, "hello", "hello"),
    ({"type": "STRING"}, 42, "42"),
    ({"type": "STRING"}, True, "true"),
    ({"type": "STRING", "validator": "^[a-z]+$"}, "abc", "abc"),
    ({"type": "SECRET", "validator": "[A-Z0-9]{4}"}, "AB12", "AB12"),
    ({"type": "INT"}, "42", 42),
    ({"type": "INT"}, " -7 ", -7),
    ({"type": "INT", "min": 1, "max": 10}, 10, 10),
    ({"type": "INT", "min": 1, "max": 10}, "1", 1),
    ({"type": "FLOAT"}, "1.5", 1.5),
    ({"type": "FLOAT"}, 2, 2.0),
    ({"type": "FLOAT"}, "-1e3", -1000.0),
    ({"type": "FLOAT"}, ".5", 0.5),
    ({"type": "FLOAT", "min": 0.5, "max": 1}, 1.0, 1.0),
    ({"type": "BOOLEAN"}, True, True),
    ({"type": "BOOLEAN"}, "FALSE", False),
    ({"type": "BOOL"}, "true", True),
    ({"type": "DATETIME"}, "2024-01-31T10:00:00Z", "2024-01-31T10:00:00Z"),
    ({"type": "DATETIME"}, "2024-01-31T11:30+01:00", "2024-01-31T10:30:00Z"),
    ({"type": "DATETIME"}, "2024-01-31 10:00:00.250-0200", "2024-01-31T12:00:00.250Z"),
    ({"type": "DATETIME"}, "2024-01-31T10:00:00.123456z", "2024-01-31T10:00:00.123456Z"),
    (
        {"type": "DATETIME", "after": "2024-01-01T00:00:00Z", "before": "2024-02-01T00:00:00Z"},
        "2024-01-31T23:59:59Z",
        "2024-01-31T23:59:59Z",
    ),
    ({"type": "DATE"}, "2024-01-31", "2024-01-31"),
    ({"type": "DATE", "after": "2024-01-01", "before": "2024-12-31"}, "2024-06-01", "2024-06-01"),
    ({"type": "TIME"}, "09:30", "09:30:00"),
    ({"type": "TIME", "after": "08:00", "before": "18:00:00"}, "17:59:59", "17:59:59"),
    ({"type": "DURATION"}, "pt1h30m", "PT1H30M"),
    ({"type": "DURATION", "min": "PT1H", "max": "P1D"}, "PT1H", "PT1H"),
    ({"type": "DURATION", "min": "PT1H", "max": "P1D"}, "P1D", "P1D"),
    ({"type": "SELECT", "values": ["csv", "xlsx"]}, "xlsx", "xlsx"),
    ({"type": "ENUM", "values": ["1", "2"]}, 2, "2"),
    ({"type": "SELECT", "values": ["csv"], "allowCustomValue": True}, "pdf", "pdf"),
    ({"type": "SELECT", "values": "{{ ['a', 'b'] }}"}, "b", "b"),
    ({"type": "SELECT", "values": '["a", "b"]'}, "a", "a"),
    ({"type": "MULTISELECT", "values": ["a", "b", "c"]}, ["c", "a"], ["c", "a"]),
    ({"type": "MULTISELECT", "values": ["a", "b", "c"]}, '["b"]', ["b"]),
    ({"type": "MULTISELECT", "values": ["a", "b", "c"]}, "a, c", ["a", "c"]),
    ({"type": "MULTISELECT", "options": ["a", "b"]}, ["a"], ["a"]),
    ({"type": "MULTISELECT", "values": ["a"], "allowCustomValue": True}, "a,z", ["a", "z"]),
    ({"type": "MULTISELECT", "values": ["a"]}, [], []),
    ({"type": "ARRAY"}, ["a", 1], ["a", "1"]),
    ({"type": "ARRAY", "itemType": "INT"}, "[1, 2, 3]", [1, 2, 3]),
    ({"type": "ARRAY", "itemType": "INT"}, ["4", 5], [4, 5]),
    ({"type": "ARRAY", "itemType": "BOOLEAN"}, ["true", False], [True, False]),
    ({"type": "ARRAY", "itemType": "DATE"}, ["2024-01-31"], ["2024-01-31"]),
    (
        {"type": "ARRAY", "itemType": "DATETIME"},
        ["2024-01-31T10:00+00:00"],
        ["2024-01-31T10:00:00Z"],
    ),
    ({"type": "ARRAY", "itemType": "TIME"}, ["10:00"], ["10:00:00"]),
    ({"type": "ARRAY", "itemType": "DURATION"}, ["pt5m"], ["PT5M"]),
    ({"type": "ARRAY", "itemType": "JSON"}, ['{"a": 1}', [2]], [{"a": 1}, [2]]),
    ({"type": "ARRAY", "itemType": "FLOAT"}, [1, "2.5"], [1.0, 2.5]),
    ({"type": "JSON"}, '{"status": "paid", "n": [1, 2]}', {"status": "paid", "n": [1, 2]}),
    ({"type": "JSON"}, {"a": 1}, {"a": 1}),
    ({"type": "JSON"}, 3, 3),
    (
        {"type": "YAML"},
        "a: 1\nday: 2024-01-31\nb: [x, y]\n",
        {"a": 1, "day": "2024-01-31", "b": ["x", "y"]},
    ),
    ({"type": "YAML"}, ["x"], ["x"]),
    ({"type": "URI"}, "https://example.com/a?b=c", "https://example.com/a?b=c"),
    ({"type": "URI"}, "s3://bucket/key.csv", "s3://bucket/key.csv"),
    ({"type": "URI"}, "file:///tmp/x", "file:///tmp/x"),
    ({"type": "URI"}, "mailto:a@example.com", "mailto:a@example.com"),
    ({"type": "EMAIL"}, "analyst@example.com", "analyst@example.com"),
    ({"type": "EMAIL"}, " first.last+tag@mail.example.co.uk ", "first.last+tag@mail.example.co.uk"),
    (
        {"type": "FILE"},
        "kestra://company/team/flow/file.csv",
        "kestra://company/team/flow/file.csv",
    ),
    ({"type": "FILE", "extension": ".csv"}, "hw://stored/anything", "hw://stored/anything"),
]


@pytest.mark.parametrize(("spec", "given", "expected"), GOOD)
def test_a_good_value_becomes_its_typed_value(
    spec: dict[str, Any], given: Any, expected: Any
) -> None:
    resolved = resolve_inputs([declare(id="x", **spec)], {"x": given}, store_file=FakeStorage())
    assert resolved == {"x": expected}
    assert type(resolved["x"]) is type(expected)


# -- every type, bad -----------------------------------------------------------------------

BAD: list[tuple[dict[str, Any], Any, str]] = [
    ({"type": "STRING"}, ["a"], "must be text, got a list"),
    ({"type": "STRING"}, {"a": 1}, "must be text, got a map"),
    (
        {"type": "STRING", "validator": "^[a-z]+$"},
        "ABC",
        "does not match the validator ^[a-z]+$, got 'ABC'",
    ),
    (
        {"type": "STRING", "validator": "[a-z]+"},
        "x" * 50 + "!",
        "does not match the validator [a-z]+, got '" + "x" * 37 + "...'",
    ),
    ({"type": "STRING", "validator": "a|b"}, "ab", "does not match the validator a|b, got 'ab'"),
    ({"type": "INT"}, "x", "must be an integer, got 'x'"),
    ({"type": "INT"}, "1.5", "must be an integer, got '1.5'"),
    ({"type": "INT"}, 1.5, "must be an integer, got 1.5"),
    ({"type": "INT"}, True, "must be an integer, got true"),
    ({"type": "INT"}, "1_000", "must be an integer, got '1_000'"),
    (
        {"type": "INT"},
        2**63,
        "must be an integer between -9223372036854775808 and 9223372036854775807, "
        "got 9223372036854775808",
    ),
    ({"type": "INT"}, "9" * 30, "must be an integer, got '" + "9" * 30 + "'"),
    ({"type": "INT", "min": 1}, "0", "must be at least 1, got 0"),
    ({"type": "INT", "max": 10}, 11, "must be at most 10, got 11"),
    ({"type": "FLOAT"}, "one", "must be a number, got 'one'"),
    ({"type": "FLOAT"}, "nan", "must be a number, got 'nan'"),
    ({"type": "FLOAT"}, "1e400", "must be a number, got '1e400'"),
    ({"type": "FLOAT"}, "1_000", "must be a number, got '1_000'"),
    ({"type": "INT"}, "\u0664\u0662", "must be an integer, got '\u0664\u0662'"),
    ({"type": "FLOAT"}, False, "must be a number, got false"),
    ({"type": "FLOAT", "min": 0.5}, 0.25, "must be at least 0.5, got 0.25"),
    ({"type": "FLOAT", "max": 1.5}, "2", "must be at most 1.5, got 2.0"),
    ({"type": "BOOLEAN"}, "yes", "must be true or false, got 'yes'"),
    ({"type": "BOOLEAN"}, 1, "must be true or false, got 1"),
    (
        {"type": "DATETIME"},
        "tomorrow",
        "must be a date-time like 2024-01-31T10:00:00Z, got 'tomorrow'",
    ),
    (
        {"type": "DATETIME"},
        "2024-02-30T10:00:00Z",
        "must be a date-time like 2024-01-31T10:00:00Z, got '2024-02-30T10:00:00Z'",
    ),
    (
        {"type": "DATETIME"},
        "2024-01-31T10:00:00",
        "must have a time zone, like 2024-01-31T10:00:00Z or 2024-01-31T10:00:00+01:00, "
        "got '2024-01-31T10:00:00'",
    ),
    (
        {"type": "DATETIME", "after": "2024-01-01T00:00:00Z"},
        "2024-01-01T01:00:00+01:00",
        "must be after 2024-01-01T00:00:00Z, got '2024-01-01T00:00:00Z'",
    ),
    (
        {"type": "DATETIME", "before": "2024-01-01T00:00:00Z"},
        "2024-01-01T00:00:00Z",
        "must be before 2024-01-01T00:00:00Z, got '2024-01-01T00:00:00Z'",
    ),
    ({"type": "DATE"}, "tomorrow", "must be a date like 2024-01-31, got 'tomorrow'"),
    ({"type": "DATE"}, "2024-13-01", "must be a date like 2024-01-31, got '2024-13-01'"),
    ({"type": "DATE"}, "20240131", "must be a date like 2024-01-31, got '20240131'"),
    (
        {"type": "DATE", "after": "2024-01-31"},
        "2024-01-31",
        "must be after 2024-01-31, got '2024-01-31'",
    ),
    (
        {"type": "DATE", "before": "2024-01-31"},
        "2024-02-01",
        "must be before 2024-01-31, got '2024-02-01'",
    ),
    ({"type": "TIME"}, "25:00", "must be a time like 18:00 or 18:00:30, got '25:00'"),
    ({"type": "TIME"}, "9:30", "must be a time like 18:00 or 18:00:30, got '9:30'"),
    ({"type": "TIME"}, 64800, "must be a time like 18:00 or 18:00:30, got 64800"),
    ({"type": "TIME", "after": "08:00"}, "07:59", "must be after 08:00:00, got '07:59:00'"),
    ({"type": "TIME", "before": "18:00"}, "18:00", "must be before 18:00:00, got '18:00:00'"),
    (
        {"type": "DURATION"},
        "90 minutes",
        "must be an ISO-8601 duration like PT30S, PT5M, PT1H30M or P1D, got '90 minutes'",
    ),
    (
        {"type": "DURATION"},
        30,
        "must be an ISO-8601 duration like PT30S, PT5M, PT1H30M or P1D, got 30",
    ),
    ({"type": "DURATION", "min": "PT1H"}, "PT59M", "must be at least PT1H, got 'PT59M'"),
    ({"type": "DURATION", "max": "P30D"}, "P31D", "must be at most P30D, got 'P31D'"),
    ({"type": "SELECT", "values": ["csv", "xlsx"]}, "pdf", "must be one of csv, xlsx, got 'pdf'"),
    ({"type": "SELECT", "values": ["csv", "xlsx"]}, "CSV", "must be one of csv, xlsx, got 'CSV'"),
    ({"type": "SELECT", "values": ["a"]}, ["a"], "must be text, got a list"),
    (
        {"type": "SELECT", "values": [str(n) for n in range(25)]},
        "x",
        "must be one of " + ", ".join(str(n) for n in range(20)) + " and 5 more, got 'x'",
    ),
    (
        {"type": "SELECT", "values": "{{ 'abc' }}"},
        "a",
        "its values must be a list, got 'abc'",
    ),
    (
        {"type": "MULTISELECT", "values": ["a", "b"]},
        ["a", "z"],
        "'z' is not among the values: a, b",
    ),
    (
        {"type": "MULTISELECT", "values": ["a", "b"]},
        "y,a,z",
        "'y', 'z' are not among the values: a, b",
    ),
    (
        {"type": "MULTISELECT", "values": ["a"]},
        {"a": 1},
        "must be a list of values (a JSON array), got a map",
    ),
    (
        {"type": "MULTISELECT", "values": ["a"]},
        '["a",',
        "must be a list of values (a JSON array) but is not valid JSON at line 1, column 6: "
        "Expecting value",
    ),
    (
        {"type": "ARRAY"},
        "a,b",
        "must be a list (a JSON array) but is not valid JSON at line 1, column 1: Expecting value",
    ),
    ({"type": "ARRAY"}, '{"a": 1}', "must be a list (a JSON array), got a map"),
    ({"type": "ARRAY", "itemType": "INT"}, [1, "x"], "item 2: must be an integer, got 'x'"),
    (
        {"type": "ARRAY", "itemType": "DATE"},
        '["2024-01-31", "x", "2024-02-31"]',
        "item 2: must be a date like 2024-01-31, got 'x'; "
        "item 3: must be a date like 2024-01-31, got '2024-02-31'",
    ),
    (
        {"type": "ARRAY", "itemType": "BOOLEAN"},
        ["x"] * 7,
        "; ".join(f"item {n}: must be true or false, got 'x'" for n in range(1, 6))
        + "; and 2 more",
    ),
    (
        {"type": "ARRAY", "itemType": "JSON"},
        ["{"],
        "item 1: is not valid JSON at line 1, column 2: "
        "Expecting property name enclosed in double quotes",
    ),
    (
        {"type": "JSON"},
        '{"a": 1 "b": 2}',
        "is not valid JSON at line 1, column 9: Expecting ',' delimiter",
    ),
    (
        {"type": "JSON"},
        "[" * 100_000,
        "is not valid JSON (too deeply nested, or a number too long), got '" + "[" * 37 + "...'",
    ),
    (
        {"type": "YAML"},
        "a: [1, 2\nb: 3\n",
        "is not valid YAML at line 2, column 2: "
        "while parsing a flow sequence; did not find expected ',' or ']'",
    ),
    (
        {"type": "YAML"},
        "a: 1\na: 2\n",
        "is not valid YAML at line 2, column 1: duplicate key 'a' (first written at line 1)",
    ),
    ({"type": "URI"}, "not a uri", "must be a URI like https://example.com/path, got 'not a uri'"),
    (
        {"type": "URI"},
        "example.com",
        "must be a URI like https://example.com/path, got 'example.com'",
    ),
    ({"type": "URI"}, "https://", "must be a URI like https://example.com/path, got 'https://'"),
    ({"type": "URI"}, 5, "must be a URI like https://example.com/path, got 5"),
    ({"type": "EMAIL"}, "analyst", "must be an email address like name@example.com, got 'analyst'"),
    (
        {"type": "EMAIL"},
        "a@b@example.com",
        "must be an email address like name@example.com, got 'a@b@example.com'",
    ),
    (
        {"type": "EMAIL"},
        "a@localhost",
        "must be an email address like name@example.com, got 'a@localhost'",
    ),
    (
        {"type": "EMAIL"},
        "a b@example.com",
        "must be an email address like name@example.com, got 'a b@example.com'",
    ),
    (
        {"type": "EMAIL"},
        "a@example.",
        "must be an email address like name@example.com, got 'a@example.'",
    ),
    ({"type": "FILE"}, "/etc/passwd", "must be an uploaded file, got '/etc/passwd'"),
    ({"type": "STRING"}, UploadedFile("a.csv", b""), "must be text, got a file 'a.csv'"),
]


@pytest.mark.parametrize(("spec", "given", "message"), BAD)
def test_a_bad_value_is_refused_with_the_reason(
    spec: dict[str, Any], given: Any, message: str
) -> None:
    problems = refused([declare(id="x", **spec)], {"x": given}, store_file=FakeStorage())
    assert problems == [f"input 'x': {message}"]


def test_a_secret_value_never_appears_in_a_message() -> None:
    declared = [declare(id="token", type="SECRET", validator="[A-Z]{8}")]
    assert refused(declared, {"token": "hunter2"}) == [
        "input 'token': does not match the validator [A-Z]{8}"
    ]
    assert refused(declared, {"token": ["hunter2"]}) == ["input 'token': must be text"]


def test_secret_values_lists_the_values_of_secret_inputs() -> None:
    declared = [
        declare(id="token", type="SECRET"),
        declare(id="name", type="STRING"),
        declare(id="other", type="SECRET", required=False),
    ]
    resolved = resolve_inputs(declared, {"token": "s3cr3t", "name": "public"})
    assert resolved == {"token": "s3cr3t", "name": "public", "other": None}
    assert secret_values(declared, resolved) == ["s3cr3t"]


def test_long_and_multiline_values_are_shortened_on_one_line() -> None:
    given = "line one\nline two\tand a long tail after it, and more"
    assert problem_of({"type": "INT"}, given) == (
        "must be an integer, got 'line one\\nline two\\tand a long tail aft...'"
    )


def test_a_yaml_bomb_is_refused_before_it_expands() -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{n}: &{n} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
        for p, n in zip("abcdefgh", "bcdefghi", strict=True)
    )
    assert problem_of({"type": "YAML"}, bomb) == (
        "is not valid YAML at line 6, column 4: YAML expands to more than 200000 values "
        "(anchors and aliases multiply it); refusing to expand it"
    )


def test_given_expressions_are_data_never_rendered() -> None:
    assert value_of({"type": "STRING"}, "{{ 1 + 1 }}") == "{{ 1 + 1 }}"
    assert problem_of({"type": "INT"}, "{{ 1 + 1 }}") == "must be an integer, got '{{ 1 + 1 }}'"


# -- required, defaults --------------------------------------------------------------------


def test_a_required_input_without_defaults_must_be_given() -> None:
    declared = [declare(id="day", type="DATE")]
    assert refused(declared, {}) == ["input 'day': is required"]
    assert refused(declared, {"day": ""}) == ["input 'day': is required"]
    assert refused(declared, {"day": None}) == ["input 'day': is required"]


def test_an_input_not_required_and_not_given_is_null() -> None:
    declared = [
        declare(id="day", type="DATE", required=False),
        declare(id="s", type="STRING", required=False),
    ]
    assert resolve_inputs(declared, {"s": ""}) == {"day": None, "s": None}
    assert resolve_inputs(None, {}) == {}


def test_defaults_are_used_when_nothing_is_given_and_checked_like_a_value() -> None:
    declared = [
        declare(id="n", type="INT", defaults=5),
        declare(id="when", type="DATETIME", defaults="2024-01-31T11:00:00+01:00"),
        declare(id="cols", type="MULTISELECT", values=["a", "b"], defaults=["b"]),
        declare(id="empty", type="STRING", defaults=""),
    ]
    assert resolve_inputs(declared, {"n": ""}) == {
        "n": 5,
        "when": "2024-01-31T10:00:00Z",
        "cols": ["b"],
        "empty": "",
    }
    assert resolve_inputs(declared, {"n": "7"})["n"] == 7


def test_an_invalid_default_is_reported_as_the_flows_fault() -> None:
    declared = [declare(id="n", type="INT", min=10, defaults=5)]
    assert refused(declared, {}) == [
        "input 'n': its default value is invalid: must be at least 10, got 5"
    ]
    assert resolve_inputs(declared, {"n": 10}) == {"n": 10}


def test_defaults_may_refer_to_earlier_inputs_and_the_context() -> None:
    declared = [
        declare(id="region", type="SELECT", values=["EMEA", "AMER"]),
        declare(
            id="bucket", type="STRING", defaults="{{ flow.namespace }}-{{ inputs.region | lower }}"
        ),
        declare(id="size", type="INT", defaults="{{ inputs.region == 'EMEA' ? 3 : 5 }}"),
        declare(id="tags", type="ARRAY", itemType="INT", defaults="{{ [inputs.size, 1] }}"),
    ]
    context = {"flow": {"namespace": "company"}}
    resolved = resolve_inputs(declared, {"region": "AMER"}, context=context)
    assert resolved == {"region": "AMER", "bucket": "company-amer", "size": 5, "tags": [5, 1]}


def test_a_default_may_refer_to_an_input_declared_later() -> None:
    declared = [
        declare(id="label", type="STRING", defaults="run-{{ inputs.day }}"),
        declare(id="day", type="DATE"),
    ]
    resolved = resolve_inputs(declared, {"day": "2024-01-31"})
    assert list(resolved.items()) == [("label", "run-2024-01-31"), ("day", "2024-01-31")]


def test_a_default_that_fails_to_render_names_the_expression() -> None:
    declared = [declare(id="x", type="STRING", defaults="{{ vars.missing }}")]
    assert refused(declared, {}, context={"vars": {}}) == [
        "input 'x': its defaults could not be rendered: {{ vars.missing }}: "
        "`vars.missing` is undefined: `vars` has no key `missing`; it is empty"
    ]


def test_an_input_depending_on_one_with_a_problem_waits_for_it_to_be_fixed() -> None:
    declared = [
        declare(id="day", type="DATE"),
        declare(id="label", type="STRING", defaults="run-{{ inputs.day }}"),
        declare(id="n", type="INT", dependsOn={"inputs": ["label"]}),
        declare(id="m", type="INT"),
    ]
    assert refused(declared, {"day": "x", "m": "y"}) == [
        "input 'day': must be a date like 2024-01-31, got 'x'",
        "input 'm': must be an integer, got 'y'",
    ]


# -- unknown ids, several problems ---------------------------------------------------------


def test_an_input_the_flow_does_not_declare_is_refused() -> None:
    declared = [declare(id="day", type="DATE"), declare(id="n", type="INT", required=False)]
    assert refused(declared, {"day": "2024-01-31", "x": 1}) == [
        "input 'x': the flow has no such input; its inputs are: day, n"
    ]
    assert refused(declared, {"dya": "2024-01-31"}) == [
        "input 'dya': the flow has no such input (did you mean 'day'?); its inputs are: day, n",
        "input 'day': is required",
    ]
    assert refused([], {"x": 1}) == ["input 'x': the flow has no inputs"]


def test_every_problem_is_reported_in_declaration_order() -> None:
    declared = [
        declare(id="a", type="INT", dependsOn={"inputs": ["z"]}),
        declare(id="b", type="BOOLEAN"),
        declare(id="c", type="STRING"),
        declare(id="z", type="DATE"),
    ]
    with pytest.raises(InputsRefused) as caught:
        resolve_inputs(declared, {"a": "x", "b": "maybe", "z": "2024-01-31", "q": 1})
    error = caught.value
    assert isinstance(error, HeadwaterError)
    assert error.problems == [
        InputProblem("q", "the flow has no such input; its inputs are: a, b, c, z"),
        InputProblem("a", "must be an integer, got 'x'"),
        InputProblem("b", "must be true or false, got 'maybe'"),
        InputProblem("c", "is required"),
    ]
    assert str(error) == (
        "input 'q': the flow has no such input; its inputs are: a, b, c, z\n"
        "input 'a': must be an integer, got 'x'\n"
        "input 'b': must be true or false, got 'maybe'\n"
        "input 'c': is required"
    )
    assert error.problems[1].to_json() == {"input": "a", "message": "must be an integer, got 'x'"}
    assert pickle.loads(pickle.dumps(error)).problems == error.problems


# -- dependsOn -----------------------------------------------------------------------------

REPORT_FLOW = """
id: report
namespace: company
inputs:
  - id: limit
    type: INT
    defaults: 1000
    min: 1
    dependsOn:
      inputs: [format]
      condition: "{{ inputs.format != 'parquet' }}"
  - id: sheet
    type: STRING
    dependsOn:
      inputs: [format]
      condition: "{{ inputs.format == 'xlsx' }}"
  - id: format
    type: SELECT
    values: [csv, xlsx, parquet]
    defaults: csv
  - id: country
    type: SELECT
    values: "{{ inputs.region == 'EMEA' ? ['FR', 'DE'] : ['US', 'CA'] }}"
    dependsOn:
      inputs: [region]
  - id: region
    type: SELECT
    values: [EMEA, AMER]
tasks:
  - id: log
    type: io.kestra.plugin.core.log.Log
    message: hi
"""


def report_inputs() -> list[Input]:
    import yaml

    flow = Flow.model_validate(yaml.safe_load(REPORT_FLOW))
    assert flow.inputs is not None
    return list(flow.inputs)


def test_depends_on_inputs_resolve_first_whatever_the_declaration_order() -> None:
    resolved = resolve_inputs(report_inputs(), {"region": "EMEA", "country": "DE", "limit": "5"})
    assert resolved == {
        "limit": 5,
        "sheet": None,
        "format": "csv",
        "country": "DE",
        "region": "EMEA",
    }
    assert refused(report_inputs(), {"region": "AMER", "country": "DE"}) == [
        "input 'country': must be one of US, CA, got 'DE'"
    ]


def test_a_condition_that_holds_shows_the_input_and_requires_it() -> None:
    given = {"format": "xlsx", "region": "AMER", "country": "US"}
    assert refused(report_inputs(), given) == ["input 'sheet': is required"]
    resolved = resolve_inputs(report_inputs(), {**given, "sheet": "Orders", "limit": 2})
    assert resolved["sheet"] == "Orders"
    assert resolved["limit"] == 2


def test_a_condition_that_fails_hides_the_input_and_ignores_its_value() -> None:
    given = {"format": "parquet", "region": "AMER", "country": "US", "limit": "oops", "sheet": 1}
    resolved = resolve_inputs(report_inputs(), given)
    assert resolved["limit"] == 1000  # its defaults, the given value ignored
    assert resolved["sheet"] is None  # hidden, so not required


def test_a_condition_that_fails_to_render_is_a_problem() -> None:
    declared = [
        declare(id="a", type="STRING"),
        declare(
            id="b", type="STRING", dependsOn={"inputs": ["a"], "condition": "{{ inputs.a + }}"}
        ),
    ]
    problems = refused(declared, {"a": "x", "b": "y"})
    assert len(problems) == 1
    assert problems[0].startswith("input 'b': its dependsOn condition could not be rendered: ")


def test_a_condition_reads_text_as_kestras_if_task_does() -> None:
    declared = [
        declare(id="full", type="BOOLEAN", defaults=False),
        declare(
            id="since",
            type="DATE",
            dependsOn={"inputs": ["full"], "condition": "{{ inputs.full ? 'false' : 'true' }}"},
        ),
    ]
    assert resolve_inputs(declared, {"full": "true"}) == {"full": True, "since": None}
    assert refused(declared, {}) == ["input 'since': is required"]


# -- files ---------------------------------------------------------------------------------


def test_an_uploaded_file_is_stored_and_becomes_its_uri() -> None:
    storage = FakeStorage()
    declared = [declare(id="orders", type="FILE", extension=".csv"), declare(id="n", type="INT")]
    resolved = resolve_inputs(
        declared, {"orders": UploadedFile("Orders.CSV", b"id\n1\n"), "n": "3"}, store_file=storage
    )
    assert resolved == {"orders": "hw://inputs/orders/Orders.CSV", "n": 3}
    assert storage.stored == [("orders", "Orders.CSV", b"id\n1\n")]


def test_no_file_is_stored_unless_every_input_is_valid() -> None:
    storage = FakeStorage()
    declared = [declare(id="orders", type="FILE"), declare(id="n", type="INT")]
    given = {"orders": UploadedFile("orders.csv", b"x"), "n": "three"}
    assert refused(declared, given, store_file=storage) == [
        "input 'n': must be an integer, got 'three'"
    ]
    assert refused(declared, {**given, "n": 3, "typo": 1}, store_file=storage) == [
        "input 'typo': the flow has no such input; its inputs are: orders, n"
    ]
    assert storage.stored == []


def test_files_are_stored_in_declaration_order_after_every_check() -> None:
    calls: list[str] = []

    def store(input_id: str, upload: UploadedFile) -> str:
        calls.append(input_id)
        return f"hw://{input_id}"

    declared = [
        declare(id="b", type="FILE", dependsOn={"inputs": ["a"]}),
        declare(id="a", type="FILE"),
        declare(id="c", type="FILE", required=False),
    ]
    given = {"a": UploadedFile("a", b""), "b": UploadedFile("b", b"")}
    assert resolve_inputs(declared, given, store_file=store) == {
        "b": "hw://b",
        "a": "hw://a",
        "c": None,
    }
    assert calls == ["b", "a"]  # declaration order, though b resolved after a


@pytest.mark.parametrize(
    ("spec", "filename", "message"),
    [
        ({"extension": ".csv"}, "data.csv", None),
        ({"extension": "csv"}, "DATA.CSV", None),
        ({"extension": ".CSV"}, "data.csv", None),
        ({"extension": ".tar.gz"}, "dump.tar.gz", None),
        ({"allowedFileExtensions": [".csv", "tsv"]}, "data.tsv", None),
        ({"extension": ".csv"}, "data.txt", "must be a .csv file, got 'data.txt'"),
        ({"extension": ".csv"}, "csv", "must be a .csv file, got 'csv'"),
        ({"extension": "gz"}, "dump.tgz", "must be a .gz file, got 'dump.tgz'"),
        (
            {"allowedFileExtensions": [".csv", "TSV"]},
            "data.xlsx",
            "must be a .csv or .tsv file, got 'data.xlsx'",
        ),
        (
            {"extension": ".json", "allowedFileExtensions": [".yaml"]},
            "a.yml",
            "must be a .json or .yaml file, got 'a.yml'",
        ),
    ],
)
def test_file_extensions(spec: dict[str, Any], filename: str, message: str | None) -> None:
    storage = FakeStorage()
    declared = [declare(id="f", type="FILE", **spec)]
    given = {"f": UploadedFile(filename, b"")}
    if message is None:
        assert resolve_inputs(declared, given, store_file=storage) == {
            "f": f"hw://inputs/f/{filename}"
        }
    else:
        assert refused(declared, given, store_file=storage) == [f"input 'f': {message}"]
        assert storage.stored == []


NAMESPACE_FILES = {"samples/prices.csv": b"sku,price\nA1,3.50\n", "notes.txt": b"hello"}


def test_a_file_default_naming_a_namespace_file_is_a_stored_copy_of_it() -> None:
    storage = FakeStorage()
    declared = [
        declare(id="prices", type="FILE", extension=".csv", defaults="nsfile:///samples/prices.csv")
    ]
    resolved = resolve_inputs(
        declared, {}, store_file=storage, read_namespace_file=NAMESPACE_FILES.__getitem__
    )
    assert resolved == {"prices": "hw://inputs/prices/prices.csv"}
    assert storage.stored == [("prices", "prices.csv", NAMESPACE_FILES["samples/prices.csv"])]
    # a given file wins over the default, which is then not read
    given = {"prices": UploadedFile("mine.csv", b"sku,price\n")}
    resolved = resolve_inputs(declared, given, store_file=storage, read_namespace_file=_never)
    assert resolved == {"prices": "hw://inputs/prices/mine.csv"}


def _never(path: str) -> bytes:
    raise AssertionError(f"{path} was read")


@pytest.mark.parametrize(
    ("default", "reader", "message"),
    [
        (
            "nsfile:///samples/missing.csv",
            NAMESPACE_FILES.__getitem__,
            "namespace file samples/missing.csv does not exist in the flow's namespace "
            "(its _files/ folder)",
        ),
        (
            "nsfile:///samples/prices.csv",
            None,
            "namespace file samples/prices.csv does not exist in the flow's namespace "
            "(its _files/ folder)",
        ),
        (
            "nsfile:///notes.txt",
            NAMESPACE_FILES.__getitem__,
            "must be a .csv file, got 'notes.txt'",
        ),
        (
            "nsfile://other.team/samples/prices.csv",
            NAMESPACE_FILES.__getitem__,
            "'nsfile://other.team/samples/prices.csv' names namespace 'other.team': a FILE "
            "input's default can only name a namespace file of the flow's own namespace, "
            "written nsfile:///path",
        ),
        (
            "nsfile:///../secrets.csv",
            NAMESPACE_FILES.__getitem__,
            "'nsfile:///../secrets.csv' is not a plain path inside the namespace files "
            "(no empty parts, '.', '..' or backslashes)",
        ),
    ],
)
def test_a_file_default_naming_a_namespace_file_that_cannot_be_read_is_refused(
    default: str, reader: Any, message: str
) -> None:
    storage = FakeStorage()
    declared = [declare(id="prices", type="FILE", extension=".csv", defaults=default)]
    problems = refused(declared, {}, store_file=storage, read_namespace_file=reader)
    assert problems == [f"input 'prices': its default value is invalid: {message}"]
    assert storage.stored == []


def test_a_namespace_file_uri_given_as_a_value_is_refused() -> None:
    declared = [declare(id="f", type="FILE")]
    given = {"f": "nsfile:///samples/prices.csv"}
    problems = refused(
        declared, given, store_file=FakeStorage(), read_namespace_file=NAMESPACE_FILES.__getitem__
    )
    assert problems == ["input 'f': must be an uploaded file, got 'nsfile:///samples/prices.csv'"]


def test_a_flow_with_a_file_input_needs_a_store() -> None:
    with pytest.raises(ValueError, match="store_file"):
        resolve_inputs([declare(id="f", type="FILE", required=False)], {})


def test_uploaded_file_repr_leaves_out_the_data() -> None:
    assert repr(UploadedFile("a.csv", b"secret rows")) == "UploadedFile(filename='a.csv')"


# -- expressions in the checks -------------------------------------------------------------


def test_bounds_and_flags_may_be_expressions() -> None:
    context = {"vars": {"start": "2024-01-01", "custom": True, "max": "PT2H"}}
    declared = [
        declare(id="day", type="DATE", after="{{ vars.start }}"),
        declare(id="pick", type="SELECT", values=["a"], allowCustomValue="{{ vars.custom }}"),
        declare(id="wait", type="DURATION", max="{{ vars.max }}"),
    ]
    given = {"day": "2024-01-02", "pick": "z", "wait": "PT1H"}
    assert resolve_inputs(declared, given, context=context) == given
    assert refused(declared, {**given, "day": "2023-12-31", "wait": "PT3H"}, context=context) == [
        "input 'day': must be after 2024-01-01, got '2023-12-31'",
        "input 'wait': must be at most PT2H, got 'PT3H'",
    ]


def test_an_invalid_bound_is_reported() -> None:
    declared = [declare(id="day", type="DATE", after="yesterday")]
    assert refused(declared, {"day": "2024-01-31"}) == [
        "input 'day': its after bound is invalid: must be a date like 2024-01-31, got 'yesterday'"
    ]


def test_the_corpus_self_service_form_runs_unattended_on_its_defaults() -> None:
    from pathlib import Path

    from headwater.daemon import yamlsource

    path = Path(__file__).parents[1] / "corpus/valid/inputs_report_request.yaml"
    flow = Flow.model_validate(yamlsource.load(path.read_text(), str(path)).data)
    assert flow.inputs is not None
    assert resolve_inputs(flow.inputs, {}) == {
        "region": "EMEA",
        "country": "FR",
        "from": "2024-01-01T00:00:00Z",
        "cutoff_time": "18:00:00",
        "lookback": "P2D",
        "row_limit": 100000,
        "format": "csv",
        "columns": ["order_id", "amount"],
        "notify": "analyst@example.com",
        "filters": {"status": "paid"},
    }
    assert refused(flow.inputs, {"region": "APAC", "country": "", "lookback": "PT5M"}) == [
        "input 'lookback': must be at least PT1H, got 'PT5M'"
    ]
