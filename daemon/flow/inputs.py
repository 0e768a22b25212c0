"""Typed inputs of a flow."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Tag

from headwater.daemon.flow.base import Model
from headwater.daemon.flow.types import (
    AnyValue,
    Duration,
    DynBool,
    Text,
    describe,
    identifier,
    parse_duration,
)

InputId = Annotated[str, *identifier("input id", re.compile(r"[a-zA-Z_][a-zA-Z0-9_-]*"))]

NAMESPACE_FILE_PREFIX = "nsfile://"  # Kestra's URI of a namespace file: nsfile:///path/in/_files
STORED_FILE_PREFIXES = ("kestra://", "hw://")  # a FILE value already in internal storage


class DependsOn(Model):
    """Inputs this one depends on, and when it is shown."""

    inputs: list[Text]
    """Ids of inputs that must be given first."""
    condition: Text | None = None
    """An expression over those inputs; false hides this input."""


class Input(Model):
    """Properties every input has."""

    id: InputId
    """Name of the input, `{{ inputs.<id> }}` in expressions."""
    type: str
    """The input type: STRING, INT, FLOAT, BOOLEAN, SELECT, … (upper case)."""
    description: Text | None = None
    """What the input is for (shown in the start form)."""
    displayName: Text | None = None
    """Label shown in the start form."""
    required: bool = True
    """A required input without defaults must be given."""
    defaults: AnyValue = None
    """Value used when none is given."""
    dependsOn: DependsOn | None = None
    """Inputs this one depends on."""


class StringInput(Input):
    """Text, optionally checked against a regular expression."""

    validator: Text | None = None
    """Regular expression the whole value must match."""


class SecretInput(Input):
    """Text that is masked in logs and on the page."""

    validator: Text | None = None
    """Regular expression the whole value must match."""


class IntInput(Input):
    """A whole number."""

    min: int | None = None
    """Smallest allowed value."""
    max: int | None = None
    """Largest allowed value."""


class FloatInput(Input):
    """A number."""

    min: float | None = None
    """Smallest allowed value."""
    max: float | None = None
    """Largest allowed value."""


class BooleanInput(Input):
    """true or false."""


class DateTimeInput(Input):
    """An ISO-8601 date and time."""

    after: Text | None = None
    """The value must be later than this."""
    before: Text | None = None
    """The value must be earlier than this."""


class DateInput(Input):
    """An ISO-8601 date."""

    after: Text | None = None
    """The value must be later than this."""
    before: Text | None = None
    """The value must be earlier than this."""


class TimeInput(Input):
    """An ISO-8601 time of day."""

    after: Text | None = None
    """The value must be later than this."""
    before: Text | None = None
    """The value must be earlier than this."""


class DurationInput(Input):
    """An ISO-8601 duration."""

    min: Duration | None = None
    """Shortest allowed duration."""
    max: Duration | None = None
    """Longest allowed duration."""


class SelectInput(Input):
    """One of a list of values."""

    values: list[Text] | Text
    """The values to choose from (or an expression giving them)."""
    allowCustomValue: DynBool = False
    """Accept a value not in the list."""


class MultiSelectInput(Input):
    """Several of a list of values."""

    values: list[Text] | Text | None = None
    """The values to choose from."""
    options: list[Text] | None = None
    """Older name of values."""
    allowCustomValue: DynBool = False
    """Accept values not in the list."""


class ArrayInput(Input):
    """A list of values of one type."""

    itemType: Literal[
        "STRING", "INT", "FLOAT", "BOOLEAN", "DATETIME", "DATE", "TIME", "DURATION", "JSON"
    ] = "STRING"
    """Type of each item."""


class JsonInput(Input):
    """A JSON document, parsed."""


class YamlInput(Input):
    """A YAML document, parsed."""


class UriInput(Input):
    """A URI."""


class EmailInput(Input):
    """An email address."""


class FileInput(Input):
    """An uploaded file, kept in internal storage and readable by tasks; `defaults` may
    name a namespace file of the flow's namespace as `nsfile:///path`."""

    extension: Text | None = None
    """Required file name extension, e.g. .csv."""
    allowedFileExtensions: list[Text] | None = None
    """Several allowed extensions."""


INPUT_TYPES: dict[str, type[Input]] = {
    "STRING": StringInput,
    "SECRET": SecretInput,
    "INT": IntInput,
    "FLOAT": FloatInput,
    "BOOLEAN": BooleanInput,
    "BOOL": BooleanInput,
    "DATETIME": DateTimeInput,
    "DATE": DateInput,
    "TIME": TimeInput,
    "DURATION": DurationInput,
    "SELECT": SelectInput,
    "ENUM": SelectInput,
    "MULTISELECT": MultiSelectInput,
    "ARRAY": ArrayInput,
    "JSON": JsonInput,
    "YAML": YamlInput,
    "URI": UriInput,
    "EMAIL": EmailInput,
    "FILE": FileInput,
}
INPUT_TYPE_NAMES = sorted({n for n in INPUT_TYPES if n not in ("BOOL",)})


def _input_tag(value: Any) -> str | None:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    if not isinstance(kind, str):
        return None
    model = INPUT_TYPES.get(kind.upper())
    return model.__name__ if model else None


AnyInput = Annotated[
    Annotated[StringInput, Tag("StringInput")]
    | Annotated[SecretInput, Tag("SecretInput")]
    | Annotated[IntInput, Tag("IntInput")]
    | Annotated[FloatInput, Tag("FloatInput")]
    | Annotated[BooleanInput, Tag("BooleanInput")]
    | Annotated[DateTimeInput, Tag("DateTimeInput")]
    | Annotated[DateInput, Tag("DateInput")]
    | Annotated[TimeInput, Tag("TimeInput")]
    | Annotated[DurationInput, Tag("DurationInput")]
    | Annotated[SelectInput, Tag("SelectInput")]
    | Annotated[MultiSelectInput, Tag("MultiSelectInput")]
    | Annotated[ArrayInput, Tag("ArrayInput")]
    | Annotated[JsonInput, Tag("JsonInput")]
    | Annotated[YamlInput, Tag("YamlInput")]
    | Annotated[UriInput, Tag("UriInput")]
    | Annotated[EmailInput, Tag("EmailInput")]
    | Annotated[FileInput, Tag("FileInput")],
    Discriminator(_input_tag),
]


def check_input(raw: dict[str, Any], path: Any, report: Any) -> None:
    """Rules of one input that span its properties."""
    kind = str(raw.get("type", "")).upper()
    if kind in ("STRING", "SECRET") and isinstance(raw.get("validator"), str):
        try:
            re.compile(raw["validator"])
        except re.error as exc:
            report((*path, "validator"), f"validator is not a valid regular expression: {exc}")
    low, high = raw.get("min"), raw.get("max")
    if kind in ("INT", "FLOAT") and _is_number(low) and _is_number(high) and low > high:  # type: ignore[operator]
        report((*path, "min"), f"min ({low}) is greater than max ({high})")
    if kind == "DURATION" and isinstance(low, str) and isinstance(high, str):
        lo, hi = parse_duration(low), parse_duration(high)
        if lo is not None and hi is not None and lo > hi:
            report((*path, "min"), f"min ({low}) is longer than max ({high})")
    if kind in ("SELECT", "ENUM") and raw.get("values") == []:
        report((*path, "values"), "a SELECT input needs at least one value")
    _check_defaults(kind, raw, path, report)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_defaults(kind: str, raw: dict[str, Any], path: Any, report: Any) -> None:
    value = raw.get("defaults")
    if value is None or (isinstance(value, str) and "{{" in value):
        return
    where = (*path, "defaults")
    if kind == "INT" and (isinstance(value, bool) or not isinstance(value, int)):
        report(where, f"defaults of an INT input must be an integer, got {describe(value)}")
    elif kind == "FLOAT" and not _is_number(value):
        report(where, f"defaults of a FLOAT input must be a number, got {describe(value)}")
    elif kind in ("BOOLEAN", "BOOL") and not isinstance(value, bool):
        report(where, f"defaults of a BOOLEAN input must be true or false, got {describe(value)}")
    elif kind in ("SELECT", "ENUM"):
        values = raw.get("values")
        if (
            isinstance(values, list)
            and value not in values
            and raw.get("allowCustomValue") is not True
        ):
            report(
                where, f"defaults '{value}' is not one of the values: {', '.join(map(str, values))}"
            )
    elif kind == "DURATION" and (not isinstance(value, str) or parse_duration(value) is None):
        report(
            where,
            f"defaults of a DURATION input must be an ISO-8601 duration, got {describe(value)}",
        )
    elif kind == "FILE":
        problem = _file_default_problem(value)
        if problem:
            report(where, problem)


def _file_default_problem(value: object) -> str | None:
    if isinstance(value, str) and value.startswith(NAMESPACE_FILE_PREFIX):
        try:
            namespace_file_path(value)
        except ValueError as exc:
            return str(exc)
        return None
    if isinstance(value, str) and value.startswith(STORED_FILE_PREFIXES):
        return None
    return (
        "defaults of a FILE input must name a namespace file of the flow's namespace, "
        f"like nsfile:///data/sample.csv, got {describe(value)}"
    )


def namespace_file_path(uri: str) -> str:
    """The path inside the flow's namespace files (its `_files/` folder) that an
    `nsfile:///path` URI names, e.g. `data/sample.csv`; ValueError saying why otherwise.

    Only the flow's own namespace can be named: `nsfile://other.namespace/path`, which
    Kestra reads from another namespace, is refused.
    """
    rest = uri.removeprefix(NAMESPACE_FILE_PREFIX)
    if rest == uri:
        raise ValueError(f"'{uri}' is not a namespace file URI (nsfile:///path)")
    if not rest.startswith("/"):
        other = rest.split("/", 1)[0]
        raise ValueError(
            f"'{uri}' names namespace '{other}': a FILE input's default can only name a "
            "namespace file of the flow's own namespace, written nsfile:///path"
        )
    parts = rest[1:].split("/")
    if parts == [""]:
        raise ValueError(f"'{uri}' names no file: write nsfile:///path/in/_files")
    if any(part in ("", ".", "..") or "\\" in part for part in parts):
        raise ValueError(
            f"'{uri}' is not a plain path inside the namespace files "
            "(no empty parts, '.', '..' or backslashes)"
        )
    return "/".join(parts)
