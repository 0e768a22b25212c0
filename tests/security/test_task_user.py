"""A process task runs as the daemon's user unless HEADWATER_TASK_USER says otherwise.

Issue 11: a script task could read the daemon's API token and webhook secret from
`/proc/$PPID/environ`, and `kill -9` the daemon. The first test shows that threat as it
stands by default; the second that with `HEADWATER_TASK_USER` the same task can do
neither (nor read the store), and still runs, writes its working directory and hands
back its output files.
A daemon that cannot switch to the user refuses to start, saying why.

Creating the test user and switching to it need root (CI runs as root).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemonprocess import TOKEN, DaemonFactory, Repos, daemon_env, daemons, headwater, new_repos
from waiting import wait_until

TASK_USER = "headwater-task-test"
TERMINAL = ("SUCCESS", "WARNING", "FAILED", "KILLED", "CANCELLED")
RUN_TIMEOUT = 30.0  # seconds for the probe's execution; only catches a hang
PROBE = r"""id: probe
namespace: sec
tasks:
  - id: probe
    type: io.kestra.plugin.scripts.shell.Commands
    outputFiles:
      - who.txt
    commands:
      - |
        id -un | tee who.txt
        if tr '\0' '\n' < /proc/$PPID/environ > {out}/environ.txt; then
          echo "environ: read"
        else
          echo "environ: refused"
        fi
        if head -c 16 {data}/headwater.db > /dev/null; then
          echo "store: read"
        else
          echo "store: refused"
        fi
        if kill -9 $PPID; then echo "kill: sent"; else echo "kill: refused"; fi
"""


@pytest.fixture(scope="module")
def task_user() -> str:
    """The test's task user, created when missing (`useradd --system`, no home)."""
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("the task user tests need root, which CI has")
        pytest.skip("creating and switching to a test user needs root")
    try:
        pwd.getpwnam(TASK_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", TASK_USER],
            check=True,
            capture_output=True,
        )
    return TASK_USER


@pytest.fixture
def root() -> Iterator[Path]:
    """A folder every user can pass through (pytest's own are the owner's only)."""
    folder = Path(tempfile.mkdtemp(prefix="headwater-task-user-", dir="/tmp"))
    folder.chmod(0o711)
    out = folder / "out"
    out.mkdir()
    out.chmod(0o777)  # a task as any user could write here: the probe's evidence
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def repos(root: Path) -> Repos:
    repos = new_repos(root / "repos")
    probe = PROBE.format(out=root / "out", data=root / "data")
    repos.push({"flows/sec/probe.yaml": probe}, "probe")
    return repos


@pytest.fixture
def start_daemon(root: Path) -> Iterator[DaemonFactory]:
    with daemons(root) as start:
        yield start


def start_probe(daemon: Any) -> str:
    answer = daemon.post("/api/v1/executions/sec/probe")
    assert answer.status == 200, answer.body
    return str(answer.body["id"])


def test_by_default_a_task_reads_the_daemons_secrets_and_kills_it(
    root: Path, repos: Repos, start_daemon: DaemonFactory
) -> None:
    daemon = start_daemon(f"file://{repos.remote}")
    start_probe(daemon)

    assert daemon.proc is not None
    assert daemon.proc.wait(RUN_TIMEOUT) == -9  # the task killed it
    environ = (root / "out" / "environ.txt").read_text()
    assert f"HEADWATER_TOKEN={TOKEN}" in environ.splitlines()


def test_as_a_task_user_the_task_can_neither_read_nor_kill_the_daemon(
    task_user: str, root: Path, repos: Repos, start_daemon: DaemonFactory
) -> None:
    daemon = start_daemon(f"file://{repos.remote}", env={"HEADWATER_TASK_USER": task_user})
    execution_id = start_probe(daemon)

    def ended() -> dict[str, Any] | None:
        row = daemon.get(f"/api/v1/executions/{execution_id}")
        return dict(row) if row["state"]["current"] in TERMINAL else None

    execution = wait_until(ended, RUN_TIMEOUT, "the probe to end")
    messages = [line["message"] for line in daemon.get(f"/api/v1/logs/{execution_id}")]

    assert execution["state"]["current"] == "SUCCESS", messages
    assert task_user in messages
    assert "environ: refused" in messages
    assert "store: refused" in messages
    assert "kill: refused" in messages
    assert daemon.proc is not None and daemon.proc.poll() is None
    assert daemon.call("GET", "/healthz").status == 200
    evidence = root / "out" / "environ.txt"
    assert not evidence.exists() or TOKEN not in evidence.read_text()
    [run] = execution["taskRunList"]
    assert set(run["outputs"]["outputFiles"]) == {"who.txt"}  # read back by the daemon


def test_a_task_user_that_does_not_exist_is_refused_at_start(root: Path, repos: Repos) -> None:
    started = headwater(
        "up", "--repo", f"file://{repos.remote}", "--data-dir", str(root / "data"),
        env={"HEADWATER_TASK_USER": "headwater-no-such-user"},
    )  # fmt: skip

    assert started.returncode == 1
    assert (
        "error: HEADWATER_TASK_USER: there is no user 'headwater-no-such-user' on this machine"
        in started.stderr
    )


def test_a_daemon_that_cannot_switch_users_refuses_to_start(
    task_user: str, root: Path, repos: Repos
) -> None:
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.fail("setpriv (util-linux) is needed to take the daemon's privileges away")
    command = [setpriv, "--bounding-set=-setuid,-setgid", sys.executable, "-m"]
    command += ["headwater.daemon.cli", "up", "--repo", f"file://{repos.remote}"]
    command += ["--data-dir", str(root / "data")]
    env = daemon_env({"HEADWATER_TASK_USER": task_user})
    started = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)

    assert started.returncode == 1
    assert (
        f"error: HEADWATER_TASK_USER: running commands as {task_user!r} needs Headwater to run "
        "as root, or with these capabilities it lacks: CAP_SETGID to start it in the user's "
        "groups; CAP_SETUID to start it as the user"
    ) in started.stderr


def test_a_data_directory_the_task_user_cannot_reach_is_refused(
    task_user: str, tmp_path: Path, repos: Repos
) -> None:
    started = headwater(
        "up", "--repo", f"file://{repos.remote}", "--data-dir", str(tmp_path / "data"),
        env={"HEADWATER_TASK_USER": task_user},
    )  # fmt: skip

    assert started.returncode == 1
    assert f"user '{task_user}' cannot reach the working directories" in started.stderr
    assert "does not let it pass (mode 0700)" in started.stderr
