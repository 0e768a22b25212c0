"""`headwater execution kill|restart|replay|resume` against a real `headwater up`.

The daemon runs as its own process on a bare repository; executions start through the
API; the commands run as the `headwater` command with HEADWATER_SERVER and
HEADWATER_TOKEN, as a person would type them.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from test_daemon import DaemonFactory, RunningDaemon, daemons, headwater, new_repos
from waiting import wait_until


def pids_with(marker: str) -> list[int]:
    """Live processes whose command line holds `marker`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in cmdline and state not in ("Z", "X"):
            found.append(int(entry.name))
    return found


def shell_flow(flow_id: str, *commands: str, extra: str = "") -> str:
    lines = "".join(f"      - {command!r}\n" for command in commands)
    return (
        f"id: {flow_id}\nnamespace: team\ntasks:\n"
        f"  - id: first\n    type: core.log.Log\n    message: first of {flow_id}\n"
        f"  - id: work\n    type: scripts.shell.Commands\n    commands:\n{lines}{extra}"
    )


def start(daemon: RunningDaemon, flow_id: str) -> str:
    answer = daemon.post(f"/api/v1/executions/team/{flow_id}")
    assert answer.status == 200, answer.body
    return str(answer.body["id"])


def execution(daemon: RunningDaemon, execution_id: str) -> dict[str, Any]:
    return dict(daemon.get(f"/api/v1/executions/{execution_id}"))


def state(daemon: RunningDaemon, execution_id: str) -> str:
    return str(execution(daemon, execution_id)["state"]["current"])


def test_execution_commands_control_a_running_daemon(tmp_path: Path) -> None:
    with daemons(tmp_path) as start_daemon:
        control_a_running_daemon(start_daemon, tmp_path)


def control_a_running_daemon(start_daemon: DaemonFactory, tmp_path: Path) -> None:
    repos = new_repos(tmp_path)
    marker = f"cli-kill-{uuid.uuid4().hex}"
    fixed = tmp_path / "fixed"
    repos.push(
        {
            "flows/team/slow.yaml": shell_flow("slow", f"sleep 60 # {marker}"),
            "flows/team/flaky.yaml": shell_flow("flaky", f"test -f {fixed}"),
            "flows/team/gate.yaml": (
                "id: gate\nnamespace: team\ntasks:\n"
                "  - {id: wait, type: core.flow.Pause}\n"
                "  - {id: after, type: core.log.Log, message: through}\n"
            ),
        },
        "flows",
    )
    daemon = start_daemon(f"file://{repos.remote}")
    env = {"HEADWATER_SERVER": daemon.url}

    # kill: the script's process is gone, the execution ends KILLED
    slow = start(daemon, "slow")
    wait_until(lambda: pids_with(marker), what="the script's process")
    # --server after the sub-command, with no HEADWATER_SERVER (issue 15)
    killed = headwater("execution", "kill", "--server", daemon.url, slow, "--wait")
    assert killed.stdout.strip() == f"execution {slow} is KILLED", killed.stderr
    assert killed.returncode == 1  # --wait: the execution did not succeed
    assert pids_with(marker) == []
    again = headwater("execution", "kill", slow, env=env)
    assert again.returncode == 1
    assert f"HTTP 409: execution {slow} is KILLED: it has ended" in again.stderr

    # restart: the failed task runs again in the same execution
    flaky = start(daemon, "flaky")
    wait_until(lambda: state(daemon, flaky) == "FAILED", what="the flaky execution to fail")
    fixed.touch()
    # --server before the command (the global option) wins over HEADWATER_SERVER
    away = {"HEADWATER_SERVER": "http://127.0.0.1:9"}
    restarted = headwater("--server", daemon.url, "execution", "restart", flaky, "--wait", env=away)
    assert restarted.returncode == 0, restarted.stderr
    assert restarted.stdout.strip() == f"execution {flaky} is SUCCESS"
    work = next(r for r in execution(daemon, flaky)["taskRunList"] if r["taskId"] == "work")
    assert [a["state"] for a in work["attempts"]] == ["FAILED", "SUCCESS"]

    # replay: a new execution from the chosen task run, `first` copied
    replayed = headwater("execution", "replay", flaky, "--task-run", work["id"], "--wait", env=env)
    assert replayed.returncode == 0, replayed.stderr
    first_line, last_line = replayed.stdout.strip().splitlines()
    new_id = first_line.split()[1]
    assert first_line == f"execution {new_id} replays {flaky}"
    assert last_line == f"execution {new_id} is SUCCESS"
    new = execution(daemon, new_id)
    assert new["originalId"] == flaky
    logs = [line["message"] for line in daemon.get(f"/api/v1/logs/{new_id}")]
    assert "first of flaky" not in logs

    # resume: a paused execution goes on
    gate = start(daemon, "gate")
    wait_until(lambda: state(daemon, gate) == "PAUSED", what="the pause")
    resumed = headwater("execution", "resume", gate, "--wait", env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.strip() == f"execution {gate} is SUCCESS"

    refused = headwater("execution", "resume", gate, env={**env, "HEADWATER_TOKEN": "wrong"})
    assert refused.returncode == 1
    assert "HTTP 401: the bearer token is not valid" in refused.stderr
    unknown = headwater("execution", "restart", "nope", env=env)
    assert unknown.returncode == 1
    assert "HTTP 404: execution nope does not exist" in unknown.stderr
