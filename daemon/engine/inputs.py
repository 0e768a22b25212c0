"""Typed values of a flow's inputs, from what a person or a caller gave.

`resolve_inputs(flow.inputs, given, store_file=…)` turns what came in (strings from
the start form or `-i name=value`, typed JSON values from the API, `UploadedFile`s)
into the values executions see as `{{ inputs.<id> }}`, or raises `InputsRefused`
listing every problem. Nothing is stored unless every input is valid.

How it decides:

- Every declared input is in the result. One that is not given, not required and has
  no defaults is None, so `{{ inputs.x }}` is null (and `?? 'fallback'` works) rather
  than undefined.
- A given value that is None or the empty string counts as not given, for every type
  (an untouched form field posts ""; `-i x=` says the same). An explicit empty list
  is a value.
- Inputs resolve in declaration order, except that an input comes after the inputs it
  depends on: those in `dependsOn.inputs` and those its expressions (defaults, values,
  condition, bounds) read as `inputs.<id>`. An input whose dependency has a problem is
  not checked until that problem is fixed (its problem would only be a consequence).
- `defaults` that hold an expression are rendered (a lone `{{ … }}` keeps its native
  value, so a list stays a list) with the context the caller gives plus `inputs`, the
  values resolved so far. Then the default goes through the same checks as a given
  value; a default that fails them is reported as the flow's fault ("its default
  value is invalid: …"). `values`, `condition`, `after`, `before`, the DURATION bounds
  and `allowCustomValue` may hold expressions too, rendered the same way.
- Given values are data: an expression in them is never rendered.
- `dependsOn.condition` that renders false hides the input: it is not required, a
  value given for it is ignored (a form may post the hidden field), and it takes its
  defaults or None. The condition is truthy as in Kestra's If task ("false", "0" and
  "" are false).
- STRING and SECRET take any scalar (booleans as true/false). A SECRET's value never
  appears in a message; `secret_values` lists them for the log masker.
- INT is a 64-bit integer, given as a number or integer text (not 1.5, not true).
  FLOAT is any finite number, kept as a float. `min`/`max` are inclusive.
- BOOLEAN is true or false, or that text in any case.
- DATETIME needs a time zone (`Z` or an offset): a value without one is refused
  rather than guessed. It becomes RFC 3339 in UTC, e.g. 2024-01-31T10:00:00Z
  (fractions of a second kept, as milliseconds or microseconds). DATE is YYYY-MM-DD,
  TIME is HH:MM or HH:MM:SS and becomes HH:MM:SS. `after`/`before` are strict and
  compare instants, days or times of day.
- DURATION is kept as the ISO-8601 text given, in upper case; `min`/`max` are
  inclusive and compare lengths.
- SELECT compares the value's text with `values` (a list, or an expression giving a
  list or a JSON array). MULTISELECT takes a list, a JSON array text, or values
  separated by commas (a value holding a comma must be given in a JSON array);
  without `values` or `options` its items are not checked.
- ARRAY takes a list or a JSON array text; each item is checked as its `itemType`,
  and problems name the item counted from 1 ("item 2: must be an integer, got 'x'").
- JSON and YAML take text, which is parsed (YAML with the flow loader's limits on
  depth and aliases, and its scalars: dates stay text), or a structure as is.
- URI needs a scheme and a host or a path; EMAIL one @ with a dot in the domain.
- FILE takes an `UploadedFile`, or text that already is an internal-storage URI
  (kestra:// or hw://), accepted as is. `extension` and `allowedFileExtensions`
  (either allows) compare the upload's file name case-insensitively, with or without
  the dot. Uploads are stored through `store_file` after every input is valid, in
  declaration order; until then expressions see the file's name. A flow with a FILE
  input needs a `store_file`, whether or not a file was given (ValueError otherwise).
- A FILE input's `defaults` may name a namespace file of the flow's namespace,
  `nsfile:///path/in/_files`: when the default is used, `read_namespace_file` reads
  that file (at the commit of the flow's revision) and it is then handled as an
  upload of that name, so its value is a copy in internal storage. A given value is
  data: an `nsfile://` URI given as a value is refused.
- Problems come in declaration order, after those about ids the flow does not declare.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from pathlib import PurePosixPath
from typing import Any, NoReturn, TypeVar
from urllib.parse import urlsplit

from headwater.daemon import defaults, yamlsource
from headwater.daemon.errors import HeadwaterError, ValidationFailed
from headwater.daemon.expressions import (
    ExpressionError,
    ExpressionSyntaxError,
    RenderContext,
    has_expression,
    parse,
    truthy,
)
from headwater.daemon.expressions.values import INT_MAX
from headwater.daemon.flow.inputs import (
    NAMESPACE_FILE_PREFIX,
    STORED_FILE_PREFIXES,
    ArrayInput,
    BooleanInput,
    DateInput,
    DateTimeInput,
    DurationInput,
    EmailInput,
    FileInput,
    FloatInput,
    Input,
    IntInput,
    JsonInput,
    MultiSelectInput,
    SecretInput,
    SelectInput,
    StringInput,
    TimeInput,
    UriInput,
    YamlInput,
    namespace_file_path,
)
from headwater.daemon.flow.types import parse_duration

SHOWN_VALUE_CHARS = 40  # a value quoted in a message is cut to this many characters
SHOWN_CHOICES = 20  # a SELECT's values listed in a message, at most
SHOWN_ITEM_PROBLEMS = 5  # problems of an ARRAY's items listed, at most


@dataclass(frozen=True)
class UploadedFile:
    """A FILE input as given: from a multipart form, or `-i name=@path` on the CLI."""

    filename: str
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class InputProblem:
    """Why one input's value was refused."""

    input_id: str
    reason: str

    def __str__(self) -> str:
        return f"input '{self.input_id}': {self.reason}"

    def to_json(self) -> dict[str, str]:
        return {"input": self.input_id, "message": self.reason}


class InputsRefused(HeadwaterError):
    """The inputs of an execution were refused; `problems` holds every one, in order."""

    def __init__(self, problems: Sequence[InputProblem]) -> None:
        self.problems = list(problems)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.problems,))


StoreFile = Callable[[str, UploadedFile], str]
"""(input id, file) -> the internal-storage URI the input's value becomes."""

ReadNamespaceFile = Callable[[str], bytes]
"""(path inside the flow's `_files/`) -> that namespace file's content; LookupError when
there is no such file."""


def resolve_inputs(
    declared: Sequence[Input] | None,
    given: Mapping[str, Any],
    *,
    store_file: StoreFile | None = None,
    context: Mapping[str, Any] | None = None,
    read_namespace_file: ReadNamespaceFile | None = None,
) -> dict[str, Any]:
    """Typed values of a flow's inputs, or InputsRefused listing every problem.

    `context` holds what expressions in defaults and conditions may read besides
    `inputs` (flow, execution, vars, …). `read_namespace_file` reads the flow's
    namespace files, for FILE defaults that name one (without it, none exists).
    Nothing is stored unless everything is valid (files are stored last).
    """
    inputs = list(declared or ())
    if store_file is None and any(isinstance(i, FileInput) for i in inputs):
        raise ValueError("resolve_inputs needs store_file for a flow with a FILE input")
    run = _Run(inputs, given, context or {}, read_namespace_file)
    for item in _order(inputs, run.dependencies):
        run.resolve(item)
    problems = _unknown_ids(inputs, given)
    problems += [InputProblem(i.id, run.problems[i.id]) for i in inputs if i.id in run.problems]
    if problems:
        raise InputsRefused(problems)
    for upload_id in (i.id for i in inputs if i.id in run.uploads):
        assert store_file is not None  # checked above: uploads exist only for FILE inputs
        run.values[upload_id] = store_file(upload_id, run.uploads[upload_id])
    return {i.id: run.values[i.id] for i in inputs}


def secret_values(declared: Sequence[Input] | None, resolved: Mapping[str, Any]) -> list[str]:
    """The values of SECRET inputs, for the masker of logs and pages."""
    found = (resolved.get(i.id) for i in declared or () if isinstance(i, SecretInput))
    return [value for value in found if isinstance(value, str) and value]


# -- resolution --------------------------------------------------------------------------


class _Refused(Exception):
    """A value failed a check; `reason` is the message for the person who gave it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _refuse(reason: str) -> NoReturn:
    raise _Refused(reason)


class _Run:
    """The state of one resolution: values so far, problems, uploads to store."""

    def __init__(
        self,
        inputs: list[Input],
        given: Mapping[str, Any],
        context: Mapping[str, Any],
        read_namespace_file: ReadNamespaceFile | None = None,
    ) -> None:
        self.given = given
        self.context = context
        self.read_namespace_file = read_namespace_file
        self.values: dict[str, Any] = {}
        self.problems: dict[str, str] = {}
        self.skipped: set[str] = set()
        self.uploads: dict[str, UploadedFile] = {}
        ids = {i.id for i in inputs}
        self.dependencies = {i.id: _dependencies(i) & ids - {i.id} for i in inputs}

    def resolve(self, item: Input) -> None:
        if self.dependencies[item.id] & (self.skipped | self.problems.keys()):
            self.skipped.add(item.id)
            return
        try:
            self.values[item.id] = self._value(item)
        except _Refused as refused:
            self.problems[item.id] = refused.reason

    def _value(self, item: Input) -> Any:
        shown = self._shown(item)
        raw = self.given.get(item.id) if shown else None
        if not _missing(raw):
            return self._check(item, raw)
        default = self.render(item.defaults, "defaults")
        if default is not None:
            try:
                return self._check(item, self._namespace_file(item, default))
            except _Refused as refused:
                _refuse(f"its default value is invalid: {refused.reason}")
        if item.required and shown:
            _refuse("is required")
        return None

    def _namespace_file(self, item: Input, default: Any) -> Any:
        """A FILE input's default that names a namespace file is that file, read now."""
        if not isinstance(item, FileInput) or not (
            isinstance(default, str) and default.startswith(NAMESPACE_FILE_PREFIX)
        ):
            return default
        try:
            path = namespace_file_path(default)
        except ValueError as exc:
            _refuse(str(exc))
        try:
            if self.read_namespace_file is None:
                raise LookupError(path)
            data = self.read_namespace_file(path)
        except LookupError:
            _refuse(
                f"namespace file {path} does not exist in the flow's namespace (its _files/ folder)"
            )
        return UploadedFile(PurePosixPath(path).name, data)

    def _shown(self, item: Input) -> bool:
        condition = item.dependsOn.condition if item.dependsOn else None
        if condition is None:
            return True
        return truthy(self.render(condition, "dependsOn condition"))

    def _check(self, item: Input, raw: Any) -> Any:
        for kind in type(item).__mro__:
            check = _CHECKS.get(kind)
            if check is not None:
                return check(item, raw, self)
        raise ValueError(f"no check for inputs of type {type(item).__name__}")

    def render(self, value: Any, what: str) -> Any:
        """`value`, its expression evaluated if it holds one, with `inputs` so far."""
        if not isinstance(value, str) or not has_expression(value):
            return value
        variables = {**self.context, "inputs": dict(self.values)}
        try:
            return parse(value).evaluate(RenderContext(variables=variables))
        except (ExpressionError, ExpressionSyntaxError) as exc:
            _refuse(f"its {what} could not be rendered: {exc}")

    def flag(self, value: bool | str, what: str) -> bool:
        return value if isinstance(value, bool) else truthy(self.render(value, what))


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value == "")


def _dependencies(item: Input) -> set[str]:
    found = set(item.dependsOn.inputs) if item.dependsOn else set()
    for source in _expressions(item):
        try:
            paths = parse(source).references
        except ExpressionSyntaxError:
            continue  # reported when it is rendered
        found.update(p.split(".")[1] for p in paths if p.startswith("inputs."))
    return found


def _expressions(item: Input) -> Iterator[str]:
    names = ("defaults", "values", "after", "before", "min", "max", "allowCustomValue")
    values = [getattr(item, name, None) for name in names]
    values.append(item.dependsOn.condition if item.dependsOn else None)
    yield from (v for v in values if isinstance(v, str) and has_expression(v))


def _order(inputs: list[Input], dependencies: Mapping[str, set[str]]) -> list[Input]:
    """Declaration order, each input after those it depends on (a cycle keeps its order)."""
    done: set[str] = set()
    pending = list(inputs)
    ordered: list[Input] = []
    while pending:
        ready = next((i for i in pending if dependencies[i.id] <= done), pending[0])
        pending.remove(ready)
        ordered.append(ready)
        done.add(ready.id)
    return ordered


def _unknown_ids(inputs: list[Input], given: Mapping[str, Any]) -> list[InputProblem]:
    ids = [i.id for i in inputs]
    problems = []
    for name in given:
        if name in ids:
            continue
        if not ids:
            problems.append(InputProblem(name, "the flow has no inputs"))
            continue
        close = difflib.get_close_matches(name, ids, 1, defaults.SUGGESTION_CUTOFF)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        reason = f"the flow has no such input{hint}; its inputs are: {', '.join(ids)}"
        problems.append(InputProblem(name, reason))
    return problems


# -- how values read in messages ---------------------------------------------------------


def _shown(value: Any) -> str:
    """A value as a message quotes it: text in quotes, cut to SHOWN_VALUE_CHARS."""
    if isinstance(value, str):
        text = value
        if len(text) > SHOWN_VALUE_CHARS:
            text = text[: SHOWN_VALUE_CHARS - 3] + "..."
        return "'" + text.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t") + "'"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, UploadedFile):
        return f"a file {_shown(value.filename)}"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, Mapping):
        return "a map"
    if isinstance(value, datetime | date | time):
        return _shown(value.isoformat())
    return type(value).__name__


def _listed(choices: Sequence[str]) -> str:
    shown = ", ".join(choices[:SHOWN_CHOICES])
    more = len(choices) - SHOWN_CHOICES
    return f"{shown} and {more} more" if more > 0 else shown


# -- scalars -----------------------------------------------------------------------------


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, datetime):
        return _format_datetime(_aware(value, value))
    if isinstance(value, date | time):
        return value.isoformat()
    _refuse(f"must be text, got {_shown(value)}")


def _string(item: StringInput, value: Any, run: _Run) -> str:
    text = _text(value)
    _match(item.validator, text, f", got {_shown(text)}")
    return text


def _secret(item: SecretInput, value: Any, run: _Run) -> str:
    try:
        text = _text(value)
    except _Refused:
        _refuse("must be text")  # the value is a secret: never shown
    _match(item.validator, text, "")
    return text


def _match(validator: str | None, text: str, got: str) -> None:
    if validator is None:
        return
    try:
        matched = re.fullmatch(validator, text)
    except re.error as exc:
        _refuse(f"its validator {validator} is not a valid regular expression: {exc}")
    if not matched:
        _refuse(f"does not match the validator {validator}{got}")


_INTEGER = re.compile(r"[+-]?\d{1,19}", re.ASCII)
_DECIMAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)


def _int(value: Any) -> int:
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        number = int(value.strip())
    if number is None:
        _refuse(f"must be an integer, got {_shown(value)}")
    if not -INT_MAX - 1 <= number <= INT_MAX:
        _refuse(f"must be an integer between {-INT_MAX - 1} and {INT_MAX}, got {number}")
    return number


def _float(value: Any) -> float:
    number: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str) and _DECIMAL.fullmatch(value.strip()):
        number = float(value.strip())
    if number is None or not math.isfinite(number):
        _refuse(f"must be a number, got {_shown(value)}")
    return number


def _within(number: float, low: float | None, high: float | None) -> None:
    if low is not None and number < low:
        _refuse(f"must be at least {low}, got {number}")
    if high is not None and number > high:
        _refuse(f"must be at most {high}, got {number}")


def _integer(item: IntInput, value: Any, run: _Run) -> int:
    number = _int(value)
    _within(number, item.min, item.max)
    return number


def _number(item: FloatInput, value: Any, run: _Run) -> float:
    number = _float(value)
    _within(number, item.min, item.max)
    return number


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    _refuse(f"must be true or false, got {_shown(value)}")


def _boolean(item: BooleanInput, value: Any, run: _Run) -> bool:
    return _bool(value)


# -- dates, times, durations -------------------------------------------------------------

_DATETIME = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})[Tt ](?P<time>\d{2}:\d{2}(?::\d{2})?)"
    r"(?:[.,](?P<fraction>\d+))?(?P<zone>[Zz]|[+-]\d{2}(?::?\d{2})?)?",
    re.ASCII,
)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
_TIME = re.compile(r"(\d{2}):(\d{2})(?::(\d{2}))?", re.ASCII)
_DATETIME_LIKE = "a date-time like 2024-01-31T10:00:00Z"


def _datetime(value: Any) -> datetime:
    """An aware datetime in UTC from ISO-8601 text (with a zone) or a datetime."""
    if isinstance(value, datetime):
        return _aware(value, value)
    match = _DATETIME.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        _refuse(f"must be {_DATETIME_LIKE}, got {_shown(value)}")
    fraction = f".{(match['fraction'] + '00000')[:6]}" if match["fraction"] else ""
    zone = match["zone"] or ""
    if zone.upper() == "Z":
        zone = "+00:00"
    elif len(zone) == 3:
        zone += ":00"
    elif len(zone) == 5:
        zone = f"{zone[:3]}:{zone[3:]}"
    try:
        parsed = datetime.fromisoformat(f"{match['date']}T{match['time']}{fraction}{zone}")
    except ValueError:
        _refuse(f"must be {_DATETIME_LIKE}, got {_shown(value)}")
    return _aware(parsed, value)


def _aware(moment: datetime, given: Any) -> datetime:
    if moment.tzinfo is None:
        _refuse(
            "must have a time zone, like 2024-01-31T10:00:00Z or 2024-01-31T10:00:00+01:00, "
            f"got {_shown(given)}"
        )
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        _refuse(f"must be {_DATETIME_LIKE}, got {_shown(given)}")


def _format_datetime(moment: datetime) -> str:
    micro = moment.microsecond
    spec = "seconds" if not micro else "milliseconds" if micro % 1000 == 0 else "microseconds"
    return moment.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def _date(value: Any) -> date:
    if isinstance(value, datetime):
        return _aware(value, value).date()
    if isinstance(value, date):
        return value
    if isinstance(value, str) and _DATE.fullmatch(value.strip()):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    _refuse(f"must be a date like 2024-01-31, got {_shown(value)}")


def _time(value: Any) -> time:
    if isinstance(value, time):
        return value.replace(microsecond=0)
    match = _TIME.fullmatch(value.strip()) if isinstance(value, str) else None
    if match:
        hour, minute, second = (int(part or 0) for part in match.groups())
        if hour < 24 and minute < 60 and second < 60:
            return time(hour, minute, second)
    _refuse(f"must be a time like 18:00 or 18:00:30, got {_shown(value)}")


_Moment = TypeVar("_Moment", datetime, date, time)


def _bounded(
    moment: _Moment,
    item: Any,
    run: _Run,
    read: Callable[[Any], _Moment],
    show: Callable[[_Moment], str],
) -> _Moment:
    """Checks `after` < moment < `before`, both read with `read` after rendering."""
    for name in ("after", "before"):
        raw = run.render(getattr(item, name), name)
        if raw is None:
            continue
        try:
            bound = read(raw)
        except _Refused as refused:
            _refuse(f"its {name} bound is invalid: {refused.reason}")
        if (name == "after" and not moment > bound) or (name == "before" and not moment < bound):
            _refuse(f"must be {name} {show(bound)}, got {_shown(show(moment))}")
    return moment


def _date_time(item: DateTimeInput, value: Any, run: _Run) -> str:
    return _format_datetime(_bounded(_datetime(value), item, run, _datetime, _format_datetime))


def _day(item: DateInput, value: Any, run: _Run) -> str:
    return _bounded(_date(value), item, run, _date, date.isoformat).isoformat()


def _time_of_day(item: TimeInput, value: Any, run: _Run) -> str:
    return _bounded(_time(value), item, run, _time, time.isoformat).isoformat()


def _duration_text(value: Any) -> str:
    text = value.strip().upper() if isinstance(value, str) else ""
    if parse_duration(text) is None:
        _refuse(
            f"must be an ISO-8601 duration like PT30S, PT5M, PT1H30M or P1D, got {_shown(value)}"
        )
    return text


def _seconds(text: str) -> float:
    return parse_duration(text) or 0.0  # text came through _duration_text


def _duration(item: DurationInput, value: Any, run: _Run) -> str:
    text = _duration_text(value)
    for name in ("min", "max"):
        raw = run.render(getattr(item, name), name)
        if raw is None:
            continue
        try:
            bound = _duration_text(raw)
        except _Refused as refused:
            _refuse(f"its {name} bound is invalid: {refused.reason}")
        if name == "min" and _seconds(text) < _seconds(bound):
            _refuse(f"must be at least {bound}, got {_shown(value)}")
        if name == "max" and _seconds(text) > _seconds(bound):
            _refuse(f"must be at most {bound}, got {_shown(value)}")
    return text


# -- choices and lists -------------------------------------------------------------------


def _choices(run: _Run, values: list[str] | str | None) -> list[str] | None:
    """The values to choose from, the expression giving them rendered."""
    rendered = run.render(values, "values")
    if rendered is None:
        return None
    if isinstance(rendered, str):
        try:
            rendered = json.loads(rendered)
        except (ValueError, RecursionError):
            _refuse(f"its values must be a list, got {_shown(rendered)}")
    if not isinstance(rendered, list):
        _refuse(f"its values must be a list, got {_shown(rendered)}")
    try:
        return [_text(v) for v in rendered]
    except _Refused as refused:
        _refuse(f"its values must be a list of text: {refused.reason}")


def _select(item: SelectInput, value: Any, run: _Run) -> str:
    text = _text(value)
    choices = _choices(run, item.values)
    custom = run.flag(item.allowCustomValue, "allowCustomValue")
    if choices is not None and text not in choices and not custom:
        _refuse(f"must be one of {_listed(choices)}, got {_shown(value)}")
    return text


def _multiselect(item: MultiSelectInput, value: Any, run: _Run) -> list[str]:
    if isinstance(value, str) and not value.lstrip().startswith("["):
        chosen = [part.strip() for part in value.split(",") if part.strip()]
    else:
        chosen = [_text(v) for v in _list(value, "a list of values")]
    choices = _choices(run, item.values if item.values is not None else item.options)
    custom = run.flag(item.allowCustomValue, "allowCustomValue")
    if choices is not None and not custom:
        wrong = [_shown(c) for c in chosen if c not in choices]
        if wrong:
            verb = "is" if len(wrong) == 1 else "are"
            _refuse(f"{', '.join(wrong)} {verb} not among the values: {_listed(choices)}")
    return chosen


def _list(value: Any, what: str) -> list[Any]:
    """A list given as such or as JSON array text."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            _refuse(f"must be {what} (a JSON array) but is not valid JSON {_json_error(exc)}")
        except (ValueError, RecursionError):
            _refuse(f"must be {what} (a JSON array), got {_shown(value)}")
    if not isinstance(value, list | tuple):
        _refuse(f"must be {what} (a JSON array), got {_shown(value)}")
    return list(value)


def _array(item: ArrayInput, value: Any, run: _Run) -> list[Any]:
    check = _ITEM_CHECKS[item.itemType]
    items, wrong = [], []
    for number, raw in enumerate(_list(value, "a list"), start=1):
        try:
            items.append(check(raw))
        except _Refused as refused:
            wrong.append(f"item {number}: {refused.reason}")
    if wrong:
        more = len(wrong) - SHOWN_ITEM_PROBLEMS
        _refuse("; ".join(wrong[:SHOWN_ITEM_PROBLEMS]) + (f"; and {more} more" if more > 0 else ""))
    return items


# -- documents, addresses, files ---------------------------------------------------------


def _json_error(exc: json.JSONDecodeError) -> str:
    return f"at line {exc.lineno}, column {exc.colno}: {exc.msg}"


def _json_value(value: Any) -> Any:
    if isinstance(value, UploadedFile):
        _refuse(f"must be JSON text, got {_shown(value)}")
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        _refuse(f"is not valid JSON {_json_error(exc)}")
    except (ValueError, RecursionError):
        _refuse(f"is not valid JSON (too deeply nested, or a number too long), got {_shown(value)}")


def _json(item: JsonInput, value: Any, run: _Run) -> Any:
    return _json_value(value)


def _yaml(item: YamlInput, value: Any, run: _Run) -> Any:
    if isinstance(value, UploadedFile):
        _refuse(f"must be YAML text, got {_shown(value)}")
    if not isinstance(value, str):
        return value
    try:
        return yamlsource.load(value, item.id).data
    except ValidationFailed as failed:
        first = failed.diagnostics[0]
        message = first.message.removeprefix("invalid YAML: ")
        where = first.position
        _refuse(f"is not valid YAML at line {where.line}, column {where.column}: {message}")


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")


def _uri(item: UriInput, value: Any, run: _Run) -> str:
    text = value.strip() if isinstance(value, str) else ""
    try:
        parts = urlsplit(text)
    except ValueError:
        parts = urlsplit("")
    if (
        not _SCHEME.fullmatch(parts.scheme)
        or not (parts.netloc or parts.path)
        or any(c.isspace() for c in text)
    ):
        _refuse(f"must be a URI like https://example.com/path, got {_shown(value)}")
    return text


_EMAIL = re.compile(r"[^@\s]+@[^@\s.]+(?:\.[^@\s.]+)+")


def _email(item: EmailInput, value: Any, run: _Run) -> str:
    text = value.strip() if isinstance(value, str) else ""
    if not _EMAIL.fullmatch(text):
        _refuse(f"must be an email address like name@example.com, got {_shown(value)}")
    return text


def _file(item: FileInput, value: Any, run: _Run) -> str:
    if isinstance(value, str) and value.startswith(STORED_FILE_PREFIXES):
        return value
    if not isinstance(value, UploadedFile):
        _refuse(f"must be an uploaded file, got {_shown(value)}")
    allowed = [e for e in [item.extension, *(item.allowedFileExtensions or [])] if e]
    suffixes = ["." + e.strip().lstrip(".").lower() for e in allowed]
    if suffixes and not value.filename.lower().endswith(tuple(suffixes)):
        _refuse(f"must be a {' or '.join(suffixes)} file, got {_shown(value.filename)}")
    run.uploads[item.id] = value
    return value.filename


_CHECKS: dict[type[Input], Callable[[Any, Any, _Run], Any]] = {
    StringInput: _string,
    SecretInput: _secret,
    IntInput: _integer,
    FloatInput: _number,
    BooleanInput: _boolean,
    DateTimeInput: _date_time,
    DateInput: _day,
    TimeInput: _time_of_day,
    DurationInput: _duration,
    SelectInput: _select,
    MultiSelectInput: _multiselect,
    ArrayInput: _array,
    JsonInput: _json,
    YamlInput: _yaml,
    UriInput: _uri,
    EmailInput: _email,
    FileInput: _file,
}

_ITEM_CHECKS: dict[str, Callable[[Any], Any]] = {
    "STRING": _text,
    "INT": _int,
    "FLOAT": _float,
    "BOOLEAN": _bool,
    "DATETIME": lambda v: _format_datetime(_datetime(v)),
    "DATE": lambda v: _date(v).isoformat(),
    "TIME": lambda v: _time(v).isoformat(),
    "DURATION": _duration_text,
    "JSON": _json_value,
}
