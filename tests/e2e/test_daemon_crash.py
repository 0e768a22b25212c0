"""`kill -9` of the daemon in the middle of deploying a 1,000-file commit.

A commit deploys whole or not at all (DESIGN, "Sync semantics"): whenever the process
dies, the deployed flows and their revisions are exactly those of the old commit or
exactly those of the new one, and a restarted daemon converges to the new one. The
daemon is killed several times while the big commit deploys: first inside the deploy's
one transaction, at a kill point (tests/killpoints.py: the daemon stops right after the
deploy wrote its second revision, with the transaction open and the write lock held,
which the test checks before the SIGKILL), then at random moments of the deploy
(fetching, validating in the worker pool, writing). The database is read the way an
operator would, with sqlite3, after each kill.
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from gitrepos import WorkingClone
from killpoints import Killpoint, reached, write_lock_held
from test_daemon import (
    DaemonFactory,
    Repos,
    RunningDaemon,
    daemons,
    flow,
    new_repos,
)
from waiting import wait_until

OLD_FLOWS = 40  # flows of the old commit, all changed by the new one
NEW_FLOWS = 1000  # files of the new commit
NAMESPACES = 10
REVISION_WRITE = "headwater.daemon.store.store:Tx.insert_revision"
"""Writes a revision of a flow that has history (the old flows' updates; new flows are
written together, before them, in the same transaction)."""
Key = tuple[str, str]


@dataclass(frozen=True)
class Deployed:
    """What the database says is deployed: the commit, flows (revision, blob), revisions."""

    commit: str | None
    flows: dict[Key, tuple[int, str]]
    revisions: int

    def describe(self) -> str:
        counts: dict[int, int] = {}
        for revision, _ in self.flows.values():
            counts[revision] = counts.get(revision, 0) + 1
        return (
            f"commit {self.commit and self.commit[:8]}, {len(self.flows)} flows "
            f"(by revision {sorted(counts.items())}), {self.revisions} revisions"
        )


def read_deployed(database: Path) -> Deployed:
    with _read_only(database) as connection:
        [commit] = connection.execute("SELECT deployed_commit FROM sync_state").fetchone()
        rows = connection.execute(
            "SELECT f.namespace, f.flow_id, f.revision, f.blob, r.blob "
            "FROM flows f LEFT JOIN flow_revisions r ON r.namespace = f.namespace "
            "AND r.flow_id = f.flow_id AND r.revision = f.revision WHERE NOT f.deleted"
        ).fetchall()
        [revisions] = connection.execute("SELECT count(*) FROM flow_revisions").fetchone()
    assert all(flow_blob == revision_blob for *_, flow_blob, revision_blob in rows), rows
    return Deployed(commit, {(ns, fid): (rev, blob) for ns, fid, rev, blob, _ in rows}, revisions)


def sync_rows(database: Path, commit: str) -> list[tuple[int, str, str | None]]:
    """(id, result, message) of the attempts to deploy `commit`."""
    with _read_only(database) as connection:
        return connection.execute(
            "SELECT id, result, message FROM syncs WHERE to_commit = ? ORDER BY id", (commit,)
        ).fetchall()


class _read_only:
    def __init__(self, database: Path) -> None:
        self.connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10)

    def __enter__(self) -> sqlite3.Connection:
        return self.connection

    def __exit__(self, *exc_info: object) -> None:
        self.connection.close()


@pytest.fixture
def repos(tmp_path: Path) -> Repos:
    return new_repos(tmp_path)


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[DaemonFactory]:
    with daemons(tmp_path) as start:
        yield start


def tree(clone: WorkingClone, commit: str) -> dict[Key, str]:
    """(namespace, id) -> blob of every flow file at `commit`."""
    found = {}
    for line in clone.git("ls-tree", "-r", commit, "flows").splitlines():
        blob, path = line.split()[2], line.split("\t")[1]
        *folders, name = path.split("/")[1:]
        found[(".".join(folders), name.removesuffix(".yaml"))] = blob
    return found


def test_a_kill_in_the_middle_of_a_deploy_leaves_one_commit_and_a_restart_converges(
    repos: Repos, start_daemon: DaemonFactory, tmp_path: Path
) -> None:
    def path(n: int) -> str:
        return f"flows/ns{n % NAMESPACES}/f{n}.yaml"

    def text(n: int, version: str) -> str:
        steps = "".join(
            f"  - id: step{i}\n    type: core.log.Log\n    message: {version} {n}.{i}\n"
            for i in range(8)
        )
        return flow(f"ns{n % NAMESPACES}", f"f{n}", f"{version} {n}", steps)

    old = repos.push({path(n): text(n, "old") for n in range(OLD_FLOWS)}, "old")
    new = repos.clone.bulk_commit({path(n): text(n, "new").encode() for n in range(NEW_FLOWS)})
    old_blobs, new_blobs = tree(repos.clone, old), tree(repos.clone, new)
    before = Deployed(old, {key: (1, blob) for key, blob in old_blobs.items()}, OLD_FLOWS)
    after = Deployed(
        new,
        {key: (2 if key in old_blobs else 1, blob) for key, blob in new_blobs.items()},
        OLD_FLOWS + NEW_FLOWS,
    )

    writing = Killpoint(REVISION_WRITE, tmp_path / "revision.json", call=2)
    daemon = start_daemon(f"file://{repos.remote}", killpoint=writing)
    database = daemon.data_dir / "headwater.db"
    assert read_deployed(database) == before  # a first deploy writes no such revision
    repos.clone.push()
    daemon.webhook(after=new)

    # First, the kill lands inside the deploy's transaction: its new flows and one
    # update are written, the transaction is open and holds the write lock.
    assert daemon.proc is not None
    stop = reached(writing, daemon.proc)
    [row] = stop.rows
    assert (row["revision"], row["commit_sha"]) == (2, new), stop
    assert stop.in_transaction is True
    assert write_lock_held(database)
    daemon.kill()
    seen = read_deployed(database)
    assert seen == before, f"killed inside the deploy's transaction: {seen.describe()}"
    [(last, result, _)] = sync_rows(database, new)
    assert result == "Running"
    daemon.cleanup()  # what the killed daemon left running (workers, git)
    interrupted, outcomes = 1, ["inside the deploy's transaction: old"]
    daemon = restart(daemon, start_daemon)  # its first sync deploys `new` again

    # Then at random moments: fetching, validating, writing.
    rng = random.Random()
    for delay in (rng.uniform(0.0, 0.5), rng.uniform(0.5, 1.5), rng.uniform(0.0, 1.5)):
        last = wait_until(
            lambda after=last: running_after(database, new, after), what="the deploy to start"
        )
        time.sleep(delay)
        daemon.kill()
        seen = read_deployed(database)
        moment = f"{delay:.2f} s into the deploy"
        assert seen in (before, after), f"killed {moment}: a mix: {seen.describe()}"
        daemon.cleanup()
        outcomes.append(f"{moment}: {'new' if seen == after else 'old'}")
        if seen == after:  # the deploy committed before this kill: start again for the API
            daemon = start_daemon(daemon.repo, daemon.data_dir.name, run=False).start()
            break
        assert sync_rows(database, new)[-1][1] == "Running", f"killed {moment}: not mid-deploy"
        interrupted += 1
        daemon = restart(daemon, start_daemon)

    wait_until(lambda: read_deployed(database) == after, what="the restarted daemon to converge")
    daemon.wait_deployed(new)
    attempts = sync_rows(database, new)
    assert [r[1] for r in attempts] == ["Failed"] * interrupted + ["Succeeded"], attempts
    assert all(r[2].startswith("interrupted: the daemon stopped") for r in attempts[:-1])
    assert daemon.get("/api/v1/flows/search?size=1")["total"] == NEW_FLOWS
    assert daemon.get("/api/v1/flows/ns3/f13")["commit"]["sha"] == new
    print("killed " + "; ".join(outcomes))


def running_after(database: Path, commit: str, last: int) -> int | None:
    """The id of a running attempt to deploy `commit` newer than attempt `last`."""
    return next(
        (r[0] for r in sync_rows(database, commit) if r[1] == "Running" and r[0] > last), None
    )


def restart(daemon: RunningDaemon, start_daemon: DaemonFactory) -> RunningDaemon:
    """The same data directory, as a supervisor would restart it; not waiting for /readyz,
    which comes only after the first sync (the deploy to interrupt again)."""
    again = start_daemon(daemon.repo, daemon.data_dir.name, run=False)
    return again.start(ready=False)
