"""The JSON Schema of a flow file, for editors (completion and validation as you type).

Generated from the models, so it cannot drift from what `validate` accepts; each
property's description is the attribute docstring written beside it in the model.
The docstrings are read here, from the models' source, when a schema is asked for:
pydantic's `use_attribute_docstrings` reads them as each class is defined, which cost
every `headwater validate` about 0.1 s (issue 12).
"""

from __future__ import annotations

import ast
import inspect
import itertools
import json
import sys
from functools import cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from headwater.daemon.flow import registry as reg
from headwater.daemon.flow.inputs import INPUT_TYPES
from headwater.daemon.flow.model import Flow

SCHEMA_ID = "https://headwater.invalid/schemas/flow.schema.json"
SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def flow_schema() -> dict[str, Any]:
    schema = Flow.model_json_schema(
        by_alias=True, mode="validation", schema_generator=DocumentedSchema
    )
    defs: dict[str, Any] = schema.get("$defs", {})
    kinds: tuple[reg.Kind, ...] = ("task", "trigger", "condition", "runner")
    for kind in kinds:
        for entry in reg.REGISTRY.entries(kind):
            _set_type_names(defs, entry.model, list(entry.names))
    by_model: dict[type[BaseModel], list[str]] = {}
    model: type[BaseModel]
    for name, model in INPUT_TYPES.items():
        by_model.setdefault(model, []).append(name)
    for model, names in by_model.items():
        _set_type_names(defs, model, names)
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": SCHEMA_ID,
        "title": "Headwater flow",
        **{k: v for k, v in schema.items() if k != "title"},
    }


def _set_type_names(defs: dict[str, Any], model: type[BaseModel], names: list[str]) -> None:
    definition = defs.get(model.__name__)
    if definition is None:
        return
    prop = definition.setdefault("properties", {}).setdefault("type", {})
    prop.pop("type", None)
    prop["enum"] = names
    prop.setdefault("description", f"{model.__name__} type name")


def schema_text() -> str:
    """The schema as committed to a flows repository: stable key order, newline at end."""
    return json.dumps(flow_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


class DocumentedSchema(GenerateJsonSchema):
    """pydantic's JSON Schema, with each field's attribute docstring as its description."""

    def model_schema(self, schema: core_schema.ModelSchema) -> JsonSchemaValue:
        json_schema = super().model_schema(schema)
        properties = json_schema.get("properties", {})
        for name, field in schema["cls"].model_fields.items():
            prop = properties.get(field.alias or name)
            doc = field_docstring(schema["cls"], name)
            if prop is not None and doc is not None and "description" not in prop:
                prop["description"] = doc
        return json_schema


def field_docstring(model: type[BaseModel], name: str) -> str | None:
    """The docstring below field `name` in the class that declares it, as pydantic reads it.

    A subclass that declares a field again without a docstring leaves it without one.
    """
    for cls in model.__mro__:
        if name in vars(cls).get("__annotations__", {}):
            return _class_docstrings(cls.__module__, cls.__qualname__).get(name)
    return None


@cache
def _class_docstrings(module: str, qualname: str) -> dict[str, str]:
    for node in _module_tree(module).body:
        if isinstance(node, ast.ClassDef) and node.name == qualname:
            return _docstrings(node.body)
    return {}  # not a class at the module's top level: no docstrings


@cache
def _module_tree(module: str) -> ast.Module:
    return ast.parse(inspect.getsource(sys.modules[module]))


def _docstrings(body: list[ast.stmt]) -> dict[str, str]:
    """Each `name: type` directly followed by a string literal, cleaned like a docstring."""
    found: dict[str, str] = {}
    for statement, following in itertools.pairwise(body):
        if (
            isinstance(statement, ast.AnnAssign)
            and isinstance(statement.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            found[statement.target.id] = inspect.cleandoc(following.value.value)
    return found
