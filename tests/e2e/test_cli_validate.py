"""`headwater validate` and `headwater schema`, run as a user runs them."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "flows-repo-template"


def headwater(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "headwater.daemon.cli", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=60)


def test_template_repository_is_valid() -> None:
    result = headwater("validate", str(TEMPLATE), cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""
    assert "flow(s) valid" in result.stderr


def test_errors_are_printed_one_a_line_and_exit_1(tmp_path: Path) -> None:
    shutil.copytree(TEMPLATE, tmp_path / "repo")
    bad = tmp_path / "repo/flows/tutorial/broken.yaml"
    bad.write_text(
        "id: broken\n"
        "namespace: tutorial\n"
        "tasks:\n"
        "  - id: a\n"
        "    type: core.log.Log\n"
        "    mesage: hi\n"
        "  - id: b\n"
        "    type: core.flow.Sleep\n"
        "    duration: 5 minutes\n"
    )
    result = headwater("validate", ".", cwd=tmp_path / "repo")
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "flows/tutorial/broken.yaml:4:5: error: tasks[0] (core.log.Log): missing required "
        "property 'message'",
        "flows/tutorial/broken.yaml:6:5: error: tasks[0] (core.log.Log): unknown property "
        "'mesage'; did you mean 'message'? (known properties: allowFailure, description, "
        "disabled, id, level, logLevel, message, retry, runIf, timeout, type)",
        "flows/tutorial/broken.yaml:9:15: error: tasks[1].duration: must be an ISO-8601 "
        "duration like PT30S, PT5M, PT1H30M or P1D, got string '5 minutes'",
    ]
    flows = len(list((TEMPLATE / "flows").rglob("*.yaml"))) - len(
        list((TEMPLATE / "flows").rglob("_files/**/*.yaml"))
    )
    assert f"3 error(s) in 1 file(s); {flows + 1} flow(s) checked" in result.stderr


def test_json_format(tmp_path: Path) -> None:
    flow = tmp_path / "f.yaml"
    flow.write_text("id: f\nnamespace: n\ntasks:\n  - id: x\n    type: core.log.Log\n")
    result = headwater("validate", "--format", "json", str(flow), cwd=tmp_path)
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report == {
        "valid": False,
        "flows": 1,
        "errors": [
            {
                "path": "f.yaml",
                "line": 4,
                "column": 5,
                "severity": "error",
                "field": "tasks[0]",
                "message": "tasks[0] (core.log.Log): missing required property 'message'",
            }
        ],
        "warnings": [],
    }


def test_a_warning_is_printed_and_leaves_the_flow_valid(tmp_path: Path) -> None:
    flow = tmp_path / "w.yaml"
    flow.write_text(
        "id: w\nnamespace: n\ntasks:\n  - id: x\n    type: core.log.Log\n"
        "    message: \"{{ trigger.body ?? 'manual' }}\"\n"
    )
    result = headwater("validate", str(flow), cwd=tmp_path)
    assert result.returncode == 0, result.stdout
    assert result.stdout.splitlines() == [
        "w.yaml:6:18: warning: tasks[0].message: trigger.body: only core.trigger.Webhook "
        "gives 'body', and the flow has no trigger"
    ]
    assert "1 flow(s) valid; 1 warning(s)" in result.stderr
    report = json.loads(headwater("validate", "--format", "json", str(flow), cwd=tmp_path).stdout)
    assert report["valid"] is True
    assert [w["severity"] for w in report["warnings"]] == ["warning"]


def test_a_single_file_in_a_flows_folder_is_checked_against_its_place(tmp_path: Path) -> None:
    flow = tmp_path / "flows/sales/daily.yaml"
    flow.parent.mkdir(parents=True)
    flow.write_text(
        "id: nightly\nnamespace: sales\ntasks:\n  - id: x\n    type: core.log.Log\n"
        "    message: hi\n"
    )
    result = headwater("validate", "flows/sales/daily.yaml", cwd=tmp_path)
    assert result.returncode == 1
    assert "id: 'nightly' does not match the file name daily.yaml" in result.stdout


def test_properties_of_nested_models_are_named_in_a_fresh_process(tmp_path: Path) -> None:
    # The models of a trigger's labels, a retry and a nested task are built when first
    # used; the known properties in the messages must not depend on that.
    flow = tmp_path / "f.yaml"
    flow.write_text(
        "id: f\nnamespace: n\ntasks:\n"
        "  - id: s\n    type: core.flow.Sequential\n    tasks:\n"
        "      - id: a\n        type: core.log.Log\n        message: hi\n"
        "        retry:\n          type: constant\n          interval: PT1S\n"
        "          maxAttempts: 2\n          bogus: 1\n"
        "triggers:\n"
        "  - id: t\n    type: core.trigger.Schedule\n    cron: '0 2 * * *'\n"
        "    labels:\n      - key: team\n        valu: data\n"
    )
    result = headwater("validate", "f.yaml", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "f.yaml:14:11: error: tasks[0].tasks[0].retry: unknown property 'bogus' (known "
        "properties: behavior, interval, maxAttempt, maxAttempts, maxDuration, type, "
        "warningOnRetry)",
        "f.yaml:20:7: error: triggers[0].labels: must be a map, got a list",
        "f.yaml:20:9: error: triggers[0].labels[0]: missing required property 'value'",
        "f.yaml:21:9: error: triggers[0].labels[0]: unknown property 'valu'; did you mean "
        "'value'? (known properties: key, value)",
    ]


def test_usage_error_exits_2(tmp_path: Path) -> None:
    result = headwater("validate", "does-not-exist", cwd=tmp_path)
    assert result.returncode == 2
    assert "does not exist" in result.stderr


def test_schema_command_prints_the_committed_schema(tmp_path: Path) -> None:
    result = headwater("schema", cwd=tmp_path)
    assert result.returncode == 0
    committed = (TEMPLATE / ".headwater/flow.schema.json").read_text()
    assert result.stdout == committed
    assert json.loads(result.stdout)["title"] == "Headwater flow"


def test_help_lists_the_commands() -> None:
    result = headwater("--help", cwd=ROOT)
    assert result.returncode == 0
    assert "validate" in result.stdout
    assert "schema" in result.stdout
