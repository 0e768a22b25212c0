"""Failure paths: failing tasks, errors and finally handlers, allowFailure, Fail, bad
expressions at run time, retries (constant, exponential, random, maxDuration, flow-level)
and timeouts, with real processes."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import pytest
from conftest import Finished, Flows, Row
from sqlalchemy import or_, select
from waiting import wait_until

from headwater.daemon.engine.executor import ExecutionRequest
from headwater.daemon.store.store import EXECUTIONS

# The exact waits of each retry policy are checked without a clock in
# tests/unit/test_retry_policy.py; here, that attempts wait at least that long, and that
# nothing waits for the `sleep 30` a timeout must end.
HANG = 20.0  # seconds: far past any wait or stop here, well short of a `sleep 30`


def attempts(run: Row) -> list[Row]:
    return list(run["attempts"] or [])


def gaps(run: Row) -> list[float]:
    """Seconds between the end of each attempt and the start of the next."""
    tries = attempts(run)
    return [b["startDate"] - a["endDate"] for a, b in itertools.pairwise(tries)]


def flaky(counter: Path, failures: int) -> str:
    """Shell commands that fail the first `failures` times they run (a counter file)."""
    return f"""
            env:
              COUNTER: "{counter}"
            commands:
              - n=$(cat "$COUNTER" 2>/dev/null || echo 0); n=$((n + 1)); echo $n > "$COUNTER"
              - echo "attempt $n"
              - test $n -gt {failures}"""


# -- failing tasks and handlers -------------------------------------------------------------


def test_a_failing_task_fails_the_execution_with_its_error(flows: Flows) -> None:
    done = flows.run(
        """
        tasks:
          - id: load
            type: scripts.shell.Commands
            commands:
              - echo "loading"
              - echo "table orders is locked" >&2
              - exit 4
          - id: never
            type: core.log.Log
            message: not reached
        """
    )
    assert done.state == "FAILED"
    message = "command exited with code 4; last line on stderr: table orders is locked"
    assert done.run("load")["error"] == message
    assert done.error == f"load: {message}"
    assert "never" not in done.states()
    assert done.messages("load", "ERROR") == [message]
    assert done.messages("load", "INFO") == ["loading"]


def test_flow_errors_run_on_failure_and_finally_runs_after(flows: Flows) -> None:
    done = flows.run(
        """
        tasks:
          - id: extract
            type: core.execution.Fail
            errorMessage: source is down
        errors:
          - id: alert
            type: core.log.Log
            level: ERROR
            message: "extract failed"
        finally:
          - id: cleanup
            type: core.log.Log
            message: cleaned up
        """
    )
    assert done.state == "FAILED"
    assert done.states() == {"extract": "FAILED", "alert": "SUCCESS", "cleanup": "SUCCESS"}
    assert done.order("end_date") == ["extract", "alert", "cleanup"]
    assert done.error == "extract: source is down"


def test_flow_errors_do_not_run_on_success_but_finally_does(flows: Flows) -> None:
    done = flows.run(
        """
        tasks:
          - id: work
            type: core.log.Log
            message: fine
        errors:
          - id: alert
            type: core.log.Log
            message: never
        finally:
          - id: cleanup
            type: scripts.shell.Commands
            commands: ["echo cleaned up"]
        """
    )
    assert done.state == "SUCCESS"
    assert done.states() == {"work": "SUCCESS", "cleanup": "SUCCESS"}
    assert done.messages("cleanup") == ["cleaned up"]


def test_a_failing_finally_task_fails_a_successful_execution(flows: Flows) -> None:
    done = flows.run(
        """
        tasks:
          - id: work
            type: core.log.Log
            message: fine
        finally:
          - id: cleanup
            type: scripts.shell.Commands
            commands: ["exit 1"]
        """
    )
    assert done.state == "FAILED"
    assert done.run("cleanup")["error"] == "command exited with code 1"


def test_task_level_errors_of_a_flowable_run_and_the_flowable_stays_failed(
    flows: Flows,
) -> None:
    done = flows.run(
        """
        tasks:
          - id: group
            type: core.flow.Sequential
            tasks:
              - id: step
                type: core.execution.Fail
                errorMessage: step broke
              - id: not_reached
                type: core.log.Log
                message: never
            errors:
              - id: handle
                type: core.log.Log
                message: "handled {{ task.id }}"
        errors:
          - id: flow_handler
            type: core.log.Log
            message: flow handler
        """
    )
    assert done.state == "FAILED"
    assert done.states() == {
        "group": "FAILED",
        "step": "FAILED",
        "handle": "SUCCESS",
        "flow_handler": "SUCCESS",
    }
    assert done.order("end_date") == ["step", "handle", "group", "flow_handler"]
    assert done.messages("handle") == ["handled handle"]


def test_allow_failure_on_a_task_gives_warning_and_the_flow_goes_on(flows: Flows) -> None:
    done = flows.run(
        """
        tasks:
          - id: optional
            type: scripts.shell.Commands
            allowFailure: true
            commands: ["echo nope >&2", "exit 2"]
          - id: next
            type: core.log.Log
            message: "optional ended {{ outputs.optional.exitCode }}"
        """
    )
    assert done.state == "WARNING", done.summary()
    assert done.states() == {"optional": "WARNING", "next": "SUCCESS"}
    assert done.run("optional")["error"] == (
        "command exited with code 2; last line on stderr: nope"
    )
    assert done.messages("next") == ["optional ended 2"]


def test_fail_with_a_true_condition_fails_and_with_a_false_one_passes(flows: Flows) -> None:
    text = """
        inputs:
          - id: rows
            type: INT
        tasks:
          - id: gate
            type: core.execution.Fail
            condition: "{{ inputs.rows == 0 }}"
            errorMessage: "no rows loaded (got {{ inputs.rows }})"
          - id: publish
            type: core.log.Log
            message: published
        """
    failed = flows.run(text, {"rows": 0})
    assert failed.state == "FAILED"
    assert failed.error == "gate: no rows loaded (got 0)"
    assert "publish" not in failed.states()
    passed = flows.run(text, {"rows": 12})
    assert passed.state == "SUCCESS"
    assert passed.states() == {"gate": "SUCCESS", "publish": "SUCCESS"}


def test_an_expression_that_fails_at_run_time_fails_its_task_with_the_reason(
    flows: Flows,
) -> None:
    done = flows.run(
        """
        tasks:
          - id: first
            type: core.log.Log
            message: "{{ outputs.missing.value }}"
          - id: missing
            type: core.debug.Return
            format: later
        """
    )
    assert done.state == "FAILED"
    error = done.run("first")["error"]
    assert error is not None
    assert "{{ outputs.missing.value }}" in error
    assert "`outputs` has no key `missing`" in error


def test_a_bad_expression_in_a_flowable_fails_the_flowable(flows: Flows) -> None:
    done = flows.run(
        """
        tasks:
          - id: loop
            type: core.flow.ForEach
            values: "{{ 'abc' | number }}"
            tasks:
              - id: inner
                type: core.log.Log
                message: never
        """
    )
    assert done.state == "FAILED"
    assert done.states() == {"loop": "FAILED"}
    error = done.run("loop")["error"] or ""
    assert "{{ 'abc' | number }}" in error and "cannot read 'abc' as a number" in error


def test_a_bad_run_if_fails_the_task(flows: Flows) -> None:
    done = flows.run(
        """
        tasks:
          - id: maybe
            type: core.log.Log
            runIf: "{{ 1 / 0 }}"
            message: never
        """
    )
    assert done.state == "FAILED"
    assert done.run("maybe")["error"] == "runIf: {{ 1 / 0 }}: division by zero"


# -- retries ------------------------------------------------------------------------------


@pytest.mark.postgres
def test_constant_retry_until_success_records_every_attempt(flows: Flows, tmp_path: Path) -> None:
    done = flows.run(
        f"""
        tasks:
          - id: flaky
            type: scripts.shell.Commands
            retry:
              type: constant
              interval: PT0.1S
              maxAttempts: 5{flaky(tmp_path / "count", failures=2)}
        """
    )
    assert done.state == "SUCCESS", done.summary()
    run = done.run("flaky")
    assert [a["state"] for a in attempts(run)] == ["FAILED", "FAILED", "SUCCESS"]
    assert [a["number"] for a in attempts(run)] == [1, 2, 3]
    assert attempts(run)[0]["error"] == "command exited with code 1"
    assert all(0.1 <= gap < HANG for gap in gaps(run)), gaps(run)
    assert done.messages("flaky", "INFO") == ["attempt 1", "attempt 2", "attempt 3"]
    assert {row["attempt"] for row in done.logs if row["task_run_id"] == run["id"]} == {1, 2, 3}


def test_warning_on_retry_ends_warning_after_a_retried_success(
    flows: Flows, tmp_path: Path
) -> None:
    done = flows.run(
        f"""
        tasks:
          - id: flaky
            type: scripts.shell.Commands
            retry:
              type: constant
              interval: PT0.1S
              maxAttempts: 3
              warningOnRetry: true{flaky(tmp_path / "count", failures=1)}
        """
    )
    assert done.state == "WARNING", done.summary()
    assert [a["state"] for a in attempts(done.run("flaky"))] == ["FAILED", "SUCCESS"]


def test_retry_exhausted_fails_after_max_attempts(flows: Flows, tmp_path: Path) -> None:
    done = flows.run(
        f"""
        tasks:
          - id: flaky
            type: scripts.shell.Commands
            retry:
              type: constant
              interval: PT0.05S
              maxAttempt: 3{flaky(tmp_path / "count", failures=10)}
        """
    )
    assert done.state == "FAILED"
    run = done.run("flaky")
    assert [a["state"] for a in attempts(run)] == ["FAILED"] * 3
    assert run["error"] == "command exited with code 1"
    assert (tmp_path / "count").read_text().strip() == "3"


def test_exponential_retry_waits_longer_each_time(flows: Flows, tmp_path: Path) -> None:
    done = flows.run(
        f"""
        tasks:
          - id: flaky
            type: scripts.shell.Commands
            retry:
              type: exponential
              interval: PT0.1S
              delayFactor: 2
              maxInterval: PT0.3S
              maxAttempts: 4{flaky(tmp_path / "count", failures=10)}
        """
    )
    assert done.state == "FAILED"
    observed = gaps(done.run("flaky"))
    assert len(observed) == 3
    for seen, wanted in zip(observed, [0.1, 0.2, 0.3], strict=True):  # capped by maxInterval
        assert wanted <= seen < HANG, observed


def test_random_retry_waits_between_its_bounds(flows: Flows, tmp_path: Path) -> None:
    done = flows.run(
        f"""
        tasks:
          - id: flaky
            type: scripts.shell.Commands
            retry:
              type: random
              minInterval: PT0.1S
              maxInterval: PT0.3S
              maxAttempts: 4{flaky(tmp_path / "count", failures=10)}
        """
    )
    assert done.state == "FAILED"
    observed = gaps(done.run("flaky"))
    assert len(observed) == 3
    assert all(0.1 <= seen < HANG for seen in observed), observed


def test_max_duration_stops_retrying(flows: Flows, tmp_path: Path) -> None:
    started = time.monotonic()
    done = flows.run(
        f"""
        tasks:
          - id: flaky
            type: scripts.shell.Commands
            retry:
              type: constant
              interval: PT0.2S
              maxAttempts: 100
              maxDuration: PT0.5S{flaky(tmp_path / "count", failures=100)}
        """
    )
    assert done.state == "FAILED"
    run = done.run("flaky")
    assert 2 <= len(attempts(run)) <= 3, attempts(run)  # 0.2 s apart, none past 0.5 s
    assert time.monotonic() - started < HANG


def test_flow_level_retry_retries_failed_tasks(flows: Flows, tmp_path: Path) -> None:
    done = flows.run(
        f"""
        retry:
          type: constant
          interval: PT0.1S
          maxAttempts: 3
          warningOnRetry: true
        tasks:
          - id: steady
            type: core.log.Log
            message: fine
          - id: flaky
            type: scripts.shell.Commands{flaky(tmp_path / "count", failures=1)}
        """
    )
    assert done.state == "WARNING", done.summary()
    assert [a["state"] for a in attempts(done.run("flaky"))] == ["FAILED", "SUCCESS"]
    assert len(attempts(done.run("steady"))) == 1


def test_a_task_retry_overrides_the_flow_retry(flows: Flows, tmp_path: Path) -> None:
    done = flows.run(
        f"""
        retry:
          type: constant
          interval: PT0.05S
          maxAttempts: 5
        tasks:
          - id: flaky
            type: scripts.shell.Commands
            retry:
              type: constant
              interval: PT0.05S
              maxAttempts: 2{flaky(tmp_path / "count", failures=10)}
        """
    )
    assert done.state == "FAILED"
    assert len(attempts(done.run("flaky"))) == 2


# -- timeouts -----------------------------------------------------------------------------


@pytest.mark.postgres
def test_a_task_timeout_ends_the_process_and_fails_the_task(flows: Flows) -> None:
    started = time.monotonic()
    done = flows.run(
        """
        tasks:
          - id: slow
            type: scripts.shell.Commands
            timeout: PT0.5S
            commands:
              - echo started
              - sleep 30
        """
    )
    assert time.monotonic() - started < HANG
    assert done.state == "FAILED"
    slow = done.run("slow")
    assert slow["error"] == "timed out after PT0.5S"
    assert slow["end_date"] - slow["start_date"] < HANG
    assert done.messages("slow", "INFO") == ["started"]


def test_a_timeout_applies_to_each_attempt(flows: Flows) -> None:
    done = flows.run(
        """
        tasks:
          - id: slow
            type: scripts.shell.Commands
            timeout: PT0.3S
            retry:
              type: constant
              interval: PT0.05S
              maxAttempts: 2
            commands: ["sleep 30"]
        """
    )
    assert done.state == "FAILED"
    tries = attempts(done.run("slow"))
    assert [a["error"] for a in tries] == ["timed out after PT0.3S"] * 2
    assert all(a["endDate"] - a["startDate"] < HANG for a in tries)


def last_run(done: Finished, task_id: str) -> Row:
    return done.runs_of(task_id)[-1]


def retries(flows: Flows, first_id: str) -> list[Row]:
    """The execution `first_id` and the ones flow-level retry made of it, oldest first."""
    with flows.engine.store.read() as tx:
        rows = tx.connection.execute(
            select(EXECUTIONS)
            .where(or_(EXECUTIONS.c.id == first_id, EXECUTIONS.c.original_id == first_id))
            .order_by(EXECUTIONS.c.created_at)
        ).mappings()
        return [dict(r) for r in rows]


@pytest.mark.postgres
def test_flow_retry_creates_a_new_execution_after_a_failure(flows: Flows) -> None:
    flows.deploy(
        """
id: flaky_flow
namespace: tests.retry
retry:
  type: constant
  interval: PT0.2S
  maxAttempts: 3
  behavior: CREATE_NEW_EXECUTION
tasks:
  - id: boom
    type: core.execution.Fail
    errorMessage: always
"""
    )
    first = flows.engine.start_execution(ExecutionRequest("tests.retry", "flaky_flow"))
    wait_until(lambda: len(retries(flows, first["id"])) == 3, timeout=15, what="three attempts")
    attempts = retries(flows, first["id"])
    for row in attempts:
        flows.engine.wait(row["id"], timeout=10)
    ended = [flows.engine.execution(row["id"]) for row in attempts]
    assert [e["state"] for e in ended if e] == ["FAILED", "FAILED", "FAILED"]
    labels = [{i["key"]: i["value"] for i in e["labels"]} for e in ended if e]
    assert [lab.get("system_retryAttempt", "1") for lab in labels] == ["1", "2", "3"]
    assert all(e["original_id"] in (None, first["id"]) for e in ended if e)
    starts = sorted(e["start_date"] for e in ended if e)
    assert all(b - a >= 0.2 for a, b in itertools.pairwise(starts))


def test_a_flowable_timeout_stops_its_children(flows: Flows) -> None:
    done = flows.run(
        """
id: slow_group
namespace: tests.timeout
tasks:
  - id: group
    type: core.flow.Sequential
    timeout: PT0.5S
    tasks:
      - id: long
        type: io.kestra.plugin.scripts.shell.Commands
        commands: ["sleep 30"]
"""
    )
    assert done.state == "FAILED"
    assert done.run("group")["state"] == "FAILED"
    assert done.run("group")["error"] == "timed out after PT0.5S"
    assert done.run("long")["state"] == "KILLED"
