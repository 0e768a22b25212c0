"""Script tasks running real shell, Python and Node processes through the ProcessRunner."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from fake_task_context import FakeContext
from nodejs import require_node

from headwater.daemon.engine.states import State
from headwater.daemon.engine.taskapi import TaskResult
from headwater.runners.process import ProcessRunner

pytestmark = pytest.mark.integration

HANG = 20.0  # seconds: a stop this long waited for the `sleep 30` it should have ended


def run(tmp_path: Path, **raw: Any) -> tuple[TaskResult, FakeContext]:
    ctx = FakeContext({"id": "t", **raw}, tmp_path, runner=ProcessRunner(kill_grace=1.0))
    return ctx.run(), ctx


def test_shell_commands_log_lines_and_set_outputs_and_metrics(tmp_path: Path) -> None:
    result, ctx = run(
        tmp_path,
        type="io.kestra.plugin.scripts.shell.Commands",
        commands=[
            "echo hello {{ inputs.name }}",
            "echo oops >&2",
            """echo '::{"outputs": {"rows": 42, "name": "a"}}::'""",
            """echo '::{"metrics": [{"name": "rows", "type": "counter", "value": 42}]}::'""",
            """echo '::{"outputs": {"rows": }}::'""",
        ],
    )
    assert result.state == State.SUCCESS, result.error
    assert result.outputs == {
        "exitCode": 0,
        "vars": {"rows": 42, "name": "a"},
        "outputFiles": {},
    }
    assert result.metrics == [{"name": "rows", "type": "counter", "value": 42, "tags": {}}]
    # stdout and stderr are two pipes: their lines interleave in no fixed order
    assert ctx.lines("INFO") == ["hello World"]
    warnings = ctx.lines("WARN")
    assert "oops" in warnings
    assert any("not valid JSON (Expecting value at column 24)" in w for w in warnings)
    assert len(ctx.logs) == 3


def test_python_script_outputs_and_output_files(tmp_path: Path) -> None:
    script = """
import json, os, pathlib
rows = int(open("data/in.txt").read())
pathlib.Path("out").mkdir()
pathlib.Path("out/report.csv").write_text(f"rows,{rows}\\n")
print("::" + json.dumps({"outputs": {"rows": rows, "cwd": os.environ["WORKING_DIR"]}}) + "::")
"""
    result, ctx = run(
        tmp_path,
        type="scripts.python.Script",
        script=script,
        inputFiles={"data/in.txt": "{{ outputs.extract.vars.rows }}"},
        outputFiles=["out/*.csv", "missing/*"],
    )
    assert result.state == State.SUCCESS, (result.error, ctx.logs)
    assert result.outputs["vars"] == {"rows": 12, "cwd": str(ctx.workdir)}
    uri = result.outputs["outputFiles"]["out/report.csv"]
    assert ctx.storage.get(uri) == b"rows,12\n"
    assert ("WARN", "outputFiles: no file matches 'missing/*'") in ctx.logs


def test_python_commands_find_python_without_a_venv(tmp_path: Path) -> None:
    result, ctx = run(
        tmp_path,
        type="scripts.python.Commands",
        commands=["python -c 'import sys; print(sys.prefix)'"],
    )
    assert result.state == State.SUCCESS, (result.error, ctx.logs)
    assert ctx.lines("INFO") == [sys.prefix]


def test_inputs_reach_scripts_as_env_and_are_never_run(tmp_path: Path) -> None:
    result, ctx = run(
        tmp_path,
        type="scripts.shell.Commands",
        env={"NASTY": "{{ inputs.nasty }}", "N": "{{ inputs.n }}"},
        commands=['echo "$NASTY"', 'echo "n=$N"'],
    )
    assert result.state == State.SUCCESS, result.error
    assert ctx.lines("INFO") == ["$(touch pwned); echo 'x' \"y\" `id`", "n=7"]
    assert not (ctx.workdir / "pwned").exists()


def test_headwater_settings_do_not_reach_the_script(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEADWATER_TOKEN", "secret-token")
    result, ctx = run(
        tmp_path,
        type="scripts.shell.Commands",
        commands=['echo "token=${HEADWATER_TOKEN:-none}"'],
    )
    assert result.state == State.SUCCESS
    assert ctx.lines("INFO") == ["token=none"]


def test_before_commands_share_the_shell_of_the_commands(tmp_path: Path) -> None:
    result, ctx = run(
        tmp_path,
        type="scripts.shell.Script",
        beforeCommands=["export GREETING=hi"],
        script='echo "$GREETING from a script"',
    )
    assert result.state == State.SUCCESS, result.error
    assert ctx.lines("INFO") == ["hi from a script"]


def test_the_first_failing_command_fails_the_task(tmp_path: Path) -> None:
    result, ctx = run(
        tmp_path,
        type="scripts.shell.Commands",
        commands=["echo before", "echo broken >&2; exit 3", "echo after"],
    )
    assert result.state == State.FAILED
    assert result.error == "command exited with code 3; last line on stderr: broken"
    assert result.outputs["exitCode"] == 3
    assert ctx.lines("INFO") == ["before"]


def test_a_python_exception_fails_with_its_last_line(tmp_path: Path) -> None:
    result, _ = run(tmp_path, type="scripts.python.Script", script="raise ValueError('bad row')")
    assert result.state == State.FAILED
    assert result.error == "command exited with code 1; last line on stderr: ValueError: bad row"


def test_timeout_stops_the_command(tmp_path: Path) -> None:
    started = time.monotonic()
    result, _ = run(
        tmp_path, type="scripts.shell.Commands", commands=["sleep 30"], timeout="PT0.3S"
    )
    assert result.state == State.FAILED
    assert result.error == "timed out after PT0.3S"
    assert time.monotonic() - started < HANG


def test_cancel_kills_the_command(tmp_path: Path) -> None:
    ctx = FakeContext(
        {"id": "t", "type": "scripts.shell.Commands", "commands": ["echo started", "sleep 30"]},
        tmp_path,
        runner=ProcessRunner(kill_grace=1.0),
    )
    timer = threading.Timer(0.3, ctx.cancel.set)
    timer.start()
    started = time.monotonic()
    try:
        result = ctx.run()
    finally:
        timer.cancel()
    assert (result.state, result.error) == (State.FAILED, "killed")
    assert time.monotonic() - started < HANG


def test_an_interpreter_that_cannot_start(tmp_path: Path) -> None:
    result, _ = run(
        tmp_path,
        type="scripts.shell.Commands",
        interpreter=["/nonexistent/sh", "-c"],
        commands=["echo hi"],
    )
    assert result.state == State.FAILED
    assert result.error is not None
    assert "cannot start '/nonexistent/sh'" in result.error


def test_warning_on_stderr(tmp_path: Path) -> None:
    result, _ = run(
        tmp_path,
        type="scripts.shell.Commands",
        commands=["echo careful >&2"],
        warningOnStdErr=True,
    )
    assert result.state == State.WARNING


def test_protocol_logs_from_python(tmp_path: Path) -> None:
    line = json.dumps({"logs": [{"level": "ERROR", "message": "from python"}]})
    result, ctx = run(
        tmp_path, type="scripts.python.Script", script=f"print('::' + {line!r} + '::')"
    )
    assert result.state == State.SUCCESS, result.error
    assert ctx.logs == [("ERROR", "from python")]


def test_namespace_files_can_be_run(tmp_path: Path) -> None:
    ctx = FakeContext(
        {
            "id": "t",
            "type": "scripts.python.Commands",
            "namespaceFiles": {"enabled": True},
            "commands": ["python3 tools/clean.py"],
        },
        tmp_path,
        runner=ProcessRunner(),
        namespace_files={"tools/clean.py": b"print('cleaned')"},
    )
    result = ctx.run()
    assert result.state == State.SUCCESS, (result.error, ctx.logs)
    assert ctx.lines("INFO") == ["cleaned"]


def test_node_script_and_commands(tmp_path: Path) -> None:
    require_node()
    script, ctx = run(
        tmp_path,
        type="scripts.node.Script",
        script="console.log('::' + JSON.stringify({outputs: {n: {{ inputs.n }}}}) + '::')",
    )
    assert script.state == State.SUCCESS, (script.error, ctx.logs)
    assert script.outputs["vars"] == {"n": 7}
    commands, ctx2 = run(
        tmp_path / "b", type="scripts.node.Commands", commands=["node -e 'console.log(6*7)'"]
    )
    assert commands.state == State.SUCCESS, commands.error
    assert ctx2.lines("INFO") == ["42"]


def test_working_dir_variable_is_the_directory(tmp_path: Path) -> None:
    result, ctx = run(
        tmp_path, type="scripts.shell.Commands", commands=['pwd -P; echo "$WORKING_DIR"']
    )
    assert result.state == State.SUCCESS
    physical, variable = ctx.lines("INFO")
    assert os.path.realpath(variable) == physical
