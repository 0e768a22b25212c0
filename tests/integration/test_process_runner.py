"""The process runner against real processes: lines, exit codes, environment, stopping."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from headwater.runners import process
from headwater.runners.base import RunResult, RunSpec, Stream
from headwater.runners.process import (
    MAX_LINE_BYTES,
    ProcessRunner,
    child_environment,
    kill_process_group,
    process_group_alive,
)

GRACE = 0.5
HANG = 30.0  # seconds: a run this long waited for a `sleep 100` it should have ended


@dataclass
class Outcome:
    result: RunResult
    lines: list[tuple[Stream, str]] = field(default_factory=list)
    pgids: list[int] = field(default_factory=list)

    def out(self) -> list[str]:
        return [line for stream, line in self.lines if stream == "stdout"]

    def err(self) -> list[str]:
        return [line for stream, line in self.lines if stream == "stderr"]


def run(
    command: list[str],
    workdir: Path,
    cancel: threading.Event | None = None,
    env: dict[str, str] | None = None,
    timeout: float | None = None,
) -> Outcome:
    lines: list[tuple[Stream, str]] = []
    pgids: list[int] = []
    result = ProcessRunner(kill_grace=GRACE).run(
        RunSpec(command, workdir, env=env or {}, timeout=timeout),
        lambda stream, line: lines.append((stream, line)),
        cancel or threading.Event(),
        on_start=pgids.append,
    )
    return Outcome(result, lines, pgids)


@pytest.fixture(params=["pidfd", "polling"])
def exit_watch(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both ways of seeing the main process exit: a pidfd (Linux) and polling (others)."""
    if request.param == "polling":
        monkeypatch.setattr(process, "_open_pidfd", lambda pid: None)


def sh(script: str) -> list[str]:
    return ["sh", "-c", script]


def live_members(pgid: int) -> list[str]:
    """Members of the group that are not zombies, read from /proc."""
    found = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{name}/stat").read_bytes()
        except OSError:
            continue
        state, _ppid, group = stat[stat.rfind(b")") + 2 :].split(b" ", 3)[:3]
        if int(group) == pgid and state not in (b"Z", b"X"):
            found.append(stat.decode(errors="replace"))
    return found


def assert_group_gone(pgid: int) -> None:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return
    # Killed orphans stay zombies until PID 1 collects them, which some sandboxes' PID 1
    # does only every few seconds: none of what is left may still be running.
    assert live_members(pgid) == []


# -- exit codes and lines


@pytest.mark.parametrize(("script", "code"), [("exit 0", 0), ("exit 7", 7)])
def test_exit_code_is_reported(tmp_path: Path, exit_watch: None, script: str, code: int) -> None:
    outcome = run(sh(script), tmp_path)

    assert outcome.result.exit_code == code
    assert outcome.result.succeeded is (code == 0)
    assert outcome.result.error is None


def test_lines_of_both_streams_arrive_in_order_per_stream(tmp_path: Path, exit_watch: None) -> None:
    script = 'i=0; while [ $i -lt 500 ]; do echo "out $i"; echo "err $i" >&2; i=$((i+1)); done'

    outcome = run(sh(script), tmp_path)

    assert outcome.out() == [f"out {i}" for i in range(500)]
    assert outcome.err() == [f"err {i}" for i in range(500)]


def test_last_line_without_newline_and_crlf(tmp_path: Path) -> None:
    outcome = run(sh(r"printf 'one\r\ntwo\n\nthree'; printf 'partial' >&2"), tmp_path)

    assert outcome.out() == ["one", "two", "", "three"]
    assert outcome.err() == ["partial"]


def test_long_line_arrives_in_64_kib_pieces(tmp_path: Path) -> None:
    script = r"head -c 204800 /dev/zero | tr '\0' x; echo; echo next"

    outcome = run(sh(script), tmp_path)

    assert [len(line) for line in outcome.out()] == [65536, 65536, 65536, 8192, 4]
    assert "".join(outcome.out()[:4]) == "x" * 204800
    assert outcome.out()[-1] == "next"


def test_long_line_is_not_cut_inside_a_character(tmp_path: Path) -> None:
    code = "import sys; sys.stdout.buffer.write(('é' * 40000 + '\\n').encode())"

    outcome = run([sys.executable, "-c", code], tmp_path)

    assert len(outcome.out()) == 2
    assert all(len(line.encode()) <= MAX_LINE_BYTES for line in outcome.out())
    assert "".join(outcome.out()) == "é" * 40000


def test_bytes_that_are_not_utf8_are_replaced(tmp_path: Path) -> None:
    outcome = run(sh(r"printf 'ok \377\376 end\n'"), tmp_path)

    assert outcome.out() == ["ok \ufffd\ufffd end"]


# -- environment and working directory


def test_child_gets_task_env_but_not_headwater_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEADWATER_TOKEN", "s3cret")
    monkeypatch.setenv("DATABASE_URL", "sqlite:///tmp/hw.db")
    monkeypatch.setenv("REPORTING_DATABASE_URL", "x")
    monkeypatch.setenv("PGPASSWORD", "pw")
    monkeypatch.setenv("STORE", "postgresql+psycopg://hw:pw@db/hw")
    monkeypatch.setenv("SECRET_API_KEY", "c2VjcmV0")
    monkeypatch.setenv("KEEP_ME", "kept")

    outcome = run(["env"], tmp_path, env={"TASK_VAR": "from the task"})

    env = dict(line.split("=", 1) for line in outcome.out())
    assert env["TASK_VAR"] == "from the task"
    assert env["KEEP_ME"] == "kept"
    for name in (
        "HEADWATER_TOKEN",
        "DATABASE_URL",
        "REPORTING_DATABASE_URL",
        "PGPASSWORD",
        "STORE",
        "SECRET_API_KEY",
    ):
        assert name not in env
    assert "s3cret" not in "\n".join(outcome.out())


def test_task_env_may_set_a_scrubbed_name_on_purpose(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "sqlite:///daemon.db")

    env = child_environment({"DATABASE_URL": "sqlite:///task.db"})

    assert env["DATABASE_URL"] == "sqlite:///task.db"


def test_workdir_is_the_current_directory(tmp_path: Path) -> None:
    outcome = run(["pwd", "-P"], tmp_path)

    assert outcome.out() == [str(tmp_path.resolve())]


# -- process group, timeout, cancel


def test_on_start_receives_the_process_group_id(tmp_path: Path) -> None:
    outcome = run([sys.executable, "-c", "import os; print(os.getpgrp())"], tmp_path)

    assert outcome.pgids == [int(outcome.out()[0])]
    assert outcome.pgids[0] != os.getpgrp()


def test_timeout_ends_the_whole_group(tmp_path: Path, exit_watch: None) -> None:
    outcome = run(sh("sleep 100 & sleep 100"), tmp_path, timeout=0.3)

    assert outcome.result.timed_out
    assert not outcome.result.killed
    assert outcome.result.exit_code is None
    assert 0.3 <= outcome.result.duration < HANG
    assert_group_gone(outcome.pgids[0])


def test_cancel_from_another_thread_kills_the_group(tmp_path: Path, exit_watch: None) -> None:
    cancel = threading.Event()
    cancelled_at: list[float] = []

    def press() -> None:
        cancelled_at.append(time.monotonic())
        cancel.set()

    threading.Timer(0.2, press).start()
    outcome = run(sh("sleep 100 & sleep 100"), tmp_path, cancel)
    reacted = time.monotonic() - cancelled_at[0]

    assert outcome.result.killed
    assert not outcome.result.timed_out
    assert reacted < HANG
    assert_group_gone(outcome.pgids[0])


def test_child_ignoring_term_is_killed_after_the_grace(tmp_path: Path) -> None:
    outcome = run(sh("trap '' TERM; sleep 100 & sleep 100"), tmp_path, timeout=0.2)

    assert outcome.result.timed_out
    assert outcome.result.exit_code is None
    assert 0.2 + GRACE <= outcome.result.duration < HANG
    assert_group_gone(outcome.pgids[0])


def test_cancel_set_before_the_start_starts_nothing(tmp_path: Path) -> None:
    cancel = threading.Event()
    cancel.set()

    outcome = run(["true"], tmp_path, cancel)

    assert outcome.result.killed
    assert outcome.pgids == []


@pytest.mark.parametrize("redirect", ["", ">/dev/null 2>&1"], ids=["holding-pipes", "detached"])
def test_background_children_do_not_outlive_the_run(
    tmp_path: Path, exit_watch: None, redirect: str
) -> None:
    outcome = run(sh(f"sleep 100 {redirect} & echo started"), tmp_path)

    assert outcome.result.exit_code == 0
    assert outcome.out() == ["started"]
    assert outcome.result.duration < HANG  # their open pipes do not hold the run
    assert_group_gone(outcome.pgids[0])


def test_background_child_ignoring_term_is_killed_after_the_grace(tmp_path: Path) -> None:
    outcome = run(sh("trap '' TERM; sleep 100 & echo started"), tmp_path)

    assert outcome.result.exit_code == 0
    assert GRACE <= outcome.result.duration < HANG
    assert_group_gone(outcome.pgids[0])


def test_process_that_left_the_group_is_ended_with_the_run(
    tmp_path: Path, exit_watch: None
) -> None:
    outcome = run(sh("setsid sleep 100 & echo $!; sleep 0.05; echo done"), tmp_path)

    assert outcome.out()[1:] == ["done"]
    assert outcome.result.leftovers == 1
    assert outcome.result.duration < HANG
    with pytest.raises(ProcessLookupError):  # ended, and collected: not even a zombie
        os.kill(int(outcome.out()[0]), 0)


def test_a_raising_callback_leaves_nothing_running(tmp_path: Path) -> None:
    def explode(stream: Stream, line: str) -> None:
        raise RuntimeError("sink broke")

    pgids: list[int] = []
    with pytest.raises(RuntimeError, match="sink broke"):
        ProcessRunner().run(
            RunSpec(sh("sleep 100 & echo hi; sleep 100"), tmp_path),
            explode,
            threading.Event(),
            on_start=pgids.append,
        )
    assert_group_gone(pgids[0])


def test_concurrent_runs_do_not_hold_each_others_pipes(tmp_path: Path) -> None:
    # How long a run costs (with another one in flight): bench/runner.py.
    cancel = threading.Event()
    slow = threading.Thread(target=run, args=(["sleep", str(HANG)], tmp_path, cancel))
    slow.start()
    try:
        for _ in range(20):
            assert run(["true"], tmp_path).result.succeeded
        assert slow.is_alive()  # all 20 ended while the slow run still held its pipes
    finally:
        cancel.set()
        slow.join()


# -- commands that cannot start


def test_command_not_found_gives_a_clear_error(tmp_path: Path) -> None:
    outcome = run(["headwater-no-such-command"], tmp_path)

    assert outcome.result.exit_code is None
    assert not outcome.result.succeeded
    assert (
        outcome.result.error
        == "cannot start 'headwater-no-such-command': command not found in PATH"
    )
    assert outcome.pgids == []


def test_file_not_executable_gives_a_clear_error(tmp_path: Path) -> None:
    script = tmp_path / "job.sh"
    script.write_text("echo hi\n")

    outcome = run([str(script)], tmp_path)

    assert outcome.result.error is not None
    assert str(script) in outcome.result.error
    assert "not executable" in outcome.result.error


def test_missing_workdir_gives_a_clear_error(tmp_path: Path) -> None:
    outcome = run(["true"], tmp_path / "gone")

    assert outcome.result.error is not None
    assert "'true'" in outcome.result.error
    assert f"working directory {tmp_path / 'gone'}" in outcome.result.error


def test_empty_command_gives_a_clear_error(tmp_path: Path) -> None:
    outcome = run([], tmp_path)

    assert outcome.result.error == "cannot start the command: it is empty"


# -- leftovers of an earlier daemon


def test_kill_process_group_ends_a_leftover_group() -> None:
    leftover = subprocess.Popen(
        sh("trap '' TERM; sleep 100 & echo ready; sleep 100"),
        start_new_session=True,
        stdout=subprocess.PIPE,
    )
    try:
        assert leftover.stdout is not None
        assert leftover.stdout.readline() == b"ready\n"
        assert process_group_alive(leftover.pid)
        assert kill_process_group(leftover.pid, grace=0.3)
        assert not process_group_alive(leftover.pid)
    finally:
        leftover.kill()
        leftover.communicate()
    assert_group_gone(leftover.pid)
    assert not kill_process_group(leftover.pid, grace=0.3)


def test_kill_process_group_refuses_groups_no_run_started() -> None:
    assert not kill_process_group(os.getpgrp())
    assert not kill_process_group(0)
    assert not kill_process_group(1)
    with pytest.raises(ValueError, match="not the process group of a run"):
        process_group_alive(0)
