"""The repository watch wakes for pushes, not for its own reads.

Issue 11: the watch reacted to the open and close events that the daemon's own `git`
reads of the watched repository make, so every sync caused the next one: an idle
daemon on a local repository used a third of a core forever, and with the branch
deleted it fetched four or five times a second. (The idle figure is measured by
bench/idle.py; these tests check the behaviour behind it.)
"""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

from daemonprocess import daemons, flow, new_repos
from gitrepos import WorkingClone, make_remote
from waiting import wait_until

from headwater.daemon.git import Mirror
from headwater.daemon.watch import watch_refs

QUIET_SECONDS = 2.0  # how long nothing may happen after reads (or after a failed sync)


class Hints:
    def __init__(self) -> None:
        self.count = 0
        self.seen = threading.Event()

    def __call__(self) -> None:
        self.count += 1
        self.seen.set()


def test_reading_the_repository_is_not_a_hint_and_a_push_is(tmp_path: Path) -> None:
    remote = make_remote(tmp_path / "remote.git")
    clone = WorkingClone.create(tmp_path / "work", remote)
    clone.write_many({"flows/team/a.yaml": flow("team", "a")})
    clone.commit("first")
    clone.push()
    hints = Hints()
    observer = watch_refs(remote, hints)
    try:
        mirror = Mirror(tmp_path / "mirror.git", f"file://{remote}", "main")
        mirror.ensure()
        for _ in range(10):  # what a sync does to the watched repository: reads
            mirror.remote_head()
            mirror.fetch()
            subprocess.run(["git", "-C", str(remote), "log", "-1"], capture_output=True)
            subprocess.run(["git", "-C", str(remote), "rev-parse", "HEAD"], capture_output=True)
        mirror.close()
        time.sleep(QUIET_SECONDS)  # the debounce is 50 ms: reads would have hinted by now
        assert hints.count == 0, f"{hints.count} hints from reads alone"

        clone.write_many({"flows/team/b.yaml": flow("team", "b")})
        clone.commit("second")
        clone.push()
        assert hints.seen.wait(10), "a push was not noticed"
    finally:
        observer.stop()


def test_a_deleted_branch_is_not_fetched_over_and_over(tmp_path: Path) -> None:
    repos = new_repos(tmp_path)
    repos.push({"flows/team/a.yaml": flow("team", "a")})
    with daemons(tmp_path) as start:
        daemon = start(str(repos.remote), watch=True)
        subprocess.run(
            ["git", "-C", str(repos.remote), "update-ref", "-d", "refs/heads/main"], check=True
        )
        # The deletion is a ref write: one sync notices it, and its fetch fails ...
        failures = wait_until(
            lambda: daemon.sync_status()["fetchFailures"],
            what="a failed fetch of the deleted branch",
        )
        time.sleep(QUIET_SECONDS)
        # ... and its own reads of the repository start no other.
        assert daemon.sync_status()["fetchFailures"] == failures
