"""git processes never outlive the daemon, and git transports that misbehave are refused.

Issue 11: stopping the daemon left an in-flight `git fetch` running (in a session of its
own, it waited out its 60 s timeout after the daemon had gone), and a `fd::` remote URL
hung the daemon's first sync. `Mirror.close()` now kills every git process of the mirror,
and `fd::` is refused with a message like `ext::` (and git itself is told to refuse
both transports, whatever the URL check lets through).
"""

from __future__ import annotations

import socket
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemonprocess import DaemonFactory, daemons, headwater
from proctable import processes_with
from waiting import wait_until

from headwater.daemon.git import GitError, Mirror, git_env

STOPPED_WITHIN = 15.0  # seconds: only catches a hang (a fetch waits 60 s on its own)


@pytest.fixture
def silent_remote() -> Iterator[str]:
    """The URL of an HTTP server that accepts connections and never answers."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}/flows-{uuid.uuid4().hex[:8]}.git"
    finally:
        stop.set()
        thread.join()
        for connection in held:
            connection.close()
        server.close()


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[DaemonFactory]:
    with daemons(tmp_path) as start:
        yield start


def test_closing_the_mirror_ends_a_fetch_in_flight(tmp_path: Path, silent_remote: str) -> None:
    mirror = Mirror(tmp_path / "mirror", silent_remote, "main")
    failures: list[BaseException] = []

    def fetch() -> None:
        try:
            mirror.fetch()
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=fetch)
    thread.start()
    try:
        wait_until(lambda: processes_with(silent_remote), what="git fetch to connect")
        mirror.close()
        thread.join(STOPPED_WITHIN)
        assert not thread.is_alive(), "the fetch still runs after close()"
        assert len(failures) == 1 and isinstance(failures[0], GitError)
        assert "was stopped: the mirror was closed" in str(failures[0])
        assert processes_with(silent_remote) == []
    finally:
        mirror.close()
        thread.join()


def test_a_stopped_daemon_leaves_no_git_process(
    start_daemon: DaemonFactory, silent_remote: str
) -> None:
    daemon = start_daemon(silent_remote, run=False).start(ready=False)
    wait_until(lambda: processes_with(silent_remote), what="the first sync's git fetch")

    assert daemon.terminate() == 0
    assert processes_with(silent_remote) == []


@pytest.mark.parametrize("url", ["fd::0", "fd::3/flows", "ext::sh -c true", "FD::0"])
def test_a_transport_that_misbehaves_is_refused_with_a_message(tmp_path: Path, url: str) -> None:
    transport = url.split("::")[0].lower()
    with pytest.raises(GitError, match=f"uses git's {transport}:: transport"):
        Mirror(tmp_path / "mirror", url, "main")


def test_the_daemon_refuses_to_start_on_an_fd_remote(tmp_path: Path) -> None:
    started = headwater("up", "--repo", "fd::0", "--data-dir", str(tmp_path / "data"))

    assert started.returncode == 1
    assert "error: the remote URL 'fd::0' uses git's fd:: transport" in started.stderr


def test_git_itself_refuses_fd_and_ext_in_headwaters_environment(tmp_path: Path) -> None:
    for url in ("fd::0", "ext::sh -c true"):
        answer = subprocess.run(
            ["git", "ls-remote", url],
            env=git_env(),
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=STOPPED_WITHIN,
        )
        assert answer.returncode != 0
        assert f"transport '{url.split('::')[0]}' not allowed" in answer.stderr
