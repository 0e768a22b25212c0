"""What the sync state tells an operator: fetch failures and their recovery, the branch's
head beside the deployed commit, and the attempts a dead process left Running.

The same real repositories, store and syncer as test_sync.py.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from test_sync import World, flow

from headwater.daemon.git import Mirror
from headwater.daemon.sync import Syncer

GOOD = {"flows/team/a.yaml": flow("team", "a")}
BAD = {"flows/team/a.yaml": "id: a\nnamespace: team\ntasks:\n  - id: x\n    type: core.log.Lg\n"}


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.close()


def test_fetch_failures_are_counted_and_cleared_when_the_remote_answers(
    repo: World, caplog: pytest.LogCaptureFixture
) -> None:
    deployed = repo.push(GOOD)
    repo.syncer.sync("poll")
    hidden = repo.remote.with_name("hidden.git")
    repo.remote.rename(hidden)
    with caplog.at_level(logging.WARNING, logger="headwater.daemon.sync"):
        first = repo.syncer.sync("poll")
        second = repo.syncer.sync("poll")
    assert first.result == second.result == "FetchFailed"
    state = repo.state()
    assert state["fetch_failures"] == 2
    assert state["fetch_error"] == second.message
    assert second.message
    assert f"fetch failed: {second.message}" in caplog.messages
    hidden.rename(repo.remote)
    assert repo.syncer.sync("poll").result == "NoChange"
    state = repo.state()
    assert (state["fetch_error"], state["fetch_failures"]) == (None, 0)
    assert state["deployed_commit"] == deployed


def test_a_failed_commit_fetched_again_is_not_retried_and_keeps_the_branch_head(
    repo: World,
) -> None:
    repo.push(GOOD)
    repo.syncer.sync("poll")
    bad = repo.push(BAD)
    assert repo.syncer.sync("poll").result == "Failed"
    again = repo.syncer.sync("poll")
    assert again.result == "NoChange"
    assert again.message == "this commit failed to deploy before"
    assert repo.state()["branch_head"] == bad


def test_the_branch_head_follows_a_branch_moved_back_to_the_deployed_commit(
    repo: World,
) -> None:
    deployed = repo.push(GOOD)
    repo.syncer.sync("poll")
    bad = repo.push(BAD)
    repo.syncer.sync("poll")
    assert repo.state()["branch_head"] == bad
    repo.clone.reset_hard(deployed)
    repo.clone.push(force=True)
    assert repo.syncer.sync("poll").result == "NoChange"
    state = repo.state()
    assert state["branch_head"] == deployed
    assert state["deployed_commit"] == deployed


def test_asking_for_the_deployed_commit_leaves_the_branch_head_alone(repo: World) -> None:
    deployed = repo.push(GOOD)
    repo.syncer.sync("poll")
    bad = repo.push(BAD)
    repo.syncer.sync("poll")
    assert repo.syncer.sync("pin", to=deployed).result == "NoChange"
    assert repo.state()["branch_head"] == bad


def test_attempts_a_dead_process_left_running_are_closed_as_interrupted(repo: World) -> None:
    repo.push(GOOD)
    repo.syncer.sync("poll")
    with repo.engine.store.write() as tx:
        dead = tx.insert_sync(
            {"started_at": 1.0, "cause": "poll", "to_commit": "f" * 40, "result": "Running"}
        )
    assert repo.syncer.close_interrupted() == 1
    with repo.engine.store.read() as tx:
        rows = {row["id"]: row for row in tx.syncs()}
    assert rows[dead]["result"] == "Failed"
    assert rows[dead]["finished_at"] is not None
    assert rows[dead]["message"] == (
        "interrupted: the daemon stopped before this sync finished; nothing of it was deployed"
    )
    others = [row["result"] for sync_id, row in rows.items() if sync_id != dead]
    assert others == ["Succeeded"]
    assert repo.syncer.close_interrupted() == 0


def test_a_refused_commit_is_recorded_with_what_it_would_have_changed(repo: World) -> None:
    repo.push({**GOOD, "flows/team/b.yaml": flow("team", "b")})
    repo.syncer.sync("poll")
    changes = {
        "flows/team/a.yaml": flow("team", "a", "changed"),
        "flows/team/c.yaml": flow("team", "c"),
        "flows/team/d.yaml": BAD["flows/team/a.yaml"].replace("id: a", "id: d"),
    }
    bad = repo.push(changes, remove=("flows/team/b.yaml",))
    outcome = repo.syncer.sync("poll")
    assert outcome.result == "Failed"
    with repo.engine.store.read() as tx:
        [row, _] = tx.syncs()
    assert row["id"] == outcome.sync_id
    assert row["result"] == "Failed"
    assert row["finished_at"] is not None
    assert row["to_commit"] == bad
    assert (row["added"], row["updated"], row["deleted"]) == (2, 1, 1)
    assert len(row["errors"]) == len(outcome.errors) > 0
    assert row["message"] == f"{len(outcome.errors)} error(s); the deployed commit stays"
    state = repo.state()
    assert (state["failed_commit"], state["branch_head"]) == (bad, bad)


def test_a_refused_commit_after_fetch_failures_clears_them(repo: World) -> None:
    repo.push(GOOD)
    repo.syncer.sync("poll")
    hidden = repo.remote.with_name("hidden.git")
    repo.remote.rename(hidden)
    assert repo.syncer.sync("poll").result == "FetchFailed"
    hidden.rename(repo.remote)
    repo.push(BAD)
    assert repo.syncer.sync("poll").result == "Failed"
    state = repo.state()
    assert (state["fetch_error"], state["fetch_failures"]) == (None, 0)


def test_a_refused_pin_does_not_move_the_branch_head(repo: World) -> None:
    repo.push(GOOD)
    repo.syncer.sync("poll")
    bad = repo.push(BAD)
    later = repo.push({"flows/team/z.yaml": flow("team", "z")})
    assert repo.syncer.sync("poll").result == "Failed"  # a's error is still there
    assert repo.state()["branch_head"] == later
    assert repo.syncer.sync("pin", to=bad).result == "Failed"
    state = repo.state()
    assert (state["failed_commit"], state["branch_head"]) == (bad, later)


class UnreadableMirror(Mirror):
    """The real mirror, whose object store stops answering (a disk gone bad)."""

    def read_blobs(self, blobs: Iterable[str]) -> dict[str, bytes]:
        raise OSError(5, "Input/output error")


def test_a_commit_that_cannot_be_read_fails_the_sync_and_says_why(repo: World) -> None:
    deployed = repo.push(GOOD)
    repo.syncer.sync("poll")
    repo.push({"flows/team/b.yaml": flow("team", "b")})
    repo.mirror.close()
    repo.mirror = UnreadableMirror(repo.data_dir / "mirror.git", str(repo.remote), "main")
    repo.syncer = Syncer(repo.engine.store, repo.mirror)
    outcome = repo.syncer.sync("poll")
    assert outcome.result == "Failed"
    [error] = outcome.errors
    assert error.to_json() == {
        "path": "flows",
        "line": 1,
        "column": 1,
        "severity": "error",
        "field": "",
        "message": "sync failed: [Errno 5] Input/output error",
    }
    assert repo.state()["deployed_commit"] == deployed
