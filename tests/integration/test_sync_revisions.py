"""What each revision a sync writes records: a change credited to its commit, a delete
that keeps the last source, a renamed file that is no new revision, and a deleted flow
that no longer holds on to the flows it called.

The same real repositories, store and syncer as test_sync.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from test_sync import World, flow

from headwater.daemon.store.store import Row

CALL_CHILD = "  - id: call\n    type: core.flow.Subflow\n    namespace: team\n    flowId: child\n"


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.close()


def revision(repo: World, flow_id: str, number: int) -> Row:
    with repo.engine.store.read() as tx:
        found = tx.connection.execute(
            text(
                "SELECT * FROM flow_revisions WHERE namespace = 'team' AND flow_id = :flow_id "
                "AND revision = :number"
            ),
            {"flow_id": flow_id, "number": number},
        ).mappings()
        return dict(found.one())


def test_a_change_is_credited_to_the_commit_that_made_it(repo: World) -> None:
    repo.push({"flows/team/a.yaml": flow("team", "a", "v1")}, "a v1")
    repo.syncer.sync("poll")
    sha = repo.push({"flows/team/a.yaml": flow("team", "a", "v2")}, "a v2")
    repo.syncer.sync("poll")
    author, date = repo.clone.git("log", "-1", "--format=%an <%ae>%n%at", sha).split("\n")[:2]
    second = revision(repo, "a", 2)
    assert second["commit_sha"] == sha
    assert second["commit_message"].strip() == "a v2"
    assert second["commit_author"] == author
    assert second["commit_date"] == float(date)
    assert "v2" in second["source"]


def test_a_deleted_flow_keeps_its_last_source_in_its_history(repo: World) -> None:
    source = flow("team", "a", "last words")
    repo.push({"flows/team/a.yaml": source, "flows/team/b.yaml": flow("team", "b")})
    repo.syncer.sync("poll")
    sha = repo.push({}, "drop a", remove=("flows/team/a.yaml",))
    assert repo.syncer.sync("poll").result == "Succeeded"
    gone = revision(repo, "a", 2)
    assert gone["deleted"]
    assert gone["source"] == source
    assert gone["blob"] is None
    assert (gone["commit_sha"], gone["commit_message"].strip()) == (sha, "drop a")
    assert ("team", "a") not in repo.deployed()


def test_a_flow_file_renamed_from_yaml_to_yml_is_no_new_revision(repo: World) -> None:
    source = flow("team", "a")
    repo.push({"flows/team/a.yaml": source})
    repo.syncer.sync("poll")
    repo.push({"flows/team/a.yml": source}, "a.yaml to a.yml", remove=("flows/team/a.yaml",))
    outcome = repo.syncer.sync("poll")
    assert outcome.result == "Succeeded", outcome.errors
    assert [r["revision"] for r in repo.revisions("team", "a")] == [1]
    with repo.engine.store.read() as tx:
        moved = tx.flow("team", "a")
    assert moved is not None
    assert moved["path"] == "flows/team/a.yml"


def test_a_deleted_flow_no_longer_holds_on_to_the_flows_it_called(repo: World) -> None:
    parent = "id: parent\nnamespace: team\ntasks:\n" + CALL_CHILD
    repo.push({"flows/team/child.yaml": flow("team", "child"), "flows/team/parent.yaml": parent})
    repo.syncer.sync("poll")
    repo.push({}, "drop parent", remove=("flows/team/parent.yaml",))
    assert repo.syncer.sync("poll").result == "Succeeded"
    repo.push(
        {"flows/team/other.yaml": flow("team", "other")},
        "drop child",
        remove=("flows/team/child.yaml",),
    )
    outcome = repo.syncer.sync("poll")
    assert outcome.result == "Succeeded", outcome.errors
    assert set(repo.deployed()) == {("team", "other")}
