"""Processes a task starts never outlive it, even those that leave its session.

Issue 11: a script task that starts `setsid sleep 1000 &` (or daemonizes with a double
fork) left that process running after the task timed out, was killed, or ended: it is
outside the task's process group, which was all the runner ended. The engine's runner
now ends every process the task left (the daemon is the child subreaper of its tasks'
orphans, and each task's processes carry a marker), and says so on the task's log.

Each test's leftover has a unique command line (`sleep 1000.<n>`), by which it is looked
for in /proc and, whatever happens, killed at the end.
"""

from __future__ import annotations

import itertools
import os
import signal
import uuid
from collections.abc import Iterator

import pytest
from conftest import Flows
from proctable import processes_with
from waiting import wait_until

from headwater.daemon.engine.engine import Engine

STARTS = {  # ways a command starts a process that leaves its session
    "setsid": "setsid sleep {mark} &",
    "double fork": "(setsid sh -c 'sleep {mark} & exit' &)",
    "nohup setsid, output elsewhere": "nohup setsid sleep {mark} >/dev/null 2>&1 &",
}
_numbers = itertools.count(1)


@pytest.fixture
def mark() -> Iterator[str]:
    """A unique `sleep` argument; any process that still has it is killed at the end."""
    value = f"1000.{os.getpid()}{next(_numbers)}{uuid.uuid4().int % 10_000}"
    try:
        yield value
    finally:
        for pid in processes_with(value):
            os.kill(pid, signal.SIGKILL)


def flow(start: str, mark: str, then: str, timeout: str = "") -> str:
    return f"""
tasks:
  - id: escape
    type: io.kestra.plugin.scripts.shell.Commands
    {timeout}
    commands:
      - {start.format(mark=mark)}
      - echo started
      - {then}
"""


@pytest.mark.parametrize("start", STARTS.values(), ids=STARTS.keys())
def test_a_task_that_ends_leaves_no_process_behind(flows: Flows, mark: str, start: str) -> None:
    finished = flows.run(flow(start, mark, "sleep 0.2"))

    assert finished.state == "SUCCESS", finished.summary()
    assert processes_with(mark) == []
    assert any(
        line.startswith("ended 1 process that the command left running")
        for line in finished.messages("escape", "WARN")
    ), finished.summary()


@pytest.mark.parametrize("start", STARTS.values(), ids=STARTS.keys())
def test_a_task_that_times_out_leaves_no_process_behind(
    flows: Flows, mark: str, start: str
) -> None:
    finished = flows.run(flow(start, mark, "sleep 60", timeout="timeout: PT1S"))

    assert finished.state == "FAILED", finished.summary()
    assert "timed out" in (finished.run("escape").get("error") or ""), finished.summary()
    assert processes_with(mark) == []
    assert any("left running" in line for line in finished.messages("escape", "WARN"))


@pytest.mark.parametrize("start", STARTS.values(), ids=STARTS.keys())
def test_a_killed_task_leaves_no_process_behind(
    engine: Engine, flows: Flows, mark: str, start: str
) -> None:
    execution_id = flows.start(flow(start, mark, "sleep 60"))
    wait_until(lambda: processes_with(mark), what="the task's background process")

    engine.kill(execution_id)
    finished = flows.finish(execution_id)

    assert finished.state == "KILLED", finished.summary()
    assert processes_with(mark) == []


def test_a_background_process_the_task_waits_for_is_not_a_leftover(flows: Flows, mark: str) -> None:
    finished = flows.run(flow("setsid sleep 0.1 & pid=$!", mark, "wait $pid; echo waited"))

    assert finished.state == "SUCCESS", finished.summary()
    assert finished.messages("escape") == ["started", "waited"]
