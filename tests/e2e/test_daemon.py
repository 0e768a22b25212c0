"""`headwater up` end to end: the daemon as a real process, deploying real repositories.

Each test starts `python -m headwater.daemon.cli up` on a bare repository served over
`file://` (or over HTTP by `git http-backend`), pushes commits from a working clone,
announces them the way a git host does (a webhook signed with HMAC-SHA256), by a watch
on the repository or by polling, and checks what a user sees through the JSON API and
the `headwater` command. The harness (`RunningDaemon`, `daemons`, `new_repos`) lives in
tests/daemonprocess.py; other e2e tests still import it from here.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemonprocess import *  # noqa: F403  (the harness other e2e tests import from here)
from daemonprocess import (
    QUIET,
    START_TIMEOUT,
    DaemonFactory,
    Repos,
    daemons,
    flow,
    headwater,
    new_repos,
)
from gitrepos import GitHttpServer
from sqlalchemy import create_engine, text
from waiting import wait_until

from headwater.daemon.daemon import HINT_SPACING_SECONDS


@pytest.fixture
def repos(tmp_path: Path) -> Repos:
    return new_repos(tmp_path)


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[DaemonFactory]:
    with daemons(tmp_path) as start:
        yield start


@pytest.fixture(params=["file", "http"])
def remote_url(request: pytest.FixtureRequest, repos: Repos) -> Iterator[str]:
    """The remote as the daemon sees it: a file:// URL, or HTTP served by git http-backend."""
    if request.param == "file":
        yield f"file://{repos.remote}"
        return
    with GitHttpServer(repos.root) as server:
        yield server.url(repos.remote.name)


# -- deploying a push ----------------------------------------------------------------------


def test_a_signed_webhook_deploys_a_push(
    repos: Repos, remote_url: str, start_daemon: DaemonFactory
) -> None:
    first = repos.push({"flows/team/a.yaml": flow("team", "a")}, "add a")
    daemon = start_daemon(remote_url)
    assert daemon.flows() == {"team.a": (1, first)}
    second = repos.push(
        {"flows/team/a.yaml": flow("team", "a", "v2"), "flows/team/b.yaml": flow("team", "b")},
        "a v2, add b",
    )
    delivery = str(uuid.uuid4())
    answer = daemon.webhook(after=second, delivery=delivery)
    assert answer.status == 202, answer.body
    # a hint: answered without waiting for the sync, which runs on its own
    assert answer.body == {"accepted": True, "message": "a sync is requested"}
    daemon.wait_deployed(second)
    assert daemon.flows() == {"team.a": (2, second), "team.b": (1, second)}
    last = daemon.sync_status()["lastAttempt"]
    assert (last["cause"], last["result"], last["fromCommit"], last["toCommit"]) == (
        "webhook",
        "Succeeded",
        first,
        second,
    )
    assert (last["added"], last["updated"], last["deleted"]) == (1, 1, 0)
    again = daemon.webhook(after=second, delivery=delivery)  # providers redeliver
    assert again.status == 202
    assert again.body["accepted"] is False
    assert f"delivery {delivery} was received before" in again.body["reason"]


def test_a_watch_on_a_local_bare_repository_deploys_a_push(
    repos: Repos, start_daemon: DaemonFactory
) -> None:
    first = repos.push({"flows/team/a.yaml": flow("team", "a")})
    daemon = start_daemon(str(repos.remote), watch=True)  # no poll, no webhook
    assert daemon.flows() == {"team.a": (1, first)}
    second = repos.push({"flows/team/a.yaml": flow("team", "a", "watched")})
    daemon.wait_deployed(second)
    assert daemon.flows() == {"team.a": (2, second)}
    assert daemon.sync_status()["lastAttempt"]["cause"] == "watch"


def test_polling_deploys_a_push(repos: Repos, start_daemon: DaemonFactory) -> None:
    first = repos.push({"flows/team/a.yaml": flow("team", "a")})
    daemon = start_daemon(f"file://{repos.remote}", poll=1)
    assert daemon.flows() == {"team.a": (1, first)}
    second = repos.push({"flows/team/a.yaml": flow("team", "a", "polled")})
    daemon.wait_deployed(second, timeout=5)  # an interval of 1 s, ±10 % jitter
    assert daemon.sync_status()["lastAttempt"]["cause"] == "poll"
    attempts = len(daemon.syncs())
    time.sleep(1.5)  # at least one more poll, which finds nothing new
    assert len(daemon.syncs()) == attempts


# -- what a deploy keeps and records ---------------------------------------------------


def test_an_invalid_commit_keeps_the_last_good_one_until_a_fix(
    repos: Repos, start_daemon: DaemonFactory
) -> None:
    good = repos.push(
        {"flows/team/a.yaml": flow("team", "a"), "flows/team/b.yaml": flow("team", "b")}
    )
    daemon = start_daemon(f"file://{repos.remote}")
    bad = repos.push(
        {
            "flows/team/a.yaml": flow("team", "a", "changed"),
            "flows/team/b.yaml": flow("team", "b").replace("core.log.Log", "core.log.Lg"),
            "flows/team/c.yaml": flow("team", "wrong_id"),
            "flows/other/d.yaml": "id: d\nnamespace: other\ntasks: [\n",
        },
        "broken",
    )
    assert daemon.webhook(after=bad).status == 202
    attempt = daemon.wait_attempt(bad)
    assert attempt["result"] == "Failed"
    status = daemon.sync_status()
    assert status["lastAttempt"] == attempt
    assert (status["deployedCommit"], status["failedCommit"]) == (good, bad)
    assert status["status"] == "OutOfSync"
    errors = [f"{e['path']}:{e['line']}:{e['column']}: {e['message']}" for e in attempt["errors"]]
    assert len(errors) == 3, errors
    assert errors[0].startswith("flows/other/d.yaml:4:1: ")
    assert errors[1] == (
        "flows/team/b.yaml:5:11: tasks[0]: unknown task type 'core.log.Lg'; "
        "did you mean 'core.log.Log'?"
    )
    assert errors[2].startswith("flows/team/c.yaml:1:5: id: 'wrong_id' does not match")
    assert daemon.flows() == {"team.a": (1, good), "team.b": (1, good)}

    attempts = len(daemon.syncs())
    assert daemon.webhook(after=bad).status == 202  # the same commit is not tried again
    time.sleep(QUIET)
    assert len(daemon.syncs()) == attempts

    asked = headwater("sync", env={"HEADWATER_SERVER": daemon.url})  # asking does retry it
    assert asked.returncode == 1
    assert asked.stdout.splitlines()[0].startswith(f"Failed: {good} -> {bad}")
    assert (
        "flows/team/b.yaml:5:11: error: tasks[0]: unknown task type 'core.log.Lg'; "
        "did you mean 'core.log.Log'?"
    ) in asked.stdout.splitlines()

    fixed = repos.push(
        {"flows/team/b.yaml": flow("team", "b", "fixed"), "flows/team/c.yaml": flow("team", "c")},
        "fix",
        remove=("flows/other/d.yaml",),
    )
    assert daemon.webhook(after=fixed).status == 202
    status = daemon.wait_deployed(fixed)
    assert (status["status"], status["failedCommit"]) == ("Synced", None)
    assert daemon.flows() == {
        "team.a": (2, bad),  # credited to the last commit that changed its file
        "team.b": (2, fixed),
        "team.c": (1, fixed),
    }


def test_a_revert_makes_a_revision_equal_to_the_old_one(
    repos: Repos, start_daemon: DaemonFactory
) -> None:
    repos.push({"flows/team/a.yaml": flow("team", "a", "one")}, "one")
    daemon = start_daemon(f"file://{repos.remote}")
    two = repos.push({"flows/team/a.yaml": flow("team", "a", "two")}, "two")
    daemon.webhook(after=two)
    daemon.wait_deployed(two)
    reverted = repos.clone.revert(two)
    repos.clone.push()
    daemon.webhook(after=reverted)
    daemon.wait_deployed(reverted)
    revisions = daemon.revisions("team", "a")  # newest first
    assert [(r["revision"], r["equalsRevision"], r["deleted"]) for r in revisions] == [
        (3, 1, False),
        (2, None, False),
        (1, None, False),
    ]
    newest = revisions[0]
    assert newest["commit"]["sha"] == reverted
    assert newest["commit"]["message"].startswith('Revert "two"')
    deployed = daemon.get("/api/v1/flows/team/a")
    assert (deployed["revision"], deployed["equalsRevision"]) == (3, 1)
    assert "message: one" in deployed["source"]


def test_a_force_push_is_followed_and_recorded(repos: Repos, start_daemon: DaemonFactory) -> None:
    base = repos.push({"flows/team/a.yaml": flow("team", "a", "v1")}, "v1")
    daemon = start_daemon(f"file://{repos.remote}")
    v2 = repos.push({"flows/team/a.yaml": flow("team", "a", "v2")}, "v2")
    daemon.webhook(after=v2)
    daemon.wait_deployed(v2)
    repos.clone.reset_hard(base)
    repos.clone.write("flows/team/a.yaml", flow("team", "a", "rewritten"))
    rewritten = repos.clone.commit("rewritten")
    repos.clone.push(force=True)
    daemon.webhook(after=rewritten)
    daemon.wait_deployed(rewritten)
    history = daemon.sync_status()["history"]
    assert [(h["toCommit"], h["forced"]) for h in history] == [
        (rewritten, True),
        (v2, False),
        (base, False),
    ]
    assert history[0]["fromCommit"] == v2
    assert daemon.flows() == {"team.a": (3, rewritten)}
    assert "rewritten" in daemon.get("/api/v1/flows/team/a")["source"]


def test_a_deleted_flow_answers_404_and_a_recreated_one_continues_the_numbering(
    repos: Repos, start_daemon: DaemonFactory
) -> None:
    first = repos.push(
        {"flows/team/a.yaml": flow("team", "a"), "flows/team/b.yaml": flow("team", "b")}
    )
    daemon = start_daemon(f"file://{repos.remote}")
    gone = repos.push({}, "delete a", remove=("flows/team/a.yaml",))
    daemon.webhook(after=gone)
    daemon.wait_deployed(gone)
    answer = daemon.call("GET", "/api/v1/flows/team/a")
    assert answer.status == 404
    assert answer.body["message"] == f"flow team.a was deleted in revision 2 (commit {gone[:7]})"
    assert (answer.body["deletedInRevision"], answer.body["deletedInCommit"]) == (2, gone)
    assert daemon.flows() == {"team.b": (1, first)}
    history = daemon.revisions("team", "a")  # readable while the flow is deleted
    assert [(r["revision"], r["deleted"], r["commit"]["sha"]) for r in history] == [
        (2, True, gone),
        (1, False, first),
    ]
    assert "message: hi" in daemon.get("/api/v1/flows/team/a?revision=1")["source"]

    back = repos.push({"flows/team/a.yaml": flow("team", "a", "back")}, "a is back")
    daemon.webhook(after=back)
    daemon.wait_deployed(back)
    deployed = daemon.get("/api/v1/flows/team/a")
    assert (deployed["revision"], deployed["commit"]["sha"]) == (3, back)
    assert [r["revision"] for r in daemon.revisions("team", "a")] == [3, 2, 1]


def test_a_commit_deleting_every_flow_is_refused(repos: Repos, start_daemon: DaemonFactory) -> None:
    first = repos.push(
        {"flows/team/a.yaml": flow("team", "a"), "flows/ops/b.yaml": flow("ops", "b")}
    )
    daemon = start_daemon(f"file://{repos.remote}")
    empty = repos.push({"README.md": "moved elsewhere\n"}, "oops", remove=("flows",))
    daemon.webhook(after=empty)
    attempt = daemon.wait_attempt(empty)
    assert attempt["result"] == "Failed"
    assert attempt["deleted"] == 2
    [error] = attempt["errors"]
    assert (error["path"], error["line"], error["column"]) == ("flows", 1, 1)
    assert "this commit would delete every deployed flow (2)" in error["message"]
    assert daemon.sync_status()["deployedCommit"] == first
    assert daemon.flows() == {"ops.b": (1, first), "team.a": (1, first)}


def test_a_burst_of_pushes_makes_few_syncs_and_credits_the_last_commit(
    repos: Repos, start_daemon: DaemonFactory
) -> None:
    names = ["a", "b", "c", "d"]
    first = repos.push({f"flows/team/{n}.yaml": flow("team", n) for n in names}, "start")
    daemon = start_daemon(f"file://{repos.remote}")
    before = len(daemon.syncs())
    commits: list[tuple[str, str]] = []  # (sha, flow it changed), committed ahead of the burst
    for i in range(10):
        name = names[(i * 3) % len(names)] if i != 9 else "a"
        repos.clone.write(f"flows/team/{name}.yaml", flow("team", name, f"burst {i}"))
        commits.append((repos.clone.commit(f"burst {i}: {name}"), name))
    started = time.monotonic()
    for sha, _ in commits:  # ten pushes in quick succession, each announced
        repos.clone.git("push", "--quiet", "origin", f"{sha}:refs/heads/main")
        assert daemon.webhook(after=sha).status == 202
    burst = time.monotonic() - started
    last = commits[-1][0]
    daemon.wait_deployed(last)
    syncs = daemon.syncs()[before:]
    # Hints join the next sync, at most one sync per spacing: the first push's, one per
    # window while the pushes last (a few tenths of a second), and one for the stragglers.
    assert len(syncs) <= 2 + burst / HINT_SPACING_SECONDS, (burst, len(syncs))
    assert len(syncs) < len(commits)
    assert all(s["result"] == "Succeeded" and s["cause"] == "webhook" for s in syncs)
    last_touch = {name: sha for sha, name in commits}
    deployed = daemon.flows()
    for name in names:
        revision, sha = deployed[f"team.{name}"]
        assert sha == last_touch.get(name, first), name
        assert revision <= 1 + len(syncs)


def test_cli_pins_suspends_and_resumes_a_running_daemon(
    repos: Repos, start_daemon: DaemonFactory
) -> None:
    v1 = repos.push({"flows/team/a.yaml": flow("team", "a", "v1")}, "v1")
    v2 = repos.push({"flows/team/a.yaml": flow("team", "a", "v2")}, "v2")
    daemon = start_daemon(f"file://{repos.remote}")
    env = {"HEADWATER_SERVER": daemon.url}
    assert daemon.sync_status()["status"] == "Synced"

    pinned = headwater("sync", "--to", v1[:10], env=env)  # a short sha, as people type it
    assert pinned.returncode == 0, pinned.stderr
    assert pinned.stdout.strip() == f"Succeeded: {v2} -> {v1} (+0 ~1 -0)"
    status = daemon.sync_status()
    assert (status["status"], status["pinnedCommit"], status["deployedCommit"]) == (
        "Pinned",
        v1,
        v1,
    )
    v3 = repos.push({"flows/team/a.yaml": flow("team", "a", "v3")}, "v3")
    assert daemon.webhook(after=v3).status == 202
    time.sleep(QUIET)
    assert daemon.sync_status()["deployedCommit"] == v1  # a pin holds against pushes
    assert headwater("sync", "suspend", env=env).stdout.strip() == "sync is Pinned"

    resumed = headwater("sync", "resume", env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert daemon.wait_deployed(v3)["status"] == "Synced"
    history = [(r["revision"], r["commit"]["sha"]) for r in daemon.revisions("team", "a")]
    assert history == [(3, v3), (2, v1), (1, v2)]  # v1 and v2 came in one push at startup

    assert headwater("sync", "suspend", env=env).stdout.strip() == "sync is Suspended"
    v4 = repos.push({"flows/team/a.yaml": flow("team", "a", "v4")}, "v4")
    assert daemon.webhook(after=v4).status == 202
    time.sleep(QUIET)
    assert daemon.sync_status()["deployedCommit"] == v3
    assert daemon.sync_status()["status"] == "Suspended"
    asked = headwater("sync", env=env)  # asking deploys while automatic sync is off
    assert asked.returncode == 0, asked.stderr
    assert asked.stdout.strip() == f"Succeeded: {v3} -> {v4} (+0 ~1 -0)"
    assert headwater("sync", "resume", env=env).stdout.strip() == "sync is Synced"
    nothing = headwater("sync", env=env)
    assert nothing.stdout.strip() == f"NoChange: {v4} -> {v4} (+0 ~0 -0)"
    refused = headwater("sync", "suspend", env={**env, "HEADWATER_TOKEN": "wrong"})
    assert refused.returncode == 1
    assert "HTTP 401: the bearer token is not valid" in refused.stderr


def test_an_execution_keeps_its_revision_across_a_deploy(
    repos: Repos, start_daemon: DaemonFactory
) -> None:
    nap = "  - id: nap\n    type: core.flow.Sleep\n    duration: PT2S\n"
    old = repos.push({"flows/team/slow.yaml": flow("team", "slow", "old", nap)}, "old")
    daemon = start_daemon(f"file://{repos.remote}")
    started = daemon.post("/api/v1/executions/team/slow")
    assert started.status == 200, started.body
    execution_id = started.body["id"]
    assert (started.body["flowRevision"], started.body["commit"]) == (1, old)

    def running_nap() -> bool:
        runs = daemon.get(f"/api/v1/executions/{execution_id}")["taskRunList"]
        return any(r["taskId"] == "nap" and r["state"]["current"] == "RUNNING" for r in runs)

    wait_until(running_nap, what="the execution to reach its Sleep")
    after = "  - id: after\n    type: core.log.Log\n    message: added\n"
    new = repos.push({"flows/team/slow.yaml": flow("team", "slow", "new", after)}, "new")
    daemon.webhook(after=new)
    daemon.wait_deployed(new)
    assert daemon.get(f"/api/v1/executions/{execution_id}")["state"]["current"] == "RUNNING"

    def ended() -> dict[str, Any] | None:
        row = daemon.get(f"/api/v1/executions/{execution_id}")
        return row if row["state"]["endDate"] else None

    done = wait_until(ended, what="the execution to end")
    assert done["state"]["current"] == "SUCCESS"
    assert (done["flowRevision"], done["commit"]) == (1, old)
    assert [r["taskId"] for r in done["taskRunList"]] == ["say", "nap"]
    assert [line["message"] for line in daemon.get(f"/api/v1/logs/{execution_id}")] == ["old"]

    later = daemon.post("/api/v1/executions/team/slow").body
    assert (later["flowRevision"], later["commit"]) == (2, new)
    done = wait_until(
        lambda: (
            (row := daemon.get(f"/api/v1/executions/{later['id']}"))["state"]["endDate"] and row
        ),
        what="the second execution to end",
    )
    assert [r["taskId"] for r in done["taskRunList"]] == ["say", "after"]


def test_a_bad_webhook_signature_changes_nothing(repos: Repos, start_daemon: DaemonFactory) -> None:
    first = repos.push({"flows/team/a.yaml": flow("team", "a")})
    daemon = start_daemon(f"file://{repos.remote}")
    second = repos.push({"flows/team/a.yaml": flow("team", "a", "unannounced")})
    attempts = daemon.syncs()
    delivery = str(uuid.uuid4())
    forged = daemon.webhook(after=second, delivery=delivery, secret="not-the-secret")
    assert forged.status == 401
    assert forged.body["message"] == (
        "the webhook is refused: the X-Hub-Signature-256 header does not match the body and secret"
    )
    unsigned = daemon.webhook(after=second, signature="")
    assert unsigned.status == 401
    assert "X-Hub-Signature-256 header is missing" in unsigned.body["message"]
    sha1 = daemon.webhook(after=second, signature="sha1=" + "0" * 40)
    assert sha1.status == 401
    time.sleep(QUIET)
    assert daemon.syncs() == attempts
    assert daemon.sync_status()["deployedCommit"] == first
    # The refused delivery left no trace: the genuine one with its id is acted on.
    genuine = daemon.webhook(after=second, delivery=delivery)
    assert (genuine.status, genuine.body["accepted"]) == (202, True)
    daemon.wait_deployed(second)


# -- the process ------------------------------------------------------------------------


def test_sigterm_stops_cleanly_and_a_restart_carries_on(
    repos: Repos, start_daemon: DaemonFactory
) -> None:
    first = repos.push({"flows/team/a.yaml": flow("team", "a")})
    daemon = start_daemon(f"file://{repos.remote}")
    assert daemon.terminate() == 0
    assert "signal 15: stopping" in daemon.output()
    restarted = start_daemon(f"file://{repos.remote}")
    status = restarted.sync_status()
    assert (status["deployedCommit"], status["status"]) == (first, "Synced")
    assert [h["toCommit"] for h in status["history"]] == [first]  # nothing new: nothing written
    second = repos.push({"flows/team/a.yaml": flow("team", "a", "after restart")})
    restarted.webhook(after=second)
    restarted.wait_deployed(second)
    assert restarted.flows() == {"team.a": (2, second)}
    assert [h["id"] for h in restarted.syncs()] == [1, 2]


@pytest.mark.postgres
def test_a_daemon_on_its_database_deploys_runs_and_carries_on_after_a_restart(
    repos: Repos, start_daemon: DaemonFactory, db_url: str | None
) -> None:
    first = repos.push({"flows/team/a.yaml": flow("team", "a", "first run")})
    daemon = start_daemon(f"file://{repos.remote}", db=db_url)
    assert daemon.flows() == {"team.a": (1, first)}
    before = daemon.post("/api/v1/executions/team/a").body["id"]
    wait_until(lambda: daemon.get(f"/api/v1/executions/{before}")["state"]["endDate"])
    assert daemon.terminate() == 0
    restarted = start_daemon(f"file://{repos.remote}", db=db_url)
    assert restarted.sync_status()["deployedCommit"] == first
    kept = restarted.get(f"/api/v1/executions/{before}")
    assert kept["state"]["current"] == "SUCCESS"
    assert [line["message"] for line in restarted.get(f"/api/v1/logs/{before}")] == ["first run"]
    second = repos.push({"flows/team/a.yaml": flow("team", "a", "after restart")})
    restarted.webhook(after=second)
    restarted.wait_deployed(second)
    after = restarted.post("/api/v1/executions/team/a").body
    assert (after["flowRevision"], after["commit"]) == (2, second)
    done = wait_until(
        lambda: (
            (row := restarted.get(f"/api/v1/executions/{after['id']}"))["state"]["endDate"] and row
        )
    )
    assert done["state"]["current"] == "SUCCESS"
    assert [h["toCommit"] for h in restarted.syncs()] == [first, second]
    if db_url is not None:  # the rows are in PostgreSQL, not in the data directory
        engine = create_engine(db_url)
        with engine.connect() as connection:
            ids = connection.execute(text("SELECT id FROM executions")).scalars()
            assert sorted(ids) == sorted([before, after["id"]])
        engine.dispose()
        assert not (restarted.data_dir / "headwater.db").exists()


def test_a_second_daemon_on_the_same_data_directory_refuses(
    repos: Repos, start_daemon: DaemonFactory
) -> None:
    repos.push({"flows/team/a.yaml": flow("team", "a")})
    first = start_daemon(f"file://{repos.remote}")
    second = start_daemon(f"file://{repos.remote}", run=False)
    second.log = first.log.with_name("second.log")
    code = second.spawn().wait(START_TIMEOUT)
    assert code == 1
    data_dir = first.data_dir
    assert f"error: the data directory {data_dir} is in use by pid {first.proc.pid}" in (
        second.output()
    )
    assert first.ready()


def test_up_refuses_to_listen_beyond_loopback_without_a_token(tmp_path: Path) -> None:
    result = headwater(
        "up",
        "--host",
        "0.0.0.0",
        "--data-dir",
        str(tmp_path / "data"),
        "--port",
        "0",
        env={"HEADWATER_TOKEN": ""},
    )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: refusing to listen on 0.0.0.0 without a token: anyone who can reach it could "
        "start flows; set HEADWATER_TOKEN (or listen on 127.0.0.1)"
    )
