"""What the page reads through the API: executions by time range, logs paged both ways."""

from __future__ import annotations

import pytest
from conftest import EngineFactory
from engineservices import EngineServices
from flask.testing import FlaskClient
from test_api import REPOSITORY

from headwater.daemon.engine.engine import Engine
from headwater.daemon.services import WebSettings
from headwater.web.app import create_app

DAY = 86_400.0
NOV_1 = 1_761_955_200.0  # 2025-11-01T00:00:00Z


@pytest.fixture
def engine(make_engine: EngineFactory) -> Engine:
    return make_engine(workers=1)


@pytest.fixture
def client(engine: Engine) -> FlaskClient:
    return create_app(EngineServices(engine, WebSettings(REPOSITORY, "main"))).test_client()


def add_execution(engine: Engine, execution_id: str, created: float) -> None:
    with engine.store.write() as tx:
        tx.insert_execution(
            {
                "id": execution_id,
                "namespace": "company.team",
                "flow_id": "etl",
                "flow_revision": 1,
                "state": "SUCCESS",
                "created_at": created,
            }
        )


def add_logs(engine: Engine, execution_id: str, count: int) -> None:
    levels = ("INFO", "DEBUG", "WARN", "ERROR")
    rows = [
        {
            "execution_id": execution_id,
            "task_run_id": "run-a" if n % 2 else "run-b",
            "timestamp": NOV_1 + n,
            "level": levels[n % 4],
            "message": f"line {n}",
        }
        for n in range(count)
    ]
    with engine.store.write() as tx:
        tx.insert_logs(rows)


def test_executions_filter_by_creation_time(client: FlaskClient, engine: Engine) -> None:
    for day in range(5):
        add_execution(engine, f"e{day}", NOV_1 + day * DAY + 60)
    search = "/api/v1/executions/search"
    found = client.get(f"{search}?startDate=2025-11-02T00:00:00Z&endDate=2025-11-04T00:00:00Z")
    assert [r["id"] for r in found.json["results"]] == ["e2", "e1"]
    assert found.json["total"] == 2
    since = client.get(f"{search}?startDate=2025-11-04T01:00:00%2B01:00").json  # = 00:00Z
    assert [r["id"] for r in since["results"]] == ["e4", "e3"]


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("startDate=yesterday", "startDate must be an RFC 3339 time"),
        ("endDate=2025-11-02T00:00:00", "endDate needs a time zone"),
    ],
)
def test_a_bad_time_says_which_parameter(client: FlaskClient, query: str, says: str) -> None:
    answer = client.get(f"/api/v1/executions/search?{query}")
    assert answer.status_code == 400
    assert says in answer.json["message"]


def test_logs_page_forward_and_backward(client: FlaskClient, engine: Engine) -> None:
    add_execution(engine, "big", NOV_1)
    add_logs(engine, "big", 50)
    logs = "/api/v1/logs/big"
    first = client.get(f"{logs}?limit=10").json
    assert [line["message"] for line in first] == [f"line {n}" for n in range(10)]
    ids = [line["id"] for line in client.get(logs).json]
    after = client.get(f"{logs}?after={ids[9]}&limit=5").json
    assert [line["message"] for line in after] == [f"line {n}" for n in range(10, 15)]
    tail = client.get(f"{logs}?before={ids[-1] + 1}&limit=5").json  # the last five, in order
    assert [line["message"] for line in tail] == [f"line {n}" for n in range(45, 50)]
    back = client.get(f"{logs}?before={ids[45]}&limit=5").json
    assert [line["message"] for line in back] == [f"line {n}" for n in range(40, 45)]
    assert client.get(f"{logs}?before=0").status_code == 400


def test_logs_filter_by_level_and_task_run(client: FlaskClient, engine: Engine) -> None:
    add_execution(engine, "big", NOV_1)
    add_logs(engine, "big", 8)
    warnings = client.get("/api/v1/logs/big?minLevel=warning").json
    assert [(line["level"], line["message"]) for line in warnings] == [
        ("WARN", "line 2"),
        ("ERROR", "line 3"),
        ("WARN", "line 6"),
        ("ERROR", "line 7"),
    ]
    of_a = client.get("/api/v1/logs/big?taskRunId=run-a").json
    assert [line["message"] for line in of_a] == ["line 1", "line 3", "line 5", "line 7"]
    assert client.get("/api/v1/logs/big?minLevel=LOUD").status_code == 400
    assert client.get("/api/v1/logs/nope").status_code == 404


HOOKED = """\
id: hooked
namespace: company.team
triggers:
  - id: incoming
    type: io.kestra.plugin.core.trigger.Webhook
    key: s3cr3t-webhook-key
tasks:
  - id: say
    type: io.kestra.plugin.core.log.Log
    message: hi
"""


def test_a_webhook_key_never_leaves_in_a_flow_source(client: FlaskClient, engine: Engine) -> None:
    engine.deploy_source(HOOKED, "flows/company/team/hooked.yaml")
    for path in (
        "/api/v1/flows/company.team/hooked",
        "/api/v1/flows/company.team/hooked?revision=1",
    ):
        answer = client.get(path)
        assert answer.status_code == 200
        assert "s3cr3t-webhook-key" not in answer.get_data(as_text=True)
        assert "key: ••••••" in answer.json["source"]


SECRETIVE = """\
id: secretive
namespace: company.team
inputs:
  - id: password
    type: SECRET
  - id: user
    type: STRING
tasks:
  - id: say
    type: io.kestra.plugin.core.log.Log
    message: "{{ inputs.user }}"
"""


def test_secret_inputs_are_masked_in_every_answer(client: FlaskClient, engine: Engine) -> None:
    engine.deploy_source(SECRETIVE, "flows/company/team/secretive.yaml")
    inputs = {"password": "hunter2-very-secret", "user": "ada"}
    started = client.post("/api/v1/executions/company.team/secretive", json=inputs)
    assert started.status_code == 200
    execution_id = started.json["id"]
    engine.wait(execution_id, timeout=15, poll=0.05)
    answers = [
        started,
        client.get(f"/api/v1/executions/{execution_id}"),
        client.get("/api/v1/executions/search?flowId=secretive"),
    ]
    for answer in answers:
        assert "hunter2-very-secret" not in answer.get_data(as_text=True)
    assert answers[1].json["inputs"] == {"password": "••••••", "user": "ada"}
