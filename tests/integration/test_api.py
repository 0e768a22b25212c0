"""The JSON API and git webhook, through Flask's test client, on a real engine and store
(`EngineServices` in tests/engineservices.py: only the git side is left out).
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
import textwrap
from dataclasses import replace
from typing import Any
from urllib.parse import urlencode

import pytest
from conftest import EngineFactory
from engineservices import EngineServices
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from headwater.daemon.engine.engine import Engine
from headwater.daemon.errors import Diagnostic, Position
from headwater.daemon.services import WebSettings
from headwater.daemon.store.store import Row, Store
from headwater.web.app import create_app

TOKEN = "api-token-for-tests"
SECRET = "webhook-secret-for-tests"
REPOSITORY = "https://deploy:hunter2@git.example.com/acme/flows.git"
SHA1, SHA2, SHA3, SHA4 = (c * 40 for c in "1234")
AUTH = {"Authorization": f"Bearer {TOKEN}"}

HELLO = """\
id: hello
namespace: company.team
description: Says hello
labels:
  team: data
inputs:
  - id: name
    type: STRING
  - id: count
    type: INT
    defaults: 1
  - id: when
    type: DATETIME
    required: false
triggers:
  - id: nightly
    type: io.kestra.plugin.core.trigger.Schedule
    cron: "0 2 * * *"
tasks:
  - id: greet
    type: io.kestra.plugin.core.log.Log
    message: "hello {{ inputs.name }} x{{ inputs.count }}"
  - id: shout
    type: io.kestra.plugin.core.log.Log
    level: WARN
    message: "HELLO {{ inputs.name }}"
"""

UPLOAD = """\
id: upload
namespace: company.team
inputs:
  - id: data
    type: FILE
    extension: .csv
tasks:
  - id: say
    type: io.kestra.plugin.core.log.Log
    message: "{{ inputs.data }}"
"""


def flow_text(namespace: str, flow_id: str, message: str = "hi") -> str:
    return textwrap.dedent(
        f"""\
        id: {flow_id}
        namespace: {namespace}
        tasks:
          - id: say
            type: io.kestra.plugin.core.log.Log
            message: {message}
        """
    )


def commit(sha: str, message: str = "a change") -> Row:
    return {
        "commit_sha": sha,
        "commit_author": "Ada <ada@example.com>",
        "commit_date": 1_700_000_000.0,
        "commit_message": message,
    }


@pytest.fixture
def engine(make_engine: EngineFactory) -> Engine:
    return make_engine(workers=2)


@pytest.fixture
def services(engine: Engine) -> EngineServices:
    web = WebSettings(REPOSITORY, "main", api_token=TOKEN, webhook_secret=SECRET)
    return EngineServices(engine, web)


@pytest.fixture
def client(services: EngineServices) -> FlaskClient:
    return create_app(services).test_client()


def client_for(services: EngineServices, **settings: Any) -> FlaskClient:
    services.web = replace(services.web, **settings)
    return create_app(services).test_client()


def executions_total(client: FlaskClient) -> int:
    return int(client.get("/api/v1/executions/search").json["total"])  # type: ignore[index]


def record_sync(store: Store, result: str = "Succeeded", **values: Any) -> int:
    row = {
        "started_at": 1_700_000_000.0,
        "finished_at": 1_700_000_001.5,
        "cause": "poll",
        "from_commit": SHA1,
        "to_commit": SHA2,
        "result": result,
        "forced": False,
        **values,
    }
    with store.write() as tx:
        return tx.insert_sync(row)


# -- health --------------------------------------------------------------------------------
def test_health_and_readiness(client: FlaskClient, services: EngineServices) -> None:
    assert client.get("/healthz").json == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    services.readiness = (False, "the first sync has not finished")
    answer = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.json == {"status": "unavailable", "message": "the first sync has not finished"}


def test_unknown_paths_and_methods_answer_json(client: FlaskClient) -> None:
    missing = client.get("/api/v1/nothing-here")
    assert missing.status_code == 404
    assert "message" in missing.json  # type: ignore[operator]
    wrong = client.delete("/api/v1/sync", headers=AUTH)
    assert wrong.status_code == 405
    assert "message" in wrong.json  # type: ignore[operator]
    assert "GET" in wrong.headers["Allow"]


# -- sync ----------------------------------------------------------------------------------
def test_sync_status_words_follow_the_state(client: FlaskClient, services: EngineServices) -> None:
    first = client.get("/api/v1/sync").json
    assert first["status"] == "OutOfSync"  # nothing deployed yet
    assert first["lastAttempt"] is None
    assert first["history"] == []
    assert first["repository"] == "https://git.example.com/acme/flows.git"  # no credentials
    assert "hunter2" not in client.get("/api/v1/sync").get_data(as_text=True)
    with services.store.write() as tx:
        tx.update_sync_state({"deployed_commit": SHA1, "branch_head": SHA1})
    assert client.get("/api/v1/sync").json["status"] == "Synced"
    with services.store.write() as tx:
        tx.update_sync_state({"branch_head": SHA2})
    body = client.get("/api/v1/sync").json
    assert (body["status"], body["deployedCommit"], body["branchHead"]) == ("OutOfSync", SHA1, SHA2)
    services.suspend()
    assert client.get("/api/v1/sync").json["status"] == "Suspended"
    with services.store.write() as tx:
        tx.update_sync_state({"pinned_commit": SHA1})
    body = client.get("/api/v1/sync").json
    assert (body["status"], body["pinnedCommit"]) == ("Pinned", SHA1)


def test_sync_status_reports_the_last_attempt_beside_the_status(
    client: FlaskClient, services: EngineServices
) -> None:
    with services.store.write() as tx:
        tx.update_sync_state({"deployed_commit": SHA1, "branch_head": SHA2, "fetch_error": None})
    record_sync(services.store)
    error = Diagnostic(Position("flows/a/b.yaml", 3, 5), "unknown task type 'x'").to_json()
    record_sync(
        services.store,
        "Failed",
        cause="webhook",
        added=1,
        errors=[error],
        message="1 error(s); the deployed commit stays",
    )
    body = client.get("/api/v1/sync").json
    assert body["status"] == "OutOfSync"
    last = body["lastAttempt"]
    assert last["result"] == "Failed"
    assert last["errors"] == [
        {
            "path": "flows/a/b.yaml",
            "line": 3,
            "column": 5,
            "severity": "error",
            "field": "",
            "message": "unknown task type 'x'",
        }
    ]
    assert last["cause"] == "webhook"
    assert (last["fromCommit"], last["toCommit"], last["added"]) == (SHA1, SHA2, 1)
    assert last["startDate"] == "2023-11-14T22:13:20.000Z"
    assert last["endDate"] == "2023-11-14T22:13:21.500Z"
    assert last["duration"] == "PT1.5S"
    assert [h["result"] for h in body["history"]] == ["Failed", "Succeeded"]


def test_sync_history_pages(client: FlaskClient, services: EngineServices) -> None:
    ids = [record_sync(services.store) for _ in range(5)]
    body = client.get("/api/v1/syncs?page=2&size=2").json
    assert body["total"] == 5
    assert [r["id"] for r in body["results"]] == [ids[2], ids[1]]
    assert client.get("/api/v1/syncs?size=501").status_code == 400
    assert client.get("/api/v1/syncs?page=0").status_code == 400


def test_sync_now_needs_the_token(client: FlaskClient, services: EngineServices) -> None:
    missing = client.post("/api/v1/sync")
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    wrong = client.post("/api/v1/sync", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert "invalid_token" in wrong.headers["WWW-Authenticate"]
    assert TOKEN not in wrong.get_data(as_text=True)
    with services.store.read() as tx:
        assert tx.syncs() == []
    answer = client.post("/api/v1/sync", headers=AUTH)
    assert answer.status_code == 200
    assert answer.json["result"] == "Succeeded"
    assert answer.json["toCommit"] == SHA1
    assert client.get("/api/v1/sync").json["status"] == "Synced"


def test_sync_to_a_commit_pins_it(client: FlaskClient) -> None:
    answer = client.post("/api/v1/sync", json={"to": SHA3}, headers=AUTH)
    assert answer.status_code == 200
    assert answer.json["toCommit"] == SHA3
    status = client.get("/api/v1/sync").json
    assert (status["status"], status["pinnedCommit"]) == ("Pinned", SHA3)
    for bad in ({"to": "--upload-pack=evil"}, {"to": 42}, ["x"]):
        refused = client.post("/api/v1/sync", json=bad, headers=AUTH)
        assert refused.status_code == 400, bad
    # A body without a JSON content type is still read, never silently ignored.
    refused = client.post("/api/v1/sync", data='{"to": "HEAD~1"}', headers=AUTH)
    assert refused.status_code == 400


def test_suspend_and_resume(client: FlaskClient) -> None:
    assert client.post("/api/v1/sync/suspend").status_code == 401
    suspended = client.post("/api/v1/sync/suspend", headers=AUTH)
    assert suspended.status_code == 200
    assert suspended.json["status"] == "Suspended"
    resumed = client.post("/api/v1/sync/resume", headers=AUTH)
    assert resumed.json["status"] == "OutOfSync"
    assert resumed.json["suspended"] is False


def test_read_only_refuses_every_write(services: EngineServices) -> None:
    client = client_for(services, read_only=True)
    services.engine.deploy_source(HELLO, "flows/company/team/hello.yaml")
    for path in ("/api/v1/sync", "/api/v1/sync/suspend", "/api/v1/executions/company.team/hello"):
        answer = client.post(path, headers=AUTH, json={"name": "x"})
        assert answer.status_code == 403, path
        assert "read-only" in answer.json["message"]
    assert client.get("/api/v1/sync").status_code == 200
    assert executions_total(client) == 0


def test_without_a_token_configured_writes_are_open(services: EngineServices) -> None:
    client = client_for(services, api_token=None)
    assert client.post("/api/v1/sync/suspend").status_code == 200


# -- git webhooks --------------------------------------------------------------------------
def push(ref: str = "refs/heads/main", after: str = SHA2) -> bytes:
    return json.dumps(
        {"ref": ref, "after": after, "repository": {"full_name": "acme/flows"}}
    ).encode()


def github(body: bytes, delivery: str = "d-1", event: str = "push", secret: str = SECRET) -> Row:
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": f"sha256={signature}",
        "Content-Type": "application/json",
    }


def hook(client: FlaskClient, body: bytes, headers: Row) -> TestResponse:
    return client.post("/api/v1/git/webhook", data=body, headers=headers)


def test_a_signed_push_requests_a_sync_at_once(
    client: FlaskClient, services: EngineServices
) -> None:
    answer = hook(client, push(), github(push()))
    assert answer.status_code == 202
    assert answer.json["accepted"] is True
    assert services.sync_requests == ["webhook"]


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(
            {
                "X-Gitea-Event": "push",
                "X-Gitea-Delivery": "gitea-1",
                "X-Gitea-Signature": hmac.new(SECRET.encode(), push(), hashlib.sha256).hexdigest(),
            },
            id="gitea",
        ),
        pytest.param(
            {
                "X-Gitlab-Event": "Push Hook",
                "X-Gitlab-Event-UUID": "gl-1",
                "X-Gitlab-Token": SECRET,
            },
            id="gitlab",
        ),
        pytest.param(
            {
                "X-Headwater-Delivery": "hw-1",
                "X-Headwater-Signature": "sha256="
                + hmac.new(SECRET.encode(), push(), hashlib.sha256).hexdigest(),
            },
            id="generic",
        ),
    ],
)
def test_other_providers_pushes_request_a_sync(
    client: FlaskClient, services: EngineServices, headers: Row
) -> None:
    answer = hook(client, push(), {**headers, "Content-Type": "application/json"})
    assert answer.status_code == 202, answer.json
    assert services.sync_requests == ["webhook"]


def test_a_bad_signature_is_refused_and_audited(
    client: FlaskClient, services: EngineServices, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="headwater.audit")
    answer = hook(client, push(), github(push(), delivery="evil-1", secret="guess"))
    assert answer.status_code == 401
    assert services.sync_requests == []
    refused = [r for r in caplog.records if r.name == "headwater.audit"]
    assert len(refused) == 1
    line = refused[0].getMessage()
    assert refused[0].levelno == logging.WARNING
    assert "github" in line
    assert "evil-1" in line
    assert "127.0.0.1" in line
    assert SECRET not in line
    assert "refs/heads" not in line


def test_a_missing_signature_is_refused(client: FlaskClient, services: EngineServices) -> None:
    headers = github(push())
    del headers["X-Hub-Signature-256"]
    assert hook(client, push(), headers).status_code == 401
    anonymous = hook(client, push(), {"Content-Type": "application/json"})
    assert anonymous.status_code == 401
    assert "X-Hub-Signature-256" in anonymous.json["message"]
    assert services.sync_requests == []


def test_without_a_secret_every_webhook_is_refused(services: EngineServices) -> None:
    client = client_for(services, webhook_secret=None)
    answer = hook(client, push(), github(push()))
    assert answer.status_code == 401
    assert "configure" in answer.json["message"] or "configured" in answer.json["message"]
    assert services.sync_requests == []


def test_a_push_to_another_branch_is_acknowledged_and_ignored(
    client: FlaskClient, services: EngineServices
) -> None:
    body = push("refs/heads/feature")
    answer = hook(client, body, github(body))
    assert answer.status_code == 202
    assert answer.json["accepted"] is False
    assert "refs/heads/feature" in answer.json["reason"]
    tag = push("refs/tags/v1")
    assert hook(client, tag, github(tag, delivery="d-2")).json["accepted"] is False
    assert services.sync_requests == []


def test_a_redelivery_is_acted_on_once(client: FlaskClient, services: EngineServices) -> None:
    first = hook(client, push(), github(push(), delivery="same"))
    again = hook(client, push(), github(push(), delivery="same"))
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json["accepted"] is False
    assert "received before" in again.json["reason"]
    assert services.sync_requests == ["webhook"]
    later = push(after="3" * 40)  # the next push: another delivery, another body
    hook(client, later, github(later, delivery="another"))
    assert services.sync_requests == ["webhook", "webhook"]


def test_a_body_over_the_limit_is_refused_unread(services: EngineServices) -> None:
    client = client_for(services, max_webhook_bytes=1024)
    body = json.dumps({"ref": "refs/heads/main", "padding": "x" * 2000}).encode()
    answer = hook(client, body, github(body))
    assert answer.status_code == 413
    assert "1024" in answer.json["message"]
    assert services.sync_requests == []


def test_ping_and_other_events(client: FlaskClient, services: EngineServices) -> None:
    body = json.dumps({"zen": "Keep it logically awesome."}).encode()
    ping = hook(client, body, github(body, event="ping"))
    assert ping.status_code == 200
    other = hook(client, body, github(body, event="issues", delivery="d-3"))
    assert other.status_code == 202
    assert other.json["accepted"] is False
    assert services.sync_requests == []


def test_githubs_form_encoded_payload(client: FlaskClient, services: EngineServices) -> None:
    body = urlencode({"payload": push("refs/heads/other").decode()}).encode()
    headers = {**github(body), "Content-Type": "application/x-www-form-urlencoded"}
    assert hook(client, body, headers).json["accepted"] is False
    assert services.sync_requests == []


def test_a_signed_body_that_is_not_json_is_a_bad_request(client: FlaskClient) -> None:
    assert hook(client, b"<xml/>", github(b"<xml/>")).status_code == 400


# -- flows ---------------------------------------------------------------------------------
def test_flow_search_pages_and_filters(client: FlaskClient, engine: Engine) -> None:
    for i in range(7):
        engine.deploy_source(flow_text("company.team", f"f{i}"), f"flows/company/team/f{i}.yaml")
    engine.deploy_source(flow_text("company", "top"), "flows/company/top.yaml")
    engine.deploy_source(flow_text("companyx", "other"), "flows/companyx/other.yaml")
    engine.deploy_source(HELLO, "flows/company/team/hello.yaml", commit=commit(SHA1))
    body = client.get("/api/v1/flows/search?namespace=company.team&size=3&page=2").json
    assert body["total"] == 8
    assert [r["id"] for r in body["results"]] == ["f3", "f4", "f5"]
    assert client.get("/api/v1/flows/search?namespace=company").json["total"] == 9
    assert client.get("/api/v1/flows/search").json["total"] == 10
    found = client.get("/api/v1/flows/search?q=HELL").json
    assert found["total"] == 1
    hello = found["results"][0]
    assert hello["namespace"] == "company.team"
    assert hello["revision"] == 1
    assert hello["description"] == "Says hello"
    assert hello["triggers"] == [
        {"id": "nightly", "type": "io.kestra.plugin.core.trigger.Schedule"}
    ]
    assert hello["commit"]["sha"] == SHA1
    assert client.get("/api/v1/flows/search?q=%25").json["total"] == 0  # % is not a wildcard


def test_get_a_flow_and_its_revisions(client: FlaskClient, engine: Engine) -> None:
    path = "flows/company/team/hello.yaml"
    engine.deploy_source(HELLO, path, commit=commit(SHA1, "first"))
    engine.deploy_source(HELLO.replace("Says hello", "Greets"), path, commit=commit(SHA2))
    flow = client.get("/api/v1/flows/company.team/hello").json
    assert (flow["namespace"], flow["id"], flow["revision"], flow["deleted"]) == (
        "company.team",
        "hello",
        2,
        False,
    )
    assert flow["source"].startswith("id: hello")
    assert "Greets" in flow["source"]
    assert flow["commit"] == {
        "sha": SHA2,
        "author": "Ada <ada@example.com>",
        "date": "2023-11-14T22:13:20.000Z",
        "message": "a change",
    }
    old = client.get("/api/v1/flows/company.team/hello?revision=1").json
    assert (old["revision"], old["commit"]["message"]) == (1, "first")
    assert "Says hello" in old["source"]
    assert client.get("/api/v1/flows/company.team/hello?revision=9").status_code == 404
    revisions = client.get("/api/v1/flows/company.team/hello/revisions").json
    assert [r["revision"] for r in revisions] == [2, 1]
    assert revisions[0]["commit"]["sha"] == SHA2
    assert "source" not in revisions[0]
    unknown = client.get("/api/v1/flows/company.team/nope")
    assert unknown.status_code == 404
    assert "company.team.nope" in unknown.json["message"]
    assert client.get("/api/v1/flows/company.team/nope/revisions").status_code == 404


def test_a_deleted_flow_answers_404_naming_the_revision(
    client: FlaskClient, engine: Engine
) -> None:
    engine.deploy_source(HELLO, "flows/company/team/hello.yaml", commit=commit(SHA1))
    with engine.store.write() as tx:
        tx.insert_revision(
            {
                "namespace": "company.team",
                "flow_id": "hello",
                "revision": 2,
                "source": HELLO,
                "deleted": True,
                "created_at": 1_700_000_100.0,
                **commit(SHA4, "remove hello"),
            }
        )
    answer = client.get("/api/v1/flows/company.team/hello")
    assert answer.status_code == 404
    assert answer.json == {
        "message": "flow company.team.hello was deleted in revision 2 (commit 4444444)",
        "deletedInRevision": 2,
        "deletedInCommit": SHA4,
    }
    assert client.get("/api/v1/flows/search").json["total"] == 0
    revisions = client.get("/api/v1/flows/company.team/hello/revisions").json
    assert [(r["revision"], r["deleted"]) for r in revisions] == [(2, True), (1, False)]
    assert client.get("/api/v1/flows/company.team/hello?revision=1").status_code == 200
    assert client.get("/api/v1/flows/company.team/hello?revision=2").status_code == 404


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/v1/flows"),
        ("PUT", "/api/v1/flows/company.team/hello"),
        ("DELETE", "/api/v1/flows/company.team/hello"),
        ("POST", "/api/v1/flows/company.team"),
        ("PATCH", "/api/v1/flows/company.team/hello"),
        ("POST", "/api/v1/flows/import"),
    ],
)
def test_flows_cannot_be_written_through_the_api(
    client: FlaskClient, engine: Engine, method: str, path: str
) -> None:
    engine.deploy_source(HELLO, "flows/company/team/hello.yaml")
    answer = client.open(path, method=method, headers=AUTH, json={"id": "hello"})
    assert answer.status_code == 405
    assert answer.json == {
        "message": "flows come from git: change them with a commit to "
        "https://git.example.com/acme/flows.git (main)"
    }
    assert "POST" not in answer.headers["Allow"]
    assert client.get("/api/v1/flows/company.team/hello").json["revision"] == 1


# -- executions ----------------------------------------------------------------------------
def test_start_an_execution_with_json_inputs(client: FlaskClient, engine: Engine) -> None:
    engine.deploy_source(HELLO, "flows/company/team/hello.yaml", commit=commit(SHA1))
    answer = client.post(
        "/api/v1/executions/company.team/hello?labels=run:manual&labels=ticket:OPS-1",
        json={"inputs": {"name": "Ada", "count": "3"}, "labels": {"who": "ada"}},
        headers=AUTH,
    )
    assert answer.status_code == 200, answer.json
    execution = answer.json
    assert execution["namespace"] == "company.team"
    assert execution["flowId"] == "hello"
    assert execution["flowRevision"] == 1
    assert execution["commit"] == SHA1
    assert execution["inputs"] == {"name": "Ada", "count": 3, "when": None}
    assert {"key": "team", "value": "data"} in execution["labels"]
    for label in ({"key": "run", "value": "manual"}, {"key": "ticket", "value": "OPS-1"}):
        assert label in execution["labels"]
    assert {"key": "who", "value": "ada"} in execution["labels"]
    assert execution["originalId"] == execution["id"]
    state = execution["state"]
    assert state["histories"][0]["state"] == "CREATED"
    assert state["histories"][0]["date"].endswith("Z")
    assert set(state) == {"current", "histories", "startDate", "endDate", "duration"}
    assert isinstance(execution["taskRunList"], list)

    engine.wait(execution["id"], timeout=15, poll=0.05)
    engine.logs.flush()
    done = client.get(f"/api/v1/executions/{execution['id']}").json
    assert done["state"]["current"] == "SUCCESS"
    assert done["state"]["duration"].startswith("PT")
    assert done["state"]["endDate"].endswith("Z")
    runs = {r["taskId"]: r for r in done["taskRunList"]}
    assert list(runs) == ["greet", "shout"]
    greet = runs["greet"]
    assert greet["state"]["current"] == "SUCCESS"
    assert greet["parentTaskRunId"] is None
    assert greet["value"] is None
    assert [a["state"] for a in greet["attempts"]] == ["SUCCESS"]
    assert greet["attempts"][0]["startDate"].endswith("Z")

    logs = client.get(f"/api/v1/logs/{execution['id']}").json
    messages = [line["message"] for line in logs]
    assert "hello Ada x3" in messages
    assert "HELLO Ada" in messages
    assert set(logs[0]) == {"id", "timestamp", "level", "taskRunId", "attempt", "message"}
    warned = client.get(f"/api/v1/logs/{execution['id']}?minLevel=WARN").json
    assert [line["message"] for line in warned] == ["HELLO Ada"]
    only = client.get(f"/api/v1/logs/{execution['id']}?taskRunId={greet['id']}").json
    assert [line["message"] for line in only] == ["hello Ada x3"]
    after = client.get(f"/api/v1/logs/{execution['id']}?after={logs[0]['id']}&limit=1").json
    assert [line["id"] for line in after] == [logs[1]["id"]]
    assert client.get(f"/api/v1/logs/{execution['id']}?minLevel=LOUD").status_code == 400
    assert client.get("/api/v1/logs/nope").status_code == 404


def test_start_with_flat_json_and_with_a_form(client: FlaskClient, engine: Engine) -> None:
    engine.deploy_source(HELLO, "flows/company/team/hello.yaml")
    flat = client.post("/api/v1/executions/company.team/hello", json={"name": "Bo"}, headers=AUTH)
    assert flat.status_code == 200
    assert flat.json["inputs"]["name"] == "Bo"
    form = client.post(
        "/api/v1/executions/company.team/hello",
        data={"name": "Cy", "count": "2", "when": ""},
        headers=AUTH,
    )
    assert form.status_code == 200, form.json
    assert form.json["inputs"] == {"name": "Cy", "count": 2, "when": None}


def test_start_with_a_file_upload(client: FlaskClient, engine: Engine) -> None:
    engine.deploy_source(UPLOAD, "flows/company/team/upload.yaml")
    answer = client.post(
        "/api/v1/executions/company.team/upload",
        data={"data": (io.BytesIO(b"a,b\n1,2\n"), "prices.csv")},
        content_type="multipart/form-data",
        headers=AUTH,
    )
    assert answer.status_code == 200, answer.json
    uri = answer.json["inputs"]["data"]
    assert uri.endswith("/prices.csv")
    wrong = client.post(
        "/api/v1/executions/company.team/upload",
        data={"data": (io.BytesIO(b"x"), "prices.exe")},
        content_type="multipart/form-data",
        headers=AUTH,
    )
    assert wrong.status_code == 422
    assert wrong.json["errors"][0]["input"] == "data"


def test_bad_inputs_answer_422_with_every_problem_and_start_nothing(
    client: FlaskClient, engine: Engine
) -> None:
    engine.deploy_source(HELLO, "flows/company/team/hello.yaml")
    answer = client.post(
        "/api/v1/executions/company.team/hello",
        json={"inputs": {"count": "many", "when": "yesterday", "nope": 1}},
        headers=AUTH,
    )
    assert answer.status_code == 422
    body = answer.json
    assert "refused" in body["message"]
    assert [e["input"] for e in body["errors"]] == ["nope", "name", "count", "when"]
    assert all(set(e) == {"input", "message"} and e["message"] for e in body["errors"])
    assert executions_total(client) == 0


def test_starting_needs_the_token_and_a_deployed_flow(client: FlaskClient, engine: Engine) -> None:
    engine.deploy_source(HELLO, "flows/company/team/hello.yaml")
    assert (
        client.post("/api/v1/executions/company.team/hello", json={"name": "x"}).status_code == 401
    )
    bad = client.post(
        "/api/v1/executions/company.team/hello",
        json={"name": "x"},
        headers={"Authorization": "Bearer wrong"},
    )
    assert bad.status_code == 401
    assert executions_total(client) == 0
    unknown = client.post("/api/v1/executions/company.team/nope", json={}, headers=AUTH)
    assert unknown.status_code == 404
    assert "company.team.nope" in unknown.json["message"]
    bad_label = client.post(
        "/api/v1/executions/company.team/hello?labels=nocolon", json={"name": "x"}, headers=AUTH
    )
    assert bad_label.status_code == 400
    text = client.post(
        "/api/v1/executions/company.team/hello",
        data="name=x",
        headers={**AUTH, "Content-Type": "text/plain"},
    )
    assert text.status_code == 415
    assert executions_total(client) == 0


def test_execution_search_filters_and_pages(client: FlaskClient, engine: Engine) -> None:
    engine.deploy_source(HELLO, "flows/company/team/hello.yaml")
    engine.deploy_source(flow_text("other", "bye"), "flows/other/bye.yaml")
    started = [
        client.post(
            "/api/v1/executions/company.team/hello", json={"name": f"n{i}"}, headers=AUTH
        ).json["id"]
        for i in range(5)
    ]
    client.post("/api/v1/executions/other/bye", headers=AUTH)
    for execution_id in started:
        engine.wait(execution_id, timeout=15, poll=0.05)
    assert client.get("/api/v1/executions/search").json["total"] == 6
    page = client.get("/api/v1/executions/search?flowId=hello&size=2&page=2").json
    assert page["total"] == 5
    assert [r["id"] for r in page["results"]] == started[::-1][2:4]  # newest first
    assert all(r["taskRunList"] for r in page["results"])
    by_namespace = client.get("/api/v1/executions/search?namespace=company").json
    assert by_namespace["total"] == 5
    succeeded = client.get("/api/v1/executions/search?flowId=hello&state=SUCCESS").json
    assert succeeded["total"] == 5
    assert client.get("/api/v1/executions/search?state=FAILED,KILLED").json["total"] == 0
    assert client.get("/api/v1/executions/search?state=NOPE").status_code == 400
    assert client.get("/api/v1/executions/search?size=0").status_code == 400
    assert client.get("/api/v1/executions/nope").status_code == 404
