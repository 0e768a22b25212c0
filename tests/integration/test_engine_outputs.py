"""Outputs and context: flow outputs, variables, labels, outputs and metrics printed by
scripts, output files, `envs`, and secrets masked wherever they would be printed."""

from __future__ import annotations

import base64

from conftest import EngineFactory, Flows
from waiting import wait_until

from headwater.daemon.engine.secrets import MASK


def test_flow_outputs_are_typed_and_kept_on_the_execution(flows: Flows) -> None:
    done = flows.run(
        """
        tasks:
          - id: facts
            type: core.output.OutputValues
            values:
              rows: 42
              tables: ["a", "b"]
        outputs:
          - {id: rows, type: INT, value: "{{ outputs.facts.values.rows }}"}
          - {id: tables, type: JSON, value: "{{ outputs.facts.values.tables | json }}"}
          - {id: summary, value: "{{ outputs.facts.values.rows }} rows"}
          - {id: when, type: DATETIME, value: "{{ now() }}"}
          - {id: optional, type: STRING, value: "{{ outputs.nothing.value }}", required: false}
        """
    )
    assert done.state == "SUCCESS", done.summary()
    assert {k: v for k, v in done.outputs.items() if k != "when"} == {
        "rows": 42,
        "tables": ["a", "b"],
        "summary": "42 rows",
    }
    assert done.outputs["when"].endswith("Z")


def test_a_flow_output_of_the_wrong_type_fails_the_execution(flows: Flows) -> None:
    done = flows.run(
        """
        tasks:
          - {id: word, type: core.debug.Return, format: many}
        outputs:
          - {id: rows, type: INT, value: "{{ outputs.word.value }}"}
        """
    )
    assert done.state == "FAILED"
    assert (
        done.error == "flow outputs: output 'rows': not a valid INT: must be an integer, got 'many'"
    )


def test_variables_and_the_execution_context_are_rendered(flows: Flows) -> None:
    done = flows.run(
        """
        id: context_flow
        namespace: tests.ctx
        variables:
          bucket: raw-data
          nested: {path: "in/{{ flow.id }}"}
        tasks:
          - id: show
            type: core.log.Log
            message:
              - "{{ vars.bucket }} {{ render(vars.nested.path) }}"
              - "{{ flow.namespace }}.{{ flow.id }} r{{ flow.revision }} {{ task.id }}"
              - "{{ execution.id == execution.originalId }} {{ taskrun.attemptsCount }}"
        """
    )
    assert done.state == "SUCCESS", done.summary()
    assert done.messages("show") == [
        "raw-data in/context_flow",
        "tests.ctx.context_flow r1 show",
        "true 1",
    ]


def test_labels_from_the_flow_and_the_labels_task_are_seen_later(flows: Flows) -> None:
    done = flows.run(
        """
        labels:
          team: data
        tasks:
          - id: before
            type: core.log.Log
            message: "{{ labels.team }} {{ labels.stage ?? 'none' }}"
          - id: tag
            type: core.execution.Labels
            labels:
              stage: "{{ 'prod' | upper }}"
              team: platform
          - id: after
            type: core.log.Log
            message: "{{ labels.team }} {{ labels.stage }}"
        """
    )
    assert done.state == "SUCCESS", done.summary()
    assert done.messages("before") == ["data none"]
    assert done.messages("after") == ["platform PROD"]
    assert done.execution["labels"] == [
        {"key": "team", "value": "platform"},
        {"key": "stage", "value": "PROD"},
    ]


def test_script_outputs_and_metrics_are_stored_on_the_task_run(flows: Flows) -> None:
    done = flows.run(
        """
        tasks:
          - id: load
            type: scripts.python.Script
            script: |
              import json
              print("loading")
              print("::" + json.dumps({"outputs": {"rows": 42, "table": "orders"}}) + "::")
              print('::{"metrics": [{"name": "rows", "type": "counter", "value": 42}]}::')
          - id: use
            type: core.log.Log
            message: "{{ outputs.load.vars.table }} has {{ outputs.load.vars.rows }} rows"
        """
    )
    assert done.state == "SUCCESS", done.summary()
    load = done.run("load")
    assert load["outputs"] == {
        "exitCode": 0,
        "vars": {"rows": 42, "table": "orders"},
        "outputFiles": {},
    }
    assert load["metrics"] == [{"name": "rows", "type": "counter", "value": 42, "tags": {}}]
    assert done.messages("load") == ["loading"]  # protocol lines are not log lines
    assert done.messages("use") == ["orders has 42 rows"]


def test_output_files_are_kept_in_internal_storage(flows: Flows) -> None:
    done = flows.run(
        """
        tasks:
          - id: export
            type: scripts.shell.Commands
            outputFiles: ["out/*.csv", "summary.txt"]
            commands:
              - mkdir out
              - printf 'a,1\\n' > out/one.csv
              - printf 'b,2\\n' > out/two.csv
              - echo done > summary.txt
              - echo ignored > other.txt
          - id: reuse
            type: scripts.shell.Commands
            inputFiles:
              copy.csv: "{{ outputs.export.outputFiles['out/two.csv'] }}"
            commands: ["cat copy.csv"]
        """
    )
    assert done.state == "SUCCESS", done.summary()
    files = done.run("export")["outputs"]["outputFiles"]
    assert sorted(files) == ["out/one.csv", "out/two.csv", "summary.txt"]
    assert all(uri.startswith("kestra:///tests/") for uri in files.values())
    assert flows.engine.storage.get(files["out/one.csv"]) == b"a,1\n"
    assert done.messages("reuse") == ["b,2"]


def test_envs_come_from_env_variables(make_engine: EngineFactory) -> None:
    flows = Flows(make_engine(environ={"ENV_STAGE": "production", "OTHER": "x"}))
    done = flows.run(
        """
        tasks:
          - id: show
            type: core.log.Log
            message: "{{ envs.stage }} {{ envs.other ?? 'not an ENV_ variable' }}"
        """
    )
    assert done.messages("show") == ["production not an ENV_ variable"]


def test_secrets_are_masked_in_logs_and_outputs_also_base64_encoded(
    make_engine: EngineFactory,
) -> None:
    secret = "s3cr3t-t0ken-value"
    encoded = base64.b64encode(secret.encode()).decode()
    flows = Flows(make_engine(environ={"SECRET_API_TOKEN": encoded}))
    done = flows.run(
        """
        inputs:
          - {id: password, type: SECRET}
        tasks:
          - id: leak
            type: scripts.shell.Commands
            env:
              TOKEN: "{{ secret('API_TOKEN') }}"
              PASSWORD: "{{ inputs.password }}"
            commands:
              - echo "token is $TOKEN"
              - echo "encoded $(printf %s "$TOKEN" | base64)"
              - echo "password $PASSWORD" >&2
              - 'echo "::{\\"outputs\\": {\\"token\\": \\"$TOKEN\\"}}::"'
          - id: returned
            type: core.debug.Return
            format: "{{ secret('API_TOKEN') }}"
          - id: wrong
            type: core.log.Log
            message: "{{ secret('NOT_THERE') }}"
        """,
        {"password": "input-password-1"},
    )
    assert done.state == "FAILED"
    # stdout and stderr are two pipes: their lines interleave in no fixed order
    assert sorted(done.messages("leak")) == [
        f"encoded {MASK}",
        f"password {MASK}",
        f"token is {MASK}",
    ]
    assert done.run("leak")["outputs"]["vars"] == {"token": MASK}
    assert done.run("returned")["outputs"] == {"value": MASK}
    shown = {k: v for k, v in done.execution.items() if k != "inputs"}  # kept to run tasks
    stored = str(done.runs) + str(done.logs) + str(shown)
    assert secret not in stored and encoded not in stored and "input-password-1" not in stored
    wrong = done.run("wrong")["error"] or ""
    assert "secret 'NOT_THERE' is not set" in wrong


def test_a_secret_input_stays_masked_after_a_restart(make_engine: EngineFactory) -> None:
    first = Flows(make_engine())
    execution_id = first.start(
        """
        inputs:
          - {id: password, type: SECRET}
        tasks:
          - {id: approve, type: core.flow.Pause}
          - {id: show, type: core.log.Log, message: "password is {{ inputs.password }}"}
        """,
        {"password": "input-password-1"},
    )
    wait_until(lambda: first.state_of(execution_id) == "PAUSED", what="the pause")
    first.engine.stop(grace=5)
    second = Flows(make_engine())  # a new process knows nothing of the first one's masker
    assert second.engine.executor.resume(execution_id)
    done = second.finish(execution_id)
    assert done.messages("show") == [f"password is {MASK}"]
