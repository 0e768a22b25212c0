"""Killing an execution: its running processes end (the whole process group), its task
runs and the execution end KILLED, quickly, and nothing new starts."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from conftest import Flows, Row
from waiting import wait_until

from headwater.runners.process import process_group_alive

pytestmark = pytest.mark.postgres


def processes_with(marker: str) -> list[int]:
    """Pids of live processes whose command line holds `marker`."""
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


def running_with_pgid(flows: Flows, execution_id: str, task_id: str) -> list[Row]:
    return [
        r
        for r in flows.engine.task_runs(execution_id)
        if r["task_id"] == task_id and r["state"] == "RUNNING" and r["pgid"]
    ]


def test_kill_ends_a_running_script_and_its_process_group(flows: Flows) -> None:
    marker = f"kill-marker-{uuid.uuid4().hex}"
    execution_id = flows.start(
        f"""
        tasks:
          - id: slow
            type: scripts.shell.Commands
            commands:
              - echo started
              - "sleep 30 & wait  # {marker}"
          - id: after
            type: core.log.Log
            message: never
        """
    )
    run = wait_until(lambda: running_with_pgid(flows, execution_id, "slow"), what="the script")[0]
    wait_until(lambda: processes_with(marker), what="the script's process")
    assert process_group_alive(run["pgid"])
    flows.engine.kill(execution_id)
    done = flows.finish(execution_id, timeout=20)  # not left to its `sleep 30`
    assert done.state == "KILLED", done.summary()
    assert done.states() == {"slow": "KILLED"}
    assert not process_group_alive(run["pgid"])
    assert processes_with(marker) == []
    assert done.execution["histories"][-2]["state"] == "KILLING"


def test_kill_ends_every_parallel_branch(flows: Flows) -> None:
    execution_id = flows.start(
        """
        tasks:
          - id: fan
            type: core.flow.ForEach
            values: ["a", "b", "c"]
            concurrencyLimit: 0
            tasks:
              - id: slow
                type: scripts.shell.Commands
                commands: ["sleep 30"]
        """
    )
    runs = wait_until(
        lambda: len(found := running_with_pgid(flows, execution_id, "slow")) == 3 and found,
        what="three running scripts",
    )
    flows.engine.kill(execution_id)
    done = flows.finish(execution_id, timeout=10)
    assert done.state == "KILLED"
    assert set(done.states().values()) == {"KILLED"}
    assert not any(process_group_alive(r["pgid"]) for r in runs)


def test_kill_a_paused_execution(flows: Flows) -> None:
    execution_id = flows.start(
        """
        tasks:
          - {id: wait, type: core.flow.Pause}
          - {id: after, type: core.log.Log, message: never}
        """
    )
    wait_until(lambda: flows.state_of(execution_id) == "PAUSED", what="the pause")
    flows.engine.kill(execution_id)
    done = flows.finish(execution_id)
    assert done.state == "KILLED"
    assert done.states() == {"wait": "KILLED"}


def test_kill_a_parent_kills_its_running_subflow(flows: Flows) -> None:
    flows.deploy(
        """
        id: child
        namespace: tests.kill
        tasks:
          - {id: slow, type: scripts.shell.Commands, commands: ["sleep 30"]}
        """
    )
    execution_id = flows.start(
        """
        tasks:
          - {id: call, type: core.flow.Subflow, namespace: tests.kill, flowId: child}
        """
    )
    call = wait_until(
        lambda: (run := flows.task_run(execution_id, "call")) and run["outputs"] and run,
        what="the subflow to start",
    )
    child_id = call["outputs"]["executionId"]
    child_run = wait_until(lambda: running_with_pgid(flows, child_id, "slow"), what="the child")
    flows.engine.kill(execution_id)
    assert flows.finish(execution_id).state == "KILLED"
    assert flows.finish(child_id).state == "KILLED"
    assert not process_group_alive(child_run[0]["pgid"])


def test_a_killed_execution_stays_killed(flows: Flows) -> None:
    done = flows.run("tasks: [{id: quick, type: core.log.Log, message: hi}]")
    flows.engine.kill(done.execution["id"])
    assert flows.state_of(done.execution["id"]) == "SUCCESS"
