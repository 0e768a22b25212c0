"""The status page through Flask's test client, on a real engine (SQLite on a temporary
data directory, worker threads, real processes).

`EngineServices` (tests/engineservices.py) is the `Services` seam over that engine; git
is left out: syncs are recorded with the store's own verbs and commits are described
from a dict.
"""

from __future__ import annotations

import html
import io
import re
import time
from dataclasses import replace
from typing import Any

import pytest
from conftest import EngineFactory, Flows
from engineservices import EngineServices
from flask.testing import FlaskClient
from waiting import wait_until
from werkzeug.test import TestResponse

from headwater.daemon.engine.engine import Engine
from headwater.daemon.engine.executor import ExecutionRequest
from headwater.daemon.errors import Diagnostic, Position
from headwater.daemon.git import Commit
from headwater.daemon.services import WebSettings
from headwater.daemon.store.store import Row
from headwater.web.app import create_app

REPOSITORY = "https://deploy:hunter2@git.example.com/acme/flows.git"
SHA1, SHA2, SHA3 = (c * 40 for c in "abc")
HOSTILE = "<script>alert(1)</script>"
WEBHOOK_KEY = "whk-9f8e7d6c5b4a"
SECRET_VALUE = "s3cr3t-value-never-shown"

TYPED = """\
id: typed
namespace: company.team
description: Takes every kind of input
inputs:
  - id: name
    type: STRING
  - id: count
    type: INT
    defaults: 2
    min: 1
  - id: ratio
    type: FLOAT
    required: false
  - id: flag
    type: BOOLEAN
    defaults: false
  - id: day
    type: DATE
    required: false
  - id: color
    type: SELECT
    values: [red, green]
    defaults: red
  - id: tags
    type: MULTISELECT
    values: [a, b, c]
    required: false
  - id: doc
    type: JSON
    required: false
  - id: token
    type: SECRET
    required: false
  - id: data
    type: FILE
    required: false
    extension: .csv
outputs:
  - id: greeting
    type: STRING
    value: "hello {{ inputs.name }}"
tasks:
  - id: say
    type: io.kestra.plugin.core.log.Log
    message: "hello {{ inputs.name }} x{{ inputs.count }}"
  - id: leak
    type: io.kestra.plugin.core.log.Log
    message: "the token is {{ inputs.token }}"
"""

SHAPES = f"""\
id: shapes
namespace: company
triggers:
  - id: nightly
    type: io.kestra.plugin.core.trigger.Schedule
    cron: "0 2 * * *"
  - id: hook
    type: io.kestra.plugin.core.trigger.Webhook
    key: {WEBHOOK_KEY}
tasks:
  - id: fan
    type: io.kestra.plugin.core.flow.Parallel
    tasks:
      - id: left
        type: io.kestra.plugin.core.log.Log
        message: l
      - id: right
        type: io.kestra.plugin.core.log.Log
        message: r
  - id: graph
    type: io.kestra.plugin.core.flow.Dag
    tasks:
      - task:
          id: first
          type: io.kestra.plugin.core.log.Log
          message: "1"
      - task:
          id: second
          type: io.kestra.plugin.core.log.Log
          message: "2"
        dependsOn: [first]
"""

SLEEPER = """\
id: sleeper
namespace: company
tasks:
  - id: nap
    type: io.kestra.plugin.scripts.shell.Commands
    commands: ["sleep 30"]
"""

FAILING = """\
id: failing
namespace: company
tasks:
  - id: boom
    type: io.kestra.plugin.scripts.shell.Commands
    commands: ["echo about to fail", "exit 3"]
"""

RETRIED = """\
id: retried
namespace: company
tasks:
  - id: flaky
    type: io.kestra.plugin.scripts.shell.Commands
    commands: ["exit 1"]
    retry: {type: constant, interval: PT0.2S, maxAttempts: 2}
"""

PAUSING = """\
id: pausing
namespace: company
tasks:
  - id: wait
    type: io.kestra.plugin.core.flow.Pause
    timeout: PT1M
  - id: after
    type: io.kestra.plugin.core.log.Log
    message: resumed and done
"""


@pytest.fixture
def engine(make_engine: EngineFactory) -> Engine:
    return make_engine(workers=2)


@pytest.fixture
def services(engine: Engine) -> EngineServices:
    return EngineServices(engine, WebSettings(REPOSITORY, "main"))


@pytest.fixture
def client(services: EngineServices) -> FlaskClient:
    return create_app(services).test_client()


def text(answer: TestResponse) -> str:
    return answer.get_data(as_text=True)


def visible(answer: TestResponse) -> str:
    """The page's text as a person reads it: tags removed, entities decoded, spaces joined."""
    body = re.sub(r"(?s)<(script|style)\b.*?</\1>", " ", text(answer))
    body = re.sub(r"</?(?:code|span|a|time|strong)\b[^>]*>", "", body)  # inline: no gap
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", body)).split())


def csrf(client: FlaskClient, path: str = "/") -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', text(client.get(path)))
    assert found, f"no CSRF field on {path}"
    return found[1]


def post(
    client: FlaskClient, path: str, data: dict[str, Any] | None = None, page: str = "/"
) -> TestResponse:
    form = {"csrf_token": csrf(client, page), **(data or {})}
    return client.post(path, data=form, content_type="multipart/form-data")


def record_sync(services: EngineServices, result: str = "Succeeded", **values: Any) -> int:
    row = {
        "started_at": time.time() - 60,
        "finished_at": time.time() - 58.5,
        "cause": "webhook",
        "from_commit": SHA1,
        "to_commit": SHA2,
        "result": result,
        "forced": False,
        **values,
    }
    with services.store.write() as tx:
        return tx.insert_sync(row)


def deploy(engine: Engine, source: str, sha: str = SHA1, message: str = "a change") -> None:
    commit = {
        "commit_sha": sha,
        "commit_author": "Ada <ada@example.com>",
        "commit_date": time.time() - 3600,
        "commit_message": message,
    }
    namespace = re.search(r"(?m)^namespace: (\S+)", source)
    flow_id = re.search(r"(?m)^id: (\S+)", source)
    assert namespace and flow_id
    engine.deploy_source(
        source, f"flows/{namespace[1].replace('.', '/')}/{flow_id[1]}.yaml", commit
    )


def flows_state(engine: Engine, execution_id: str) -> str:
    row = engine.execution(execution_id)
    assert row is not None
    return str(row["state"])


def run(engine: Engine, namespace: str, flow_id: str, **inputs: Any) -> Row:
    row = engine.start_execution(ExecutionRequest(namespace, flow_id, inputs=inputs))
    return engine.wait(row["id"], timeout=20, poll=0.05)


# -- every page on an empty store ----------------------------------------------------------
def test_every_page_answers_on_an_empty_store(client: FlaskClient) -> None:
    overview = client.get("/")
    assert overview.status_code == 200
    shown = visible(overview)
    assert "https://git.example.com/acme/flows.git" in shown
    assert "hunter2" not in text(overview)  # credentials in the URL never reach the page
    assert "OutOfSync" in shown
    assert "nothing is deployed yet" in shown
    assert "No executions in the last 24 hours." in shown
    assert "No sync has run yet." in shown
    assert "No flows are deployed." in visible(client.get("/flows"))
    assert "No executions." in visible(client.get("/executions"))
    assert "No sync has run yet." in visible(client.get("/syncs"))
    for path in ("/flows/company/nope", "/executions/nope", "/flows/company/nope/diff"):
        missing = client.get(path)
        assert missing.status_code == 404, path
        assert "There is no" in visible(missing)


def test_static_files_are_served(client: FlaskClient) -> None:
    css = client.get("/static/headwater.css")
    assert css.status_code == 200
    assert ".badge" in text(css)
    js = client.get("/static/headwater.js")
    assert js.status_code == 200
    assert "/api/v1/logs/" in text(js)
    assert not re.search(r"https?:|//[a-z]", text(css) + text(js))  # nothing from elsewhere
    page = text(client.get("/"))
    assert not re.search(r'(src|href)="(https?:)?//', page)


# -- overview and syncs --------------------------------------------------------------------
def test_overview_shows_the_deployed_commit_and_a_failed_sync(
    client: FlaskClient, services: EngineServices
) -> None:
    services.commits[SHA1] = Commit(
        SHA1, "Ada <ada@example.com>", time.time() - 7200, "Add the ETL flow\n\nbody", ()
    )
    services.commits[SHA2] = Commit(
        SHA2, "Bob <bob@example.com>", time.time() - 60, "Break the ETL flow", (SHA1,)
    )
    with services.store.write() as tx:
        tx.update_sync_state(
            {
                "deployed_commit": SHA1,
                "deployed_at": time.time() - 7000,
                "branch_head": SHA2,
                "failed_commit": SHA2,
            }
        )
    record_sync(services, "Succeeded", from_commit=None, to_commit=SHA1, added=3)
    error = Diagnostic(Position("flows/company/etl.yaml", 3, 5), "unknown task type 'x'").to_json()
    record_sync(services, "Failed", errors=[error], message="1 error; the deployed commit stays")
    shown = visible(client.get("/"))
    assert "OutOfSync" in shown
    assert "Add the ETL flow" in shown and "Ada <ada@example.com>" in shown
    assert "Break the ETL flow" in shown and "not deployed: it failed to deploy" in shown
    assert "flows/company/etl.yaml:3:5: error: unknown task type 'x'" in shown
    assert "Why the last sync failed" in shown
    syncs = visible(client.get("/syncs"))
    assert "flows/company/etl.yaml:3:5: error: unknown task type 'x'" in syncs
    assert "aaaaaaa → bbbbbbb" in syncs
    assert "Succeeded" in syncs and "Failed" in syncs
    assert "1.5 s" in syncs  # duration


def test_overview_counts_the_last_day_and_lists_what_runs(
    client: FlaskClient, services: EngineServices, engine: Engine
) -> None:
    deploy(engine, FAILING)
    deploy(engine, SLEEPER)
    failed = run(engine, "company", "failing")
    assert failed["state"] == "FAILED"
    sleeping = engine.start_execution(ExecutionRequest("company", "sleeper"))
    with services.store.write() as tx:  # an old one is not counted
        tx.update_execution(failed["id"], {"created_at": time.time() - 2 * 86_400})
    run(engine, "company", "failing")
    shown = visible(client.get("/"))
    assert re.search(r"1 FAILED", shown)
    assert sleeping["id"] in shown  # running now
    engine.kill(sleeping["id"])


def test_syncs_page_through_every_attempt(client: FlaskClient, services: EngineServices) -> None:
    ids = [record_sync(services) for _ in range(55)]
    first = visible(client.get("/syncs"))
    assert "page 1 of 2" in first
    second = visible(client.get("/syncs?page=2"))
    assert str(ids[0]) in second.split("Sync attempts")[1]
    assert client.get("/syncs?page=x").status_code == 200  # a bad page number shows page 1


# -- flows ---------------------------------------------------------------------------------
def test_flows_show_the_namespace_tree_triggers_and_last_states(
    client: FlaskClient, services: EngineServices, engine: Engine
) -> None:
    deploy(engine, SHAPES)
    deploy(engine, TYPED)
    deploy(engine, FAILING, SHA2, "Add failing")
    run(engine, "company", "failing")
    next_fire = time.time() + 3 * 3600 + 60
    with services.store.write() as tx:
        tx.insert_trigger_states(
            [
                {
                    "namespace": "company",
                    "flow_id": "shapes",
                    "trigger_id": "nightly",
                    "revision": 1,
                    "next_fire_at": next_fire,
                    "disabled": False,
                }
            ]
        )
    answer = client.get("/flows")
    shown = visible(answer)
    assert "company" in shown and "team" in shown
    assert "shapes" in shown and "typed" in shown and "failing" in shown
    assert "nightly Schedule 0 2 * * * next in 3 h" in shown
    assert 'class="sq st-failed"' in text(answer)
    assert WEBHOOK_KEY not in text(answer)
    only_team = visible(client.get("/flows?namespace=company.team"))
    assert "typed" in only_team and "shapes" not in only_team
    searched = visible(client.get("/flows?q=SHA"))
    assert "shapes" in searched and "typed" not in searched
    assert "No flow matches." in visible(client.get("/flows?q=zzz"))


def test_a_flow_shows_source_topology_and_revisions_with_diffs(
    client: FlaskClient, services: EngineServices, engine: Engine
) -> None:
    deploy(engine, SHAPES, SHA1, "Add shapes")
    changed = SHAPES.replace('message: "2"', 'message: "two"')
    deploy(engine, changed, SHA2, "Say two")
    with services.store.write() as tx:  # a revert: revision 3 equals revision 1
        tx.insert_revision(
            {
                "namespace": "company",
                "flow_id": "shapes",
                "revision": 3,
                "source": SHAPES,
                "commit_sha": SHA3,
                "commit_author": "Ada <ada@example.com>",
                "commit_date": time.time(),
                "commit_message": 'Revert "Say two"',
                "equals_revision": 1,
                "created_at": time.time(),
                "path": "flows/company/shapes.yaml",
            }
        )
    answer = client.get("/flows/company/shapes")
    assert answer.status_code == 200
    page = text(answer)
    shown = visible(answer)
    assert "Revision 3 from ccccccc" in shown
    assert "= r1" in shown  # the revert's mark
    assert "id: graph" in shown  # the YAML
    assert WEBHOOK_KEY not in page and "key: ••••••" in shown
    svg = page[page.index("<svg") : page.index("</svg>")]
    assert "fan" in svg and "left" in svg and "right" in svg and "Parallel" in svg
    assert svg.count('class="edge"') >= 2  # fan -> graph, first -> second
    assert "<path" in svg  # the Dag's edge is a curve
    diff = client.get("/flows/company/shapes/diff?from=1&to=2")
    assert diff.status_code == 200
    diff_shown = visible(diff)
    assert "+1 \u22121 lines" in diff_shown  # a minus sign
    assert 'message: "two"' in diff_shown and 'message: "2"' in diff_shown
    assert WEBHOOK_KEY not in text(diff)
    same = visible(client.get("/flows/company/shapes/diff?from=1&to=3"))
    assert "The two revisions have the same source." in same
    old = visible(client.get("/flows/company/shapes?revision=2"))
    assert 'message: "two"' in old and "revision 2" in old
    assert client.get("/flows/company/shapes?revision=9").status_code == 404


def test_a_deleted_flow_keeps_its_history(
    client: FlaskClient, services: EngineServices, engine: Engine
) -> None:
    deploy(engine, FAILING, SHA1)
    with services.store.write() as tx:
        tx.insert_revision(
            {
                "namespace": "company",
                "flow_id": "failing",
                "revision": 2,
                "source": "",
                "commit_sha": SHA2,
                "deleted": True,
                "created_at": time.time(),
            }
        )
    shown = visible(client.get("/flows/company/failing"))
    assert "This flow was deleted in revision 2 (commit bbbbbbb)" in shown
    assert "Start an execution" not in shown
    assert "deleted" in shown
    assert "failing" not in visible(client.get("/flows"))


def test_the_start_form_has_a_widget_per_input_type(client: FlaskClient, engine: Engine) -> None:
    deploy(engine, TYPED)
    page = text(client.get("/flows/company.team/typed"))
    form = page[
        page.index('<form method="post"') : page.index("</form>", page.index('<form method="post"'))
    ]
    assert 'enctype="multipart/form-data"' in form
    assert re.search(r'<input id="in-name" name="name" type="text"[^>]* required', form)
    assert re.search(
        r'<input id="in-count" name="count" type="number" value="2"[^>]*step="1"[^>]*min="1"', form
    )
    assert re.search(r'name="ratio" type="number"[^>]*step="any"', form)
    assert '<select id="in-flag" name="flag">' in form
    assert 'name="day" type="date"' in form
    assert '<option value="red" selected>red</option>' in form
    assert re.search(r'<select id="in-tags" name="tags" multiple', form)
    assert re.search(r'<textarea id="in-doc" name="doc"', form)
    assert 'name="token" type="password"' in form
    assert re.search(r'name="data" type="file"[^>]*accept="\.csv"', form)
    assert 'name="csrf_token"' in form


def test_refused_inputs_show_next_to_their_fields(client: FlaskClient, engine: Engine) -> None:
    deploy(engine, TYPED)
    answer = post(
        client,
        "/flows/company.team/typed/execute",
        {"name": "Ada", "count": "many", "token": SECRET_VALUE},
        "/flows/company.team/typed",
    )
    assert answer.status_code == 422
    page = text(answer)
    assert "The inputs were refused; nothing was started." in visible(answer)
    field = page[page.index('<label for="in-count"') : page.index('<label for="in-ratio"')]
    assert '<p class="error" id="err-count">' in field
    assert "must be an integer" in html.unescape(field)
    assert 'value="many"' in field  # what was typed stays
    assert 'value="Ada"' in page
    assert SECRET_VALUE not in page  # a secret is never sent back
    with engine.store.read() as tx:
        assert tx.connection.exec_driver_sql("SELECT count(*) FROM executions").scalar() == 0


def test_the_start_form_starts_an_execution_with_a_file(
    client: FlaskClient, services: EngineServices, engine: Engine, flows: Flows
) -> None:
    deploy(engine, TYPED)
    form = {
        "csrf_token": csrf(client, "/flows/company.team/typed"),
        "name": "Ada",
        "count": "3",
        "tags": ["a", "c"],
        "token": SECRET_VALUE,
        "data": (io.BytesIO(b"x,y\n1,2\n"), "numbers.csv"),
    }
    answer = client.post(
        "/flows/company.team/typed/execute", data=form, content_type="multipart/form-data"
    )
    assert answer.status_code == 303
    location = answer.headers["Location"]
    execution_id = location.rsplit("/", 1)[1].split("?")[0]
    finished = flows.finish(execution_id)
    assert finished.state == "SUCCESS", finished.summary()
    assert finished.execution["inputs"]["tags"] == ["a", "c"]
    with services.store.write() as tx:  # a line that escaped the engine's masking
        tx.insert_logs(
            [
                {
                    "execution_id": execution_id,
                    "timestamp": time.time(),
                    "level": "INFO",
                    "message": f"raw {SECRET_VALUE}",
                }
            ]
        )
    page = client.get(f"/executions/{execution_id}")
    shown = visible(page)
    assert "raw ••••••" in shown
    assert "SUCCESS" in shown
    assert "hello Ada x3" in shown  # the log
    assert "greeting hello Ada" in shown  # the flow's output
    assert SECRET_VALUE not in text(page)
    assert "token ••••••" in shown
    assert "the token is " in shown  # the log line is there, its secret masked
    link = re.search(r'href="(/executions/[^"]+/file\?path=[^"]+)">numbers.csv<', text(page))
    assert link, "the FILE input links to its download"
    download = client.get(html.unescape(link[1]))
    assert download.status_code == 200
    assert download.data == b"x,y\n1,2\n"
    assert "attachment" in download.headers["Content-Disposition"]
    other = client.get(
        html.unescape(link[1]).replace(f"/executions/{execution_id}/file", "/executions/other/file")
    )
    assert other.status_code == 404  # a file of another execution is not served here


# -- executions ----------------------------------------------------------------------------
def test_executions_filter_by_namespace_flow_state_and_time(
    client: FlaskClient, services: EngineServices, engine: Engine
) -> None:
    deploy(engine, FAILING)
    deploy(engine, TYPED)
    failed = run(engine, "company", "failing")
    succeeded = run(engine, "company.team", "typed", name="x")
    everything = visible(client.get("/executions"))
    assert failed["id"] in everything and succeeded["id"] in everything
    by_state = visible(client.get("/executions?state=FAILED"))
    assert failed["id"] in by_state and succeeded["id"] not in by_state
    by_namespace = visible(client.get("/executions?namespace=company.team"))
    assert succeeded["id"] in by_namespace and failed["id"] not in by_namespace
    by_flow = visible(client.get("/executions?flow=failing"))
    assert failed["id"] in by_flow and succeeded["id"] not in by_flow
    with services.store.write() as tx:
        tx.update_execution(failed["id"], {"created_at": 1_700_000_000.0})  # 2023-11-14 22:13
    in_range = visible(client.get("/executions?from=2023-11-14T00:00&to=2023-11-15T00:00"))
    assert failed["id"] in in_range and succeeded["id"] not in in_range
    bad = visible(client.get("/executions?from=yesterday"))
    assert "Not a time: yesterday" in bad and failed["id"] in bad


def test_executions_page_through_a_long_list(
    client: FlaskClient, services: EngineServices, engine: Engine
) -> None:
    deploy(engine, FAILING)
    now = time.time()
    rows = [
        {
            "id": f"ex{i:04d}",
            "namespace": "company",
            "flow_id": "failing",
            "flow_revision": 1,
            "state": "SUCCESS",
            "created_at": now - i,
            "start_date": now - i,
            "end_date": now - i + 0.5,
        }
        for i in range(120)
    ]
    with services.store.write() as tx:
        for row in rows:
            tx.insert_execution(row)
    first = visible(client.get("/executions"))
    assert "ex0000" in first and "ex0049" in first and "ex0050" not in first
    assert "page 1 of 3" in first
    third = visible(client.get("/executions?page=3&state=SUCCESS"))
    assert "ex0100" in third and "ex0119" in third and "ex0099" not in third
    assert "Executions 120" in third


def test_an_execution_shows_task_runs_logs_and_labels(client: FlaskClient, engine: Engine) -> None:
    deploy(engine, SHAPES)
    row = engine.start_execution(ExecutionRequest("company", "shapes", labels={"team": "data"}))
    engine.wait(row["id"], timeout=20, poll=0.05)
    engine.logs.flush()
    answer = client.get(f"/executions/{row['id']}")
    shown = visible(answer)
    page = text(answer)
    for task_id in ("fan", "left", "right", "graph", "first", "second"):
        assert f'data-task="{task_id}"' in page
    assert '<span class="k">team</span>data' in page
    assert 'class="bar st-success"' in page  # on the timeline
    assert 'class="task st-success"' in page  # the topology coloured by state
    assert "r1 aaaaaaa" in shown
    assert 'data-live="no"' in page  # an ended execution is not followed
    assert WEBHOOK_KEY not in page


def test_each_attempt_is_a_stretch_of_the_timeline(client: FlaskClient, engine: Engine) -> None:
    deploy(engine, RETRIED)
    execution = run(engine, "company", "retried")
    page = text(client.get(f"/executions/{execution['id']}"))
    row = page[page.index('data-task="flaky"') :]
    row = row[: row.index("</tr>")]
    assert re.search(r'<span title="#1 FAILED [^"]*\n#2 FAILED', row)  # attempts, listed
    bars = re.findall(r'class="bar st-failed" x="([\d.]+)%" width="([\d.]+)%"', row)
    assert len(bars) == 2
    (left1, width1), (left2, _) = [(float(a), float(b)) for a, b in bars]
    assert left1 + width1 <= left2  # the second attempt starts after the first ended


def test_a_huge_log_shows_its_last_lines_and_pages_back(
    client: FlaskClient, services: EngineServices, engine: Engine
) -> None:
    deploy(engine, FAILING)
    execution = run(engine, "company", "failing")
    now = time.time()
    lines = [
        {
            "execution_id": execution["id"],
            "timestamp": now + i / 1000,
            "level": "ERROR" if i % 100 == 0 else "INFO",
            "message": f"line {i:05d}",
        }
        for i in range(5000)
    ]
    with services.store.write() as tx:
        tx.insert_logs(lines)
    answer = client.get(f"/executions/{execution['id']}")
    page = text(answer)
    assert page.count('<div class="line') == 1000
    assert "line 04999" in page and "line 04000" in page and "line 03999" not in page
    older = re.search(r'href="([^"]*before=\d+[^"]*)">← older lines', page)
    assert older
    back = text(client.get(html.unescape(older[1])))
    assert "line 03999" in back and "line 03000" in back and "line 04000" not in back
    errors = text(client.get(f"/executions/{execution['id']}?level=ERROR"))
    assert (
        errors.count('<div class="line') == 50 + 1
    )  # every hundredth line, and the task's own error
    assert "line 04900" in errors and "line 04999" not in errors


def test_hostile_strings_show_as_text(
    client: FlaskClient, services: EngineServices, engine: Engine
) -> None:
    source = f"""\
id: hostile
namespace: company
description: "{HOSTILE} in a description"
labels:
  note: "{HOSTILE}"
inputs:
  - id: words
    type: STRING
tasks:
  - id: say
    type: io.kestra.plugin.core.log.Log
    message: "{{{{ inputs.words }}}}"
"""
    deploy(engine, source, message=HOSTILE)
    row = engine.start_execution(
        ExecutionRequest("company", "hostile", inputs={"words": HOSTILE}, labels={"x": HOSTILE})
    )
    engine.wait(row["id"], timeout=20, poll=0.05)
    engine.logs.flush()
    record_sync(
        services,
        "Failed",
        message=HOSTILE,
        errors=[{"path": HOSTILE, "line": 1, "column": 1, "message": HOSTILE}],
    )
    for path in (
        "/",
        "/flows",
        "/flows/company/hostile",
        f"/executions/{row['id']}",
        "/syncs",
        "/executions",
    ):
        page = text(client.get(path))
        assert "<script>alert" not in page, path
    flow_page = text(client.get("/flows/company/hostile"))
    assert "&lt;script&gt;alert(1)&lt;/script&gt; in a description" in flow_page
    execution_page = text(client.get(f"/executions/{row['id']}"))
    assert execution_page.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 3  # input, label, log


def test_kill_button_stops_a_running_execution(
    client: FlaskClient, engine: Engine, flows: Flows
) -> None:
    deploy(engine, SLEEPER)
    row = engine.start_execution(ExecutionRequest("company", "sleeper"))
    wait_until(lambda: flows.state_of(row["id"]) == "RUNNING", timeout=10, what="the run to start")
    page = text(client.get(f"/executions/{row['id']}"))
    assert 'data-live="yes"' in page
    assert f'action="/executions/{row["id"]}/kill"' in page
    assert f'action="/executions/{row["id"]}/restart"' not in page
    answer = post(client, f"/executions/{row['id']}/kill", page=f"/executions/{row['id']}")
    assert answer.status_code == 303
    assert answer.headers["Location"].endswith(f"/executions/{row['id']}?done=kill")
    finished = flows.finish(row["id"])
    assert finished.state == "KILLED"
    after = visible(client.get(f"/executions/{row['id']}?done=kill"))
    assert "A kill was asked for" in after
    refused = post(client, f"/executions/{row['id']}/kill", page=f"/executions/{row['id']}")
    assert refused.status_code == 409
    assert "Cannot kill:" in visible(refused)


def test_restart_and_replay_buttons(client: FlaskClient, engine: Engine, flows: Flows) -> None:
    deploy(engine, FAILING)
    failed = run(engine, "company", "failing")
    page = text(client.get(f"/executions/{failed['id']}"))
    assert f'action="/executions/{failed["id"]}/restart"' in page
    assert f'action="/executions/{failed["id"]}/replay"' in page
    assert f'action="/executions/{failed["id"]}/kill"' not in page
    replayed = post(
        client, f"/executions/{failed['id']}/replay", page=f"/executions/{failed['id']}"
    )
    assert replayed.status_code == 303
    new_id = replayed.headers["Location"].rsplit("/", 1)[1].split("?")[0]
    assert new_id != failed["id"]
    assert flows.finish(new_id).state == "FAILED"
    restarted = post(
        client, f"/executions/{failed['id']}/restart", page=f"/executions/{failed['id']}"
    )
    assert restarted.status_code == 303
    assert flows.finish(failed["id"]).state == "FAILED"
    assert "Restarted" in visible(client.get(restarted.headers["Location"]))


def test_resume_button_resumes_a_paused_execution(
    client: FlaskClient, engine: Engine, flows: Flows
) -> None:
    deploy(engine, PAUSING)
    row = engine.start_execution(ExecutionRequest("company", "pausing"))
    wait_until(lambda: flows.state_of(row["id"]) == "PAUSED", timeout=10, what="the pause")
    path = f"/executions/{row['id']}"
    page = text(client.get(path))
    assert f'action="{path}/resume"' in page and f'action="{path}/kill"' in page
    answer = post(client, f"{path}/resume", page=path)
    assert answer.status_code == 303
    finished = flows.finish(row["id"])
    assert finished.state == "SUCCESS", finished.summary()
    shown = visible(client.get(answer.headers["Location"]))
    assert "Resumed." in shown and "resumed and done" in shown
    refused = post(client, f"{path}/resume", page=path)
    assert refused.status_code == 409
    assert "Cannot resume:" in visible(refused)


def test_page_posts_need_the_csrf_token(client: FlaskClient, engine: Engine) -> None:
    deploy(engine, FAILING)
    answer = client.post("/flows/company/failing/execute", data={})
    assert answer.status_code == 400
    with engine.store.read() as tx:
        assert tx.connection.exec_driver_sql("SELECT count(*) FROM executions").scalar() == 0


def test_read_only_hides_the_buttons_and_refuses_posts(
    services: EngineServices, engine: Engine
) -> None:
    services.web = replace(services.web, read_only=True)
    client = create_app(services).test_client()
    deploy(engine, FAILING)
    failed = run(engine, "company", "failing")
    page = text(client.get(f"/executions/{failed['id']}"))
    assert "/restart" not in page and "read-only" in page
    assert "executions cannot be started from here" in visible(client.get("/flows/company/failing"))
    with client.session_transaction() as session:  # no form on a read-only page: make one
        session["csrf"] = "a-csrf-token"
    refused = client.post(
        f"/executions/{failed['id']}/restart", data={"csrf_token": "a-csrf-token"}
    )
    assert refused.status_code == 403
    assert flows_state(engine, failed["id"]) == "FAILED"
