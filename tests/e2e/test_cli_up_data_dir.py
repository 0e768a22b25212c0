"""Where `headwater up` and `headwater run` keep their data when started in a flows
repository: never where `git add -A` would commit it.

A newcomer runs `headwater init DIR` and follows the next steps it prints, literally;
afterwards the repository has nothing new to commit. A data directory given inside the
repository is refused when git tracks something in it or does not ignore it.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemonprocess import RunningDaemon, daemon_env

HOME_DATA = Path(".local", "share", "headwater")  # the default data folder below the home


class DaemonInFolder(RunningDaemon):
    """`headwater <args>` started in `cwd`, exactly as a user types it (no --data-dir)."""

    def __init__(self, args: list[str], cwd: Path, log: Path, env: dict[str, str]) -> None:
        super().__init__(repo=".", data_dir=Path(), log=log, env=env)
        self.args = args
        self.cwd = cwd

    def spawn(self) -> subprocess.Popen[bytes]:
        self._log_start = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "headwater.daemon.cli", *self.args],
                cwd=self.cwd,
                env=daemon_env(self.env),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self.proc


@pytest.fixture
def home(tmp_path: Path) -> Path:
    folder = tmp_path / "home"
    folder.mkdir()
    return folder


@pytest.fixture
def env(home: Path) -> dict[str, str]:
    """A user's environment: a home folder of its own, no XDG_DATA_HOME, port 0 (the
    commands are typed as printed; the port is the one thing a shared machine needs)."""
    return {
        "HOME": str(home),
        "XDG_DATA_HOME": "",
        "HEADWATER_PORT": "0",
        "GIT_AUTHOR_NAME": "Ada",
        "GIT_AUTHOR_EMAIL": "ada@example.com",
        "GIT_COMMITTER_NAME": "Ada",
        "GIT_COMMITTER_EMAIL": "ada@example.com",
    }


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[DaemonInFolder]]:
    daemons: list[DaemonInFolder] = []
    yield daemons
    for daemon in daemons:
        daemon.cleanup()


def headwater(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "headwater.daemon.cli", *args]
    return subprocess.run(
        command, cwd=cwd, env=daemon_env(env), capture_output=True, text=True, timeout=120
    )


def git(repo: Path, *args: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        ["git", *args], cwd=repo, env=daemon_env(env), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def start(
    started: list[DaemonInFolder], args: list[str], cwd: Path, env: dict[str, str]
) -> DaemonInFolder:
    """`headwater <args>` in `cwd`; its log beside the repository (`<tmp_path>/daemonN.log`)."""
    tree = next((p for p in (cwd, *cwd.parents) if (p / ".git").exists()), cwd)
    daemon = DaemonInFolder(args, cwd, tree.parent / f"daemon{len(started)}.log", env)
    started.append(daemon)
    return daemon


def next_steps(printed: str) -> tuple[str, list[list[str]]]:
    """The folder to cd into and the commands of init's "Next steps", as printed."""
    lines = printed.split("Next steps:\n", 1)[1].splitlines()
    folder = shlex.split(lines[0])[1]
    commands = [shlex.split(line.split("#", 1)[0]) for line in lines[1:] if line.startswith("  ")]
    return folder, commands


def nothing_to_commit(repo: Path) -> None:
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""
    assert git(repo, "add", "--all", "--dry-run") == ""


def test_following_init_s_next_steps_literally_leaves_nothing_to_commit(
    tmp_path: Path, home: Path, env: dict[str, str], started: list[DaemonInFolder]
) -> None:
    made = headwater(["init", "my flows"], tmp_path, env)
    assert made.returncode == 0, made.stderr
    folder, commands = next_steps(made.stdout)
    repo = tmp_path / folder
    assert [c[:2] for c in commands] == [
        ["headwater", "validate"],
        ["headwater", "run"],
        ["headwater", "up"],
        ["git", "remote"],  # needs a URL of the user's: not run here
    ]

    for command in commands[:2]:
        result = headwater(command[1:], repo, env)
        assert result.returncode == 0, result.stdout + result.stderr
    daemon = start(started, commands[2][1:], repo, env).start()
    (data,) = (home / HOME_DATA).iterdir()
    assert data.name.startswith("my_flows-")
    assert (data / "headwater.db").is_file()
    assert f"data in {data} (outside the git working tree {repo})" in daemon.output()
    assert daemon.terminate() == 0

    nothing_to_commit(repo)
    assert not (repo / ".headwater" / "headwater.db").exists()

    # The same data directory again, from a folder of the repository below its root.
    again = start(started, ["up", "--repo", ".."], repo / "flows", env).start()
    assert f"data in {data} " in again.output()
    assert again.terminate() == 0
    nothing_to_commit(repo)


@pytest.mark.parametrize("where", ["flag", "variable"])
def test_a_data_directory_git_tracks_files_in_is_refused(
    tmp_path: Path, env: dict[str, str], where: str
) -> None:
    repo = tmp_path / "flows-repo"
    assert headwater(["init", str(repo)], tmp_path, env).returncode == 0
    args = ["up", "--repo", "."]
    if where == "flag":
        args += ["--data-dir", ".headwater"]
    else:
        env["HEADWATER_DATA_DIR"] = ".headwater"
    result = headwater(args, repo, env)
    assert result.returncode == 1
    assert result.stderr == (
        f"error: the data directory {repo}/.headwater is inside the git working tree {repo} "
        "and git tracks files in it (.headwater/flow.schema.json); give a data directory "
        "outside the working tree, or none (the default is kept outside it)\n"
    )
    assert sorted(p.name for p in (repo / ".headwater").iterdir()) == ["flow.schema.json"]
    nothing_to_commit(repo)


def test_a_data_directory_git_does_not_ignore_is_refused_until_it_is_ignored(
    tmp_path: Path, env: dict[str, str], started: list[DaemonInFolder]
) -> None:
    repo = tmp_path / "flows-repo"
    assert headwater(["init", str(repo)], tmp_path, env).returncode == 0
    args = ["up", "--repo", ".", "--data-dir", "state"]
    refused = headwater(args, repo, env)
    assert refused.returncode == 1
    assert refused.stderr == (
        f"error: the data directory {repo}/state is inside the git working tree {repo} and "
        "git does not ignore it, so `git add -A` would commit the database and the keys; "
        f"add the line /state/ to {repo}/.gitignore, or give a data directory outside the "
        "working tree, or none (the default is kept outside it)\n"
    )
    assert not (repo / "state").exists()

    with (repo / ".gitignore").open("a") as gitignore:
        gitignore.write("/state/\n")
    git(repo, "commit", "--quiet", "-am", "ignore the daemon's data", env=env)
    daemon = start(started, args, repo, env).start()
    assert "data in state\n" in daemon.output()
    assert (repo / "state" / "headwater.db").is_file()
    assert daemon.terminate() == 0
    nothing_to_commit(repo)


def test_the_template_s_data_folder_is_accepted_by_up_and_run(
    tmp_path: Path, env: dict[str, str], started: list[DaemonInFolder]
) -> None:
    repo = tmp_path / "flows-repo"
    assert headwater(["init", str(repo)], tmp_path, env).returncode == 0
    run = ["run", "flows/tutorial/hello.yaml", "-i", "name=Ada", "--data-dir"]

    refused = headwater([*run, "runs"], repo, env)
    assert refused.returncode == 1
    assert "add the line /runs/ to" in refused.stderr
    assert not (repo / "runs").exists()

    ran = headwater([*run, ".headwater-data"], repo, env)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert (repo / ".headwater-data" / "headwater.db").is_file()
    up = ["up", "--repo", ".", "--data-dir", ".headwater-data/daemon"]
    assert start(started, up, repo, env).start().terminate() == 0
    assert (repo / ".headwater-data" / "daemon" / "headwater.db").is_file()
    nothing_to_commit(repo)


def test_outside_any_working_tree_the_default_stays_in_the_current_folder(
    tmp_path: Path, home: Path, env: dict[str, str], started: list[DaemonInFolder]
) -> None:
    repo = tmp_path / "flows-repo"
    assert headwater(["init", str(repo)], tmp_path, env).returncode == 0
    here = tmp_path / "ops"
    here.mkdir()
    daemon = start(started, ["up", "--repo", str(repo)], here, env).start()
    assert "data in .headwater\n" in daemon.output()
    assert daemon.terminate() == 0
    assert (here / ".headwater" / "headwater.db").is_file()
    assert not (home / HOME_DATA).exists()
    nothing_to_commit(repo)


def test_an_earlier_daemon_s_data_in_the_repository_is_pointed_out(
    tmp_path: Path, env: dict[str, str], started: list[DaemonInFolder]
) -> None:
    repo = tmp_path / "flows-repo"
    assert headwater(["init", str(repo)], tmp_path, env).returncode == 0
    (repo / ".headwater" / "headwater.db").write_bytes(b"")  # what an older Headwater left
    nothing_to_commit(repo)  # the template's .gitignore keeps it out of commits
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg")
    daemon = start(started, ["up", "--repo", "."], repo, env).start()
    assert daemon.terminate() == 0
    output = daemon.output()
    assert f"data in {tmp_path / 'xdg' / 'headwater'}/flows-repo-" in output
    assert f"headwater: {repo}/.headwater holds data of an earlier daemon" in output
    assert os.path.getsize(repo / ".headwater" / "headwater.db") == 0
