"""`headwater run`, run as a user runs it: progress, outputs, exit codes, inputs, Ctrl-C."""

from __future__ import annotations

import json
import os
import selectors
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from contextlib import closing
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
API_EXECUTION_KEYS = [
    "id", "namespace", "flowId", "flowRevision", "commit", "state", "inputs", "outputs",
    "labels", "trigger", "originalId", "parentId", "error", "taskRunList",
]  # fmt: skip

GREETER = """\
id: greeter
namespace: tests.cli
inputs:
  - id: name
    type: STRING
    validator: "^[A-Z][a-z]+$"
  - id: times
    type: INT
    defaults: 2
    max: 5
tasks:
  - id: hello
    type: scripts.shell.Commands
    commands:
      - echo "hello $NAME"
    env:
      NAME: "{{ inputs.name }}"
  - id: each
    type: core.flow.ForEach
    values: "{{ range(1, inputs.times) }}"
    tasks:
      - id: count
        type: core.log.Log
        message: "round {{ taskrun.value }}"
  - id: gate
    type: core.execution.Fail
    condition: "{{ inputs.name == 'Nobody' }}"
    errorMessage: "nobody to greet"
outputs:
  - id: greeting
    type: STRING
    value: "hello {{ inputs.name }}"
"""


def headwater(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "headwater.daemon.cli", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def executions(data_dir: Path) -> list[tuple[str, str]]:
    db = data_dir / "headwater.db"
    if not db.exists():
        return []
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as connection:
        return connection.execute("SELECT id, state FROM executions").fetchall()


def write_flow(tmp_path: Path, text: str = GREETER, name: str = "greeter.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_run_prints_progress_and_outputs_and_exits_0_on_success(tmp_path: Path) -> None:
    flow = write_flow(tmp_path)
    result = headwater("run", str(flow), "-i", "name=Ada", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "of tests.cli.greeter started" in out
    for line in ("SUCCESS   hello", "SUCCESS   count[1]", "SUCCESS   count[2]", "SUCCESS   gate"):
        assert line in out, out
    assert "hello Ada" in out and "round 2" in out
    assert "ended SUCCESS in" in out
    assert '"greeting": "hello Ada"' in out


def test_run_exits_1_when_the_execution_fails(tmp_path: Path) -> None:
    flow = write_flow(tmp_path)
    result = headwater("run", str(flow), "-i", "name=Nobody", cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAILED    gate" in result.stdout
    assert "ended FAILED" in result.stdout
    assert "error: gate: nobody to greet" in result.stdout


def test_refused_inputs_exit_1_with_the_reason_and_run_nothing(tmp_path: Path) -> None:
    flow = write_flow(tmp_path)
    data_dir = tmp_path / "data"
    result = headwater(
        "run",
        str(flow),
        "-i",
        "name=ada",
        "-i",
        "times=9",
        "--data-dir",
        str(data_dir),
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "inputs refused, nothing was run" in result.stderr
    assert "input 'name': does not match the validator ^[A-Z][a-z]+$" in result.stderr
    assert "input 'times': must be at most 5, got 9" in result.stderr
    assert "started" not in result.stdout
    assert executions(data_dir) == []


def test_a_missing_required_input_is_refused(tmp_path: Path) -> None:
    result = headwater("run", str(write_flow(tmp_path)), cwd=tmp_path)
    assert result.returncode == 1
    assert "input 'name': is required" in result.stderr


def test_a_file_input_is_given_with_an_at_path(tmp_path: Path) -> None:
    flow = write_flow(
        tmp_path,
        """\
id: counter
namespace: tests.cli
inputs:
  - {id: data, type: FILE, extension: .csv}
tasks:
  - id: count
    type: scripts.shell.Commands
    inputFiles:
      data.csv: "{{ inputs.data }}"
    commands:
      - echo "$(wc -l < data.csv) rows, first $(head -n 1 data.csv)"
""",
        "counter.yaml",
    )
    (tmp_path / "orders.csv").write_text("id,amount\n1,10\n2,20\n")
    result = headwater("run", str(flow), "-i", "data=@orders.csv", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 rows, first id,amount" in result.stdout


def test_a_subflow_runs_from_the_flows_folder(tmp_path: Path) -> None:
    folder = tmp_path / "flows" / "tests" / "cli"
    folder.mkdir(parents=True)
    write_flow(folder, GREETER)
    (folder / "_files").mkdir()
    (folder / "_files" / "names.txt").write_text("Grace\n")
    parent = write_flow(
        folder,
        """\
id: caller
namespace: tests.cli
tasks:
  - id: name
    type: scripts.shell.Commands
    namespaceFiles: {enabled: true}
    commands:
      - 'echo "::{\\"outputs\\": {\\"name\\": \\"$(cat names.txt)\\"}}::"'
  - id: call
    type: core.flow.Subflow
    namespace: tests.cli
    flowId: greeter
    inputs:
      name: "{{ outputs.name.vars.name }}"
outputs:
  - {id: said, type: STRING, value: "{{ outputs.call.outputs.greeting }}"}
""",
        "caller.yaml",
    )
    result = headwater("run", str(parent), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert '"said": "hello Grace"' in result.stdout


def test_ctrl_c_kills_the_execution_and_exits_1(tmp_path: Path) -> None:
    marker = f"ctrl-c-{uuid.uuid4().hex}"
    flow = write_flow(
        tmp_path,
        f"""\
id: slow
namespace: tests.cli
tasks:
  - id: wait
    type: scripts.shell.Commands
    commands:
      - echo waiting
      - "sleep 30 & wait  # {marker}"
""",
        "slow.yaml",
    )
    data_dir = tmp_path / "data"
    command = [sys.executable, "-m", "headwater.daemon.cli", "run", str(flow)]
    proc = subprocess.Popen(
        [*command, "--data-dir", str(data_dir)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        seen = read_until(proc, "waiting", timeout=30)
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=20)  # not left to its `sleep 30`
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = seen + rest
    assert proc.returncode == 1, out
    assert "killing the execution" in out
    assert "KILLED    wait" in out and "ended KILLED" in out
    assert [state for _, state in executions(data_dir)] == ["KILLED"]
    assert not marked_processes(marker)


def read_until(proc: subprocess.Popen[str], text: str, timeout: float) -> str:
    """Read the child's output until `text` shows up; what was read."""
    assert proc.stdout is not None
    seen = ""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        while text not in seen:
            left = deadline - time.monotonic()
            assert left > 0 and proc.poll() is None, f"no {text!r} in: {seen}"
            if selector.select(left):
                seen += proc.stdout.readline()
    return seen


def marked_processes(marker: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and entry.name != str(os.getpid()):
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if marker.encode() in cmdline:
                found.append(entry.name)
    return found


def test_output_json_prints_the_ended_execution_as_the_api_shows_it(tmp_path: Path) -> None:
    """Standard output is the JSON alone (progress goes to standard error), in the shape
    of GET /api/v1/executions/{id}, for scripts and CI to assert on."""
    flow = write_flow(tmp_path)
    data = tmp_path / "data"
    result = headwater(
        "run", str(flow), "-i", "name=Ada", "--output", "json", "--data-dir", str(data),
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert list(shown) == API_EXECUTION_KEYS
    assert shown["namespace"] == "tests.cli" and shown["flowId"] == "greeter"
    assert shown["state"]["current"] == "SUCCESS"
    assert [h["state"] for h in shown["state"]["histories"]] == ["CREATED", "RUNNING", "SUCCESS"]
    assert shown["inputs"] == {"name": "Ada", "times": 2}
    assert shown["outputs"] == {"greeting": "hello Ada"}
    assert shown["error"] is None
    labels = {(run["taskId"], run["value"]) for run in shown["taskRunList"]}
    assert {("hello", None), ("count", "1"), ("count", "2"), ("gate", None)} <= labels
    assert all(run["state"]["current"] == "SUCCESS" for run in shown["taskRunList"])
    assert f"execution {shown['id']} ended SUCCESS" in result.stderr
    assert (shown["id"], "SUCCESS") in executions(data)

    again = headwater(
        "run", str(flow), "-i", "name=Bo", "--output", "json", "--data-dir", str(data),
        cwd=tmp_path,
    )  # fmt: skip
    second = json.loads(again.stdout)
    assert second["id"] != shown["id"]
    assert second["inputs"]["name"] == "Bo"


def test_output_json_of_a_failed_run_exits_1_with_the_error(tmp_path: Path) -> None:
    flow = write_flow(tmp_path)
    result = headwater("run", str(flow), "-i", "name=Nobody", "--output", "json", cwd=tmp_path)
    assert result.returncode == 1
    shown = json.loads(result.stdout)
    assert shown["state"]["current"] == "FAILED"
    assert "nobody to greet" in shown["error"]
    gate = next(run for run in shown["taskRunList"] if run["taskId"] == "gate")
    assert gate["state"]["current"] == "FAILED"


def test_output_json_masks_secret_inputs_as_the_api_does(tmp_path: Path) -> None:
    flow = write_flow(
        tmp_path,
        "id: login\nnamespace: tests.cli\ninputs:\n  - {id: password, type: SECRET}\n"
        "tasks:\n  - {id: say, type: core.log.Log, message: signed in}\n",
        "login.yaml",
    )
    result = headwater("run", str(flow), "-i", "password=hunter2", "--output", "json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "hunter2" not in result.stdout
    assert json.loads(result.stdout)["inputs"] == {"password": "••••••"}


def test_refused_inputs_with_output_json_print_no_json(tmp_path: Path) -> None:
    flow = write_flow(tmp_path)
    result = headwater("run", str(flow), "-i", "name=ada", "--output", "json", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert "inputs refused, nothing was run" in result.stderr
