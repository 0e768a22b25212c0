"""A deploy that names secrets this daemon does not have: it deploys, and says so in the
sync's record, the sync API, the overview and the flow's page (issue 15, item 4).

Real git repositories, a real Syncer on a real engine's store, and the Flask app over
`EngineServices` whose sync is the real one.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

import pytest
from conftest import EngineFactory
from engineservices import EngineServices
from flask.testing import FlaskClient
from gitrepos import WorkingClone, make_remote

from headwater.daemon.engine.engine import Engine
from headwater.daemon.engine.secrets import Secrets
from headwater.daemon.git import Mirror
from headwater.daemon.services import WebSettings
from headwater.daemon.sync import Syncer, SyncOutcome
from headwater.web.app import create_app

HOOKED = """\
id: hooked
namespace: company
triggers:
  - id: hook
    type: io.kestra.plugin.core.trigger.Webhook
    key: "{{ secret('HOOK_KEY') }}"
tasks:
  - id: call
    type: io.kestra.plugin.core.log.Log
    message: "token {{ secret('API_TOKEN') }} and {{ secret('SET_ONE') }}"
"""
PLAIN = """\
id: plain
namespace: company
tasks:
  - id: say
    type: io.kestra.plugin.core.log.Log
    message: hello
"""
HOOK_WARNING = (
    "flows/company/hooked.yaml:6:10: warning: secret 'HOOK_KEY' is not set: "
    "the webhook trigger 'hook' answers 404 until it is"
)
TASK_WARNING = (
    "flows/company/hooked.yaml:10:14: warning: secret 'API_TOKEN' is not set: "
    "tasks that read it fail"
)


def encoded(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


class SyncingServices(EngineServices):
    """The seam with the daemon's real sync (git and all)."""

    def __init__(self, engine: Engine, syncer: Syncer, secrets: Secrets) -> None:
        super().__init__(engine, WebSettings("https://git.example.com/flows.git", "main"))
        self.syncer = syncer
        self.secrets = secrets

    def secret_is_set(self, name: str) -> bool:
        return self.secrets.is_set(name)

    def sync_now(self, to: str | None = None, timeout: float = 60.0) -> SyncOutcome:
        return self.syncer.sync("pin" if to else "manual", to)


class World:
    def __init__(self, tmp: Path, engine: Engine) -> None:
        remote = make_remote(tmp / "remote.git")
        self.clone = WorkingClone.create(tmp / "work", remote)
        self.engine = engine
        self.mirror = Mirror(tmp / "mirror.git", str(remote), "main")
        self.mirror.ensure()
        self.restart({"SECRET_SET_ONE": encoded("here")})

    def restart(self, environ: dict[str, str]) -> None:
        """The syncer a new daemon process has, with these secrets."""
        secrets = Secrets(None, environ)
        self.syncer = Syncer(self.engine.store, self.mirror, secrets=secrets.is_set)
        self.services = SyncingServices(self.engine, self.syncer, secrets)
        self.client: FlaskClient = create_app(self.services).test_client()

    def push(self, files: dict[str, str], remove: tuple[str, ...] = ()) -> None:
        self.clone.write_many(files)
        for path in remove:
            self.clone.remove(path)
        self.clone.commit("change")
        self.clone.push()


@pytest.fixture
def world(tmp_path: Path, make_engine: EngineFactory) -> World:
    return World(tmp_path, make_engine(workers=1))


def lines(warnings: list[dict[str, object]]) -> list[str]:
    return [f"{w['path']}:{w['line']}:{w['column']}: warning: {w['message']}" for w in warnings]


def visible(answer: bytes) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", answer.decode()))


def test_a_missing_secret_deploys_with_a_warning_in_the_sync_record_and_api(
    world: World,
) -> None:
    world.push({"flows/company/hooked.yaml": HOOKED, "flows/company/plain.yaml": PLAIN})
    answer = world.client.post("/api/v1/sync", json={})
    assert answer.status_code == 200, answer.text
    outcome = answer.get_json()
    assert outcome["result"] == "Succeeded"
    assert outcome["added"] == 2
    assert lines(outcome["warnings"]) == [HOOK_WARNING, TASK_WARNING]
    assert [
        (w["namespace"], w["flowId"], w["secret"], w["field"]) for w in outcome["warnings"]
    ] == [
        ("company", "hooked", "HOOK_KEY", "triggers[0].key"),
        ("company", "hooked", "API_TOKEN", "tasks[0].message"),
    ]
    status = world.client.get("/api/v1/sync").get_json()
    assert lines(status["warnings"]) == [HOOK_WARNING, TASK_WARNING]
    assert lines(status["lastAttempt"]["warnings"]) == [HOOK_WARNING, TASK_WARNING]
    # A sync with nothing new still tells what is missing.
    again = world.client.post("/api/v1/sync", json={}).get_json()
    assert again["result"] == "NoChange"
    assert lines(again["warnings"]) == [HOOK_WARNING, TASK_WARNING]


def test_warnings_follow_the_flows_and_clear_when_the_secret_is_set(world: World) -> None:
    world.push({"flows/company/hooked.yaml": HOOKED, "flows/company/plain.yaml": PLAIN})
    assert len(world.syncer.sync("manual").warnings) == 2
    # Another flow changes: the unchanged flow's warnings stay.
    world.push({"flows/company/plain.yaml": PLAIN.replace("hello", "hi")})
    outcome = world.syncer.sync("manual")
    assert outcome.result == "Succeeded"
    assert lines(outcome.warnings) == [HOOK_WARNING, TASK_WARNING]
    # The operator sets one secret and restarts: its warning is gone at once.
    world.restart({"SECRET_SET_ONE": encoded("x"), "SECRET_HOOK_KEY": encoded("k" * 20)})
    assert lines(world.syncer.recheck_secrets()) == [TASK_WARNING]
    assert lines(world.client.get("/api/v1/sync").get_json()["warnings"]) == [TASK_WARNING]
    # The flow stops reading the other one: its warning goes with the next deploy.
    world.push({"flows/company/hooked.yaml": HOOKED.replace("secret('API_TOKEN')", "'none'")})
    assert world.syncer.sync("manual").warnings == []
    assert world.client.get("/api/v1/sync").get_json()["warnings"] == []


def test_a_deleted_flow_takes_its_warnings_with_it(world: World) -> None:
    world.push({"flows/company/hooked.yaml": HOOKED, "flows/company/plain.yaml": PLAIN})
    world.syncer.sync("manual")
    world.push({}, remove=("flows/company/hooked.yaml",))
    outcome = world.syncer.sync("manual")
    assert (outcome.result, outcome.deleted, outcome.warnings) == ("Succeeded", 1, [])


def test_overview_and_flow_page_show_the_warnings(world: World) -> None:
    world.push({"flows/company/hooked.yaml": HOOKED, "flows/company/plain.yaml": PLAIN})
    world.syncer.sync("manual")
    overview = visible(world.client.get("/").data)
    assert "Secrets not set" in overview
    assert HOOK_WARNING in overview and TASK_WARNING in overview
    hooked = visible(world.client.get("/flows/company/hooked").data)
    assert "names secrets this daemon does not have" in hooked
    assert HOOK_WARNING in hooked and TASK_WARNING in hooked
    plain = visible(world.client.get("/flows/company/plain").data)
    assert "secrets this daemon does not have" not in plain
    world.restart(
        {
            name: encoded("value-" + name)
            for name in ("SECRET_HOOK_KEY", "SECRET_API_TOKEN", "SECRET_SET_ONE")
        }
    )
    world.syncer.recheck_secrets()
    assert "Secrets not set" not in visible(world.client.get("/").data)
    assert "secrets this daemon" not in visible(world.client.get("/flows/company/hooked").data)


def test_the_api_says_whether_secrets_are_set_and_never_their_values(world: World) -> None:
    answer = world.client.get("/api/v1/secrets?name=SET_ONE&name=HOOK_KEY")
    assert answer.status_code == 200
    assert answer.get_json() == {
        "secrets": [{"name": "SET_ONE", "set": True}, {"name": "HOOK_KEY", "set": False}]
    }
    assert "here" not in answer.text
    too_many = "&".join(f"name=N{i}" for i in range(501))
    assert world.client.get(f"/api/v1/secrets?{too_many}").status_code == 400
