"""Names that expressions read are checked against the flow: inputs, outputs, vars, trigger.

One flow per case. Errors where the name certainly does not exist when the expression is
rendered; warnings where it may come from elsewhere; nothing where it is there.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from headwater.daemon.flow.contextnames import TRIGGER_VARIABLES
from headwater.daemon.flow.registry import REGISTRY
from headwater.daemon.flow.validate import FlowFile, validate_text

ROOT = Path(__file__).resolve().parents[2]


def check(text: str) -> FlowFile:
    return validate_text(textwrap.dedent(text).lstrip(), "f.yaml")


def errors(text: str) -> list[str]:
    return [str(d) for d in check(text).diagnostics]


def warnings(text: str) -> list[str]:
    return [str(d) for d in check(text).warnings]


def test_a_typo_in_an_input_is_an_error_with_a_suggestion() -> None:
    found = check(
        """
        id: f
        namespace: n
        inputs:
          - {id: name, type: STRING}
        tasks:
          - id: hello
            type: core.log.Log
            message: "Hello {{ inputs.nme }}!"
        """
    )
    assert [str(d) for d in found.diagnostics] == [
        "f.yaml:8:24: error: tasks[0].message: inputs.nme: the flow has no input 'nme' "
        "(did you mean 'name'?)"
    ]
    assert found.diagnostics[0].field == "tasks[0].message"
    assert found.warnings == []


def test_an_input_read_with_brackets_is_checked_too() -> None:
    assert errors(
        """
        id: f
        namespace: n
        inputs: [{id: name, type: STRING}]
        tasks:
          - {id: hello, type: core.log.Log, message: "{{ inputs['nmae'] }}"}
        """
    ) == [
        "f.yaml:5:50: error: tasks[0].message: inputs.nmae: the flow has no input 'nmae' "
        "(did you mean 'name'?)"
    ]


def test_an_input_of_a_flow_without_inputs_is_an_error() -> None:
    assert errors(
        """
        id: f
        namespace: n
        tasks:
          - {id: hello, type: core.log.Log, message: "{{ inputs.name }}"}
        """
    ) == [
        "f.yaml:4:50: error: tasks[0].message: inputs.name: the flow declares no inputs, "
        "so there is no input 'name'"
    ]


def test_a_typo_in_a_task_id_under_outputs_is_an_error_at_any_depth() -> None:
    assert errors(
        """
        id: f
        namespace: n
        tasks:
          - id: each
            type: core.flow.ForEach
            values: [1, 2]
            tasks:
              - {id: extract, type: core.debug.Return, format: "{{ taskrun.value }}"}
        finally:
          - id: report
            type: core.log.Log
            message: "{{ outputs.extract[1].value }} {{ outputs.extrat[2].value }}"
        """
    ) == [
        "f.yaml:12:49: error: finally[0].message: outputs.extrat: the flow has no task "
        "'extrat' (did you mean 'extract'?)"
    ]


def test_a_typo_in_a_variable_is_an_error() -> None:
    assert errors(
        """
        id: f
        namespace: n
        variables:
          bucket: raw
        tasks:
          - {id: t, type: core.log.Log, message: "{{ vars.bucekt }}"}
        """
    ) == [
        "f.yaml:6:46: error: tasks[0].message: vars.bucekt: the flow has no variable "
        "'bucekt' (did you mean 'bucket'?)"
    ]


def test_a_trigger_variable_no_trigger_gives_is_an_error() -> None:
    assert errors(
        """
        id: f
        namespace: n
        tasks:
          - {id: t, type: core.log.Log, message: "{{ trigger.dat }}"}
        triggers:
          - {id: daily, type: core.trigger.Schedule, cron: "@daily"}
        """
    ) == [
        "f.yaml:4:46: error: tasks[0].message: trigger.dat: no trigger gives 'dat' "
        "(did you mean 'date'?)"
    ]


def test_correct_references_pass() -> None:
    found = check(
        """
        id: f
        namespace: n
        inputs:
          - {id: name, type: STRING}
        variables: {greeting: hello}
        tasks:
          - id: first
            type: core.debug.Return
            format: "{{ vars.greeting }} {{ inputs.name }} {{ trigger.date }}"
          - id: call
            type: core.flow.Subflow
            namespace: n
            flowId: other
            inputs: {who: "{{ outputs.first.value }}"}
        outputs:
          - {id: child, type: STRING, value: "{{ outputs.call.outputs.greeting }}"}
        triggers:
          - id: daily
            type: core.trigger.Schedule
            cron: "@daily"
            inputs: {name: "{{ trigger.date }}"}
        """
    )
    assert found.diagnostics == []
    assert found.warnings == []


def test_names_a_template_binds_itself_are_not_checked() -> None:
    found = check(
        """
        id: f
        namespace: n
        tasks:
          - id: t
            type: core.log.Log
            message: "{% for inputs in [{'a': 1}] %}{{ inputs.a }}{% endfor %}"
          - {id: u, type: core.log.Log, message: "{{ outputs[taskrun.value] }}"}
        """
    )
    assert found.diagnostics == []
    assert found.warnings == []


def test_a_trigger_variable_the_flows_triggers_do_not_give_is_a_warning() -> None:
    found = check(
        """
        id: f
        namespace: n
        tasks:
          - {id: t, type: core.log.Log, message: "{{ trigger.body }}"}
        triggers:
          - {id: daily, type: core.trigger.Schedule, cron: "@daily"}
        """
    )
    assert found.diagnostics == []
    assert found.valid
    assert [str(d) for d in found.warnings] == [
        "f.yaml:4:46: warning: tasks[0].message: trigger.body: only core.trigger.Webhook "
        "gives 'body', and the flow's triggers are core.trigger.Schedule"
    ]


def test_a_guarded_reference_is_a_warning() -> None:
    text = """
        id: f
        namespace: n
        inputs: [{id: name, type: STRING}]
        tasks:
          - {id: t, type: core.log.Log, message: "{{ inputs.nmae | default('x') }}"}
          - {id: u, type: core.log.Log, message: "{{ inputs.other ?? 'x' }}"}
        """
    assert errors(text) == []
    assert [w.split(": warning: ")[1] for w in warnings(text)] == [
        "tasks[0].message: inputs.nmae: the flow has no input 'nmae' (did you mean 'name'?)",
        "tasks[1].message: inputs.other: the flow has no input 'other'",
    ]


def test_plugin_defaults_and_optional_flow_outputs_only_warn() -> None:
    text = """
        id: f
        namespace: n
        tasks:
          - {id: t, type: core.log.Log}
        pluginDefaults:
          - type: core.log.Log
            values: {message: "{{ vars.who }}"}
        outputs:
          - {id: maybe, type: STRING, value: "{{ outputs.skipped.value }}", required: false}
        """
    assert errors(text) == []
    assert len(warnings(text)) == 2


def test_expressions_in_triggers_are_checked_for_trigger_only() -> None:
    text = """
        id: f
        namespace: n
        tasks:
          - {id: t, type: core.log.Log, message: hi}
        triggers:
          - id: hook
            type: core.trigger.Webhook
            key: "{{ flow.id }}"
            inputs: {a: "{{ trigger.bdy }}", b: "{{ inputs.x }} {{ outputs.y }}"}
        """
    assert errors(text) == [
        "f.yaml:9:21: error: triggers[0].inputs.a: trigger.bdy: no trigger gives 'bdy' "
        "(did you mean 'body'?)"
    ]
    assert warnings(text) == []


def test_every_trigger_type_says_what_it_gives() -> None:
    assert sorted(TRIGGER_VARIABLES) == sorted(e.short for e in REGISTRY.entries("trigger"))


@pytest.mark.parametrize("folder", ["tests/corpus/valid", "flows-repo-template"])
def test_the_valid_flows_have_no_doubtful_name(folder: str) -> None:
    files = sorted((ROOT / folder).rglob("*.yaml"))
    assert files
    for path in files:
        if "_files" in path.parts or path.name.startswith("."):
            continue
        found = validate_text(path.read_text(encoding="utf-8"), str(path))
        assert found.warnings == [], path
