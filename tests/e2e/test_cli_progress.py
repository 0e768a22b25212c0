"""Progress where a person waits (issue 15, item 11): the first sync at `headwater up`,
`headwater sync`, `headwater backfill` and `headwater plan --server` draw a progress
line on standard error when it is a terminal, and write nothing more when piped.

The commands run as processes against a real daemon: once with their output piped (the
bytes a script reads are the plain answer), once on a pseudo-terminal (the line shows,
and ends with a full bar and a newline before the answer)."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from daemonprocess import RunningDaemon, daemon_env, daemons, headwater, new_repos

DAILY = """\
id: daily
namespace: sched
tasks:
  - id: say
    type: core.log.Log
    message: "token {{ secret('API_TOKEN') }}"
triggers:
  - id: nightly
    type: core.trigger.Schedule
    cron: "0 6 * * *"
"""
WARNING = (
    "flows/sched/daily.yaml:6:14: warning: secret 'API_TOKEN' is not set: tasks that read it fail"
)
FULL_BAR = "[" + "#" * 12 + "]"  # daemon/progress.py BAR_WIDTH
LINE_END = "\x1b[?25h\r\n"  # click shows the cursor again; the terminal turns \n into \r\n
DEADLINE_SECONDS = 60  # a process on the terminal that has not ended by then failed


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDaemon]:
    root = tmp_path_factory.mktemp("progress")
    repos = new_repos(root)
    repos.push({"flows/sched/daily.yaml": DAILY}, "a daily report")
    with daemons(root) as start:
        yield start(f"file://{repos.remote}")


def _drain(leader: int, until: float, stop: str | None = None) -> str:
    """What the terminal shows until the process closes it (or `stop` shows)."""
    data = b""
    while time.monotonic() < until:
        ready, _, _ = select.select([leader], [], [], 0.2)
        if not ready:
            continue
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: every process holding the terminal ended
            break
        if not chunk:
            break
        data += chunk
        if stop is not None and stop in data.decode("utf-8", "replace"):
            break
    return data.decode("utf-8", "replace")


def _spawn(args: list[str], env: Mapping[str, str] | None, cwd: Path | None) -> tuple:
    leader, follower = os.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "headwater.daemon.cli", *args],
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
        env=daemon_env(env),
        cwd=cwd,
        start_new_session=True,
    )
    os.close(follower)
    return proc, leader


def on_terminal(*args: str, cwd: Path | None = None) -> str:
    """Run `headwater ARGS` with standard output and error on a pseudo-terminal."""
    proc, leader = _spawn(list(args), None, cwd)
    try:
        shown = _drain(leader, time.monotonic() + DEADLINE_SECONDS)
        assert proc.wait(timeout=DEADLINE_SECONDS) in (0, 1), shown
    finally:
        os.close(leader)
    return shown


def ended_cleanly(shown: str, label: str) -> str:
    """What follows the progress line, once checked that it was drawn with `label` first,
    and that its last frame has a full bar and ends with a newline."""
    progress, _, after = shown.partition(LINE_END)
    assert progress.split("\r")[1].endswith(label + "  [" + "-" * 12 + "]"), repr(progress)
    assert FULL_BAR in progress.rsplit("\r", 1)[-1], repr(progress)
    return after.replace("\r\n", "\n")


def test_sync_backfill_and_plan_print_nothing_extra_when_piped(
    daemon: RunningDaemon, tmp_path: Path
) -> None:
    synced = headwater("sync", "--server", daemon.url)
    assert synced.returncode == 0, synced.stderr
    assert synced.stdout.startswith("NoChange: ")
    assert synced.stdout.splitlines()[1:] == [WARNING]
    assert synced.stderr == ""
    args = ("backfill", "sched", "daily", "nightly", "--from", "2026-01-01")
    filled = headwater(*args, "--to", "2026-01-02T23:00:00Z", "--server", daemon.url)
    assert filled.returncode == 0, filled.stderr
    assert filled.stdout == (
        "backfill of sched.daily trigger nightly: 2 time(s) from 2026-01-01T06:00:00Z "
        "to 2026-01-02T06:00:00Z, 10.0 a second\n"
    )
    assert filled.stderr == ""
    clone = _clone(daemon, tmp_path)
    planned = headwater("plan", "--server", daemon.url, cwd=clone)
    assert planned.returncode == 0, planned.stderr
    assert planned.stderr == ""
    assert "\r" not in planned.stdout and "asking" not in planned.stdout
    assert "first sync of" not in daemon.output() and "\r" not in daemon.output()


def test_sync_backfill_and_plan_show_progress_on_a_terminal(
    daemon: RunningDaemon, tmp_path: Path
) -> None:
    synced = headwater("sync", "--server", daemon.url).stdout
    shown = on_terminal("sync", "--server", daemon.url)
    assert ended_cleanly(shown, f"waiting for {daemon.url} to sync") == synced
    args = (
        "backfill",
        "sched",
        "daily",
        "nightly",
        "--from",
        "2026-02-01",
        "--to",
        "2026-02-01T23:00:00Z",
    )
    shown = on_terminal(*args, "--server", daemon.url)
    assert ended_cleanly(shown, f"asking {daemon.url} to backfill") == (
        "backfill of sched.daily trigger nightly: 1 time(s) from 2026-02-01T06:00:00Z "
        "to 2026-02-01T06:00:00Z, 10.0 a second\n"
    )
    clone = _clone(daemon, tmp_path)
    planned = headwater("plan", "--server", daemon.url, cwd=clone).stdout
    shown = on_terminal("plan", "--server", daemon.url, cwd=clone)
    after = ended_cleanly(shown, f"asking {daemon.url} what it deployed")
    # The working tree's commit is made anew by each plan: its id differs.
    assert after.split(" -> ")[0] == planned.split(" -> ")[0]
    assert after.split(":", 1)[1] == planned.split(":", 1)[1]
    plain = on_terminal("plan", cwd=clone)  # no daemon asked: no progress
    assert "\x1b[?25l" not in plain and "asking" not in plain


def test_up_shows_the_first_sync_on_a_terminal(tmp_path: Path) -> None:
    repos = new_repos(tmp_path)
    repos.push({"flows/sched/daily.yaml": DAILY}, "a daily report")
    args = ["up", "--repo", f"file://{repos.remote}", "--data-dir", str(tmp_path / "data")]
    proc, leader = _spawn([*args, "--port", "0", "--poll-interval", "0"], None, None)
    try:
        label = f"headwater: first sync of file://{repos.remote}"
        shown = _drain(leader, time.monotonic() + DEADLINE_SECONDS, stop=f"{FULL_BAR}")
        proc.send_signal(signal.SIGTERM)
        shown += _drain(leader, time.monotonic() + DEADLINE_SECONDS)
        assert proc.wait(timeout=DEADLINE_SECONDS) == 0, shown
    finally:
        os.close(leader)
        if proc.poll() is None:
            proc.kill()
    frames = [f for f in shown.split("\r") if label in f]
    assert frames, shown
    assert FULL_BAR in frames[-1], repr(frames[-1])
    assert shown.count(FULL_BAR) == 1  # the line ended once, and was not drawn again
    after = shown.split(FULL_BAR, 1)[1]
    assert "\n" in after and label not in after


def _clone(daemon: RunningDaemon, tmp_path: Path) -> Path:
    """A working clone of the daemon's repository (plan works in one)."""
    path = tmp_path / "clone"
    if not path.exists():
        remote = daemon.repo.removeprefix("file://")
        subprocess.run(["git", "clone", "-q", remote, str(path)], check=True, env=daemon_env())
    return path
