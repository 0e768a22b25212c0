"""Value types of the flow language.

Every scalar property except `id` and `type` may hold an expression (DESIGN.md); its
value is checked against the property's type after rendering. So a property typed
"integer" accepts an integer *or* a string with `{{ … }}` in it, and the error for
anything else says both. The validators here are plain functions so the messages are
ours, not pydantic's.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import GetCoreSchemaHandler, WithJsonSchema
from pydantic_core import CoreSchema, PydanticCustomError, core_schema

EXPRESSION_MARKERS = ("{{", "{%")


@dataclass(frozen=True)
class Check:
    """`Annotated` metadata: `check(value)` alone validates (and converts) the value.

    What pydantic's `PlainValidator` does, without the work it repeats at each of the
    hundreds of fields that use one when a validator is built (inspecting the function's
    signature, building a serializer for the annotated type): a quarter of building the
    flow's validator, which every `headwater validate` pays (issue 12). The value is
    dumped as it is, which is what that serializer did with the values checks return.
    """

    check: Callable[[Any], Any]

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return core_schema.no_info_plain_validator_function(self.check)


def is_expression(value: object) -> bool:
    """True for a string that holds a `{{ … }}` or `{% … %}` part."""
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def describe(value: object) -> str:
    """How a YAML value reads in an error message: its YAML kind and a short excerpt."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"number {value}"
    if isinstance(value, str):
        text = value if len(value) <= 40 else value[:37] + "..."
        return f"string '{text}'"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a map"
    return type(value).__name__


def fail(message: str, **context: Any) -> PydanticCustomError:
    return PydanticCustomError("headwater", message, context or None)


_EXPR_SCHEMA: dict[str, Any] = {
    "type": "string",
    "pattern": r"\{[{%]",
    "description": "an expression",
}


def _dyn(check: Callable[[Any], Any], schema: dict[str, Any]) -> tuple[Check, WithJsonSchema]:
    def validate(value: Any) -> Any:
        if is_expression(value):
            return value
        return check(value)

    return Check(validate), WithJsonSchema({"anyOf": [schema, _EXPR_SCHEMA]})


# -- integers, numbers, booleans --------------------------------------------------------


def _int(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()):
        return int(value)
    raise fail("must be an integer or an expression, got {got}", got=describe(value))


def _number(value: Any) -> float | int:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise fail("must be a number or an expression, got {got}", got=describe(value))


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise fail("must be true or false (or an expression), got {got}", got=describe(value))


DynInt = Annotated[int | str, *_dyn(_int, {"type": "integer"})]
DynNumber = Annotated[float | int | str, *_dyn(_number, {"type": "number"})]
DynBool = Annotated[bool | str, *_dyn(_bool, {"type": "boolean"})]


def _non_negative(value: Any) -> int:
    number = _int(value)
    if number < 0:
        raise fail("must be 0 or more, got {got}", got=number)
    return number


def _positive(value: Any) -> int:
    number = _int(value)
    if number < 1:
        raise fail("must be 1 or more, got {got}", got=number)
    return number


NonNegativeInt = Annotated[int | str, *_dyn(_non_negative, {"type": "integer", "minimum": 0})]
PositiveInt = Annotated[int | str, *_dyn(_positive, {"type": "integer", "minimum": 1})]

# -- strings ------------------------------------------------------------------------------


def _string(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    hint = COLON_HINT if isinstance(value, dict) else ""
    raise fail("must be a string, got {got}{hint}", got=describe(value), hint=hint)


Text = Annotated[str, Check(_string), WithJsonSchema({"type": "string"})]


def _string_list(value: Any) -> list[str] | str:
    if is_expression(value):
        return str(value)
    if isinstance(value, list):
        return [_item_string(i, item) for i, item in enumerate(value)]
    raise fail("must be a list of strings, got {got}", got=describe(value))


TextList = Annotated[
    list[str] | str,
    Check(_string_list),
    WithJsonSchema({"anyOf": [{"type": "array", "items": {"type": "string"}}, _EXPR_SCHEMA]}),
]


def _text_or_list(value: Any) -> str | list[str]:
    if isinstance(value, list):
        return [_item_string(i, item) for i, item in enumerate(value)]
    return _string(value)


def _item_string(index: int, value: Any) -> str:
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return str(value)
    hint = COLON_HINT if isinstance(value, dict) else ""
    raise fail(
        "item {index} must be a string, got {got}{hint}",
        index=index,
        got=describe(value),
        hint=hint,
    )


COLON_HINT = " (YAML reads an unquoted value with ': ' in it as a map: quote the value)"


TextOrList = Annotated[
    str | list[str],
    Check(_text_or_list),
    WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}),
]


def _string_map(value: Any) -> dict[str, str] | str:
    if is_expression(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _scalar_text(v) for k, v in value.items()}
    raise fail("must be a map of names to strings, got {got}", got=describe(value))


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return ""
    return _string(value)


TextMap = Annotated[
    dict[str, str] | str,
    Check(_string_map),
    WithJsonSchema(
        {"anyOf": [{"type": "object", "additionalProperties": {"type": "string"}}, _EXPR_SCHEMA]}
    ),
]

# -- identifiers --------------------------------------------------------------------------

TASK_ID = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_-]*")
FLOW_ID = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9._-]*")
NAMESPACE = re.compile(r"[a-z0-9][a-z0-9._-]*")
TASK_ID_PATTERN = "^[a-zA-Z0-9][a-zA-Z0-9_-]*$"


def _identifier(pattern: re.Pattern[str], what: str, max_len: int) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise fail("{what} must be a string, got {got}", what=what, got=describe(value))
        if not pattern.fullmatch(value):
            raise fail(
                "'{value}' is not a valid {what}: it must match ^{pattern}$",
                what=what,
                value=value,
                pattern=pattern.pattern,
            )
        if len(value) > max_len:
            raise fail(
                "{what} is {n} characters long; at most {max} are allowed",
                what=what,
                n=len(value),
                max=max_len,
            )
        return value

    return check


def identifier(
    what: str, pattern: re.Pattern[str], max_len: int = 100
) -> tuple[Check, WithJsonSchema]:
    """Metadata for an `Annotated` str checked against `pattern` (no expressions allowed)."""
    schema = {"type": "string", "pattern": f"^{pattern.pattern}$", "maxLength": max_len}
    return Check(_identifier(pattern, what, max_len)), WithJsonSchema(schema)


TaskId = Annotated[str, *identifier("task id", TASK_ID)]

# -- durations ------------------------------------------------------------------------------

_DURATION = re.compile(
    r"P(?!$)(?:(?P<d>\d+(?:\.\d+)?)D)?"
    r"(?:T(?=\d)(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?",
    re.IGNORECASE,
)


def parse_duration(text: str) -> float | None:
    """Seconds in an ISO-8601 duration (`PT30S`, `PT1H30M`, `P1D`), or None if malformed.

    Like Java's `Duration.parse`, years, months and weeks are not accepted: their
    length depends on the calendar.
    """
    match = _DURATION.fullmatch(text.strip())
    if not match or text.strip().upper().endswith("T"):
        return None
    parts = {k: float(v) if v else 0.0 for k, v in match.groupdict().items()}
    return parts["d"] * 86400 + parts["h"] * 3600 + parts["m"] * 60 + parts["s"]


def _duration(value: Any) -> str:
    if isinstance(value, str) and parse_duration(value) is not None:
        return value
    raise fail(
        "must be an ISO-8601 duration like PT30S, PT5M, PT1H30M or P1D, got {got}",
        got=describe(value),
    )


Duration = Annotated[
    str,
    *_dyn(
        _duration,
        {"type": "string", "pattern": r"^P(\d+D)?(T(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?$"},
    ),
]

# -- free-form values -----------------------------------------------------------------------

AnyValue = Annotated[Any, WithJsonSchema({})]


# -- choices -------------------------------------------------------------------------------


def choice(*values: str) -> tuple[Check, WithJsonSchema]:
    """Metadata for a string that is one of `values`, or an expression rendered at run time."""
    listed = ", ".join(values[:-1]) + f" or {values[-1]}" if len(values) > 1 else values[0]

    def check(value: Any) -> str:
        if isinstance(value, str) and value in values:
            return value
        raise fail(
            "must be one of {listed} (or an expression), got {got}",
            listed=listed,
            got=describe(value),
        )

    return _dyn(check, {"enum": list(values)})
