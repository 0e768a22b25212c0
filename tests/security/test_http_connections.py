"""Attacks on the connections of `headwater up`, run as a process of its own: slowloris
(connections that send half a request and wait), one address holding more connections
than its share, and a token too short for a daemon that listens beyond loopback.

The attacking sockets come from other loopback addresses (127.0.0.2, 127.0.1.x; Linux
routes all of 127.0.0.0/8 to the loopback interface), so the test's own calls from
127.0.0.1 are a different client, as a health checker or a person would be.
"""

from __future__ import annotations

import contextlib
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemonprocess import RunningDaemon, daemons, flow, headwater, new_repos
from waiting import wait_until

from headwater.daemon.settings import HTTP_CONNECTIONS_PER_CLIENT, MIN_TOKEN_CHARS

HALF_OPEN = 150  # the connections that kept /healthz from answering for 50 s
IDLE_SECONDS = 3  # the idle bound of the slowloris daemon, short so the test is short
ANSWER_SECONDS = 10.0  # /healthz under attack: generous, only a hang fails
CLOSE_SECONDS = 60.0  # for the server to close what it should: generous, only a hang fails
HALF_A_REQUEST = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
LONG_TOKEN = "t" * MIN_TOKEN_CHARS
NAMED = "status.example.com"
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def start(
    tmp_path_factory: pytest.TempPathFactory, name: str, **env: str
) -> Iterator[RunningDaemon]:
    root = tmp_path_factory.mktemp(name)
    repos = new_repos(root)
    repos.push({"flows/team/a.yaml": flow("team", "a")})
    with daemons(root) as daemon:
        yield daemon(f"file://{repos.remote}", env=env)


@pytest.fixture(scope="module")
def slow_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDaemon]:
    yield from start(tmp_path_factory, "slow", HEADWATER_HTTP_IDLE_SECONDS=str(IDLE_SECONDS))


@pytest.fixture(scope="module")
def default_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDaemon]:
    """The bounds as they ship."""
    yield from start(tmp_path_factory, "default")


def connect(port: int, source: str) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))


def ended(conn: socket.socket) -> bool:
    """The server has closed this connection (whatever it sent before closing is read)."""
    conn.setblocking(False)
    try:
        while conn.recv(65536):
            pass
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True
    return True


def healthz(daemon: RunningDaemon, host: str | None = None) -> int:
    request = urllib.request.Request(f"{daemon.url}/healthz")
    if host is not None:
        request.add_header("Host", host)
    try:
        with _NO_PROXY.open(request, timeout=ANSWER_SECONDS) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return error.code


@contextlib.contextmanager
def half_open(port: int, sources: list[str]) -> Iterator[list[socket.socket]]:
    """HALF_OPEN connections, each having sent half a request, spread over `sources`."""
    conns: list[socket.socket] = []
    try:
        for n in range(HALF_OPEN):
            conn = connect(port, sources[n % len(sources)])
            conns.append(conn)
            with contextlib.suppress(OSError):  # the server may have refused it already
                conn.sendall(HALF_A_REQUEST)
        yield conns
    finally:
        for conn in conns:
            conn.close()


@pytest.mark.parametrize(
    "sources",
    [["127.0.0.2"], [f"127.0.1.{n}" for n in range(1, HALF_OPEN + 1)]],
    ids=["from-one-address", "from-150-addresses"],
)
def test_half_open_connections_neither_stop_healthz_nor_stay_open(
    slow_daemon: RunningDaemon, sources: list[str]
) -> None:
    with half_open(slow_daemon.port, sources) as conns:
        assert healthz(slow_daemon) == 200
        wait_until(
            lambda: all(ended(conn) for conn in conns),
            CLOSE_SECONDS,
            f"the server to close every connection idle for {IDLE_SECONDS} s",
        )
    assert healthz(slow_daemon) == 200


def test_one_address_holds_no_more_than_its_share_of_connections(
    default_daemon: RunningDaemon,
) -> None:
    held: list[socket.socket] = []
    try:
        for _ in range(HTTP_CONNECTIONS_PER_CLIENT):  # kept alive after their answer
            conn = connect(default_daemon.port, "127.0.0.3")
            held.append(conn)
            conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert conn.recv(65536).startswith(b"HTTP/1.1 200 ")
        extra = connect(default_daemon.port, "127.0.0.3")
        held.append(extra)
        extra.settimeout(ANSWER_SECONDS)
        refused = b"".join(iter(lambda: extra.recv(65536), b""))  # read to the server's close
        assert refused.startswith(b"HTTP/1.1 503 ")
        assert refused.endswith(b"too many open connections from your address\n")
        assert not any(ended(conn) for conn in held[:-1])  # the first ones are untouched
        assert healthz(default_daemon) == 200  # another address is served meanwhile
    finally:
        for conn in held:
            conn.close()


# -- the token beyond loopback -------------------------------------------------------------
@pytest.mark.parametrize("length", [1, MIN_TOKEN_CHARS - 1])
def test_a_short_token_is_refused_when_listening_beyond_loopback(
    tmp_path: Path, length: int
) -> None:
    refused = headwater(
        "up", "--host", "0.0.0.0", "--port", "0", "--data-dir", str(tmp_path / "data"),
        env={"HEADWATER_TOKEN": "t" * length},
    )  # fmt: skip
    assert refused.returncode == 1
    assert f"with a {length}-character token" in refused.stderr
    assert f"at least {MIN_TOKEN_CHARS} random characters" in refused.stderr
    assert "cannot be guessed" in refused.stderr
    assert not (tmp_path / "data" / "headwater.db").exists()  # refused before anything ran


@pytest.fixture(scope="module")
def wide_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDaemon]:
    """Listening on every address, with a token of the shortest length accepted there."""
    env = {"HEADWATER_HOST": "0.0.0.0", "HEADWATER_TOKEN": LONG_TOKEN}
    yield from start(tmp_path_factory, "wide", HEADWATER_ALLOWED_HOSTS=NAMED, **env)


def test_a_token_of_32_characters_may_listen_beyond_loopback(wide_daemon: RunningDaemon) -> None:
    assert "serving on http://0.0.0.0:" in wide_daemon.output()
    request = urllib.request.Request(
        f"{wide_daemon.url}/api/v1/executions/team/a",
        data=b"{}",
        headers={"Authorization": f"Bearer {LONG_TOKEN}", "Content-Type": "application/json"},
    )
    with _NO_PROXY.open(request, timeout=30) as answer:
        assert answer.status == 200


def test_allowed_hosts_from_the_environment_admit_a_named_host(wide_daemon: RunningDaemon) -> None:
    assert healthz(wide_daemon, host=f"{NAMED}:{wide_daemon.port}") == 200
    assert healthz(wide_daemon, host=f"rebind.example:{wide_daemon.port}") == 400
