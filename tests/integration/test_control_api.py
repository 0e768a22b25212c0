"""The control API (kill, restart, replay, resume) over real HTTP: the Flask app served
on 127.0.0.1, on a real engine (SQLite, worker threads, real processes).

`EngineServices` (tests/engineservices.py) is the `Services` seam over that engine; only
git is left out
(flows are deployed with the engine's own verb).
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import Flows
from engineservices import EngineServices
from test_engine_kill import processes_with, running_with_pgid
from waiting import wait_until
from werkzeug.serving import make_server

from headwater.daemon.engine.engine import Engine
from headwater.daemon.services import WebSettings
from headwater.runners.process import process_group_alive
from headwater.web.app import create_app

TOKEN = "control-api-token"
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class Answer:
    status: int
    body: Any


@dataclass
class Api:
    url: str

    def call(self, method: str, path: str, body: Any = None, token: str | None = TOKEN) -> Answer:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with _NO_PROXY.open(request, timeout=30) as response:
                return Answer(response.status, json.loads(response.read()))
        except urllib.error.HTTPError as error:
            return Answer(error.code, json.loads(error.read()))

    def execution(self, execution_id: str) -> dict[str, Any]:
        answer = self.call("GET", f"/api/v1/executions/{execution_id}")
        assert answer.status == 200, answer
        return dict(answer.body)

    def ended(self, execution_id: str) -> dict[str, Any]:
        return wait_until(
            lambda: (row := self.execution(execution_id))["state"]["endDate"] and row,
            timeout=15,
            what=f"execution {execution_id} to end",
        )


@pytest.fixture
def api(engine: Engine) -> Iterator[Api]:
    """The app for `engine` on a real socket (the `flows` fixture deploys into it)."""
    services = EngineServices(engine, WebSettings("file:///flows.git", "main", api_token=TOKEN))
    server = make_server("127.0.0.1", 0, create_app(services), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Api(f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def states(row: dict[str, Any]) -> dict[str, str]:
    return {r["taskId"]: r["state"]["current"] for r in row["taskRunList"]}


def test_kill_ends_the_running_script_and_answers_202(api: Api, flows: Flows) -> None:
    marker = f"api-kill-{uuid.uuid4().hex}"
    execution_id = flows.start(
        f"""
        tasks:
          - {{id: slow, type: scripts.shell.Commands, commands: ["sleep 30 # {marker}"]}}
        """
    )
    run = wait_until(lambda: running_with_pgid(flows, execution_id, "slow"), what="the script")[0]
    refused = api.call("DELETE", f"/api/v1/executions/{execution_id}/kill", token=None)
    assert refused.status == 401
    assert flows.state_of(execution_id) == "RUNNING"

    answer = api.call("DELETE", f"/api/v1/executions/{execution_id}/kill")
    assert answer.status == 202, answer
    assert answer.body["id"] == execution_id
    assert answer.body["state"]["current"] in ("KILLING", "KILLED")
    done = api.ended(execution_id)
    assert done["state"]["current"] == "KILLED"
    assert states(done) == {"slow": "KILLED"}
    assert not process_group_alive(run["pgid"])
    assert processes_with(marker) == []

    again = api.call("POST", f"/api/v1/executions/{execution_id}/kill")
    assert again.status == 409
    assert again.body == {
        "message": f"execution {execution_id} is KILLED: it has ended, there is nothing to "
        "kill; restart or replay it to run it again",
        "state": "KILLED",
    }
    missing = api.call("POST", "/api/v1/executions/nope/kill")
    assert (missing.status, missing.body["message"]) == (404, "execution nope does not exist")


def test_restart_a_failed_execution(api: Api, flows: Flows, tmp_path: Path) -> None:
    marker = tmp_path / "fixed"
    first = flows.run(
        f"""
        tasks:
          - {{id: ok, type: core.log.Log, message: fine}}
          - {{id: flaky, type: scripts.shell.Commands, commands: ["test -f {marker}"]}}
        """
    )
    execution_id = first.execution["id"]
    assert first.state == "FAILED"
    marker.touch()
    answer = api.call("POST", f"/api/v1/executions/{execution_id}/restart")
    assert answer.status == 200, answer
    assert answer.body["id"] == execution_id
    assert answer.body["state"]["current"] == "RUNNING"
    done = api.ended(execution_id)
    assert done["state"]["current"] == "SUCCESS"
    assert [h["state"] for h in done["state"]["histories"]][-4:] == [
        "FAILED",
        "RESTARTED",
        "RUNNING",
        "SUCCESS",
    ]
    flaky = next(r for r in done["taskRunList"] if r["taskId"] == "flaky")
    assert [a["state"] for a in flaky["attempts"]] == ["FAILED", "SUCCESS"]
    assert {"key": "system.restarted", "value": "true"} in done["labels"]

    again = api.call("POST", f"/api/v1/executions/{execution_id}/restart")
    assert again.status == 409
    assert again.body["message"] == (
        f"execution {execution_id} is SUCCESS: only a FAILED or KILLED execution can be "
        "restarted; a replay starts a new execution of it from any task"
    )


def test_replay_from_a_task_run_with_new_inputs(api: Api, flows: Flows) -> None:
    first = flows.run(
        """
        inputs:
          - {id: who, type: STRING, defaults: world}
        tasks:
          - {id: one, type: core.log.Log, message: "one {{ inputs.who }}"}
          - {id: two, type: core.log.Log, message: "two {{ inputs.who }}"}
        """
    )
    old_id = first.execution["id"]
    two = first.run("two")["id"]
    answer = api.call(
        "POST", f"/api/v1/executions/{old_id}/replay", {"taskRunId": two, "inputs": {"who": "Ada"}}
    )
    assert answer.status == 200, answer
    new_id = answer.body["id"]
    assert new_id != old_id
    assert answer.body["originalId"] == old_id
    done = api.ended(new_id)
    assert done["state"]["current"] == "SUCCESS"
    assert done["inputs"] == {"who": "Ada"}
    assert {"key": "system.replay", "value": "true"} in done["labels"]
    lines = api.call("GET", f"/api/v1/logs/{new_id}").body
    assert [line["message"] for line in lines] == ["two Ada"]  # `one` was copied, not run

    by_query = api.call("POST", f"/api/v1/executions/{old_id}/replay?taskRunId={two}")
    assert by_query.status == 200
    refused = api.call("POST", f"/api/v1/executions/{old_id}/replay", {"inputs": {"who": [1]}})
    assert refused.status == 422
    assert refused.body["message"] == "the inputs were refused; nothing was started"
    assert [e["input"] for e in refused.body["errors"]] == ["who"]
    unknown = api.call("POST", f"/api/v1/executions/{old_id}/replay", {"taskRunId": "nope"})
    assert unknown.status == 404
    assert unknown.body["message"].startswith(f"task run nope is not part of execution {old_id}")
    wrong = api.call("POST", f"/api/v1/executions/{old_id}/replay", {"task": "two"})
    assert wrong.status == 400
    assert wrong.body["message"] == (
        "the body must be a JSON object with only these fields: inputs, taskRunId"
    )


def test_resume_a_paused_execution(api: Api, flows: Flows) -> None:
    execution_id = flows.start(
        """
        tasks:
          - {id: wait, type: core.flow.Pause}
          - {id: after, type: core.log.Log, message: resumed}
        """
    )
    wait_until(lambda: flows.state_of(execution_id) == "PAUSED", what="the pause")
    with_inputs = api.call(
        "POST", f"/api/v1/executions/{execution_id}/resume", {"inputs": {"ok": True}}
    )
    assert with_inputs.status == 400
    assert with_inputs.body["message"].startswith("a Pause takes no inputs on resume")
    answer = api.call("POST", f"/api/v1/executions/{execution_id}/resume")
    assert answer.status == 200, answer
    assert api.ended(execution_id)["state"]["current"] == "SUCCESS"
    again = api.call("POST", f"/api/v1/executions/{execution_id}/resume")
    assert again.status == 409
    assert again.body["message"] == (
        f"execution {execution_id} is SUCCESS: only a PAUSED execution can be resumed"
    )
