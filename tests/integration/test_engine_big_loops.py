"""Big loops and fan-outs: the same outcomes as small ones, in time that follows what
changes rather than the loop's size.

A loop (ForEach and its kin) or a Parallel folds its leading items once they ended well
(planner.py): their task runs are marked folded and counted in the loop's `progress`,
so the executor stops reading them at each step. Everything a user sees stays the same:
every task run is listed, outputs of folded items are readable, warnings and failures
end the execution as before, restart and replay work.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import Finished, Flows

from headwater.daemon.engine.planner import FOLD_BATCH

ITEMS = 5 * FOLD_BATCH + 3  # several batches folded, and a rest that is not


def values(count: int = ITEMS) -> str:
    return "[" + ", ".join(f'"v{n}"' for n in range(count)) + "]"


def open_runs(flows: Flows, finished: Finished) -> int:
    with flows.engine.store.read() as tx:
        return len(tx.open_task_runs(finished.execution["id"]))


@pytest.mark.postgres
def test_a_long_loop_lists_every_item_and_reads_only_a_few(flows: Flows) -> None:
    finished = flows.run(
        f"""
        tasks:
          - id: loop
            type: core.flow.ForEach
            values: {values()}
            tasks:
              - id: say
                type: core.log.Log
                message: "item {{{{ taskrun.value }}}}"
        """
    )
    assert finished.state == "SUCCESS", finished.summary()
    says = finished.runs_of("say")
    assert [r["value"] for r in says] == [f"v{n}" for n in range(ITEMS)]
    assert all(r["state"] == "SUCCESS" for r in says)
    assert finished.messages("say") == [f"item v{n}" for n in range(ITEMS)]
    # the executor reads the loop and its last, unfolded items, not every item
    assert open_runs(flows, finished) <= 1 + 2 * FOLD_BATCH
    assert finished.run("loop")["progress"]["folded"] >= ITEMS - 2 * FOLD_BATCH


@pytest.mark.postgres
def test_outputs_of_folded_items_are_read_by_later_tasks_and_flow_outputs(flows: Flows) -> None:
    finished = flows.run(
        f"""
        tasks:
          - id: loop
            type: core.flow.ForEach
            values: {values()}
            tasks:
              - id: square
                type: core.debug.Return
                format: "{{{{ taskrun.value }}}}!"
          - id: check
            type: core.flow.If
            condition: "{{{{ outputs.square['v0'].value == 'v0!' }}}}"
            then:
              - id: count
                type: core.log.Log
                message: >-
                  {{{{ outputs.square | keys | length }}}} {{{{ outputs.square['v1'].value }}}}
        outputs:
          - id: first
            type: STRING
            value: "{{{{ outputs.square['v0'].value }}}}"
        """
    )
    assert finished.state == "SUCCESS", finished.summary()
    assert finished.run("check")["outputs"]["condition"] is True
    assert finished.messages("count") == [f"{ITEMS} v1!"]
    assert finished.outputs == {"first": "v0!"}


def test_a_warning_in_a_folded_item_makes_the_execution_warning(flows: Flows) -> None:
    finished = flows.run(
        f"""
        tasks:
          - id: loop
            type: core.flow.ForEach
            values: {values()}
            tasks:
              - id: maybe
                type: core.execution.Fail
                allowFailure: true
                condition: "{{{{ taskrun.value == 'v1' }}}}"
                errorMessage: only v1
        """
    )
    assert finished.state == "WARNING", finished.summary()
    assert finished.run("loop")["state"] == "WARNING"
    assert finished.run("loop")["progress"]["warned"] is True
    assert finished.run("maybe", "v1")["state"] == "WARNING"


def test_a_failure_after_folded_items_stops_the_loop_there(flows: Flows) -> None:
    bad = 3 * FOLD_BATCH + 1
    finished = flows.run(
        f"""
        tasks:
          - id: loop
            type: core.flow.ForEach
            values: {values()}
            tasks:
              - id: check
                type: core.execution.Fail
                condition: "{{{{ taskrun.value == 'v{bad}' }}}}"
                errorMessage: "v{bad} is bad"
        """
    )
    assert finished.state == "FAILED", finished.summary()
    checks = finished.runs_of("check")
    assert len(checks) == bad + 1  # nothing after the failure started
    assert checks[-1]["state"] == "FAILED"
    assert finished.error == f"check: v{bad} is bad"


def test_a_restarted_loop_goes_on_after_its_folded_items(flows: Flows, tmp_path: Path) -> None:
    bad = 2 * FOLD_BATCH + 2
    flag = f"{tmp_path}/fixed"
    finished = flows.run(
        f"""
        tasks:
          - id: loop
            type: core.flow.ForEach
            values: {values()}
            tasks:
              - id: work
                type: scripts.shell.Commands
                commands:
                  - >-
                    if [ "{{{{ taskrun.value }}}}" = "v{bad}" ] && [ ! -e {flag} ];
                    then exit 3; fi
        """
    )
    assert finished.state == "FAILED", finished.summary()
    open(flag, "w").close()
    flows.engine.control.restart(finished.execution["id"])
    again = flows.finish(finished.execution["id"])
    assert again.state == "SUCCESS", again.summary()
    works = again.runs_of("work")
    assert [r["value"] for r in works] == [f"v{n}" for n in range(ITEMS)]
    assert len(again.run("work", f"v{bad}")["attempts"]) == 2
    assert all(len(r["attempts"]) == 1 for r in works if r["value"] != f"v{bad}")


def test_a_replay_from_a_folded_item_runs_it_and_what_follows_again(flows: Flows) -> None:
    finished = flows.run(
        f"""
        tasks:
          - id: loop
            type: core.flow.ForEach
            values: {values()}
            tasks:
              - id: say
                type: core.debug.Return
                format: "{{{{ taskrun.value }}}}"
        """
    )
    assert finished.state == "SUCCESS", finished.summary()
    chosen = finished.run("say", "v2")
    assert chosen["folded"] is True
    replay = flows.engine.control.replay(finished.execution["id"], chosen["id"])
    again = flows.finish(replay["id"])
    assert again.state == "SUCCESS", again.summary()
    assert [r["value"] for r in again.runs_of("say")] == [f"v{n}" for n in range(ITEMS)]
    assert again.execution["original_id"] == finished.execution["id"]


def test_repeated_values_share_their_task_runs_as_before(flows: Flows) -> None:
    repeated = "[" + ", ".join('"same"' if n % 2 else f'"v{n}"' for n in range(ITEMS)) + "]"
    finished = flows.run(
        f"""
        tasks:
          - id: loop
            type: core.flow.ForEach
            values: {repeated}
            tasks:
              - id: say
                type: core.log.Log
                message: "{{{{ taskrun.value }}}}"
        """
    )
    assert finished.state == "SUCCESS", finished.summary()
    assert len(finished.runs_of("say")) == len({"same", *(f"v{n}" for n in range(0, ITEMS, 2))})
    assert finished.run("loop")["progress"] == {
        "folded": 0,
        "warned": False,
        "seq": 0,
        "unique": False,
    }


@pytest.mark.postgres
def test_a_wide_parallel_folds_its_leading_tasks(flows: Flows) -> None:
    count = 4 * FOLD_BATCH
    tasks = "".join(
        f"""
              - id: p{n}
                type: core.debug.Return
                format: "{n}"
        """
        for n in range(count)
    )
    finished = flows.run(
        f"""
        tasks:
          - id: all
            type: core.flow.Parallel
            tasks:{tasks}
          - id: after
            type: core.log.Log
            message: "{{{{ outputs.p0.value }}}} {{{{ outputs['p{count - 1}'].value }}}}"
        """
    )
    assert finished.state == "SUCCESS", finished.summary()
    assert len([r for r in finished.runs if r["task_id"].startswith("p")]) == count
    assert finished.messages("after") == [f"0 {count - 1}"]
    assert finished.run("all")["progress"]["folded"] >= FOLD_BATCH
