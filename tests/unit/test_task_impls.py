"""Runnable task implementations through a fake TaskContext (scripts with a scripted runner).

Real processes are in tests/integration/test_script_tasks.py, real HTTP in
tests/integration/test_http_request.py.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest
from fake_task_context import FakeContext, ScriptedRunner

from headwater.daemon.engine import protocol
from headwater.daemon.engine.states import State
from headwater.daemon.engine.taskapi import IMPLEMENTATIONS, TaskFailed
from headwater.runners.base import RunResult

pytestmark = pytest.mark.unit


def ctx_for(tmp_path: Path, **raw: Any) -> FakeContext:
    runner = raw.pop("runner", None)
    namespace_files = raw.pop("namespace_files", None)
    task = {"id": "t", **raw}
    return FakeContext(task, tmp_path, runner=runner, namespace_files=namespace_files)


def test_every_runnable_type_has_an_implementation() -> None:
    expected = {
        "core.log.Log",
        "core.debug.Echo",
        "core.debug.Return",
        "core.output.OutputValues",
        "core.execution.Fail",
        "core.execution.Labels",
        "core.http.Request",
        *(
            f"scripts.{lang}.{kind}"
            for lang in ("shell", "python", "node")
            for kind in ("Commands", "Script")
        ),
    }
    assert expected <= set(IMPLEMENTATIONS)


# -- Log and Echo -------------------------------------------------------------------------


def test_log_renders_the_message_at_its_level(tmp_path: Path) -> None:
    ctx = ctx_for(tmp_path, type="core.log.Log", message="Hello {{ inputs.name }}", level="DEBUG")
    result = ctx.run()
    assert result.state == State.SUCCESS
    assert ctx.logs == [("DEBUG", "Hello World")]


def test_log_writes_each_item_of_a_list_as_its_own_line(tmp_path: Path) -> None:
    ctx = ctx_for(
        tmp_path, type="io.kestra.plugin.core.log.Log", message=["one", "{{ inputs.n + 1 }}"]
    )
    ctx.run()
    assert ctx.logs == [("INFO", "one"), ("INFO", "8")]


def test_log_reads_warning_as_warn_and_accepts_an_expression_level(tmp_path: Path) -> None:
    ctx = ctx_for(tmp_path, type="core.log.Log", message="careful", level="WARNING")
    ctx.run()
    ctx2 = ctx_for(tmp_path, type="core.log.Log", message="x", level="{{ 'error' }}")
    ctx2.run()
    assert ctx.logs == [("WARN", "careful")]
    assert ctx2.logs == [("ERROR", "x")]


def test_log_with_an_unknown_rendered_level_fails(tmp_path: Path) -> None:
    ctx = ctx_for(tmp_path, type="core.log.Log", message="x", level="{{ 'LOUD' }}")
    with pytest.raises(TaskFailed, match=r"level must be one of .* got 'LOUD'"):
        ctx.run()


def test_a_failing_expression_fails_the_task_and_logs_nothing(tmp_path: Path) -> None:
    ctx = ctx_for(tmp_path, type="core.log.Log", message=["fine", "{{ inputs.missing }}"])
    with pytest.raises(TaskFailed, match="missing"):
        ctx.run()
    assert ctx.logs == []


def test_echo_logs_format_or_message(tmp_path: Path) -> None:
    ctx = ctx_for(tmp_path, type="core.debug.Echo", format="{{ inputs.name }}", level="WARN")
    ctx.run()
    old = ctx_for(tmp_path, type="io.kestra.core.tasks.debugs.Echo", message=["a", "b"])
    old.run()
    assert ctx.logs == [("WARN", "World")]
    assert old.logs == [("INFO", "a"), ("INFO", "b")]


# -- Return and OutputValues --------------------------------------------------------------


def test_return_outputs_the_rendered_text(tmp_path: Path) -> None:
    ctx = ctx_for(tmp_path, type="core.debug.Return", format="{{ inputs.n * 6 }}")
    assert ctx.run().outputs == {"value": "42"}


def test_return_without_format_outputs_null(tmp_path: Path) -> None:
    assert ctx_for(tmp_path, type="core.debug.Return").run().outputs == {"value": None}


def test_output_values_keep_the_type_of_a_lone_expression(tmp_path: Path) -> None:
    ctx = ctx_for(
        tmp_path,
        type="core.output.OutputValues",
        values={
            "n": "{{ inputs.n }}",
            "text": "n={{ inputs.n }}",
            "rows": "{{ outputs.extract.vars.rows }}",
            "nested": {"list": ["{{ inputs.n > 3 }}", 1.5, None], "name": "{{ inputs.name }}"},
            "plain": 3,
        },
    )
    assert ctx.run().outputs == {
        "values": {
            "n": 7,
            "text": "n=7",
            "rows": 12,
            "nested": {"list": [True, 1.5, None], "name": "World"},
            "plain": 3,
        }
    }


# -- Fail -----------------------------------------------------------------------------------


def test_fail_without_condition_always_fails_with_the_rendered_message(tmp_path: Path) -> None:
    ctx = ctx_for(tmp_path, type="core.execution.Fail", errorMessage="bad {{ inputs.name }}")
    result = ctx.run()
    assert (result.state, result.error) == (State.FAILED, "bad World")


def test_fail_default_message(tmp_path: Path) -> None:
    result = ctx_for(tmp_path, type="core.execution.Fail").run()
    assert (result.state, result.error) == (State.FAILED, "Task failure")


@pytest.mark.parametrize(
    "condition",
    ["{{ true }}", "true", "{{ inputs.n > 3 }}", "{{ 'yes' }}", "{{ 1 }}", "{{ inputs.name }}"],
)
def test_fail_with_a_true_condition_fails(tmp_path: Path, condition: str) -> None:
    ctx = ctx_for(tmp_path, type="core.execution.Fail", condition=condition, errorMessage="stop")
    result = ctx.run()
    assert (result.state, result.error) == (State.FAILED, "stop")


@pytest.mark.parametrize(
    "condition",
    ["{{ false }}", "false", "{{ inputs.n < 3 }}", "{{ '' }}", "{{ 0 }}", "{{ null }}", "FALSE"],
)
def test_fail_with_a_false_condition_succeeds(tmp_path: Path, condition: str) -> None:
    ctx = ctx_for(tmp_path, type="core.execution.Fail", condition=condition)
    result = ctx.run()
    assert (result.state, result.error) == (State.SUCCESS, None)


# -- Labels -----------------------------------------------------------------------------------


def test_labels_from_a_map_are_rendered_to_text(tmp_path: Path) -> None:
    ctx = ctx_for(
        tmp_path,
        type="core.execution.Labels",
        labels={"who": "{{ inputs.name }}", "n": "{{ inputs.n }}", "ok": True},
    )
    assert ctx.run().labels == {"who": "World", "n": "7", "ok": "true"}


def test_labels_from_a_list_of_pairs(tmp_path: Path) -> None:
    ctx = ctx_for(
        tmp_path,
        type="core.execution.Labels",
        labels=[{"key": "team", "value": "data"}, {"key": "{{ 'k' }}", "value": "{{ inputs.n }}"}],
    )
    assert ctx.run().labels == {"team": "data", "k": "7"}


def test_labels_from_an_expression_giving_a_map_or_json(tmp_path: Path) -> None:
    mapped = ctx_for(tmp_path, type="core.execution.Labels", labels="{{ {'a': inputs.name} }}")
    as_json = ctx_for(tmp_path, type="core.execution.Labels", labels='{"b": "{{ inputs.n }}"}')
    pairs = ctx_for(
        tmp_path, type="core.execution.Labels", labels="{{ [{'key': 'c', 'value': 1}] }}"
    )
    assert mapped.run().labels == {"a": "World"}
    assert as_json.run().labels == {"b": "7"}
    assert pairs.run().labels == {"c": "1"}


def test_a_reserved_label_fails_the_task(tmp_path: Path) -> None:
    ctx = ctx_for(tmp_path, type="core.execution.Labels", labels={"system_correlationId": "x"})
    with pytest.raises(TaskFailed, match=r"'system_correlationId' cannot be set.*system_"):
        ctx.run()


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ("{{ 'not json' }}", "not JSON"),
        ("{{ 42 }}", "must be a map or a list"),
        ("{{ [1] }}", r"labels\[0\] must be a map with 'key' and 'value'"),
        ({"  ": "x"}, "key is empty"),
    ],
)
def test_labels_that_are_not_labels_fail(tmp_path: Path, labels: Any, message: str) -> None:
    ctx = ctx_for(tmp_path, type="core.execution.Labels", labels=labels)
    with pytest.raises(TaskFailed, match=message):
        ctx.run()


# -- the line protocol ------------------------------------------------------------------------


def test_protocol_reads_outputs_metrics_and_logs() -> None:
    line = (
        '  ::{"outputs": {"rows": 42, "name": "a"}, '
        '"metrics": [{"name": "rows", "type": "counter", "value": 42, "tags": {"t": "x", "n": 1}}],'
        ' "logs": [{"level": "warning", "message": "hm"}, {"message": "plain"}]}::  '
    )
    message = protocol.parse_line(line)
    assert message is not None
    assert message.outputs == {"rows": 42, "name": "a"}
    assert message.metrics == [
        {"name": "rows", "type": "counter", "value": 42, "tags": {"t": "x", "n": "1"}}
    ]
    assert message.logs == [("WARN", "hm"), ("INFO", "plain")]
    assert message.problems == []


@pytest.mark.parametrize(
    "line", ["hello", "::{}", "{}::", 'echo ::{"outputs": {}}::', ":: {}::", "::[1]::"]
)
def test_ordinary_lines_are_not_protocol_lines(line: str) -> None:
    assert protocol.parse_line(line) is None


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('::{"outputs": {"a": 1,}}::', "not valid JSON"),
        ('::{"outputs": {"a": NaN}}::', "NaN is not a JSON number"),
        ('::{"outputs": [1]}::', "'outputs' must be a JSON object, got a list"),
        ('::{"output": {}}::', "unknown key 'output'"),
        ('::{"metrics": [{"name": "m", "type": "gauge", "value": 1}]}::', "counter or timer"),
        ('::{"metrics": [{"name": "m", "type": "timer", "value": "1"}]}::', "must be a number"),
        ('::{"metrics": [{"type": "timer", "value": 1}]}::', "needs a 'name'"),
        ('::{"metrics": [3]}::', "metrics[0] must be a JSON object"),
        ('::{"logs": [{"level": "LOUD", "message": "x"}]}::', "'level' must be one of"),
        ('::{"logs": [{"level": "INFO"}]}::', "needs a 'message'"),
    ],
)
def test_unreadable_protocol_lines_say_why(line: str, problem: str) -> None:
    message = protocol.parse_line(line)
    assert message is not None
    assert any(problem in p for p in message.problems), message.problems


def test_a_bad_part_does_not_spoil_the_good_ones() -> None:
    line = (
        '::{"outputs": {"a": 1}, '
        '"metrics": [{"name": "x"}, {"name": "y", "type": "timer", "value": 0.5}]}::'
    )
    message = protocol.parse_line(line)
    assert message is not None
    assert message.outputs == {"a": 1}
    assert [m["name"] for m in message.metrics] == ["y"]
    assert len(message.problems) == 1


# -- script tasks: the command --------------------------------------------------------------


def script_ctx(tmp_path: Path, runner: ScriptedRunner | None = None, **raw: Any) -> FakeContext:
    raw.setdefault("type", "scripts.shell.Commands")
    if "commands" not in raw and raw["type"].endswith("Commands"):
        raw["commands"] = ["echo hi"]
    return ctx_for(tmp_path, runner=runner or ScriptedRunner(), **raw)


def spec_of(ctx: FakeContext) -> Any:
    assert isinstance(ctx.runner, ScriptedRunner)
    (spec,) = ctx.runner.specs
    return spec


def test_shell_commands_run_in_one_sh_with_set_e(tmp_path: Path) -> None:
    ctx = script_ctx(
        tmp_path,
        commands=["echo {{ inputs.name }}", "ls"],
        beforeCommands=["cd sub || true"],
        timeout="PT1M30S",
    )
    result = ctx.run()
    spec = spec_of(ctx)
    assert result.state == State.SUCCESS
    assert spec.command == ["/bin/sh", "-c", "set -e\ncd sub || true\necho World\nls"]
    assert spec.workdir == ctx.workdir
    assert spec.timeout == 90
    assert spec.env["WORKING_DIR"] == str(ctx.workdir)
    assert spec.labels == {
        "headwater.execution": "exec1",
        "headwater.taskrun": "run1",
        "headwater.attempt": str(ctx.attempt),
    }
    assert spec.image is None  # the runner's default image for the language
    assert spec.language == "shell"


def test_interpreter_replaces_sh_and_set_e_is_only_for_shells(tmp_path: Path) -> None:
    bash = script_ctx(tmp_path, interpreter=["/bin/bash", "-c"], commands=["echo a"])
    bash.run()
    other = script_ctx(tmp_path, interpreter=["/usr/bin/env", "awk"], commands=["BEGIN{}"])
    other.run()
    assert spec_of(bash).command == ["/bin/bash", "-c", "set -e\necho a"]
    assert spec_of(other).command == ["/usr/bin/env", "awk", "BEGIN{}"]


def test_shell_script_is_written_to_a_file_and_run_by_the_shell(tmp_path: Path) -> None:
    ctx = script_ctx(
        tmp_path, type="scripts.shell.Script", script="echo {{ inputs.name }}\nexit 0\n"
    )
    ctx.run()
    assert (ctx.workdir / "script.sh").read_text() == "echo World\nexit 0\n"
    assert spec_of(ctx).command == ["/bin/sh", "-c", "set -e\n/bin/sh script.sh"]


def test_python_script_runs_python3_with_headwaters_python_first_on_path(tmp_path: Path) -> None:
    ctx = script_ctx(
        tmp_path,
        type="scripts.python.Script",
        script="print({{ inputs.n }})",
        beforeCommands=["pip --version"],
        containerImage="{{ 'python:3.12' }}",
    )
    ctx.run()
    spec = spec_of(ctx)
    folder = os.path.dirname(sys.executable)
    lines = spec.command[2].split("\n")
    assert (ctx.workdir / "script.py").read_text() == "print(7)"
    assert lines[0] == "set -e"
    assert folder in lines[1]
    assert lines[1].startswith("if [ -d ")
    assert lines[2:] == ["pip --version", "python3 script.py"]
    assert spec.image == "python:3.12"


def test_node_tasks(tmp_path: Path) -> None:
    script = script_ctx(tmp_path, type="scripts.node.Script", script="console.log(1)")
    script.run()
    commands = script_ctx(tmp_path, type="scripts.node.Commands", commands=["node -v"])
    commands.run()
    assert (script.workdir / "script.js").read_text() == "console.log(1)"
    assert spec_of(script).command == ["/bin/sh", "-c", "set -e\nnode script.js"]
    assert spec_of(commands).command == ["/bin/sh", "-c", "set -e\nnode -v"]
    assert spec_of(commands).image is None
    assert spec_of(commands).language == "node"


def test_commands_from_an_expression_or_json(tmp_path: Path) -> None:
    listed = script_ctx(tmp_path, commands="{{ ['a', 'b'] }}")
    listed.run()
    as_json = script_ctx(tmp_path, commands="{{ inputs.commands }}")
    as_json.variables["inputs"] = {"commands": '["c", "d"]'}
    as_json.run()
    assert spec_of(listed).command[2] == "set -e\na\nb"
    assert spec_of(as_json).command[2] == "set -e\nc\nd"


def test_values_reach_the_script_through_env_never_the_command_line(tmp_path: Path) -> None:
    ctx = script_ctx(
        tmp_path,
        commands=['echo "$NASTY"'],
        env={"NASTY": "{{ inputs.nasty }}", "N": "{{ inputs.n }}"},
    )
    ctx.run()
    spec = spec_of(ctx)
    assert spec.env["NASTY"] == "$(touch pwned); echo 'x' \"y\" `id`"
    assert spec.env["N"] == "7"
    assert "pwned" not in spec.command[2]


def test_env_from_an_expression_and_bad_names(tmp_path: Path) -> None:
    ctx = script_ctx(tmp_path, env="{{ {'A': inputs.n} }}")
    ctx.run()
    assert spec_of(ctx).env["A"] == "7"
    bad = script_ctx(tmp_path, env={"A=B": "x"})
    with pytest.raises(TaskFailed, match="not a valid environment variable name"):
        bad.run()


def test_a_malformed_timeout_fails_before_running(tmp_path: Path) -> None:
    ctx = script_ctx(tmp_path, timeout="{{ 'soon' }}")
    with pytest.raises(TaskFailed, match=r"timeout must be an ISO-8601 duration.*'soon'"):
        ctx.run()
    assert isinstance(ctx.runner, ScriptedRunner)
    assert ctx.runner.specs == []


def test_docker_task_runner_gives_image_and_limits(tmp_path: Path) -> None:
    ctx = script_ctx(
        tmp_path,
        taskRunner={
            "type": "io.kestra.plugin.scripts.runner.docker.Docker",
            "image": "alpine:3",
            "cpu": {"cpus": 1.5},
            "memory": {"memory": "512MB"},
        },
    )
    ctx.run()
    spec = spec_of(ctx)
    assert spec.image == "alpine:3"
    assert spec.limits.cpus == 1.5
    assert spec.limits.memory_bytes == 512 * 1024**2


def test_bad_docker_memory_fails(tmp_path: Path) -> None:
    ctx = script_ctx(
        tmp_path,
        taskRunner={"type": "scripts.runner.docker.Docker", "memory": {"memory": "lots"}},
    )
    with pytest.raises(TaskFailed, match="like 512MB or 1GB, got 'lots'"):
        ctx.run()


# -- script tasks: what the command prints -------------------------------------------------


def test_lines_become_logs_and_protocol_lines_outputs_and_metrics(tmp_path: Path) -> None:
    runner = ScriptedRunner(
        lines=[
            ("stdout", "starting"),
            ("stdout", ""),
            ("stderr", "a warning"),
            ("stdout", '::{"outputs": {"rows": 3, "name": "a"}}::'),
            ("stdout", '::{"outputs": {"rows": 4}}::'),
            ("stderr", '::{"metrics": [{"name": "took", "type": "timer", "value": 1.5}]}::'),
            ("stdout", '::{"logs": [{"level": "ERROR", "message": "from the script"}]}::'),
            ("stdout", '::{"outputs": {"rows": }}::'),
        ]
    )
    ctx = script_ctx(tmp_path, runner)
    result = ctx.run()
    assert result.state == State.SUCCESS
    assert result.outputs == {"exitCode": 0, "vars": {"rows": 4, "name": "a"}, "outputFiles": {}}
    assert result.metrics == [{"name": "took", "type": "timer", "value": 1.5, "tags": {}}]
    assert ctx.logs[:3] == [
        ("INFO", "starting"),
        ("WARN", "a warning"),
        ("ERROR", "from the script"),
    ]
    level, message = ctx.logs[3]
    assert level == "WARN"
    assert "not valid JSON" in message
    assert len(ctx.logs) == 4


def test_warning_on_stderr(tmp_path: Path) -> None:
    runner = ScriptedRunner(lines=[("stderr", "hmm")])
    warned = script_ctx(tmp_path, runner, warningOnStdErr="{{ true }}").run()
    quiet_runner = ScriptedRunner(lines=[("stderr", '::{"outputs": {}}::'), ("stdout", "ok")])
    quiet = script_ctx(tmp_path, quiet_runner, warningOnStdErr=True).run()
    off = script_ctx(tmp_path, ScriptedRunner(lines=[("stderr", "hmm")])).run()
    assert warned.state == State.WARNING
    assert quiet.state == State.SUCCESS
    assert off.state == State.SUCCESS


@pytest.mark.parametrize(
    ("result", "lines", "error"),
    [
        (RunResult(exit_code=3, duration=1), [], "command exited with code 3"),
        (
            RunResult(exit_code=1, duration=1),
            [("stderr", "first"), ("stderr", "  ValueError: bad  "), ("stdout", "later")],
            "command exited with code 1; last line on stderr: ValueError: bad",
        ),
        (RunResult(exit_code=None, duration=1, timed_out=True), [], "timed out after PT2S"),
        (RunResult(exit_code=None, duration=1, killed=True), [], "killed"),
        (RunResult(exit_code=137, duration=1, oom_killed=True), [], "out of memory (killed)"),
        (
            RunResult(exit_code=None, duration=0, error="cannot start '/bin/nope': no such file"),
            [],
            "cannot start '/bin/nope': no such file",
        ),
        (RunResult(exit_code=None, duration=1), [], "command was ended by a signal"),
    ],
)
def test_failures_say_why(
    tmp_path: Path, result: RunResult, lines: list[tuple[str, str]], error: str
) -> None:
    runner = ScriptedRunner(lines=lines, result=result)
    outcome = script_ctx(tmp_path, runner, timeout="PT2S").run()
    assert (outcome.state, outcome.error) == (State.FAILED, error)
    assert outcome.outputs["exitCode"] == result.exit_code


def test_a_failed_run_keeps_its_vars_and_metrics(tmp_path: Path) -> None:
    runner = ScriptedRunner(
        lines=[
            (
                "stdout",
                '::{"outputs": {"done": 1}, '
                '"metrics": [{"name": "n", "type": "counter", "value": 2}]}::',
            )
        ],
        result=RunResult(exit_code=2, duration=1),
    )
    outcome = script_ctx(tmp_path, runner).run()
    assert outcome.state == State.FAILED
    assert outcome.outputs["vars"] == {"done": 1}
    assert outcome.metrics[0]["value"] == 2


# -- script tasks: files in and out ------------------------------------------------------------


def test_input_files_are_rendered_and_written(tmp_path: Path) -> None:
    ctx = script_ctx(
        tmp_path, inputFiles={"data/in.txt": "hello {{ inputs.name }}", "n.txt": "{{ inputs.n }}"}
    )
    ctx.run()
    assert (ctx.workdir / "data" / "in.txt").read_text() == "hello World"
    assert (ctx.workdir / "n.txt").read_text() == "7"


def test_an_input_file_can_come_from_internal_storage(tmp_path: Path) -> None:
    ctx = script_ctx(tmp_path, inputFiles={"in.csv": "{{ inputs.file }}"})
    ctx.variables["inputs"] = {"file": ctx.storage.put("company/team/etl/in.csv", b"a,b\n1,2\n")}
    ctx.run()
    assert (ctx.workdir / "in.csv").read_bytes() == b"a,b\n1,2\n"


def test_a_missing_storage_file_fails_clearly(tmp_path: Path) -> None:
    ctx = script_ctx(tmp_path, inputFiles={"in.csv": "kestra:///nowhere/x.csv"})
    with pytest.raises(TaskFailed, match=r"inputFiles: 'in.csv': cannot read kestra:///nowhere"):
        ctx.run()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("../escape.txt", "leaves the working directory"),
        ("a/../../escape.txt", "leaves the working directory"),
        ("/etc/passwd", "absolute path"),
        ("", "file name is empty"),
    ],
)
def test_input_files_must_stay_inside_the_directory(
    tmp_path: Path, name: str, message: str
) -> None:
    ctx = script_ctx(tmp_path, inputFiles={"ok.txt": "fine", name: "x"})
    with pytest.raises(TaskFailed, match=message):
        ctx.run()
    assert not (ctx.workdir / "ok.txt").exists()  # checked before anything is written
    assert not (tmp_path / "escape.txt").exists()


def test_input_files_do_not_follow_a_link_out(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    ctx = script_ctx(tmp_path, inputFiles={"link/x.txt": "x"})
    (ctx.workdir / "link").symlink_to(outside)
    with pytest.raises(TaskFailed, match="leads out of the working directory"):
        ctx.run()
    assert not (outside / "x.txt").exists()


def test_namespace_files_are_written_when_enabled(tmp_path: Path) -> None:
    files = {"clean.py": b"print(1)", "sql/a.sql": b"select 1", "notes.md": b"#"}
    enabled = script_ctx(
        tmp_path,
        namespace_files=files,
        namespaceFiles={"enabled": True, "include": ["*.py", "sql/*"], "exclude": ["sql/b*"]},
        inputFiles={"clean.py": "print(2)"},
    )
    enabled.run()
    assert (enabled.workdir / "clean.py").read_text() == "print(2)"  # inputFiles win
    assert (enabled.workdir / "sql" / "a.sql").read_text() == "select 1"
    assert not (enabled.workdir / "notes.md").exists()


def test_namespace_files_are_not_written_when_disabled(tmp_path: Path) -> None:
    ctx = script_ctx(
        tmp_path, namespace_files={"a.txt": b"x"}, namespaceFiles={"enabled": "{{ false }}"}
    )
    ctx.run()
    assert not (ctx.workdir / "a.txt").exists()


def test_the_script_file_does_not_replace_a_users_file_of_that_name(tmp_path: Path) -> None:
    ctx = script_ctx(
        tmp_path,
        type="scripts.python.Script",
        script="import script",
        inputFiles={"script.py": "X = 1"},
    )
    ctx.run()
    assert (ctx.workdir / "script.py").read_text() == "X = 1"
    assert (ctx.workdir / "script-t.py").read_text() == "import script"
    assert spec_of(ctx).command[2].endswith("python3 script-t.py")


def test_output_files_are_kept_in_internal_storage(tmp_path: Path) -> None:
    runner = ScriptedRunner(files={"out/a.csv": "a", "out/b.csv": "b", "log.txt": "l"})
    ctx = script_ctx(tmp_path, runner, outputFiles=["out/*.csv", "log.txt", "*.none"])
    result = ctx.run()
    files = result.outputs["outputFiles"]
    assert sorted(files) == ["log.txt", "out/a.csv", "out/b.csv"]
    assert (
        files["out/a.csv"] == "kestra:///company/team/etl/executions/exec1/outputs/run1/out/a.csv"
    )
    assert ctx.storage.get(files["out/b.csv"]) == b"b"
    assert ("WARN", "outputFiles: no file matches '*.none'") in ctx.logs
    assert result.state == State.SUCCESS


def test_output_files_recursive_glob(tmp_path: Path) -> None:
    runner = ScriptedRunner(files={"a/b/c.json": "{}", "d.json": "[]"})
    result = script_ctx(tmp_path, runner, outputFiles=["**/*.json"]).run()
    assert sorted(result.outputs["outputFiles"]) == ["a/b/c.json", "d.json"]


def test_output_files_never_leave_the_directory(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("s")
    ctx = script_ctx(tmp_path, outputFiles=["*.txt"])
    (ctx.workdir / "link.txt").symlink_to(secret)
    result = ctx.run()
    assert result.outputs["outputFiles"] == {}
    assert ("WARN", "outputFiles: 'link.txt' links out of the working directory") in ctx.logs
    bad = script_ctx(tmp_path, outputFiles=["../*.txt"])
    with pytest.raises(
        TaskFailed, match=r"outputFiles: '\.\./\*\.txt' leaves the working directory"
    ):
        bad.run()


def test_output_files_are_not_collected_after_a_kill(tmp_path: Path) -> None:
    runner = ScriptedRunner(
        files={"a.txt": "a"}, result=RunResult(exit_code=None, duration=1, killed=True)
    )
    result = script_ctx(tmp_path, runner, outputFiles=["a.txt"]).run()
    assert result.outputs["outputFiles"] == {}
    assert result.error == "killed"


def test_output_files_are_collected_after_a_failing_exit_code(tmp_path: Path) -> None:
    runner = ScriptedRunner(files={"a.txt": "a"}, result=RunResult(exit_code=1, duration=1))
    result = script_ctx(tmp_path, runner, outputFiles=["a.txt"]).run()
    assert list(result.outputs["outputFiles"]) == ["a.txt"]
    assert result.state == State.FAILED


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"warningOnStdErr": "{{ 'maybe' }}"}, "warningOnStdErr must be true or false"),
        ({"outputFiles": "{{ {'a': 1} }}"}, "outputFiles must be a list of strings, got a map"),
        ({"inputFiles": "{{ [1, 2] }}"}, "inputFiles must be a map of names to strings"),
        ({"commands": ["echo {{ nope }}"]}, "nope"),
    ],
)
def test_unusable_script_properties_fail_before_running(
    tmp_path: Path, raw: dict[str, Any], message: str
) -> None:
    ctx = script_ctx(tmp_path, **raw)
    with pytest.raises(TaskFailed, match=message):
        ctx.run()
    assert isinstance(ctx.runner, ScriptedRunner)
    assert ctx.runner.specs == []
