"""Execution control on a real engine: kill ends the running processes, restart re-runs
what failed in the same execution and keeps what succeeded, replay makes a new
execution from a chosen task, resume continues a pause; each refuses the states it
cannot act on, saying which state and what would work."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from conftest import Flows
from test_engine_kill import processes_with, running_with_pgid
from waiting import wait_until

from headwater.daemon.engine.control import ResumeRefused, TaskRunNotFound
from headwater.daemon.engine.inputs import InputsRefused
from headwater.daemon.errors import ExecutionNotFound, ExecutionStateConflict
from headwater.runners.process import process_group_alive


def history(flows: Flows, execution_id: str) -> list[str]:
    row = flows.engine.execution(execution_id)
    assert row is not None
    return [h["state"] for h in row["histories"]]


def labels(row: dict[str, object]) -> dict[str, str]:
    return {i["key"]: i["value"] for i in row["labels"]}  # type: ignore[attr-defined]


def fails_until(marker: Path) -> str:
    """A shell line that fails until `marker` exists."""
    return f"test -f {marker} || {{ echo 'no {marker.name} yet' >&2; exit 3; }}"


# -- kill ------------------------------------------------------------------------------------


def test_kill_ends_the_running_shell_process(flows: Flows) -> None:
    marker = f"control-kill-{uuid.uuid4().hex}"
    execution_id = flows.start(
        f"""
        tasks:
          - {{id: slow, type: scripts.shell.Commands, commands: ["sleep 30 # {marker}"]}}
        """
    )
    run = wait_until(lambda: running_with_pgid(flows, execution_id, "slow"), what="the script")[0]
    wait_until(lambda: processes_with(marker), what="the process")
    row = flows.engine.control.kill(execution_id)
    assert row["state"] in ("KILLING", "KILLED")
    assert flows.finish(execution_id, timeout=10).state == "KILLED"
    assert not process_group_alive(run["pgid"])
    assert processes_with(marker) == []


def test_kill_refuses_an_ended_or_unknown_execution(flows: Flows) -> None:
    done = flows.run("tasks: [{id: quick, type: core.log.Log, message: hi}]")
    with pytest.raises(ExecutionStateConflict) as refused:
        flows.engine.control.kill(done.execution["id"])
    assert str(refused.value).startswith(
        f"execution {done.execution['id']} is SUCCESS: it has ended"
    )
    with pytest.raises(ExecutionNotFound, match="execution nope does not exist"):
        flows.engine.control.kill("nope")


# -- restart ---------------------------------------------------------------------------------


def test_restart_reruns_the_failed_task_and_keeps_what_succeeded(
    flows: Flows, tmp_path: Path
) -> None:
    marker = tmp_path / "fixed"
    first = flows.run(
        f"""
        tasks:
          - id: fetch
            type: scripts.shell.Commands
            commands: ['echo "::{{\\"outputs\\": {{\\"rows\\": 42}}}}::"']
          - id: load
            type: scripts.shell.Commands
            commands: ["{fails_until(marker)}", "echo loaded {{{{ outputs.fetch.vars.rows }}}}"]
          - {{id: after, type: core.log.Log, message: "after load"}}
        errors:
          - {{id: alert, type: core.log.Log, message: "load failed"}}
        """
    )
    assert first.state == "FAILED", first.summary()
    assert first.states() == {"fetch": "SUCCESS", "load": "FAILED", "alert": "SUCCESS"}
    fetch = first.run("fetch")
    execution_id = first.execution["id"]

    marker.touch()
    row = flows.engine.control.restart(execution_id)
    assert row["id"] == execution_id
    done = flows.finish(execution_id)
    assert done.state == "SUCCESS", done.summary()
    assert done.states() == {"fetch": "SUCCESS", "load": "SUCCESS", "after": "SUCCESS"}
    assert done.run("fetch") == fetch  # kept as it was: not run again
    load = done.run("load")
    assert [a["state"] for a in load["attempts"]] == ["FAILED", "SUCCESS"]
    assert "loaded 42" in done.messages("load")
    assert history(flows, execution_id)[-4:] == ["FAILED", "RESTARTED", "RUNNING", "SUCCESS"]
    assert labels(done.execution)["system.restarted"] == "true"
    assert done.execution["end_date"] is not None and done.error is None


def test_restart_reruns_only_the_failed_iteration_of_a_loop(flows: Flows, tmp_path: Path) -> None:
    first = flows.run(
        f"""
        tasks:
          - id: each
            type: core.flow.ForEach
            values: ["a", "b", "c"]
            tasks:
              - id: step
                type: scripts.shell.Commands
                commands:
                  - test {{{{ taskrun.value }}}} != b || test -f {tmp_path / "b"}
        """
    )
    assert first.state == "FAILED", first.summary()
    assert first.states() == {"each": "FAILED", "step[a]": "SUCCESS", "step[b]": "FAILED"}
    (tmp_path / "b").touch()
    flows.engine.control.restart(first.execution["id"])
    done = flows.finish(first.execution["id"])
    assert done.state == "SUCCESS", done.summary()
    assert done.run("step", "a") == first.run("step", "a")
    assert len(done.run("step", "b")["attempts"]) == 2
    assert len(done.run("step", "c")["attempts"]) == 1


def test_restart_a_killed_execution(flows: Flows, tmp_path: Path) -> None:
    marker = tmp_path / "quick"
    execution_id = flows.start(
        f"""
        tasks:
          - id: slow
            type: scripts.shell.Commands
            commands: ["test -f {marker} || sleep 30"]
          - {{id: after, type: core.log.Log, message: ran}}
        """
    )
    wait_until(lambda: running_with_pgid(flows, execution_id, "slow"), what="the script")
    flows.engine.control.kill(execution_id)
    assert flows.finish(execution_id).state == "KILLED"
    marker.touch()
    assert flows.engine.control.restart(execution_id)["state"] in ("RUNNING", "SUCCESS")
    done = flows.finish(execution_id)
    assert done.state == "SUCCESS", done.summary()
    assert done.states() == {"slow": "SUCCESS", "after": "SUCCESS"}
    assert history(flows, execution_id)[-3:] == ["RESTARTED", "RUNNING", "SUCCESS"]


def test_restart_refuses_a_successful_or_running_execution(flows: Flows) -> None:
    done = flows.run("tasks: [{id: quick, type: core.log.Log, message: hi}]")
    with pytest.raises(ExecutionStateConflict) as refused:
        flows.engine.control.restart(done.execution["id"])
    assert str(refused.value) == (
        f"execution {done.execution['id']} is SUCCESS: only a FAILED or KILLED execution "
        "can be restarted; a replay starts a new execution of it from any task"
    )
    paused = flows.start("tasks: [{id: wait, type: core.flow.Pause}]")
    wait_until(lambda: flows.state_of(paused) == "PAUSED", what="the pause")
    with pytest.raises(ExecutionStateConflict, match="is PAUSED: only a FAILED or KILLED"):
        flows.engine.control.restart(paused)


@pytest.mark.postgres
def test_a_restart_waits_for_a_concurrency_slot(flows: Flows, tmp_path: Path) -> None:
    flow = flows.deploy(
        f"""
        concurrency: {{limit: 1}}
        inputs:
          - {{id: pause, type: BOOLEAN, defaults: false}}
        tasks:
          - id: hold
            type: core.flow.Pause
            runIf: "{{{{ inputs.pause }}}}"
          - id: check
            type: scripts.shell.Commands
            commands: ["{fails_until(tmp_path / "ok")}"]
        """
    )
    from headwater.daemon.engine.executor import ExecutionRequest

    failed = flows.engine.start_execution(ExecutionRequest(flow.namespace, flow.id))["id"]
    assert flows.finish(failed).state == "FAILED"
    holder = flows.engine.start_execution(
        ExecutionRequest(flow.namespace, flow.id, inputs={"pause": True})
    )["id"]
    wait_until(lambda: flows.state_of(holder) == "PAUSED", what="the holder")
    (tmp_path / "ok").touch()
    assert flows.engine.control.restart(failed)["state"] == "QUEUED"
    assert history(flows, failed)[-2:] == ["RESTARTED", "QUEUED"]
    flows.engine.control.kill(holder)
    assert flows.finish(failed).state == "SUCCESS"


# -- replay ----------------------------------------------------------------------------------

REPLAYED = """
inputs:
  - {id: who, type: STRING, defaults: world}
tasks:
  - id: first
    type: scripts.shell.Commands
    commands: ['echo "::{\\"outputs\\": {\\"n\\": $$}}::"']
  - {id: second, type: core.log.Log, message: "hello {{ inputs.who }}"}
  - {id: third, type: core.log.Log, message: "n={{ outputs.first.vars.n }}"}
"""


def test_replay_from_a_task_copies_what_came_before(flows: Flows) -> None:
    old = flows.run(REPLAYED)
    assert old.state == "SUCCESS", old.summary()
    second = old.run("second")
    row = flows.engine.control.replay(old.execution["id"], second["id"])
    assert row["id"] != old.execution["id"]
    new = flows.finish(row["id"])
    assert new.state == "SUCCESS", new.summary()
    assert new.execution["original_id"] == old.execution["id"]
    assert new.execution["flow_revision"] == old.execution["flow_revision"]
    assert labels(new.execution)["system.replay"] == "true"
    copied = new.run("first")
    assert copied["id"] != old.run("first")["id"]
    assert (copied["state"], copied["outputs"], copied["start_date"]) == (
        "SUCCESS",
        old.run("first")["outputs"],
        old.run("first")["start_date"],
    )
    assert new.messages("first") == []  # not run again: no log line of its own
    assert new.messages("second") == ["hello world"]
    n = old.run("first")["outputs"]["vars"]["n"]
    assert new.messages("third") == [f"n={n}"]
    assert flows.state_of(old.execution["id"]) == "SUCCESS"  # the old one is untouched


def test_replay_from_the_start_with_new_inputs(flows: Flows) -> None:
    old = flows.run(REPLAYED)
    new = flows.finish(
        flows.engine.control.replay(old.execution["id"], inputs={"who": "Ada"})["id"]
    )
    assert new.state == "SUCCESS"
    assert new.execution["inputs"] == {"who": "Ada"}
    assert new.run("first")["id"] != old.run("first")["id"]
    assert new.messages("second") == ["hello Ada"]
    with pytest.raises(InputsRefused):
        flows.engine.control.replay(old.execution["id"], inputs={"who": ["not", "a", "string"]})


def test_replay_inside_a_loop_reruns_the_chosen_iteration_and_after(flows: Flows) -> None:
    old = flows.run(
        """
        tasks:
          - id: each
            type: core.flow.ForEach
            values: ["a", "b", "c"]
            tasks:
              - {id: step, type: core.log.Log, message: "step {{ taskrun.value }}"}
          - {id: end, type: core.log.Log, message: end}
        """
    )
    new = flows.finish(
        flows.engine.control.replay(old.execution["id"], old.run("step", "b")["id"])["id"]
    )
    assert new.state == "SUCCESS", new.summary()
    assert new.states() == {
        "each": "SUCCESS",
        "step[a]": "SUCCESS",
        "step[b]": "SUCCESS",
        "step[c]": "SUCCESS",
        "end": "SUCCESS",
    }
    assert new.messages() == ["step b", "step c", "end"]


def test_replay_refuses_what_it_cannot_do(flows: Flows) -> None:
    old = flows.run(REPLAYED)
    with pytest.raises(
        TaskRunNotFound, match=f"task run nope is not part of execution {old.execution['id']}"
    ):
        flows.engine.control.replay(old.execution["id"], "nope")
    paused = flows.start("tasks: [{id: wait, type: core.flow.Pause}]")
    wait_until(lambda: flows.state_of(paused) == "PAUSED", what="the pause")
    with pytest.raises(
        ExecutionStateConflict, match="is PAUSED: only an ended execution can be replayed"
    ):
        flows.engine.control.replay(paused)


# -- resume ----------------------------------------------------------------------------------


def test_resume_continues_a_paused_execution(flows: Flows) -> None:
    execution_id = flows.start(
        """
        tasks:
          - {id: wait, type: core.flow.Pause}
          - {id: after, type: core.log.Log, message: resumed}
        """
    )
    wait_until(lambda: flows.state_of(execution_id) == "PAUSED", what="the pause")
    with pytest.raises(ResumeRefused, match="a Pause takes no inputs on resume, got ok"):
        flows.engine.control.resume(execution_id, {"ok": True})
    flows.engine.control.resume(execution_id)
    done = flows.finish(execution_id)
    assert done.state == "SUCCESS"
    assert done.messages("after") == ["resumed"]
    with pytest.raises(ExecutionStateConflict) as refused:
        flows.engine.control.resume(execution_id)
    assert str(refused.value) == (
        f"execution {execution_id} is SUCCESS: only a PAUSED execution can be resumed"
    )
