"""The OpenAPI document: valid OpenAPI 3.1, one entry per route, and true to real answers."""

from __future__ import annotations

import json
import re
from importlib import resources
from typing import Any

import pytest
from conftest import EngineFactory
from engineservices import EngineServices
from flask import Flask
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from test_api import AUTH, HELLO, REPOSITORY, SECRET, TOKEN, record_sync

from headwater.daemon.engine.engine import Engine
from headwater.daemon.services import WebSettings
from headwater.web.app import create_app

IGNORED_METHODS = {"HEAD", "OPTIONS"}
# The catch-all that answers 405 "flows come from git" to writes under /api/v1/flows:
# it is a refusal, not an operation.
UNDOCUMENTED_ENDPOINTS = {"api.flows_come_from_git"}
DOCUMENTED_PREFIXES = ("/api/", "/healthz", "/readyz", "/metrics")


@pytest.fixture
def engine(make_engine: EngineFactory) -> Engine:
    return make_engine(workers=1)


@pytest.fixture
def app(engine: Engine) -> Flask:
    web = WebSettings(REPOSITORY, "main", api_token=TOKEN, webhook_secret=SECRET)
    return create_app(EngineServices(engine, web))


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def document(client: FlaskClient) -> dict[str, Any]:
    answer = client.get("/api/v1/openapi.json")
    assert answer.status_code == 200
    assert answer.content_type == "application/json"
    found: dict[str, Any] = answer.json
    return found


def shape(path: str) -> str:
    """A path with its parameters' names left out: /a/<x>/b and /a/{y}/b are the same."""
    return re.sub(r"<[^>]*>|\{[^}]*\}", "{}", path)


def app_operations(app: Flask) -> set[tuple[str, str]]:
    return {
        (shape(rule.rule), method.lower())
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith(DOCUMENTED_PREFIXES) and rule.endpoint not in UNDOCUMENTED_ENDPOINTS
        for method in (rule.methods or set()) - IGNORED_METHODS
    }


def documented_operations(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (shape(path), method)
        for path, item in document["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    }


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1")
    meta = json.loads(
        resources.files("openapi_spec_validator")
        .joinpath("resources/schemas/v3.1/schema.json")
        .read_text()
    )
    errors = sorted(Draft202012Validator(meta).iter_errors(document), key=str)
    assert errors == [], [e.message for e in errors]
    validate(document)  # also resolves every $ref and checks parameters against paths


def test_every_route_of_the_app_is_documented(app: Flask, document: dict[str, Any]) -> None:
    missing = app_operations(app) - documented_operations(document)
    assert missing == set(), f"routes without a description in web/openapi.py: {missing}"


def test_every_documented_operation_exists(app: Flask, document: dict[str, Any]) -> None:
    phantom = documented_operations(document) - app_operations(app)
    assert phantom == set(), f"described in web/openapi.py but not served: {phantom}"


def test_writes_are_documented_as_needing_the_token(document: dict[str, Any]) -> None:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            signed = "webhook" in path  # webhooks carry a signature or key instead
            if method in ("post", "put", "delete") and not signed:
                assert operation.get("security") == [{"bearer": []}], (method, path)
                assert "401" in operation["responses"], (method, path)


def conforms(document: dict[str, Any], schema: dict[str, Any], value: Any) -> None:
    """Check an answer against a schema of the document (its $refs resolve in it)."""
    validator = Draft202012Validator({**schema, "components": document["components"]})
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(value)]
    assert errors == [], errors


def answer_schema(document: dict[str, Any], path: str, method: str, status: str) -> Any:
    response = document["paths"][path][method]["responses"][status]
    return response["content"]["application/json"]["schema"]


def test_real_answers_match_the_documented_schemas(
    client: FlaskClient, engine: Engine, document: dict[str, Any]
) -> None:
    engine.deploy_source(HELLO, "flows/company/team/hello.yaml")
    record_sync(engine.store, "Failed", errors=[{"path": "a.yaml", "line": 1, "message": "bad"}])
    started = client.post("/api/v1/executions/company.team/hello", json={"name": "x"}, headers=AUTH)
    execution_id = started.json["id"]
    engine.wait(execution_id, timeout=15, poll=0.05)
    engine.logs.flush()
    calls = [
        ("/api/v1/executions/{namespace}/{id}", "post", "200", started),
        ("/api/v1/sync", "get", "200", client.get("/api/v1/sync")),
        ("/api/v1/syncs", "get", "200", client.get("/api/v1/syncs")),
        ("/api/v1/flows/search", "get", "200", client.get("/api/v1/flows/search")),
        (
            "/api/v1/flows/{namespace}/{id}",
            "get",
            "200",
            client.get("/api/v1/flows/company.team/hello"),
        ),
        (
            "/api/v1/flows/{namespace}/{id}/revisions",
            "get",
            "200",
            client.get("/api/v1/flows/company.team/hello/revisions"),
        ),
        ("/api/v1/executions/search", "get", "200", client.get("/api/v1/executions/search")),
        (
            "/api/v1/executions/{executionId}",
            "get",
            "200",
            client.get(f"/api/v1/executions/{execution_id}"),
        ),
        ("/api/v1/logs/{executionId}", "get", "200", client.get(f"/api/v1/logs/{execution_id}")),
        ("/api/v1/executions/{executionId}", "get", "404", client.get("/api/v1/executions/nope")),
        ("/api/v1/sync", "post", "401", client.post("/api/v1/sync")),
        ("/api/v1/sync", "post", "200", client.post("/api/v1/sync", headers=AUTH)),
    ]
    for path, method, status, answer in calls:
        assert str(answer.status_code) == status, (path, answer.json)
        conforms(document, answer_schema(document, path, method, status), answer.json)
    logs = client.get(f"/api/v1/logs/{execution_id}").json
    assert logs, "the execution wrote log lines"
