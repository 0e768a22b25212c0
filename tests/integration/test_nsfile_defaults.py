"""FILE inputs whose `defaults` name a namespace file (`nsfile:///path`) against real
repositories: a commit naming a file its namespace does not have is refused, with the
place of the default; and a real daemon runs such a flow with the file of the deployed
commit."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from gitrepos import WorkingClone, make_remote
from inprocessdaemon import Http, serving

from headwater.daemon.engine.engine import Engine, EngineSettings
from headwater.daemon.git import Mirror
from headwater.daemon.sync import Syncer

TOKEN = "nsfile-defaults-api-token"
AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}

LOAD = """\
id: load
namespace: shop
inputs:
  - id: prices
    type: FILE
    extension: .csv
    defaults: nsfile:///samples/prices.csv
tasks:
  - id: last
    type: scripts.shell.Commands
    inputFiles:
      prices.csv: "{{ inputs.prices }}"
    commands:
      - tail -n 1 prices.csv
"""
OTHER = "id: other\nnamespace: shop\ntasks:\n  - {id: say, type: core.log.Log, message: hi}\n"


class Repository:
    """A remote, a clone to push from, and a syncer deploying the remote's commits."""

    def __init__(self, tmp: Path) -> None:
        self.remote = make_remote(tmp / "remote.git")
        self.clone = WorkingClone.create(tmp / "work", self.remote)
        self.engine = Engine(EngineSettings(data_dir=tmp / "data", workers=1))
        self.mirror = Mirror(tmp / "data" / "mirror.git", str(self.remote), "main")
        self.mirror.ensure()
        self.syncer = Syncer(self.engine.store, self.mirror)

    def push(self, files: dict[str, str], remove: tuple[str, ...] = ()) -> None:
        self.clone.write_many(files)
        for path in remove:
            self.clone.remove(path)
        self.clone.commit("change")
        self.clone.push()

    def sync(self) -> tuple[str, list[str]]:
        outcome = self.syncer.sync("poll")
        return outcome.result, [str(e) for e in outcome.errors]


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Repository]:
    made = Repository(tmp_path)
    yield made
    made.mirror.close()
    made.engine.stop(grace=1)


def test_a_commit_whose_file_default_names_a_missing_namespace_file_is_refused(
    repo: Repository,
) -> None:
    repo.push({"flows/shop/load.yaml": LOAD})
    assert repo.sync() == (
        "Failed",
        [
            "flows/shop/load.yaml:7:15: error: inputs[0].defaults: FILE input 'prices' defaults "
            "to namespace file samples/prices.csv, which does not exist "
            "(there is no flows/shop/_files/samples/prices.csv)"
        ],
    )
    repo.push({"flows/shop/_files/samples/prices.csv": "sku,price\n"})
    assert repo.sync() == ("Succeeded", [])


def test_a_commit_deleting_a_namespace_file_a_deployed_flow_names_is_refused(
    repo: Repository,
) -> None:
    repo.push(
        {
            "flows/shop/load.yaml": LOAD,
            "flows/shop/other.yaml": OTHER,
            "flows/shop/_files/samples/prices.csv": "sku,price\n",
            "flows/shop/_files/notes.txt": "notes\n",
        }
    )
    assert repo.sync() == ("Succeeded", [])
    repo.push({}, remove=("flows/shop/_files/notes.txt",))
    assert repo.sync() == ("Succeeded", [])
    repo.push(
        {"flows/shop/other.yaml": OTHER + "# v2\n"}, ("flows/shop/_files/samples/prices.csv",)
    )
    assert repo.sync() == (
        "Failed",
        [
            "flows/shop/load.yaml:7:15: error: inputs[0].defaults: FILE input 'prices' defaults "
            "to namespace file samples/prices.csv, which this commit deletes "
            "(flows/shop/_files/samples/prices.csv); change this flow in the same commit"
        ],
    )


def test_a_daemon_runs_a_file_default_with_the_file_of_the_deployed_commit(
    tmp_path: Path,
) -> None:
    remote = make_remote(tmp_path / "remote.git")
    clone = WorkingClone.create(tmp_path / "work", remote)
    clone.write_many(
        {
            "flows/shop/load.yaml": LOAD,
            "flows/shop/_files/samples/prices.csv": "sku,price\nA1,3.50\n",
        }
    )
    clone.commit("load with a sample")
    clone.push()
    with serving(remote, tmp_path, token=TOKEN) as daemon:
        http = Http(daemon)
        answer = http.call("POST", "/api/v1/executions/shop/load", b"{}", AUTH)
        assert answer.status == 200, answer.body
        done = http.finished(answer.body["id"])
        assert done["state"]["current"] == "SUCCESS", done
        assert done["inputs"]["prices"].endswith(f"/{done['id']}/inputs/prices/prices.csv")
        assert http.messages(done["id"]) == ["A1,3.50"]
