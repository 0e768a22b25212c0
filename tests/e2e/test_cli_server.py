"""Where the commands that talk to a daemon look for it: `--server` before the command
or after it (the innermost wins), else HEADWATER_SERVER, else http://127.0.0.1:8080.

Each server named here is a closed port, so the command's error names the URL it used:
what a user sees when the server is wrong. `test_cli_execution.py` drives a real daemon
through both positions.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from daemonprocess import headwater
from gitrepos import WorkingClone

FLOW = "id: hello\nnamespace: team\ntasks:\n  - id: say\n    type: core.log.Log\n    message: hi\n"


def closed_url(path: str) -> str:
    """A URL on a port nothing listens on; `path` tells the URLs apart in messages."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/{path}"


GLOBAL, LOCAL, ENV = closed_url("global"), closed_url("local"), closed_url("env")

COMMANDS = [
    ("execution", "kill", "X"),
    ("execution", "restart", "X"),
    ("execution", "replay", "X"),
    ("execution", "resume", "X"),
    ("execute", "team", "flow"),
    ("sync",),
    ("sync", "suspend"),
    ("sync", "resume"),
    ("backfill", "team", "flow", "nightly", "--from", "2026-01-01", "--to", "2026-01-02"),
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_daemon_command_finds_the_server_the_same_way(command: tuple[str, ...]) -> None:
    env = {"HEADWATER_SERVER": ENV}
    before = headwater("--server", GLOBAL, *command, env=env)
    assert before.returncode == 1
    assert f"cannot reach {GLOBAL}:" in before.stderr
    after = headwater(*command, "--server", LOCAL, env=env)
    assert after.returncode == 1
    assert f"cannot reach {LOCAL}:" in after.stderr
    both = headwater("--server", GLOBAL, *command, "--server", LOCAL, env=env)
    assert f"cannot reach {LOCAL}:" in both.stderr
    from_env = headwater(*command, env=env)
    assert f"cannot reach {ENV}:" in from_env.stderr


def test_without_server_or_variable_the_default_is_headwater_ups_address() -> None:
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", 8080)) == 0:
            pytest.skip("something listens on 8080 here")
    result = headwater("execution", "kill", "X")
    assert result.returncode == 1
    assert "cannot reach http://127.0.0.1:8080:" in result.stderr


def test_the_execution_group_still_takes_it_before_the_sub_command() -> None:
    result = headwater("execution", "--server", LOCAL, "kill", "X")
    assert result.returncode == 1
    assert f"cannot reach {LOCAL}:" in result.stderr


def test_plan_asks_a_daemon_only_when_told_to(tmp_path: Path) -> None:
    """HEADWATER_SERVER alone (exported for `execute`) does not turn plan into a
    comparison with a daemon; `--server` in either position does."""
    clone = WorkingClone.create(tmp_path / "work")
    clone.write("flows/team/hello.yaml", FLOW)
    clone.commit("hello")
    clone.write("flows/team/again.yaml", FLOW.replace("id: hello", "id: again"))
    env = {"HEADWATER_SERVER": ENV}
    told = headwater("--server", GLOBAL, "plan", env=env, cwd=clone.path)
    assert told.returncode == 1
    assert f"cannot reach {GLOBAL}:" in told.stderr
    told_after = headwater("plan", "--server", LOCAL, env=env, cwd=clone.path)
    assert f"cannot reach {LOCAL}:" in told_after.stderr
    not_told = headwater("plan", env=env, cwd=clone.path)
    assert not_told.returncode == 0, not_told.stderr
    assert "add     team.again" in not_told.stdout
