"""Secrets a daemon does not have, as `headwater sync` and `headwater plan --server`
print them (issue 15, item 4): a real daemon (`headwater up`) and the command."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemonprocess import DaemonFactory, Repos, daemons, headwater, new_repos

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
    message: "token {{ secret('API_TOKEN') }}"
"""
NEWER = """\
id: newer
namespace: company
tasks:
  - id: call
    type: io.kestra.plugin.core.log.Log
    message: "{{ secret('API_TOKEN') }} {{ secret('NEW_ONE') }}"
"""
HOOK_WARNING = (
    "flows/company/hooked.yaml:6:10: warning: secret 'HOOK_KEY' is not set: "
    "the webhook trigger 'hook' answers 404 until it is"
)
NEW_WARNING = (
    "flows/company/newer.yaml:6:14: warning: secret 'NEW_ONE' is not set: tasks that read it fail"
)


@pytest.fixture
def repos(tmp_path: Path) -> Repos:
    return new_repos(tmp_path)


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[DaemonFactory]:
    with daemons(tmp_path) as start:
        yield start


def test_sync_and_plan_against_a_daemon_warn_of_secrets_it_lacks(
    repos: Repos, start_daemon: DaemonFactory
) -> None:
    repos.push({"flows/company/hooked.yaml": HOOKED})
    token = base64.b64encode(b"the-api-token").decode()
    daemon = start_daemon(f"file://{repos.remote}", env={"SECRET_API_TOKEN": token})
    assert daemon.sync_status()["deployedCommit"]
    synced = headwater("sync", "--server", daemon.url)
    assert synced.returncode == 0, synced.stderr
    assert synced.stdout.splitlines()[1:] == [HOOK_WARNING]
    repos.clone.write("flows/company/newer.yaml", NEWER)
    repos.clone.commit("newer")
    planned = headwater("plan", "--server", daemon.url, cwd=repos.clone.path)
    assert planned.returncode == 0, planned.stderr
    assert "add     company.newer" in planned.stdout
    assert planned.stdout.endswith(
        f"\n2 warning(s): secrets the daemon does not have\n{HOOK_WARNING}\n{NEW_WARNING}\n"
    )
    without = headwater("plan", cwd=repos.clone.path)
    assert "warning" not in without.stdout
