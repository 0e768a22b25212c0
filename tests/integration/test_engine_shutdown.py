"""A stopping engine hands its running task runs back without using an attempt.

What `headwater up` does on SIGTERM (docs/running.md, "Retries, timeouts"): the workers
stop claiming, running task runs get the grace period, and those still running then are
stopped and handed back — CREATED again, their attempt not counted — so the next engine
on the store runs them from the start. The task here has no retry: had the stop used up
its one attempt, the execution could only fail. (The daemon-level test, with a real
SIGTERM, is tests/e2e/test_daemon_sigterm.py.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import EngineFactory, Flows
from waiting import wait_until

# Waits for a file the test makes only after the stop: no grace is long enough for it.
WAITING = """
tasks:
  - id: work
    type: scripts.shell.Commands
    env:
      STARTS: "{starts}"
      GO: "{go}"
    commands:
      - echo started >> "$STARTS"
      - while [ ! -e "$GO" ]; do sleep 0.05; done
  - id: after
    type: core.log.Log
    message: work ended
"""


@pytest.mark.postgres
def test_a_stopped_engine_hands_its_running_task_run_back_without_using_an_attempt(
    make_engine: EngineFactory, tmp_path: Path
) -> None:
    starts, go = tmp_path / "starts", tmp_path / "go"
    engine = make_engine()
    flows = Flows(engine)
    execution_id = flows.start(WAITING.format(starts=starts, go=go))

    def running() -> bool:
        run = flows.task_run(execution_id, "work")
        return bool(run and run["state"] == "RUNNING" and run["pgid"] and starts.exists())

    wait_until(running, what="the script to run")
    engine.stop(grace=0)

    [work] = engine.task_runs(execution_id)  # read after the stop, before anyone claims it
    assert (work["state"], work["attempt"], work["lease_owner"]) == ("CREATED", 0, None), work
    assert not work["attempts"], "the stop recorded an attempt"
    assert flows.state_of(execution_id) == "RUNNING"

    go.touch()
    done = Flows(make_engine()).finish(execution_id)  # the next engine on the same store
    assert done.state == "SUCCESS", done.summary()
    work = done.run("work")
    assert [a["state"] for a in work["attempts"]] == ["SUCCESS"], work["attempts"]
    assert work["attempt"] == 1
    assert starts.read_text().splitlines() == ["started", "started"]  # it ran again
    assert done.messages("after") == ["work ended"]
    # Its log says it was handed back, not that it was killed or failed.
    assert done.messages("work", "ERROR") == []
    warnings = done.messages("work", "WARN")
    assert any("handed back without using an attempt" in line for line in warnings), warnings
