"""Turning pydantic's validation errors into messages a flow author reads.

pydantic reports a `loc` that mixes data keys with union tags (the task type a
discriminator chose); the data path is recovered by walking the loc against the raw
flow. Each error type gets a message in the words of the flow language.
"""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic_core import ErrorDetails

from headwater.daemon import defaults
from headwater.daemon.errors import Diagnostic
from headwater.daemon.flow import registry as reg
from headwater.daemon.flow.base import ConstantRetry, ExponentialRetry, RandomRetry
from headwater.daemon.flow.inputs import INPUT_TYPE_NAMES, INPUT_TYPES
from headwater.daemon.flow.types import describe
from headwater.daemon.yamlsource import Path, SourceDocument, format_path

_TAG_MODELS: dict[str, type[BaseModel]] = {
    "constant": ConstantRetry,
    "exponential": ExponentialRetry,
    "random": RandomRetry,
    **{model.__name__: model for model in INPUT_TYPES.values()},
}

_KIND_BY_LIST = {"triggers": "trigger", "conditions": "condition", "taskRunner": "runner"}


def translate(
    errors: list[ErrorDetails], doc: SourceDocument, data: Any, root: type[BaseModel]
) -> list[Diagnostic]:
    """One diagnostic per pydantic error (union alternatives of one value merged)."""
    out: dict[tuple[Path, str], Diagnostic] = {}
    for error in errors:
        path, model = _data_path(error["loc"], data, root)
        diagnostic = _diagnose(error, path, model, doc, data)
        out.setdefault((path, error["type"]), diagnostic)
    return list(out.values())


def _data_path(
    loc: tuple[int | str, ...], data: Any, root: type[BaseModel]
) -> tuple[Path, type[BaseModel] | None]:
    """The loc without union tags, and the model that holds its last step."""
    path: list[int | str] = []
    node: Any = data
    model: type[BaseModel] | None = root
    for i, step in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(node, dict) and isinstance(step, str) and (step in node or last):
            if isinstance(node, dict) and not last:
                model = _field_model(model, step)
            path.append(step)
            node = node.get(step)
        elif isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node):
            path.append(step)
            node = node[step]
        elif isinstance(step, str):
            model = _tag_model(step) or model
    return tuple(path), model


def _tag_model(tag: str) -> type[BaseModel] | None:
    entry = reg.REGISTRY.resolve(tag)
    return entry.model if entry else _TAG_MODELS.get(tag)


def _field_model(model: type[BaseModel] | None, name: str) -> type[BaseModel] | None:
    if model is None:
        return None
    for field_name, field in model.model_fields.items():
        if (field.alias or field_name) == name:
            return _single_model(field.annotation)
    return None


def _single_model(annotation: Any) -> type[BaseModel] | None:
    """The one model class inside an annotation (Optional, list, dict...), if exactly one."""
    found: list[type[BaseModel]] = []

    def visit(tp: Any) -> None:
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            found.append(tp)
            return
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            visit(typing.get_args(tp)[0])
        elif origin in (typing.Union, types.UnionType, list, dict):
            for arg in typing.get_args(tp):
                visit(arg)

    visit(annotation)
    return found[0] if len(found) == 1 else None


def _where(path: Path, data: Any) -> str:
    """`tasks[1] (core.log.Log)`: the path of a mapping and its type, if it has one."""
    node = _get(data, path)
    label = format_path(path) or "the flow"
    if isinstance(node, dict):
        entry = reg.REGISTRY.resolve(node.get("type"))
        if entry:
            label += f" ({entry.short})"
    return label


def _get(data: Any, path: Path) -> Any:
    for step in path:
        if isinstance(data, dict) and isinstance(step, str):
            data = data.get(step)
        elif isinstance(data, list) and isinstance(step, int) and 0 <= step < len(data):
            data = data[step]
        else:
            return None
    return data


def _diagnose(
    error: ErrorDetails, path: Path, model: type[BaseModel] | None, doc: SourceDocument, data: Any
) -> Diagnostic:
    kind = error["type"]
    value = error.get("input")
    field = format_path(path)
    if kind == "missing":
        return doc.error(
            path[:-1], f"{_where(path[:-1], data)}: missing required property '{path[-1]}'"
        )
    if kind == "extra_forbidden":
        return doc.error(path, _unknown_property(path, model, data), key=True)
    if kind in ("union_tag_not_found", "union_tag_invalid"):
        return _bad_type(path, value, doc)
    if kind == "retry_type":
        got = describe(_get(data, (*path, "type")))
        message = f"{field}: retry type must be constant, exponential or random, got {got}"
        return doc.error((*path, "type"), message)
    return doc.error(path, f"{field or 'the flow'}: {_message(kind, error, value)}")


def _message(kind: str, error: ErrorDetails, value: Any) -> str:
    ctx: dict[str, Any] = dict(error.get("ctx") or {})
    simple = {
        "list_type": "must be a list",
        "dict_type": "must be a map",
        "model_type": "must be a map",
        "model_attributes_type": "must be a map",
        "string_type": "must be a string",
        "int_type": "must be an integer",
        "int_parsing": "must be an integer",
        "int_from_float": "must be an integer",
        "float_type": "must be a number",
        "float_parsing": "must be a number",
        "bool_type": "must be true or false",
        "bool_parsing": "must be true or false",
    }
    if kind in simple:
        return f"{simple[kind]}, got {describe(value)}"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}, got {describe(value)}"
    if kind == "too_short" and ctx.get("min_length") == 1:
        return "must not be empty"
    return str(error["msg"])


def _unknown_property(path: Path, model: type[BaseModel] | None, data: Any) -> str:
    name = str(path[-1])
    where = _where(path[:-1], data)
    known = sorted(f.alias or n for n, f in model.model_fields.items()) if model else []
    message = f"{where}: unknown property '{name}'"
    close = difflib.get_close_matches(name, known, n=1, cutoff=defaults.SUGGESTION_CUTOFF)
    if close:
        message += f"; did you mean '{close[0]}'?"
    if known:
        message += f" (known properties: {', '.join(known)})"
    return message


def _bad_type(path: Path, value: Any, doc: SourceDocument) -> Diagnostic:
    where = format_path(path)
    kind = _kind_of(path)
    if not isinstance(value, dict):
        return doc.error(path, f"{where}: must be a map with 'type', got {describe(value)}")
    name = value.get("type")
    if "type" not in value:
        return doc.error(path, f"{where}: missing required property 'type'")
    if kind == "input":
        return doc.error(
            (*path, "type"),
            f"{where}: unknown input type '{name}'; the input types are "
            + ", ".join(INPUT_TYPE_NAMES),
        )
    if not isinstance(name, str):
        return doc.error((*path, "type"), f"{where}: 'type' must be a string, got {describe(name)}")
    other = reg.REGISTRY.resolve(name)
    if other is not None:
        return doc.error(
            (*path, "type"), f"{where}: '{name}' is a {other.kind} type, not a {kind} type"
        )
    message = f"{where}: unknown {kind} type '{name}'"
    nearest = reg.REGISTRY.suggest(name, kind)  # type: ignore[arg-type]
    if nearest:
        message += "; did you mean " + " or ".join(f"'{n}'" for n in nearest) + "?"
    return doc.error((*path, "type"), message)


def _kind_of(path: Path) -> str:
    names = [step for step in path if isinstance(step, str)]
    if not names:
        return "task"
    if names[0] == "inputs" and len(names) == 1:
        return "input"
    return _KIND_BY_LIST.get(names[-1], "task")
