"""`headwater run`'s live output against the store: every log line the store holds for the
execution, once, in the store's order, and each task's SUCCESS after its own lines and
before the next task's (issue 15, item 3: a line went missing in 2 of 18 runs, and a later
task's line came before the earlier task's SUCCESS).

The flow runs through `run_local`, the function the `run` command calls, with the same
engine a subprocess would start; 50 runs in one process take seconds, not minutes.
"""

from __future__ import annotations

import io
import re
import sqlite3
from contextlib import closing
from pathlib import Path

from headwater.daemon.localrun import run_local

ROOT = Path(__file__).resolve().parents[2]
HELLO = ROOT / "flows-repo-template" / "flows" / "tutorial" / "hello.yaml"
RUNS = 50
STARTED = re.compile(r"^execution (\w+) of tutorial\.hello started$", re.MULTILINE)
LOG_LINE = re.compile(r"^  (TRACE|DEBUG|INFO|WARN|ERROR) +(\S+) +(.*)$")
STATE_LINE = re.compile(r"^([A-Z]+) +(\S+)(?: in \d+ ms)?")

Line = tuple[str, str, str]
"""(level, task id, message)."""


def stored_lines(data_dir: Path, execution_id: str) -> list[Line]:
    with closing(sqlite3.connect(f"file:{data_dir / 'headwater.db'}?mode=ro", uri=True)) as db:
        rows = db.execute(
            "SELECT logs.level, task_runs.task_id, logs.message FROM logs "
            "JOIN task_runs ON task_runs.id = logs.task_run_id "
            "WHERE logs.execution_id = ? ORDER BY logs.id",
            (execution_id,),
        ).fetchall()
    return [(level, task, message) for level, task, message in rows]


def printed(output: str) -> tuple[list[Line], list[tuple[str, str]]]:
    """The log lines, and the sequence of log lines and state lines as (kind, task)."""
    lines: list[Line] = []
    sequence: list[tuple[str, str]] = []
    for text in output.split("\n\n")[0].splitlines()[1:]:  # up to the summary
        log_line = LOG_LINE.match(text)
        if log_line:
            level, task, message = log_line.groups()
            lines.append((level, task, message))
            sequence.append(("line", task))
            continue
        state_line = STATE_LINE.match(text)
        assert state_line, f"neither a log line nor a state line: {text!r}"
        sequence.append(state_line.groups())
    return lines, sequence


def test_every_stored_line_is_printed_once_in_order_between_the_states(tmp_path: Path) -> None:
    for attempt in range(RUNS):
        data_dir = tmp_path / f"run{attempt}"
        out = io.StringIO()
        assert run_local(HELLO, {"name": "Ada"}, None, data_dir, out=out) == 0
        output = out.getvalue()
        started = STARTED.search(output)
        assert started, output
        lines, sequence = printed(output)
        assert lines == stored_lines(data_dir, started.group(1)), f"run {attempt}:\n{output}"
        assert lines == [("INFO", "greet", "Hello, Ada!"), ("INFO", "shout", "HELLO, ADA")]
        # each task's line after its RUNNING (when that was seen) and before its SUCCESS,
        # and greet's SUCCESS before shout's line
        assert sequence.index(("line", "greet")) < sequence.index(("SUCCESS", "greet")), output
        assert sequence.index(("SUCCESS", "greet")) < sequence.index(("line", "shout")), output
        assert sequence.index(("line", "shout")) < sequence.index(("SUCCESS", "shout")), output
        for task in ("greet", "shout"):
            if ("RUNNING", task) in sequence:
                assert sequence.index(("RUNNING", task)) < sequence.index(("line", task)), output
