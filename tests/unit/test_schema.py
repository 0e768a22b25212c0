"""The JSON Schema of a flow file, and the copy committed for editors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from headwater.daemon.flow import registry as reg
from headwater.daemon.flow.schema import flow_schema, schema_text

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "flows-repo-template"
COMMITTED = TEMPLATE / ".headwater" / "flow.schema.json"


def test_committed_schema_is_current() -> None:
    assert COMMITTED.read_text(encoding="utf-8") == schema_text(), (
        "flows-repo-template/.headwater/flow.schema.json is stale; regenerate it with\n"
        "    headwater schema -o flows-repo-template/.headwater/flow.schema.json"
    )


def _properties(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    found = [("Flow", name, prop) for name, prop in schema["properties"].items()]
    for model, definition in schema["$defs"].items():
        found += [(model, name, prop) for name, prop in definition.get("properties", {}).items()]
    return found


def test_every_property_has_a_description() -> None:
    missing = [
        f"{model}.{name}"
        for model, name, prop in _properties(flow_schema())
        if not prop.get("description")
    ]
    assert not missing, f"properties without a description: {missing}"


def test_every_type_name_is_offered_for_completion() -> None:
    schema = flow_schema()
    offered = {
        name
        for definition in schema["$defs"].values()
        for name in definition.get("properties", {}).get("type", {}).get("enum", [])
    }
    for kind in ("task", "trigger", "condition", "runner"):
        for entry in reg.REGISTRY.entries(kind):  # type: ignore[arg-type]
            assert set(entry.names) <= offered, entry.short


def test_schema_accepts_the_template_flow_and_rejects_a_typo() -> None:
    validator = jsonschema.Draft202012Validator(flow_schema())
    flow = yaml.safe_load((TEMPLATE / "flows/tutorial/hello.yaml").read_text())
    assert list(validator.iter_errors(flow)) == []
    flow["tasks"][0]["mesage"] = flow["tasks"][0].pop("message")
    assert list(validator.iter_errors(flow)), "an unknown property must not pass the schema"


@pytest.mark.parametrize(
    ("value", "valid"),
    [(3, True), ("{{ inputs.n }}", True), ("three", False), (True, False)],
)
def test_expressions_are_allowed_where_a_number_is(value: object, valid: bool) -> None:
    flow = {
        "id": "f",
        "namespace": "n",
        "tasks": [{"id": "p", "type": "core.flow.Parallel", "concurrent": value, "tasks": []}],
    }
    errors = list(jsonschema.Draft202012Validator(flow_schema()).iter_errors(flow))
    assert (not errors) is valid


def test_editor_settings_map_flows_but_not_namespace_files() -> None:
    settings = json.loads((TEMPLATE / ".vscode/settings.json").read_text())
    assert settings["yaml.schemas"] == {
        "./.headwater/flow.schema.json": ["flows/**/*.y*ml", "!**/_files/**"]
    }
