"""The OpenAPI 3.1 document of the JSON API, served at /api/v1/openapi.json.

Written by hand as data, next to the views it describes: a test compares its paths
with the app's routes, so a new route without a description fails the build. Paths
name their parameters as Kestra does (`{namespace}/{id}`); the comparison ignores names.
"""

from __future__ import annotations

import functools
from typing import Any

from flask import Blueprint
from flask.typing import ResponseReturnValue

from headwater.daemon.engine.states import State
from headwater.web.api import DEFAULT_LOG_LINES, MAX_LOG_LINES
from headwater.web.jsonbody import MAX_DEPTH
from headwater.web.params import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE

Json = dict[str, Any]

blueprint = Blueprint("openapi", __name__)

VERSION = "1"
LEVELS = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"]
STATES = list(State.__members__)


# -- small builders ------------------------------------------------------------------------
def ref(name: str) -> Json:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: Json, description: str) -> Json:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def ok(schema: Json, description: str = "Success") -> Json:
    return {"200": _json(schema, description)}


def error(description: str) -> Json:
    return _json(ref("Error"), description)


def page_of(name: str) -> Json:
    return {
        "type": "object",
        "required": ["results", "total"],
        "properties": {
            "results": {"type": "array", "items": ref(name)},
            "total": {"type": "integer"},
        },
    }


def path_param(name: str, description: str) -> Json:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string"},
    }


def query(name: str, description: str, schema: Json | None = None) -> Json:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema or {"type": "string"},
    }


PAGING = [
    query("page", "Page number, counted from 1", {"type": "integer", "minimum": 1, "default": 1}),
    query(
        "size",
        "Results per page",
        {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE, "default": DEFAULT_PAGE_SIZE},
    ),
]
NAMESPACE = path_param("namespace", "Namespace, dotted (company.team)")
FLOW_ID = path_param("id", "Flow id")
EXECUTION_ID = path_param("executionId", "Execution id")
WRITE: list[Json] = [{"bearer": []}]
REFUSED = {
    "401": error("No token, or a wrong one (when a token is configured)"),
    "403": error("The daemon is read-only, or the call came from another site's page"),
}
NOT_FOUND = {"404": error("No such execution")}


def write(operation: Json) -> Json:
    """A call that changes something: it needs the bearer token."""
    return {**operation, "security": WRITE, "responses": {**operation["responses"], **REFUSED}}


# -- schemas -------------------------------------------------------------------------------
def obj(required: list[str], **properties: Json) -> Json:
    return {"type": "object", "required": required, "properties": properties}


STRING = {"type": "string"}
TEXT = {"type": ["string", "null"]}
INT = {"type": "integer"}
TIME = {"type": ["string", "null"], "format": "date-time"}
DURATION = {"type": ["string", "null"], "description": "ISO-8601 duration, e.g. PT1M2.5S"}
ANY_OBJECT = {"type": "object", "additionalProperties": True}

SCHEMAS: Json = {
    "Error": {
        "type": "object",
        "required": ["message"],
        "properties": {"message": STRING},
        "additionalProperties": True,
        "description": "Every error: a message saying what is wrong and where",
    },
    "Diagnostic": obj(
        ["message"],
        path=TEXT,
        line={"type": ["integer", "null"]},
        column={"type": ["integer", "null"]},
        severity=TEXT,
        field=TEXT,
        message=STRING,
    ),
    "SecretWarning": {
        "allOf": [
            ref("Diagnostic"),
            obj(["namespace", "flowId", "secret"], namespace=STRING, flowId=STRING, secret=STRING),
        ],
        "description": "A secret a deployed flow names that this daemon does not have",
    },
    "Commit": {
        "type": ["object", "null"],
        "properties": {"sha": STRING, "author": TEXT, "date": TIME, "message": TEXT},
    },
    "SyncAttempt": obj(
        ["id", "cause", "result"],
        id=INT,
        cause={"type": "string", "enum": ["poll", "webhook", "watch", "manual", "pin", "startup"]},
        fromCommit=TEXT,
        toCommit=TEXT,
        result=STRING,
        forced={"type": "boolean"},
        added=INT,
        updated=INT,
        deleted=INT,
        startDate=TIME,
        endDate=TIME,
        duration=DURATION,
        errors={"type": "array", "items": ref("Diagnostic")},
        message=TEXT,
        warnings={"type": "array", "items": ref("SecretWarning")},
    ),
    "SyncStatus": obj(
        ["repository", "branch", "status"],
        repository=STRING,
        branch=STRING,
        status={"type": "string", "enum": ["Synced", "OutOfSync", "Suspended", "Pinned"]},
        suspended={"type": "boolean"},
        deployedCommit=TEXT,
        deployedDate=TIME,
        branchHead=TEXT,
        pinnedCommit=TEXT,
        failedCommit=TEXT,
        lastAttempt={"oneOf": [ref("SyncAttempt"), {"type": "null"}]},
        fetchError=TEXT,
        fetchFailures=INT,
        warnings={"type": "array", "items": ref("SecretWarning")},
        history={"type": "array", "items": ref("SyncAttempt")},
    ),
    "SyncOutcome": obj(
        ["result"],
        result=STRING,
        syncId={"type": ["integer", "null"]},
        fromCommit=TEXT,
        toCommit=TEXT,
        added=INT,
        updated=INT,
        deleted=INT,
        errors={"type": "array", "items": ref("Diagnostic")},
        message=TEXT,
        warnings={"type": "array", "items": ref("SecretWarning")},
    ),
    "FlowSummary": obj(
        ["namespace", "id", "revision"],
        namespace=STRING,
        id=STRING,
        revision=INT,
        commit=ref("Commit"),
        path=TEXT,
        updated=TIME,
        description=TEXT,
        labels={"type": ["object", "array", "null"]},
        disabled={"type": "boolean"},
        triggers={"type": "array", "items": obj(["id", "type"], id=TEXT, type=TEXT)},
    ),
    "Flow": {
        "allOf": [
            ref("FlowSummary"),
            {
                "type": "object",
                "properties": {
                    "deleted": {"type": "boolean"},
                    "equalsRevision": {"type": ["integer", "null"]},
                    "created": TIME,
                    "deployedRevision": {"type": ["integer", "null"]},
                    "source": {"type": "string", "description": "The flow's YAML as committed"},
                },
            },
        ]
    },
    "Revision": obj(
        ["revision", "deleted"],
        revision=INT,
        commit=ref("Commit"),
        deleted={"type": "boolean"},
        equalsRevision={"type": ["integer", "null"]},
        created=TIME,
    ),
    "State": {"type": "string", "enum": STATES},
    "Attempt": obj([], state=TEXT, startDate=TIME, endDate=TIME),
    "TaskRun": obj(
        ["id", "executionId", "taskId", "state"],
        id=STRING,
        executionId=STRING,
        parentTaskRunId=TEXT,
        taskId=STRING,
        value=TEXT,
        state=obj(
            ["current"], current=ref("State"), startDate=TIME, endDate=TIME, duration=DURATION
        ),
        attempts={"type": "array", "items": ref("Attempt")},
        outputs=ANY_OBJECT,
        error=TEXT,
    ),
    "Execution": obj(
        ["id", "namespace", "flowId", "flowRevision", "state", "taskRunList"],
        id=STRING,
        namespace=STRING,
        flowId=STRING,
        flowRevision=INT,
        commit=TEXT,
        state=obj(
            ["current", "histories"],
            current=ref("State"),
            histories={
                "type": "array",
                "items": obj(["state", "date"], state=ref("State"), date=TIME),
            },
            startDate=TIME,
            endDate=TIME,
            duration=DURATION,
        ),
        inputs=ANY_OBJECT,
        outputs=ANY_OBJECT,
        labels={"type": "array", "items": obj(["key", "value"], key=STRING, value=STRING)},
        trigger={"type": ["object", "null"]},
        originalId=STRING,
        parentId=TEXT,
        error=TEXT,
        taskRunList={"type": "array", "items": ref("TaskRun")},
    ),
    "LogLine": obj(
        ["id", "timestamp", "level", "message"],
        id=INT,
        timestamp=TIME,
        level={"type": "string", "enum": LEVELS},
        taskRunId=TEXT,
        attempt={"type": ["integer", "null"]},
        message=STRING,
    ),
    "WebhookAnswer": obj(
        ["accepted"], accepted={"type": "boolean"}, message=STRING, reason=STRING, event=STRING
    ),
}


# -- operations ----------------------------------------------------------------------------
def _sync_paths() -> Json:
    status = ok(ref("SyncStatus"), "What is deployed, how sync is steered, recent attempts")
    return {
        "/api/v1/sync": {
            "get": {
                "tags": ["sync"],
                "summary": "Sync status and recent history",
                "responses": status,
            },
            "post": write(
                {
                    "tags": ["sync"],
                    "summary": "Sync now, or deploy and pin a named commit",
                    "requestBody": {
                        "required": False,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "to": {
                                            "type": "string",
                                            "pattern": "^[0-9a-fA-F]{4,64}$",
                                            "description": "Commit to deploy and pin",
                                        }
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        **ok(ref("SyncOutcome")),
                        "400": error("The body is not a commit"),
                        "504": error("The sync did not finish in time; it carries on"),
                    },
                }
            ),
        },
        "/api/v1/sync/suspend": {
            "post": write(
                {"tags": ["sync"], "summary": "Suspend automatic sync", "responses": status}
            )
        },
        "/api/v1/sync/resume": {
            "post": write(
                {
                    "tags": ["sync"],
                    "summary": "Resume automatic sync (and drop a pin)",
                    "responses": status,
                }
            )
        },
        "/api/v1/secrets": {
            "get": {
                "tags": ["sync"],
                "summary": "Whether each named secret is set on this daemon (never its value)",
                "parameters": [query("name", "A secret's name; repeat it for more (at most 500)")],
                "responses": ok(
                    obj(
                        ["secrets"],
                        secrets={
                            "type": "array",
                            "items": obj(["name", "set"], name=STRING, set={"type": "boolean"}),
                        },
                    ),
                    "Each name and whether it is set",
                ),
            }
        },
        "/api/v1/syncs": {
            "get": {
                "tags": ["sync"],
                "summary": "Every sync attempt, newest first",
                "parameters": PAGING,
                "responses": ok(page_of("SyncAttempt")),
            }
        },
        "/api/v1/git/webhook": {
            "post": {
                "tags": ["sync"],
                "summary": "A git host's push notification (GitHub, GitLab, Gitea, generic HMAC)",
                "description": "Authenticated by its signature (X-Hub-Signature-256, "
                "X-Gitlab-Token, X-Gitea-Signature or X-Headwater-Signature), not the token.",
                "requestBody": {"required": True, "content": {"application/json": {}}},
                "responses": {
                    "200": _json(ref("WebhookAnswer"), "A ping was answered"),
                    "202": _json(
                        ref("WebhookAnswer"),
                        "A sync is requested, or why not (another branch; a delivery id "
                        "or a signed body received before)",
                    ),
                    "400": error(
                        f"The payload cannot be read, or nests deeper than {MAX_DEPTH} levels"
                    ),
                    "401": error("Unsigned, badly signed, or no webhook secret configured"),
                    "413": error("The body is too large"),
                },
            }
        },
    }


def _flow_paths() -> Json:
    return {
        "/api/v1/flows/search": {
            "get": {
                "tags": ["flows"],
                "summary": "Deployed flows, by namespace and id",
                "parameters": [
                    *PAGING,
                    query("namespace", "This namespace and its children"),
                    query("q", "Text in the namespace or id (case-insensitive)"),
                ],
                "responses": ok(page_of("FlowSummary")),
            }
        },
        "/api/v1/flows/{namespace}/{id}": {
            "get": {
                "tags": ["flows"],
                "summary": "A deployed flow with its source, or one revision of it",
                "parameters": [
                    NAMESPACE,
                    FLOW_ID,
                    query(
                        "revision", "This revision (also of a deleted flow)", {"type": "integer"}
                    ),
                ],
                "responses": {
                    **ok(ref("Flow")),
                    "404": error("No such flow or revision; a deleted flow names its revision"),
                },
            }
        },
        "/api/v1/flows/{namespace}/{id}/revisions": {
            "get": {
                "tags": ["flows"],
                "summary": "Every revision of a flow with its commit, newest first",
                "parameters": [NAMESPACE, FLOW_ID],
                "responses": {
                    **ok({"type": "array", "items": ref("Revision")}),
                    "404": error("No such flow"),
                },
            }
        },
    }


def _execution_paths() -> Json:
    execution = ok(ref("Execution"), "The execution with its task runs")
    return {
        "/api/v1/executions/{namespace}/{id}": {
            "post": write(
                {
                    "tags": ["executions"],
                    "summary": "Start an execution of the deployed flow",
                    "parameters": [
                        NAMESPACE,
                        FLOW_ID,
                        {
                            **query("labels", "A label as key:value (repeatable)"),
                            "explode": True,
                        },
                    ],
                    "requestBody": {
                        "required": False,
                        "content": {
                            "application/json": {"schema": ANY_OBJECT},
                            "multipart/form-data": {"schema": ANY_OBJECT},
                            "application/x-www-form-urlencoded": {"schema": ANY_OBJECT},
                        },
                    },
                    "responses": {
                        **execution,
                        "400": error(
                            f"The body is not JSON, or nests deeper than {MAX_DEPTH} levels"
                        ),
                        "404": error("No such deployed flow"),
                        "415": error("The body is neither JSON nor a form"),
                        "422": error("The inputs were refused (every problem is listed)"),
                    },
                }
            )
        },
        "/api/v1/executions/search": {
            "get": {
                "tags": ["executions"],
                "summary": "Executions, newest first, with their task runs",
                "parameters": [
                    *PAGING,
                    query("namespace", "This namespace and its children"),
                    query("flowId", "Flow id"),
                    query(
                        "state",
                        "Current state (repeatable, or comma-separated)",
                        {"type": "array", "items": {"type": "string", "enum": STATES}},
                    ),
                    query("startDate", "Created at or after (RFC 3339)", TIME),
                    query("endDate", "Created before (RFC 3339)", TIME),
                ],
                "responses": {**ok(page_of("Execution")), "400": error("A bad filter")},
            }
        },
        "/api/v1/executions/{executionId}": {
            "get": {
                "tags": ["executions"],
                "summary": "One execution with its task runs",
                "parameters": [EXECUTION_ID],
                "responses": {**execution, **NOT_FOUND},
            }
        },
        **_control_paths(execution),
        "/api/v1/executions/webhook/{namespace}/{id}/{key}": {
            method: {
                "tags": ["executions"],
                "summary": "Fire a flow's Webhook trigger",
                "description": "The key in the path is the trigger's secret; no token is "
                "needed. The body, headers and query parameters reach the flow as "
                "`trigger.body`, `trigger.headers` and `trigger.parameters`.",
                "parameters": [NAMESPACE, FLOW_ID, path_param("key", "The trigger's key")],
                "responses": {
                    **ok(ref("Execution"), "The execution it started"),
                    "400": error(
                        "The flow started nothing (the message says why), or the JSON body "
                        f"nests deeper than {MAX_DEPTH} levels"
                    ),
                    "422": error("The inputs were refused; nothing was started"),
                    "403": error("The daemon is read-only"),
                    "404": error("No webhook trigger matches this URL (flow, trigger or key)"),
                    "413": error("The body is too large"),
                },
            }
            for method in ("get", "post", "put")
        },
    }


def _control_paths(execution: Json) -> Json:
    """Kill, restart, replay, resume (web/control_api.py)."""

    def control(summary: str, body: Json | None = None, answer: Json | None = None) -> Json:
        operation: Json = {
            "tags": ["executions"],
            "summary": summary,
            "parameters": [EXECUTION_ID],
            "responses": {
                **(answer or execution),
                **NOT_FOUND,
                "409": error("Not possible in the execution's current state"),
            },
        }
        if body is not None:
            operation["requestBody"] = {
                "required": False,
                "content": {"application/json": {"schema": body}},
            }
            operation["responses"]["400"] = error("The body is not such an object")
            operation["responses"]["422"] = error("The inputs were refused")
        return write(operation)

    inputs = {"type": "object", "additionalProperties": True, "description": "Input values"}
    stopping = {"202": _json(ref("Execution"), "The kill is under way; the execution is KILLING")}
    kill = control("Kill an execution and its running task runs", answer=stopping)
    replay = obj([], taskRunId={"type": "string", "description": "Replay from this task run"})
    replay["properties"]["inputs"] = inputs
    return {
        "/api/v1/executions/{executionId}/kill": {"post": kill, "delete": kill},
        "/api/v1/executions/{executionId}/restart": {
            "post": control("Run a failed or killed execution's failed task runs again")
        },
        "/api/v1/executions/{executionId}/replay": {
            "post": control(
                "Run the execution again as a new one (same revision), optionally from a "
                "task run and with new inputs; answers the new execution",
                body=replay,
            )
        },
        "/api/v1/executions/{executionId}/resume": {
            "post": control("Resume a paused execution", body=obj([], inputs=inputs))
        },
    }


def _trigger_paths() -> Json:
    """Backfill (web/triggers_api.py)."""
    moment = {"type": "string", "description": "RFC 3339; without an offset, the cron's zone"}
    answer = obj(
        ["times"],
        namespace=STRING,
        flowId=STRING,
        triggerId=STRING,
        times={"type": "integer", "description": "How many schedule times the range covers"},
        first=TEXT,
        last=TEXT,
        perSecond={"type": "number", "description": "How fast the executions are created"},
    )
    return {
        "/api/v1/triggers/{namespace}/{id}/{triggerId}/backfill": {
            "post": write(
                {
                    "tags": ["triggers"],
                    "summary": "Run a Schedule trigger over a past range (each time once)",
                    "parameters": [
                        NAMESPACE,
                        FLOW_ID,
                        path_param("triggerId", "The Schedule trigger's id"),
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": obj(["from", "to"], **{"from": moment, "to": moment})
                            }
                        },
                    },
                    "responses": {
                        "202": _json(answer, "The backfill is queued"),
                        "400": error("A bad range (the message names the field)"),
                        "404": error("No such flow or trigger"),
                        "409": error("A backfill of this trigger is running"),
                    },
                }
            )
        }
    }


def _log_paths() -> Json:
    return {
        "/api/v1/logs/{executionId}": {
            "get": {
                "tags": ["logs"],
                "summary": "An execution's log lines in the order they were written",
                "description": "Page forward with `after` (the id of the last line seen) or "
                "backward with `before` (the id of the first line seen).",
                "parameters": [
                    EXECUTION_ID,
                    query("minLevel", "Lowest level shown", {"type": "string", "enum": LEVELS}),
                    query("taskRunId", "Only this task run's lines"),
                    query("after", "Lines after this line id", {"type": "integer", "minimum": 0}),
                    query("before", "The last lines before this line id", {"type": "integer"}),
                    query(
                        "limit",
                        "At most this many lines",
                        {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": MAX_LOG_LINES,
                            "default": DEFAULT_LOG_LINES,
                        },
                    ),
                ],
                "responses": {
                    **ok({"type": "array", "items": ref("LogLine")}),
                    "400": error("A bad filter"),
                    **NOT_FOUND,
                },
            }
        }
    }


def _operations_paths() -> Json:
    return {
        "/api/v1/openapi.json": {
            "get": {
                "tags": ["meta"],
                "summary": "This document",
                "responses": ok({"type": "object"}, "The OpenAPI document"),
            }
        },
        "/healthz": {
            "get": {
                "tags": ["meta"],
                "summary": "Liveness: the process answers",
                "responses": ok(obj(["status"], status=STRING)),
            }
        },
        "/readyz": {
            "get": {
                "tags": ["meta"],
                "summary": "Readiness: the store answers and the first sync has run",
                "responses": {
                    **ok(obj(["status"], status=STRING, message=STRING)),
                    "503": _json(obj(["status"], status=STRING, message=STRING), "Not ready"),
                },
            }
        },
        "/metrics": {
            "get": {
                "tags": ["meta"],
                "summary": "Prometheus metrics (text exposition format)",
                "responses": {
                    "200": {
                        "description": "Metrics",
                        "content": {"text/plain; version=0.0.4": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
    }


@functools.cache
def document() -> Json:
    """The whole OpenAPI document (built once: it does not change while the app runs)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Headwater API",
            "version": VERSION,
            "description": "Flows come from git and cannot be written here. Calls that change "
            "something need `Authorization: Bearer <token>` when the daemon has a token; "
            "with read_requires_token, reads need it too.",
        },
        "servers": [{"url": "/"}],
        "tags": [
            {"name": name} for name in ("sync", "flows", "executions", "triggers", "logs", "meta")
        ],
        "paths": {
            **_sync_paths(),
            **_flow_paths(),
            **_execution_paths(),
            **_trigger_paths(),
            **_log_paths(),
            **_operations_paths(),
        },
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The daemon's token (HEADWATER_TOKEN)",
                }
            },
        },
    }


@blueprint.get("/api/v1/openapi.json")
def openapi_json() -> ResponseReturnValue:
    return document()
