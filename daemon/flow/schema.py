"""The JSON Schema of a flow file, for editors (completion and validation as you type).

Generated from the models, so it cannot drift from what `validate` accepts; each
property's description is the attribute docstring written beside it in the model.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from headwater.daemon.flow import registry as reg
from headwater.daemon.flow.inputs import INPUT_TYPES
from headwater.daemon.flow.model import Flow

SCHEMA_ID = "https://headwater.invalid/schemas/flow.schema.json"
SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def flow_schema() -> dict[str, Any]:
    schema = Flow.model_json_schema(by_alias=True, mode="validation")
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
