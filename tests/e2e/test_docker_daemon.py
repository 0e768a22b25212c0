"""`headwater up` with container tasks: a daemon killed mid-task leaves its container
running, and the restarted daemon removes it; a commit whose container tasks mount what
the deployment does not allow is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from dockerengine import BUSYBOX, containers, docker_api
from test_daemon import daemons, new_repos
from waiting import wait_until

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


MOUNTING = """id: mounting
namespace: team
tasks:
  - id: read
    type: io.kestra.plugin.scripts.shell.Commands
    taskRunner:
      type: io.kestra.plugin.scripts.runner.docker.Docker
      networkMode: host
      volumes:
        - {allowed}/set:/data:ro
        - /etc:/host-etc
    commands: ["ls /data"]
"""


def test_a_commit_mounting_what_the_deployment_does_not_allow_is_refused(tmp_path: Path) -> None:
    allowed = tmp_path / "datasets"
    repos = new_repos(tmp_path)
    first = repos.push({"flows/team/sleepy.yaml": SLEEPY})
    env = {"HEADWATER_DOCKER_VOLUMES": str(allowed)}
    with daemons(tmp_path) as start:
        daemon = start(f"file://{repos.remote}", env=env)
        daemon.wait_deployed(first)
        refused = repos.push({"flows/team/mounting.yaml": MOUNTING.format(allowed=allowed)})
        assert daemon.webhook(after=refused).status == 202
        attempt = daemon.wait_attempt(refused)
        assert attempt["result"] == "Failed"
        errors = [
            f"{e['path']}:{e['line']}:{e['column']}: {e['message']}" for e in attempt["errors"]
        ]
        assert errors == [
            "flows/team/mounting.yaml:8:20: networkMode host: refused, it shares another network "
            "namespace and would reach services listening on its loopback (the Headwater API, "
            "the database); use bridge, none or a named network",
            "flows/team/mounting.yaml:11:11: volume '/etc:/host-etc': /etc is not under a "
            "directory this deployment lets containers mount (HEADWATER_DOCKER_VOLUMES: "
            f"{allowed})",
        ]
        assert daemon.sync_status()["deployedCommit"] == first
