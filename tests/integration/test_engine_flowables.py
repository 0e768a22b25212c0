"""Order and states: each flowable type runs its children when and as often as FLOWS.md
says, with concurrency limits observed on real `sleep` processes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import Flows, Row
from waiting import wait_until


def sleepers(count: int, seconds: float, indent: int = 14) -> str:
    """`count` shell tasks p0, p1, … running `sleep`, as YAML list items at `indent`."""
    return ("\n" + " " * indent).join(
        f'- {{id: p{i}, type: scripts.shell.Commands, commands: ["sleep {seconds}"]}}'
        for i in range(count)
    )


def max_overlap(runs: list[Row]) -> int:
    """The most task runs that were running at one moment (by their start and end times)."""
    events = []
    for run in runs:
        assert run["start_date"] is not None and run["end_date"] is not None, run
        events += [(run["start_date"], 1), (run["end_date"], -1)]
    running = peak = 0
    for _, step in sorted(events, key=lambda e: (e[0], e[1])):  # an end before a start
        running += step
        peak = max(peak, running)
    return peak


def runnable(runs: list[Row], task_id: str) -> list[Row]:
    return [r for r in runs if r["task_id"] == task_id]


def assert_after(first: Row, then: Row) -> None:
    assert then["start_date"] >= first["end_date"], (first, then)


# -- Sequential ---------------------------------------------------------------------------


def test_tasks_run_one_after_another_in_order(flows: Flows) -> None:
    done = flows.run(
        """
        tasks:
          - id: first
            type: core.log.Log
            message: one
          - id: group
            type: core.flow.Sequential
            tasks:
              - id: second
                type: scripts.shell.Commands
                commands: ["echo two"]
              - id: third
                type: core.debug.Return
                format: three
          - id: fourth
            type: core.log.Log
            message: four
        """
    )
    assert done.state == "SUCCESS", done.summary()
    assert done.order("start_date") == ["first", "group", "second", "third", "fourth"], (
        done.summary()
    )
    assert done.order("end_date") == ["first", "second", "third", "group", "fourth"]
    for a, b in [("first", "second"), ("second", "third"), ("third", "fourth")]:
        assert_after(done.run(a), done.run(b))
    assert done.messages() == ["one", "two", "four"]
    assert done.run("group")["end_date"] >= done.run("third")["end_date"]


# -- Parallel -----------------------------------------------------------------------------


def test_parallel_runs_at_most_concurrent_children_at_once(flows: Flows) -> None:
    done = flows.run(
        f"""
        tasks:
          - id: fan
            type: core.flow.Parallel
            concurrent: 2
            tasks:
              {sleepers(5, 0.3)}
          - id: after
            type: core.log.Log
            message: all done
        """
    )
    assert done.state == "SUCCESS", done.summary()
    sleeps = [r for r in done.runs if r["task_id"].startswith("p")]
    assert len(sleeps) == 5
    assert max_overlap(sleeps) == 2
    assert all(done.run("after")["start_date"] >= r["end_date"] for r in sleeps)


def test_parallel_without_a_limit_runs_every_child_at_once(flows: Flows) -> None:
    done = flows.run(
        f"""
        tasks:
          - id: fan
            type: core.flow.Parallel
            tasks:
              {sleepers(3, 0.4)}
        """
    )
    assert done.state == "SUCCESS", done.summary()
    assert max_overlap([r for r in done.runs if r["task_id"].startswith("p")]) == 3


def test_a_failing_parallel_child_fails_the_parallel_and_starts_nothing_new(flows: Flows) -> None:
    done = flows.run(
        """
        tasks:
          - id: fan
            type: core.flow.Parallel
            concurrent: 1
            tasks:
              - id: bad
                type: core.execution.Fail
                errorMessage: broken
              - id: never
                type: core.log.Log
                message: not started
        """
    )
    assert done.state == "FAILED"
    assert done.states() == {"fan": "FAILED", "bad": "FAILED"}
    assert done.error == "bad: broken"


# -- ForEach ------------------------------------------------------------------------------


def foreach_flow(limit: int, values: list[str], seconds: float = 0.25) -> str:
    return f"""
        tasks:
          - id: loop
            type: core.flow.ForEach
            values: {values}
            concurrencyLimit: {limit}
            tasks:
              - id: work
                type: scripts.shell.Commands
                commands: ["sleep {seconds}", "echo done {{{{ taskrun.value }}}}"]
        """


def test_foreach_with_limit_one_runs_one_value_at_a_time_in_order(flows: Flows) -> None:
    done = flows.run(foreach_flow(1, ["a", "b", "c"], 0.1))
    assert done.state == "SUCCESS", done.summary()
    works = runnable(done.runs, "work")
    assert [r["value"] for r in works] == ["a", "b", "c"]
    assert max_overlap(works) == 1
    assert done.order() == ["loop", "work[a]", "work[b]", "work[c]"]
    assert done.messages("work") == ["done a", "done b", "done c"]


def test_foreach_with_limit_two_runs_two_values_at_a_time(flows: Flows) -> None:
    done = flows.run(foreach_flow(2, ["a", "b", "c", "d", "e"]))
    assert done.state == "SUCCESS", done.summary()
    works = runnable(done.runs, "work")
    assert sorted(r["value"] for r in works) == ["a", "b", "c", "d", "e"]
    assert max_overlap(works) == 2


def test_foreach_with_limit_zero_runs_every_value_at_once(flows: Flows) -> None:
    done = flows.run(foreach_flow(0, ["a", "b", "c", "d"], 0.4))
    assert done.state == "SUCCESS", done.summary()
    assert max_overlap(runnable(done.runs, "work")) >= 3  # four workers; one may lag


@pytest.mark.postgres
def test_foreach_values_from_an_expression_and_a_json_string(flows: Flows) -> None:
    done = flows.run(
        """
        variables:
          regions: ["eu", "us"]
        tasks:
          - id: from_vars
            type: core.flow.ForEach
            values: "{{ vars.regions }}"
            tasks:
              - id: a
                type: core.log.Log
                message: "region {{ taskrun.value }}"
          - id: from_json
            type: core.flow.ForEach
            values: '[1, {"k": "v"}]'
            tasks:
              - id: b
                type: core.log.Log
                message: "item {{ taskrun.value }}"
        """
    )
    assert done.state == "SUCCESS", done.summary()
    assert done.messages("a") == ["region eu", "region us"]
    assert done.messages("b") == ["item 1", 'item {"k":"v"}']


@pytest.mark.postgres
def test_nested_foreach_sees_parent_values_and_outputs_by_value(flows: Flows) -> None:
    done = flows.run(
        """
        tasks:
          - id: outer
            type: core.flow.ForEach
            values: ["a", "b"]
            tasks:
              - id: inner
                type: core.flow.ForEach
                values: [1, 2]
                tasks:
                  - id: pair
                    type: core.debug.Return
                    format: "{{ parent.taskrun.value }}-{{ taskrun.value }}"
                  - id: show
                    type: core.log.Log
                    message: "{{ outputs.pair[parent.taskrun.value][taskrun.value].value }}"
          - id: last
            type: core.log.Log
            message: "{{ outputs.pair['b']['2'].value }} {{ outputs.pair | keys | join(',') }}"
        outputs:
          - id: all
            type: JSON
            value: "{{ outputs.pair }}"
        """
    )
    assert done.state == "SUCCESS", done.summary()
    assert done.messages("show") == ["a-1", "a-2", "b-1", "b-2"]
    assert done.messages("last") == ["b-2 a,b"]
    assert done.outputs["all"] == {
        "a": {"1": {"value": "a-1"}, "2": {"value": "a-2"}},
        "b": {"1": {"value": "b-1"}, "2": {"value": "b-2"}},
    }


def test_a_failing_iteration_fails_the_loop_and_the_execution(flows: Flows) -> None:
    done = flows.run(
        """
        tasks:
          - id: loop
            type: core.flow.ForEach
            values: ["1", "2", "3"]
            tasks:
              - id: check
                type: core.execution.Fail
                condition: "{{ taskrun.value == '2' }}"
                errorMessage: "value {{ taskrun.value }} is bad"
        """
    )
    assert done.state == "FAILED"
    assert done.states() == {"loop": "FAILED", "check[1]": "SUCCESS", "check[2]": "FAILED"}
    assert done.error == "check: value 2 is bad"


# -- If, Switch ---------------------------------------------------------------------------


def test_if_runs_then_or_else_by_the_condition(flows: Flows) -> None:
    text = """
        inputs:
          - id: go
            type: BOOLEAN
        tasks:
          - id: decide
            type: core.flow.If
            condition: "{{ inputs.go }}"
            then:
              - id: yes
                type: core.log.Log
                message: then branch
            else:
              - id: no
                type: core.log.Log
                message: else branch
        """
    taken = flows.run(text, {"go": True})
    assert taken.states() == {"decide": "SUCCESS", "yes": "SUCCESS"}
    assert taken.messages() == ["then branch"]
    other = flows.run(text, {"go": "false"})
    assert other.states() == {"decide": "SUCCESS", "no": "SUCCESS"}
    assert other.messages() == ["else branch"]


def test_if_without_else_and_a_false_condition_succeeds_with_nothing_run(flows: Flows) -> None:
    done = flows.run(
        """
        tasks:
          - id: decide
            type: core.flow.If
            condition: "{{ 1 > 2 }}"
            then:
              - id: yes
                type: core.log.Log
                message: then branch
        """
    )
    assert done.state == "SUCCESS"
    assert done.states() == {"decide": "SUCCESS"}


def switch_flow() -> str:
    return """
        inputs:
          - id: kind
            type: STRING
        tasks:
          - id: route
            type: core.flow.Switch
            value: "{{ inputs.kind }}"
            cases:
              csv:
                - id: load_csv
                  type: core.log.Log
                  message: csv
              json:
                - id: load_json
                  type: core.log.Log
                  message: json
            defaults:
              - id: unknown
                type: core.log.Log
                message: "no loader for {{ inputs.kind }}"
        """


def test_switch_runs_the_matching_case(flows: Flows) -> None:
    done = flows.run(switch_flow(), {"kind": "json"})
    assert done.states() == {"route": "SUCCESS", "load_json": "SUCCESS"}


def test_switch_runs_defaults_when_no_case_matches(flows: Flows) -> None:
    done = flows.run(switch_flow(), {"kind": "xml"})
    assert done.state == "SUCCESS"
    assert done.states() == {"route": "SUCCESS", "unknown": "SUCCESS"}
    assert done.messages() == ["no loader for xml"]


# -- Dag ----------------------------------------------------------------------------------


def test_dag_runs_each_task_after_its_dependencies(flows: Flows) -> None:
    done = flows.run(
        """
        tasks:
          - id: graph
            type: core.flow.Dag
            tasks:
              - task:
                  id: report
                  type: scripts.shell.Commands
                  commands: ["echo report"]
                dependsOn: [orders, customers]
              - task:
                  id: orders
                  type: scripts.shell.Commands
                  commands: ["sleep 0.2"]
                dependsOn: [extract]
              - task:
                  id: customers
                  type: scripts.shell.Commands
                  commands: ["sleep 0.2"]
                dependsOn: [extract]
              - task:
                  id: extract
                  type: scripts.shell.Commands
                  commands: ["echo extract"]
        """
    )
    assert done.state == "SUCCESS", done.summary()
    assert_after(done.run("extract"), done.run("orders"))
    assert_after(done.run("extract"), done.run("customers"))
    assert_after(done.run("orders"), done.run("report"))
    assert_after(done.run("customers"), done.run("report"))
    assert max_overlap([done.run("orders"), done.run("customers")]) == 2


def test_dag_concurrent_limits_tasks_at_once(flows: Flows) -> None:
    entries = "\n".join(
        f"""
              - task:
                  id: t{i}
                  type: scripts.shell.Commands
                  commands: ["sleep 0.2"]"""
        for i in range(4)
    )
    done = flows.run(
        f"""
        tasks:
          - id: graph
            type: core.flow.Dag
            concurrent: 1
            tasks:{entries}
        """
    )
    assert done.state == "SUCCESS", done.summary()
    assert max_overlap([r for r in done.runs if r["task_id"] != "graph"]) == 1


def test_dag_stops_at_a_failed_dependency(flows: Flows) -> None:
    done = flows.run(
        """
        tasks:
          - id: graph
            type: core.flow.Dag
            tasks:
              - task:
                  id: extract
                  type: core.execution.Fail
                  errorMessage: source down
              - task:
                  id: load
                  type: core.log.Log
                  message: never
                dependsOn: [extract]
        """
    )
    assert done.state == "FAILED"
    assert done.states() == {"graph": "FAILED", "extract": "FAILED"}


# -- EachSequential, EachParallel -----------------------------------------------------------


def test_each_sequential_runs_values_in_order(flows: Flows) -> None:
    done = flows.run(
        """
        tasks:
          - id: each
            type: io.kestra.core.tasks.flows.EachSequential
            value: ["x", "y", "z"]
            tasks:
              - id: work
                type: scripts.shell.Commands
                commands: ["sleep 0.05", "echo {{ taskrun.value }}"]
        """
    )
    assert done.state == "SUCCESS", done.summary()
    works = runnable(done.runs, "work")
    assert max_overlap(works) == 1
    assert done.messages("work") == ["x", "y", "z"]


def test_each_parallel_runs_values_at_once_up_to_concurrent(flows: Flows) -> None:
    done = flows.run(
        """
        tasks:
          - id: each
            type: io.kestra.core.tasks.flows.EachParallel
            value: '["a", "b", "c", "d"]'
            concurrent: 2
            tasks:
              - id: work
                type: scripts.shell.Commands
                commands: ["sleep 0.25"]
        """
    )
    assert done.state == "SUCCESS", done.summary()
    assert max_overlap(runnable(done.runs, "work")) == 2


# -- AllowFailure -------------------------------------------------------------------------


def test_allow_failure_turns_a_failure_inside_into_warning(flows: Flows) -> None:
    done = flows.run(
        """
        tasks:
          - id: optional
            type: core.flow.AllowFailure
            tasks:
              - id: flaky
                type: scripts.shell.Commands
                commands: ["exit 3"]
              - id: skipped_after_failure
                type: core.log.Log
                message: never
            errors:
              - id: note
                type: core.log.Log
                message: "optional part failed"
          - id: next
            type: core.log.Log
            message: goes on
        """
    )
    assert done.state == "WARNING", done.summary()
    assert done.states() == {
        "optional": "WARNING",
        "flaky": "FAILED",
        "note": "SUCCESS",
        "next": "SUCCESS",
    }
    assert done.messages("next") == ["goes on"]
    assert done.run("flaky")["error"] == "command exited with code 3"


# -- WorkingDirectory ---------------------------------------------------------------------


def test_working_directory_children_share_one_directory(flows: Flows) -> None:
    done = flows.run(
        """
        tasks:
          - id: dir
            type: core.flow.WorkingDirectory
            inputFiles:
              greeting.txt: "hello from {{ flow.id }}"
            outputFiles: ["result.txt"]
            tasks:
              - id: write
                type: scripts.shell.Commands
                commands:
                  - cat greeting.txt > result.txt
                  - echo " and from write" >> result.txt
              - id: read
                type: scripts.python.Script
                script: |
                  import json, os
                  text = open("result.txt").read()
                  print("::" + json.dumps({"outputs": {"text": text, "dir": os.getcwd()}}) + "::")
          - id: elsewhere
            type: scripts.shell.Commands
            commands: ["test ! -e result.txt", "pwd"]
        """
    )
    assert done.state == "SUCCESS", done.summary()
    read = done.run("read")["outputs"]["vars"]
    assert read["text"].startswith("hello from flow") and "and from write" in read["text"]
    uri = done.run("dir")["outputs"]["outputFiles"]["result.txt"]
    assert flows.engine.storage.get(uri).decode() == read["text"]
    assert done.messages("elsewhere") != [read["dir"]]


# -- Subflow ------------------------------------------------------------------------------

CHILD = """
    id: child
    namespace: tests.sub
    inputs:
      - id: name
        type: STRING
        defaults: world
      - id: fail
        type: BOOLEAN
        defaults: false
      - id: pause
        type: STRING
        defaults: PT0S
    tasks:
      - id: wait
        type: core.flow.Sleep
        duration: "{{ inputs.pause }}"
      - id: greet
        type: core.debug.Return
        format: "hello {{ inputs.name }}"
      - id: maybe_fail
        type: core.execution.Fail
        condition: "{{ inputs.fail }}"
        errorMessage: child failed on purpose
    outputs:
      - id: greeting
        type: STRING
        value: "{{ outputs.greet.value }}"
    """


def parent_flow(inputs: dict[str, Any], **options: Any) -> str:
    """A flow calling `child` with `inputs` and Subflow `options`, then logging its greeting."""
    properties = {"inputs": inputs, **options}
    lines = "".join(f"\n            {k}: {json.dumps(v)}" for k, v in properties.items())
    return f"""
        tasks:
          - id: call
            type: core.flow.Subflow
            namespace: tests.sub
            flowId: child{lines}
          - id: after
            type: core.log.Log
            message: "child said {{{{ outputs.call.outputs.greeting ?? 'nothing' }}}}"
        """


@pytest.mark.postgres
def test_subflow_outputs_come_back_to_the_parent(flows: Flows) -> None:
    flows.deploy(CHILD)
    done = flows.run(parent_flow({"name": "parent"}))
    assert done.state == "SUCCESS", done.summary()
    call = done.run("call")["outputs"]
    assert call["state"] == "SUCCESS"
    assert call["outputs"] == {"greeting": "hello parent"}
    assert done.messages("after") == ["child said hello parent"]
    child = flows.engine.execution(call["executionId"])
    assert child is not None
    assert child["parent_execution_id"] == done.execution["id"]
    assert child["outputs"] == {"greeting": "hello parent"}


def test_subflow_without_wait_goes_on_while_the_child_runs(flows: Flows) -> None:
    flows.deploy(CHILD)
    done = flows.run(parent_flow({"pause": "PT1S"}, wait=False))
    assert done.state == "SUCCESS", done.summary()
    child_id = done.run("call")["outputs"]["executionId"]
    assert done.messages("after") == ["child said nothing"]
    assert flows.state_of(child_id) in ("CREATED", "RUNNING")
    assert flows.finish(child_id).state == "SUCCESS"


@pytest.mark.postgres
def test_a_failed_child_fails_the_subflow_task_and_the_parent(flows: Flows) -> None:
    flows.deploy(CHILD)
    done = flows.run(parent_flow({"fail": True}))
    assert done.state == "FAILED"
    call = done.run("call")
    assert call["state"] == "FAILED"
    assert call["outputs"]["state"] == "FAILED"
    assert f"subflow execution {call['outputs']['executionId']} ended FAILED" in call["error"]
    assert "after" not in done.states()


def test_transmit_failed_false_keeps_the_parent_going(flows: Flows) -> None:
    flows.deploy(CHILD)
    done = flows.run(parent_flow({"fail": True}, transmitFailed=False))
    assert done.state == "SUCCESS", done.summary()
    assert done.run("call")["outputs"]["state"] == "FAILED"
    assert done.messages("after") == ["child said nothing"]


def test_a_subflow_that_is_not_deployed_fails_the_task_with_its_name(flows: Flows) -> None:
    done = flows.run(
        """
        tasks:
          - id: call
            type: core.flow.Subflow
            namespace: tests.nowhere
            flowId: missing
        """
    )
    assert done.state == "FAILED"
    assert "flow tests.nowhere.missing is not deployed" in (done.run("call")["error"] or "")


# -- Pause, Sleep -------------------------------------------------------------------------


def test_pause_with_a_delay_resumes_by_itself(flows: Flows) -> None:
    done = flows.run(
        """
        tasks:
          - id: before
            type: core.log.Log
            message: before
          - id: hold
            type: core.flow.Pause
            delay: PT0.3S
          - id: after
            type: core.log.Log
            message: after
        """
    )
    assert done.state == "SUCCESS", done.summary()
    assert done.run("hold")["end_date"] - done.run("hold")["start_date"] >= 0.3
    assert_after(done.run("hold"), done.run("after"))


def test_pause_with_a_timeout_fails_when_nobody_resumes(flows: Flows) -> None:
    done = flows.run(
        """
        tasks:
          - id: approve
            type: core.flow.Pause
            timeout: PT0.3S
          - id: after
            type: core.log.Log
            message: after
        """
    )
    assert done.state == "FAILED"
    assert done.run("approve")["error"] == "not resumed within PT0.3S"
    assert "after" not in done.states()


@pytest.mark.postgres
def test_a_paused_execution_goes_on_when_resumed(flows: Flows) -> None:
    execution_id = flows.start(
        """
        tasks:
          - id: approve
            type: core.flow.Pause
            timeout: PT1M
          - id: after
            type: core.log.Log
            message: approved
        """
    )
    wait_until(lambda: flows.state_of(execution_id) == "PAUSED", what="the execution to pause")
    run = flows.task_run(execution_id, "approve")
    assert run is not None and run["state"] == "PAUSED"
    assert flows.engine.executor.resume(execution_id) is True
    done = flows.finish(execution_id)
    assert done.state == "SUCCESS", done.summary()
    assert done.messages("after") == ["approved"]
    assert flows.engine.executor.resume(execution_id) is False  # nothing paused any more


def test_sleep_waits_its_duration(flows: Flows) -> None:
    done = flows.run(
        """
        tasks:
          - id: nap
            type: core.flow.Sleep
            duration: PT0.3S
          - id: after
            type: core.log.Log
            message: awake
        """
    )
    assert done.state == "SUCCESS"
    nap = done.run("nap")
    assert nap["end_date"] - nap["start_date"] >= 0.3
    assert_after(nap, done.run("after"))


# -- disabled, runIf ----------------------------------------------------------------------


def test_disabled_tasks_are_skipped_entirely(flows: Flows) -> None:
    done = flows.run(
        """
        tasks:
          - id: off
            type: core.log.Log
            message: never
            disabled: true
          - id: off_group
            type: core.flow.Sequential
            disabled: true
            tasks:
              - id: inside
                type: core.log.Log
                message: never either
          - id: on
            type: core.log.Log
            message: runs
        """
    )
    assert done.state == "SUCCESS"
    assert done.states() == {"on": "SUCCESS"}


def test_run_if_false_skips_the_task_and_the_flow_goes_on(flows: Flows) -> None:
    done = flows.run(
        """
        inputs:
          - id: enabled
            type: BOOLEAN
            defaults: false
        tasks:
          - id: optional
            type: scripts.shell.Commands
            runIf: "{{ inputs.enabled }}"
            commands: ["echo never"]
          - id: group
            type: core.flow.Sequential
            runIf: "false"
            tasks:
              - id: inside
                type: core.log.Log
                message: never
          - id: always
            type: core.log.Log
            message: "optional was {{ outputs.optional.exitCode ?? 'skipped' }}"
        """
    )
    assert done.state == "SUCCESS", done.summary()
    assert done.states() == {"optional": "SKIPPED", "group": "SKIPPED", "always": "SUCCESS"}
    assert done.messages() == ["optional was skipped"]
