"""The validation pool's processes die with the daemon, even when it is killed.

Issue 11: `kill -9` of the daemon during a big sync left its multiprocessing pool (the
fork server, the resource tracker and a worker per core, about 275 MB) running for good:
each worker waits on pipes whose other ends it holds itself. Each worker now watches the
daemon's process and exits the moment it is gone; the fork server and the resource
tracker follow when their pipes close.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from daemonprocess import DaemonFactory, Repos, daemons, flow, new_repos
from proctable import in_session
from waiting import wait_until

from headwater.daemon.reconcile import POOL_THRESHOLD

GONE_WITHIN = 15.0  # seconds: only catches processes that stay (they used to stay forever)
NAMESPACES = 10


def flows(count: int, version: str) -> dict[str, bytes]:
    """`count` flow files, in NAMESPACES namespaces, with `version` in their messages."""
    return {
        f"flows/ns{n % NAMESPACES}/f{n}.yaml": flow(
            f"ns{n % NAMESPACES}", f"f{n}", version
        ).encode()
        for n in range(count)
    }


@pytest.fixture
def repos(tmp_path: Path) -> Repos:
    return new_repos(tmp_path)


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[DaemonFactory]:
    with daemons(tmp_path) as start:
        yield start


def test_killing_the_daemon_during_a_big_sync_leaves_no_pool_process(
    repos: Repos, start_daemon: DaemonFactory
) -> None:
    # The first sync validates every flow: more than the threshold, so in the pool.
    first = repos.clone.bulk_commit(flows(POOL_THRESHOLD + 50, "first"))
    repos.clone.push()
    daemon = start_daemon(f"file://{repos.remote}")
    daemon.wait_deployed(first)
    assert daemon.proc is not None
    session = daemon.proc.pid  # the daemon leads its session; its pool processes are in it
    assert len(in_session(session)) > 1, "the first sync did not start the pool"

    big = repos.clone.bulk_commit(flows(1000, "second"))
    repos.clone.push()
    daemon.webhook(after=big)
    wait_until(
        lambda: any(s["toCommit"] == big and s["result"] == "Running" for s in daemon.syncs()),
        what="the big sync to start",
    )
    daemon.kill()

    wait_until(lambda: not in_session(session), GONE_WITHIN, "every pool process to end")
