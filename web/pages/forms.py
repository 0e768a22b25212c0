"""The start form of a flow, generated from its typed inputs, and reading it back.

Each input gets the widget a browser offers for its type; the values a person typed
come back into the fields when the inputs are refused, next to each problem. The
server checks every value (daemon/engine/inputs.py): the widgets only help.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from werkzeug.datastructures import MultiDict

from headwater.daemon.engine.inputs import UploadedFile
from headwater.daemon.expressions import has_expression

CSRF_FIELD = "csrf_token"  # sent by every form; never an input
PLACEHOLDERS = {
    "DATETIME": "2024-01-31T10:00:00Z",
    "DURATION": "PT1H30M",
    "ARRAY": '["a", "b"]',
    "JSON": '{"key": "value"}',
    "YAML": "key: value",
    "URI": "https://example.com/path",
    "EMAIL": "someone@example.com",
}
WIDGETS = {
    "STRING": "text",
    "SECRET": "password",
    "INT": "number",
    "FLOAT": "number",
    "BOOLEAN": "boolean",
    "BOOL": "boolean",
    "DATETIME": "text",
    "DATE": "date",
    "TIME": "time",
    "DURATION": "text",
    "SELECT": "select",
    "ENUM": "select",
    "MULTISELECT": "multiselect",
    "ARRAY": "textarea",
    "JSON": "textarea",
    "YAML": "textarea",
    "URI": "url",
    "EMAIL": "email",
    "FILE": "file",
}


@dataclass
class Field:
    """One input as the form shows it."""

    id: str
    type: str
    widget: str
    label: str
    description: str | None
    required: bool
    value: str = ""
    """What the field holds: the default, or what was typed before."""
    chosen: list[str] = field(default_factory=list)
    """Selected values of a select or multiselect."""
    choices: list[str] = field(default_factory=list)
    placeholder: str = ""
    attributes: dict[str, str] = field(default_factory=dict)
    """min, max, step, accept, …"""
    error: str | None = None


def fields(
    inputs: Sequence[Mapping[str, Any]],
    given: MultiDict[str, str] | None = None,
    errors: Mapping[str, str] | None = None,
) -> list[Field]:
    """The form's fields; `given` (a refused post) refills them, `errors` by input id."""
    return [_field(raw, given, errors or {}) for raw in inputs if isinstance(raw.get("id"), str)]


def _field(
    raw: Mapping[str, Any], given: MultiDict[str, str] | None, errors: Mapping[str, str]
) -> Field:
    kind = str(raw.get("type") or "STRING").upper()
    widget = WIDGETS.get(kind, "text")
    choices = _choices(raw)
    if widget in ("select", "multiselect") and choices is None:
        widget = "text"  # values from an expression: the server knows them, the form does not
    default = raw.get("defaults")
    field_ = Field(
        id=raw["id"],
        type=kind,
        widget=widget,
        label=str(raw.get("displayName") or raw["id"]),
        description=raw.get("description") if isinstance(raw.get("description"), str) else None,
        required=raw.get("required", True) is not False and default is None,
        choices=choices or [],
        placeholder=PLACEHOLDERS.get(kind, ""),
        attributes=_attributes(kind, raw),
        error=errors.get(raw["id"]),
    )
    if default is not None and has_expression(str(default)):
        field_.placeholder = f"default: {default}"
    elif default is not None:
        field_.value = _text(default)
        field_.chosen = [_text(v) for v in default] if isinstance(default, list) else [field_.value]
    if given is not None and kind not in ("SECRET", "FILE"):
        field_.chosen = given.getlist(field_.id)
        field_.value = field_.chosen[0] if field_.chosen else ""
    return field_


def _choices(raw: Mapping[str, Any]) -> list[str] | None:
    values = raw.get("values", raw.get("options"))
    if isinstance(values, list):
        return [_text(v) for v in values]
    return None


def _attributes(kind: str, raw: Mapping[str, Any]) -> dict[str, str]:
    found: dict[str, str] = {}
    if kind in ("INT", "FLOAT"):
        found["step"] = "1" if kind == "INT" else "any"
        for bound in ("min", "max"):
            if isinstance(raw.get(bound), int | float) and not isinstance(raw.get(bound), bool):
                found[bound] = str(raw[bound])
    if kind == "TIME":
        found["step"] = "1"
    if kind == "FILE":
        allowed = list(raw.get("allowedFileExtensions") or [])
        if isinstance(raw.get("extension"), str):
            allowed.append(raw["extension"])
        extensions = [f".{str(e).lstrip('.')}" for e in allowed if str(e).strip(".")]
        if extensions:
            found["accept"] = ",".join(extensions)
    return found


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def posted_inputs(
    form: MultiDict[str, str], files: MultiDict[str, Any], lists: Collection[str] = ()
) -> dict[str, Any]:
    """The inputs of a posted start form: fields and files. A field in `lists` (a
    multiselect) is always a list; another field posted several times is one too.

    A file field left empty posts a part without a file name: that is not a file.
    """
    inputs: dict[str, Any] = {}
    for name, values in form.lists():
        if name != CSRF_FIELD:
            inputs[name] = values[0] if len(values) == 1 and name not in lists else values
    for name, storages in files.lists():
        uploads = [UploadedFile(s.filename, s.read()) for s in storages if s.filename]
        if uploads:
            inputs[name] = uploads[0] if len(uploads) == 1 else uploads
    return inputs
