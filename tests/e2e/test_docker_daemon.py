"""`headwater up` with container tasks: a daemon killed mid-task leaves its container
running; the restarted daemon removes it, and a user sees the attempt end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from dockerengine import BUSYBOX, containers, docker_api
from test_daemon import daemons, new_repos, wait_until

pytestmark = pytest.mark.e2e

SLEEPY = """id: sleepy
namespace: team
tasks:
  - id: long
    type: io.kestra.plugin.scripts.shell.Commands
    taskRunner:
      type: io.kestra.plugin.scripts.runner.docker.Docker
      pullPolicy: NEVER
    commands: ["echo started", "sleep 120"]
"""


def test_a_restarted_daemon_removes_the_container_a_killed_one_left(tmp_path: Path) -> None:
    api = docker_api()
    repos = new_repos(tmp_path)
    repos.push({"flows/team/sleepy.yaml": SLEEPY})
    env = {"HEADWATER_DOCKER_IMAGE_SHELL": BUSYBOX}
    with daemons(tmp_path) as start:
        daemon = start(f"file://{repos.remote}", env=env)
        started = daemon.post("/api/v1/executions/team/sleepy")
        assert started.status == 200, started.body
        execution_id = started.body["id"]
        label = f"headwater.execution={execution_id}"

        def running() -> list[dict[str, Any]]:
            return [c for c in containers(api, label) if c["State"] == "running"]

        (container,) = wait_until(running, what="the task's container to run")
        daemon.kill()
        assert [c["Id"] for c in running()] == [container["Id"]]  # a crash leaves it

        daemon.start()
        wait_until(lambda: not containers(api, label), what="the leftover container to go")

        def ended() -> dict[str, Any] | None:
            row = daemon.get(f"/api/v1/executions/{execution_id}")
            return row if row["state"]["endDate"] else None

        done = wait_until(ended, what="the execution to end")
        (run,) = done["taskRunList"]
        # The lost attempt used up the only one (maxAttempts counts the first).
        assert run["state"]["current"] == "FAILED"
        assert containers(api, label) == []
