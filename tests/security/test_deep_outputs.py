"""A script's outputs nested absurdly deep fail its task at once, with a message.

Issue 11: a script emitting outputs 900 levels deep made the worker hang 30 s, then the
task failed as "lease expired". Outputs are stored as JSON, rendered into expressions
and shown on the page: past `MAX_OUTPUT_DEPTH` levels they are refused.
"""

from __future__ import annotations

from conftest import Flows

from headwater.daemon.engine.protocol import MAX_OUTPUT_DEPTH


def deep_outputs_flow(levels: int) -> str:
    value = "[" * levels + "]" * levels
    return f"""
        tasks:
          - id: deep
            type: scripts.shell.Commands
            commands:
              - >-
                echo '::{{"outputs": {{"v": {value}}}}}::'
              - echo still here
          - id: after
            type: core.log.Log
            message: next
        """


def test_outputs_nested_too_deep_fail_the_task_at_once(flows: Flows) -> None:
    finished = flows.run(deep_outputs_flow(900), timeout=10)

    assert finished.state == "FAILED", finished.summary()
    run = finished.run("deep")
    assert run["state"] == "FAILED"
    assert run["error"] == (
        f"outputs nested too deep: more than {MAX_OUTPUT_DEPTH} levels (at vars.v)"
    )
    assert len(run["attempts"]) == 1
    assert finished.runs_of("after") == []


def test_outputs_as_deep_as_allowed_are_kept(flows: Flows) -> None:
    finished = flows.run(deep_outputs_flow(MAX_OUTPUT_DEPTH))

    assert finished.state == "SUCCESS", finished.summary()
    value = finished.run("deep")["outputs"]["vars"]["v"]
    depth = 0
    while isinstance(value, list):
        value = value[0] if value else None
        depth += 1
    assert depth == MAX_OUTPUT_DEPTH
