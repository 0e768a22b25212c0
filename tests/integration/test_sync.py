"""Sync and reconcile against real repositories: deploy by push, whole commits, revisions,
and a deploy killed inside its transaction (tests/killpoints.py) that leaves the old commit."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import pytest
from gitrepos import WorkingClone, make_remote
from killpoints import Killpoint, command, reached, write_lock_held
from sqlalchemy import text

from headwater.daemon.engine.engine import Engine, EngineSettings
from headwater.daemon.engine.executor import ExecutionRequest
from headwater.daemon.git import Mirror
from headwater.daemon.store.store import Row
from headwater.daemon.sync import Syncer


def flow(namespace: str, flow_id: str, message: str = "hi", extra: str = "") -> str:
    return (
        f"id: {flow_id}\nnamespace: {namespace}\ntasks:\n"
        f"  - id: say\n    type: core.log.Log\n    message: {message}\n{extra}"
    )


class World:
    def __init__(self, tmp: Path) -> None:
        self.remote = make_remote(tmp / "remote.git")
        self.clone = WorkingClone.create(tmp / "work", self.remote)
        self.data_dir = tmp / "data"
        self.open()

    def open(self) -> None:
        """The store, mirror and syncer of the data directory (as a starting process has)."""
        self.engine = Engine(EngineSettings(data_dir=self.data_dir, workers=2))
        self.mirror = Mirror(self.data_dir / "mirror.git", str(self.remote), "main")
        self.mirror.ensure()
        self.syncer = Syncer(self.engine.store, self.mirror)

    def close(self) -> None:
        """Let go of the data directory (another process may take it)."""
        self.mirror.close()
        self.engine.stop(grace=1)

    def push(
        self, files: dict[str, str], message: str = "change", remove: tuple[str, ...] = ()
    ) -> str:
        self.clone.write_many(files)
        for path in remove:
            self.clone.remove(path)
        sha = self.clone.commit(message)
        self.clone.push()
        return sha

    def revisions(self, namespace: str, flow_id: str) -> list[Row]:
        with self.engine.store.read() as tx:
            rows = tx.connection.execute(
                text(
                    "SELECT revision, commit_sha, commit_message, deleted, equals_revision, "
                    "source FROM flow_revisions WHERE namespace = :namespace "
                    "AND flow_id = :flow_id ORDER BY revision"
                ),
                {"namespace": namespace, "flow_id": flow_id},
            ).mappings()
            return [dict(r) for r in rows]

    def deployed(self) -> dict[tuple[str, str], int]:
        with self.engine.store.read() as tx:
            return {(f["namespace"], f["flow_id"]): f["revision"] for f in tx.deployed_flows()}

    def state(self) -> Row:
        return self.syncer.state()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.close()


def test_push_deploys_with_commit_metadata(world: World) -> None:
    sha = world.push({"flows/team/a.yaml": flow("team", "a")}, "add a")
    outcome = world.syncer.sync("poll")
    assert outcome.result == "Succeeded"
    assert (outcome.added, outcome.updated, outcome.deleted) == (1, 0, 0)
    [revision] = world.revisions("team", "a")
    assert revision["revision"] == 1
    assert revision["commit_sha"] == sha
    assert revision["commit_message"].strip() == "add a"
    assert world.state()["deployed_commit"] == sha


def test_nothing_new_writes_nothing(world: World) -> None:
    world.push({"flows/team/a.yaml": flow("team", "a")})
    world.syncer.sync("poll")
    with world.engine.store.read() as tx:
        before = tx.syncs()
    assert world.syncer.sync("poll").result == "NoChange"
    with world.engine.store.read() as tx:
        assert tx.syncs() == before


def test_invalid_commit_is_refused_whole_with_every_error(world: World) -> None:
    good = world.push(
        {"flows/team/a.yaml": flow("team", "a"), "flows/team/b.yaml": flow("team", "b")}
    )
    world.syncer.sync("poll")
    bad = world.push(
        {
            "flows/team/a.yaml": flow("team", "a", "changed"),
            "flows/team/b.yaml": (
                "id: b\nnamespace: team\ntasks:\n  - id: x\n    type: core.log.Lg\n"
            ),
            "flows/team/c.yaml": flow("team", "wrong_id"),
        }
    )
    outcome = world.syncer.sync("poll")
    assert outcome.result == "Failed"
    assert [str(e) for e in outcome.errors] == [
        "flows/team/b.yaml:5:11: error: tasks[0]: unknown task type 'core.log.Lg'; "
        "did you mean 'core.log.Log'?",
        "flows/team/c.yaml:1:5: error: id: 'wrong_id' does not match the file name c.yaml; "
        "change it to id: c or rename the file to wrong_id.yaml",
    ]
    state = world.state()
    assert state["deployed_commit"] == good
    assert state["failed_commit"] == bad
    assert world.deployed() == {("team", "a"): 1, ("team", "b"): 1}
    assert world.syncer.sync("poll").result == "NoChange"  # not retried until something changes


def test_revert_makes_a_revision_equal_to_the_old_one(world: World) -> None:
    first = world.push({"flows/team/a.yaml": flow("team", "a", "one")}, "one")
    world.syncer.sync("poll")
    world.push({"flows/team/a.yaml": flow("team", "a", "two")}, "two")
    world.syncer.sync("poll")
    second = world.clone.head()
    world.clone.revert(second)
    world.clone.push()
    assert world.syncer.sync("poll").result == "Succeeded"
    revisions = world.revisions("team", "a")
    assert [r["revision"] for r in revisions] == [1, 2, 3]
    assert revisions[2]["equals_revision"] == 1
    assert revisions[2]["source"] == revisions[0]["source"]
    assert first != second


def test_delete_then_recreate_continues_the_numbering(world: World) -> None:
    world.push({"flows/team/a.yaml": flow("team", "a"), "flows/team/b.yaml": flow("team", "b")})
    world.syncer.sync("poll")
    world.push({}, "delete a", remove=("flows/team/a.yaml",))
    assert world.syncer.sync("poll").deleted == 1
    assert ("team", "a") not in world.deployed()
    world.push({"flows/team/a.yaml": flow("team", "a", "back")}, "back")
    world.syncer.sync("poll")
    revisions = world.revisions("team", "a")
    assert [(r["revision"], bool(r["deleted"])) for r in revisions] == [
        (1, False),
        (2, True),
        (3, False),
    ]


def test_deleting_every_flow_is_refused(world: World) -> None:
    world.push({"flows/team/a.yaml": flow("team", "a")})
    world.syncer.sync("poll")
    world.push({"README.md": "nothing"}, "oops", remove=("flows/team/a.yaml",))
    outcome = world.syncer.sync("poll")
    assert outcome.result == "Failed"
    assert "would delete every deployed flow" in str(outcome.errors[0])
    assert world.deployed() == {("team", "a"): 1}


def test_subflow_to_a_deleted_flow_is_refused(world: World) -> None:
    call = "  - id: call\n    type: core.flow.Subflow\n    namespace: team\n    flowId: child\n"
    world.push(
        {
            "flows/team/child.yaml": flow("team", "child"),
            "flows/team/parent.yaml": "id: parent\nnamespace: team\ntasks:\n" + call,
        }
    )
    assert world.syncer.sync("poll").result == "Succeeded"
    world.push({}, "drop child", remove=("flows/team/child.yaml",))
    outcome = world.syncer.sync("poll")
    assert outcome.result == "Failed"
    assert str(outcome.errors[0]) == (
        "flows/team/parent.yaml:1:1: error: subflow names flow team.child, which this commit "
        "deletes; change this flow in the same commit"
    )


def test_burst_of_pushes_makes_one_revision_credited_to_the_last_commit(world: World) -> None:
    world.push(
        {"flows/team/a.yaml": flow("team", "a", "v1"), "flows/team/b.yaml": flow("team", "b")}
    )
    world.syncer.sync("poll")
    world.push({"flows/team/a.yaml": flow("team", "a", "v2")}, "a v2")
    last = world.push({"flows/team/a.yaml": flow("team", "a", "v3")}, "a v3")
    world.push({"flows/team/README.md": "notes"}, "docs only")
    outcome = world.syncer.sync("webhook")
    assert (outcome.added, outcome.updated, outcome.deleted) == (0, 1, 0)
    revisions = world.revisions("team", "a")
    assert [r["revision"] for r in revisions] == [1, 2]
    assert revisions[1]["commit_sha"] == last
    assert world.revisions("team", "b")[-1]["revision"] == 1  # unchanged blob: no revision


def test_force_push_is_followed_and_recorded(world: World) -> None:
    base = world.push({"flows/team/a.yaml": flow("team", "a", "v1")}, "v1")
    world.syncer.sync("poll")
    world.push({"flows/team/a.yaml": flow("team", "a", "v2")}, "v2")
    world.syncer.sync("poll")
    world.clone.reset_hard(base)
    world.clone.write("flows/team/a.yaml", flow("team", "a", "rewritten"))
    rewritten = world.clone.commit("rewritten")
    world.clone.push(force=True)
    outcome = world.syncer.sync("poll")
    assert outcome.result == "Succeeded"
    with world.engine.store.read() as tx:
        assert tx.syncs()[0]["forced"]
    assert world.state()["deployed_commit"] == rewritten
    assert "rewritten" in world.revisions("team", "a")[-1]["source"]


def test_pin_holds_a_commit_until_resumed(world: World) -> None:
    first = world.push({"flows/team/a.yaml": flow("team", "a", "v1")}, "v1")
    world.syncer.sync("poll")
    world.push({"flows/team/a.yaml": flow("team", "a", "v2")}, "v2")
    world.syncer.sync("poll")
    pinned = world.syncer.sync("pin", to=first[:10])  # a short sha, as people type it
    assert pinned.result == "Succeeded"
    assert world.state()["pinned_commit"] == first
    assert world.state()["deployed_commit"] == first
    assert world.syncer.sync("poll").result == "Skipped"  # automatic sync stays off
    assert "v1" in world.revisions("team", "a")[-1]["source"]
    world.syncer.resume()
    assert world.syncer.sync("poll").result == "Succeeded"
    assert world.state()["pinned_commit"] is None
    assert "v2" in world.revisions("team", "a")[-1]["source"]


def test_suspend_stops_automatic_sync_but_not_a_manual_one(world: World) -> None:
    world.push({"flows/team/a.yaml": flow("team", "a", "v1")})
    world.syncer.sync("poll")
    world.syncer.suspend()
    world.push({"flows/team/a.yaml": flow("team", "a", "v2")})
    assert world.syncer.sync("poll").result == "Skipped"
    assert world.syncer.sync("webhook").result == "Skipped"
    assert world.syncer.sync("manual").result == "Succeeded"
    world.syncer.resume()
    assert world.syncer.state()["suspended"] is False


def test_an_execution_keeps_its_revision_across_a_deploy(world: World) -> None:
    sleeper = "  - id: nap\n    type: core.flow.Sleep\n    duration: PT0.5S\n"
    world.push({"flows/team/a.yaml": flow("team", "a", "old") + sleeper})
    world.syncer.sync("poll")
    world.engine.start()
    execution = world.engine.start_execution(ExecutionRequest("team", "a"))
    world.push({"flows/team/a.yaml": flow("team", "a", "new")})
    assert world.syncer.sync("poll").result == "Succeeded"
    done = world.engine.wait(execution["id"], timeout=10)
    assert done["state"] == "SUCCESS"
    assert done["flow_revision"] == 1
    assert [r["task_id"] for r in world.engine.task_runs(execution["id"])] == ["say", "nap"]
    logs = [line["message"] for line in world.engine.store.logs(execution["id"])]
    assert logs == ["old"]


def test_symlinks_and_bad_folders_fail_the_commit(world: World) -> None:
    world.push({"flows/team/a.yaml": flow("team", "a")})
    world.syncer.sync("poll")
    world.clone.symlink("flows/team/link.yaml", "a.yaml")
    world.clone.write("flows/Bad/x.yaml", flow("bad", "x"))
    world.clone.commit("bad layout")
    world.clone.push()
    outcome = world.syncer.sync("poll")
    assert outcome.result == "Failed"
    messages = [str(e) for e in outcome.errors]
    assert any(
        "flows/Bad/x.yaml:1:1: error: folder 'Bad' is not a valid namespace" in m for m in messages
    )
    assert any(
        "flows/team/link.yaml:1:1: error: symbolic links are not allowed" in m for m in messages
    )


# -- a crash in the middle of a deploy ----------------------------------------------------


def deploy_head(data_dir: str, remote: str) -> None:
    """One sync of the branch head, in a process of its own: the kill point's driver."""
    engine = Engine(EngineSettings(data_dir=Path(data_dir), workers=2))
    mirror = Mirror(Path(data_dir) / "mirror.git", remote, "main")
    mirror.ensure()
    Syncer(engine.store, mirror).sync("poll")


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test started (each in its own session): all of them end with it."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def test_a_kill_inside_the_deploys_transaction_leaves_the_old_commit_whole(
    world: World, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    old_files = {f"flows/team/{name}.yaml": flow("team", name, "old") for name in "abcd"}
    old = world.push(old_files, "old")
    assert world.syncer.sync("poll").result == "Succeeded"
    before = {("team", name): 1 for name in "abcd"}
    assert world.deployed() == before
    new_files = {f"flows/team/{name}.yaml": flow("team", name, "new") for name in "abce"}
    new = world.push(new_files, "new", remove=("flows/team/d.yaml",))

    # Another process deploys `new` and stops after the deploy's second revision is written
    # (three updates and a delete write one each), inside the deploy's transaction.
    world.close()
    second = Killpoint(
        "headwater.daemon.store.store:Tx.insert_revision", tmp_path / "revision.json", call=2
    )
    launch = command(second, "test_sync:deploy_head", str(world.data_dir), str(world.remote))
    here = str(Path(__file__).parent)
    paths = os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))
    with (tmp_path / "driver.log").open("ab") as out:
        driver = subprocess.Popen(
            launch,
            env={**os.environ, "PYTHONPATH": paths},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    processes.append(driver)
    stop = reached(second, driver)
    [row] = stop.rows
    assert (row["revision"], row["commit_sha"]) == (2, new), stop
    assert stop.in_transaction is True
    assert write_lock_held(world.data_dir / "headwater.db")
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait(10)

    world.open()  # as a restarted daemon: the old commit, whole, and nothing of the new one
    assert world.deployed() == before
    assert world.state()["deployed_commit"] == old
    with world.engine.store.read() as tx:
        written = tx.connection.execute(
            text("SELECT count(*) FROM flow_revisions WHERE commit_sha = :sha"), {"sha": new}
        ).scalar()
        [attempt] = [r for r in tx.syncs() if r["to_commit"] == new]
    assert written == 0, f"{written} revisions of the interrupted deploy were committed"
    assert attempt["result"] == "Running"
    assert world.syncer.close_interrupted() == 1

    outcome = world.syncer.sync("startup")  # the restart deploys `new` whole
    counts = (outcome.added, outcome.updated, outcome.deleted)
    assert (outcome.result, counts) == ("Succeeded", (1, 3, 1)), outcome
    assert world.deployed() == {
        ("team", "a"): 2,
        ("team", "b"): 2,
        ("team", "c"): 2,
        ("team", "e"): 1,
    }
    assert world.state()["deployed_commit"] == new
    assert [(r["revision"], bool(r["deleted"])) for r in world.revisions("team", "d")] == [
        (1, False),
        (2, True),
    ]
