"""`headwater execute NAMESPACE FLOW` against a real `headwater up` process.

The daemon deploys a real repository; the command runs as a user runs it, with the
server in HEADWATER_SERVER and the token in HEADWATER_TOKEN, and what it prints and
its exit code are checked, as is what the daemon then shows through its API.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_daemon import TOKEN, RunningDaemon, daemons, headwater, new_repos
from waiting import wait_until

GREET = """\
id: greet
namespace: company.team
inputs:
  - id: name
    type: STRING
  - id: times
    type: INT
    defaults: 1
  - id: data
    type: FILE
    required: false
tasks:
  - id: hello
    type: core.log.Log
    message: "hello {{ inputs.name }} x{{ inputs.times }}"
  - id: count
    type: scripts.shell.Commands
    inputFiles:
      data.txt: "{{ inputs.data ?? 'none' }}"
    commands:
      - echo "lines=$(wc -l < data.txt)"
"""

BROKEN = """\
id: broken
namespace: company.team
tasks:
  - id: first
    type: core.log.Log
    message: starting
  - id: boom
    type: scripts.shell.Commands
    commands:
      - echo about to fail
      - exit 3
"""


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDaemon]:
    root = tmp_path_factory.mktemp("execute")
    repos = new_repos(root)
    repos.push({"flows/company/team/greet.yaml": GREET, "flows/company/team/broken.yaml": BROKEN})
    with daemons(root) as start:
        running = start(str(repos.remote))
        wait_until(lambda: len(running.flows()) == 2, what="both flows deployed")
        yield running


def execute(daemon: RunningDaemon, *args: str, token: str = TOKEN) -> tuple[int, str, str]:
    env = {"HEADWATER_SERVER": daemon.url, "HEADWATER_TOKEN": token}
    result = headwater("execute", *args, env=env)
    return result.returncode, result.stdout, result.stderr


def started_id(stdout: str) -> str:
    first = stdout.splitlines()[0]
    assert first.startswith("execution ") and first.endswith(" of company.team.greet started")
    return first.split()[1]


def test_execute_starts_and_returns_at_once(daemon: RunningDaemon) -> None:
    code, out, err = execute(daemon, "company.team", "greet", "-i", "name=Ada", "--label", "by=cli")
    assert code == 0, err
    execution_id = started_id(out)
    done = wait_until(
        lambda: (
            (row := daemon.get(f"/api/v1/executions/{execution_id}"))["state"]["endDate"] and row
        ),
        what="the execution to end",
    )
    assert done["state"]["current"] == "SUCCESS"
    assert done["inputs"]["name"] == "Ada"
    assert {"key": "by", "value": "cli"} in done["labels"]


def test_wait_follows_to_the_end_with_progress(daemon: RunningDaemon, tmp_path: Path) -> None:
    data = tmp_path / "rows.csv"
    data.write_text("a\nb\nc\n")
    code, out, err = execute(
        daemon, "company.team", "greet", "-i", "name=Bo", "-i", "times=3", "-i", f"data=@{data}",
        "--wait",
    )  # fmt: skip
    assert code == 0, out + err
    lines = out.splitlines()
    execution_id = started_id(out)
    assert lines[-1] == f"execution {execution_id} ended SUCCESS"
    progress = [line.split()[:2] for line in lines[1:-1]]
    assert ["hello", "SUCCESS"] in progress
    assert ["count", "SUCCESS"] in progress
    assert progress.index(["hello", "SUCCESS"]) < progress.index(["count", "SUCCESS"])
    done = daemon.get(f"/api/v1/executions/{execution_id}")
    assert done["inputs"]["times"] == 3
    assert done["inputs"]["data"].endswith("/rows.csv")
    logs = [line["message"] for line in daemon.get(f"/api/v1/logs/{execution_id}")]
    assert "hello Bo x3" in logs
    assert "lines=3" in logs


def test_wait_exits_1_and_prints_the_error_when_it_fails(daemon: RunningDaemon) -> None:
    code, out, err = execute(daemon, "company.team", "broken", "--wait")
    assert code == 1
    assert out.splitlines()[-1].endswith("ended FAILED")
    boom = [line for line in out.splitlines() if line.split()[:2] == ["boom", "FAILED"]]
    assert len(boom) == 1 and "exit" in boom[0].lower(), out
    assert err.startswith("error: ")


def test_refused_inputs_start_nothing_and_say_why(daemon: RunningDaemon) -> None:
    before = daemon.get("/api/v1/executions/search?flowId=greet&size=1")["total"]
    code, _, err = execute(daemon, "company.team", "greet", "-i", "times=many")
    assert code == 1
    assert "HTTP 422" in err
    assert "input 'name'" in err
    assert "input 'times'" in err
    assert daemon.get("/api/v1/executions/search?flowId=greet&size=1")["total"] == before


def test_usage_errors_and_a_wrong_token(daemon: RunningDaemon) -> None:
    code, _, err = execute(daemon, "company.team", "greet", "-i", "no-equals-sign")
    assert code == 2
    assert "-i 'no-equals-sign': write name=value" in err
    code, _, err = execute(daemon, "company.team", "greet", "-i", "data=@/no/such/file")
    assert code == 2
    assert "cannot read /no/such/file" in err
    code, _, err = execute(daemon, "company.team", "greet", "-i", "name=x", token="wrong")
    assert code == 1
    assert "HTTP 401: the bearer token is not valid" in err
    code, _, err = execute(daemon, "company.team", "nope")
    assert code == 1
    assert "HTTP 404" in err and "company.team.nope" in err


def test_wait_with_output_json_prints_the_ended_execution_as_the_api_does(
    daemon: RunningDaemon,
) -> None:
    """Standard output is the JSON alone: what GET /api/v1/executions/{id} answers once
    the execution has ended; the progress goes to standard error."""
    code, out, err = execute(
        daemon, "company.team", "greet", "-i", "name=Jo", "--wait", "--output", "json"
    )
    assert code == 0, err
    shown = json.loads(out)
    assert shown == daemon.get(f"/api/v1/executions/{shown['id']}")
    assert shown["state"]["current"] == "SUCCESS"
    assert shown["inputs"]["name"] == "Jo"
    assert [run["taskId"] for run in shown["taskRunList"]] == ["hello", "count"]
    assert f"execution {shown['id']} of company.team.greet started" in err
    assert f"execution {shown['id']} ended SUCCESS" in err


def test_a_failed_execution_with_output_json_exits_1(daemon: RunningDaemon) -> None:
    code, out, err = execute(daemon, "company.team", "broken", "--wait", "--output", "json")
    assert code == 1
    shown = json.loads(out)
    assert shown["state"]["current"] == "FAILED"
    assert shown["error"] and err.rstrip().endswith(f"error: {shown['error']}")
    boom = next(run for run in shown["taskRunList"] if run["taskId"] == "boom")
    assert boom["state"]["current"] == "FAILED"


def test_output_json_without_wait_prints_the_created_execution(daemon: RunningDaemon) -> None:
    code, out, err = execute(daemon, "company.team", "greet", "-i", "name=Al", "--output", "json")
    assert code == 0, err
    shown = json.loads(out)
    assert shown["flowId"] == "greet" and shown["inputs"]["name"] == "Al"
    assert shown["state"]["current"] in ("CREATED", "QUEUED", "RUNNING", "SUCCESS")
    wait_until(
        lambda: daemon.get(f"/api/v1/executions/{shown['id']}")["state"]["endDate"],
        what="the execution to end",
    )
