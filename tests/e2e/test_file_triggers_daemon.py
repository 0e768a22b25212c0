"""File triggers in a real `headwater up`: the allowed-directories setting, a polling trigger
that moves what it picks up, a refused trigger that says where, and a file picked up once
across a SIGKILL and a restart."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_daemon import DaemonFactory, Repos, RunningDaemon, daemons, new_repos
from waiting import wait_until

OLD = time.time() - 3600  # files written "an hour ago": complete, nothing still writing them


def poll_flow(inbox: Path, done: Path) -> str:
    return (
        "id: ingest\nnamespace: files\ntasks:\n"
        "  - id: show\n    type: core.log.Log\n"
        '    message: "got {{ trigger.files | length }} file(s): {{ trigger.files[0].name }}"\n'
        "triggers:\n"
        "  - id: inbox\n    type: fs.local.Trigger\n"
        f"    from: {inbox}\n    interval: PT0.2S\n"
        f"    action: MOVE\n    moveDirectory: {done}\n"
    )


def outside_flow(folder: Path) -> str:
    return (
        "id: nosy\nnamespace: files\ntasks:\n"
        "  - id: show\n    type: core.log.Log\n    message: never\n"
        "triggers:\n"
        f"  - id: watch\n    type: fs.local.RealtimeTrigger\n    from: {folder}\n"
    )


@pytest.fixture
def repos(tmp_path: Path) -> Repos:
    return new_repos(tmp_path)


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[DaemonFactory]:
    with daemons(tmp_path) as start:
        yield start


def executions(daemon: RunningDaemon) -> list[dict[str, Any]]:
    return list(daemon.get("/api/v1/executions/search?namespace=files&size=50")["results"])


def test_a_daemon_polls_an_allowed_directory_and_picks_each_file_once(
    tmp_path: Path, repos: Repos, start_daemon: DaemonFactory
) -> None:
    allowed, outside = tmp_path / "drop", tmp_path / "elsewhere"
    inbox, done = allowed / "inbox", allowed / "done"
    for folder in (inbox, outside):
        folder.mkdir(parents=True)
    repos.push({"flows/files/ingest.yaml": poll_flow(inbox, done)})
    env = {"HEADWATER_FILE_TRIGGER_DIRS": f"{allowed}{os.pathsep}{tmp_path / 'other'}"}
    daemon = start_daemon(f"file://{repos.remote}", env=env)
    invoice = inbox / "invoice.csv"
    invoice.write_text("a,b\n")
    os.utime(invoice, (OLD, OLD))

    [execution] = wait_until(lambda: executions(daemon), what="the file trigger's execution")
    assert execution["trigger"]["files"][0]["path"] == str(done / "invoice.csv")
    wait_until(lambda: (done / "invoice.csv").exists(), what="the file to be moved")
    assert not invoice.exists()
    logs = wait_until(lambda: daemon.get(f"/api/v1/logs/{execution['id']}"), what="its logs")
    assert [line["message"] for line in logs] == ["got 1 file(s): invoice.csv"]

    daemon.kill()
    restarted = start_daemon(f"file://{repos.remote}", env=env)
    time.sleep(1.0)  # several polls of 0.2 s: the file that was moved is not picked again
    assert [e["id"] for e in executions(restarted)] == [execution["id"]]


def test_a_commit_naming_a_directory_outside_the_allowed_ones_is_refused(
    tmp_path: Path, repos: Repos, start_daemon: DaemonFactory
) -> None:
    allowed, outside = tmp_path / "drop", tmp_path / "elsewhere"
    for folder in (allowed, outside):
        folder.mkdir()
    good = repos.push({"flows/files/ingest.yaml": poll_flow(allowed / "in", allowed / "done")})
    env = {"HEADWATER_FILE_TRIGGER_DIRS": str(allowed)}
    daemon = start_daemon(f"file://{repos.remote}", env=env)
    (allowed / "escape").symlink_to(outside)

    bad = repos.push({"flows/files/nosy.yaml": outside_flow(allowed / "escape")})
    assert daemon.webhook(after=bad).status == 202
    attempt = daemon.wait_attempt(bad)

    assert attempt["result"] == "Failed"
    [error] = [f"{e['path']}:{e['line']}:{e['column']}: {e['message']}" for e in attempt["errors"]]
    assert error.startswith(f"flows/files/nosy.yaml:10:11: '{allowed}/escape'")
    assert f"(resolved: {outside}) is outside the directories file triggers may read" in error
    assert daemon.sync_status()["deployedCommit"] == good
