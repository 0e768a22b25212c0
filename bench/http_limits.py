"""What the HTTP hardening costs and what it buys (issue 11: slowloris, Host check,
security headers, the JSON depth bound).

1. `/healthz` while 150 connections that each sent half a request are held open, from
   one address (127.0.0.2) and from 150 (127.0.1.x), against `headwater up` twice: with
   the shipped bounds, and with waitress's own defaults restored through the settings
   (100 connections, 120 s idle, no bound per client). Prints how long `/healthz` took
   from 127.0.0.1, and how long until the server had closed every attacking connection.
2. The price per request of the checks every request now passes (the Host allow-list
   and the security headers), and of the depth walk after parsing a large JSON body.

    python bench/http_limits.py [--give-up SECONDS]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import timeit
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from flask import Response

from headwater.web import hosts, jsonbody
from headwater.web.headers import add_security_headers

HALF_OPEN = 150
HALF_A_REQUEST = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
WAITRESS_DEFAULTS = {
    "HEADWATER_HTTP_MAX_CONNECTIONS": "100",
    "HEADWATER_HTTP_IDLE_SECONDS": "120",
    "HEADWATER_HTTP_CONNECTIONS_PER_CLIENT": "1000000",
}
FLOW = "id: a\nnamespace: team\ntasks:\n  - id: say\n    type: core.log.Log\n    message: hi\n"
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@contextlib.contextmanager
def daemon(root: Path, env: dict[str, str]) -> Iterator[int]:
    """`headwater up` on a one-flow repository; yields its port once /readyz answers."""
    repo = root / "repo"
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    (repo / "flows" / "team").mkdir(parents=True)
    (repo / "flows" / "team" / "a.yaml").write_text(FLOW)
    git = ["git", "-C", str(repo), "-c", "user.name=b", "-c", "user.email=b@example.com"]
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "a"], check=True)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HEADWATER_")}
    log = root / "daemon.log"
    command = [sys.executable, "-m", "headwater.daemon.cli", "up", "--repo", str(repo)]
    command += ["--data-dir", str(root / "data"), "--port", "0", "--poll-interval", "0"]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command, env={**clean, **env}, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        port = _wait_for_port(log, proc)
        while _healthz(port, 5, "/readyz") != 200:
            time.sleep(0.1)
        yield port
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


def _wait_for_port(log: Path, proc: subprocess.Popen[bytes]) -> int:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = re.search(r"serving on http://[^:\s]+:(\d+)", log.read_text(errors="replace"))
        if found:
            return int(found[1])
        if proc.poll() is not None:
            raise SystemExit(f"the daemon exited:\n{log.read_text()}")
        time.sleep(0.1)
    raise SystemExit("the daemon did not start")


def _healthz(port: int, timeout: float, path: str = "/healthz") -> int | None:
    try:
        with _NO_PROXY.open(f"http://127.0.0.1:{port}{path}", timeout=timeout) as answer:
            return int(answer.status)
    except OSError:
        return None


def _closed(conn: socket.socket) -> bool:
    conn.setblocking(False)
    try:
        while conn.recv(65536):
            pass
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True
    return True


def attack(port: int, sources: list[str], give_up: float) -> tuple[str, str]:
    """(time /healthz took, time until every attacking connection was closed)."""
    conns = []
    try:
        for n in range(HALF_OPEN):
            source = (sources[n % len(sources)], 0)
            conn = socket.create_connection(("127.0.0.1", port), 10, source_address=source)
            conns.append(conn)
            with contextlib.suppress(OSError):
                conn.sendall(HALF_A_REQUEST)
        started = time.monotonic()
        status = _healthz(port, give_up)
        answered = time.monotonic() - started
        shown = f"{answered * 1000:.0f} ms" if status == 200 else f"none in {give_up:.0f} s"
        while not all(_closed(c) for c in conns):
            if time.monotonic() - started > give_up:
                return shown, f"not within {give_up:.0f} s"
            time.sleep(0.1)
        return shown, f"{time.monotonic() - started:.1f} s"
    finally:
        for conn in conns:
            conn.close()


def per_request_costs() -> None:
    names = ("status.example.com",)
    calls = 200_000
    for host in ("127.0.0.1:8080", "status.example.com", "rebind.attacker.example:8080"):
        seconds = timeit.timeit(lambda h=host: hosts.admitted(h, names), number=calls)
        print(f"  Host check, {host!r}: {seconds / calls * 1e6:.2f} µs")
    response = Response("x")
    seconds = timeit.timeit(lambda: add_security_headers(response), number=calls)
    print(f"  security headers on an answer: {seconds / calls * 1e6:.2f} µs")
    body = json.dumps(
        {"inputs": {f"k{i}": {"rows": [{"id": i, "tags": ["a", "b"]}] * 20} for i in range(2000)}}
    )
    runs = 5
    plain = min(timeit.repeat(lambda: json.loads(body), number=1, repeat=runs))
    bounded = min(timeit.repeat(lambda: jsonbody.loads(body), number=1, repeat=runs))
    size = len(body) / 1e6
    print(
        f"  JSON body of {size:.1f} MB: json.loads {plain * 1000:.1f} ms, with the depth "
        f"walk {bounded * 1000:.1f} ms (+{(bounded / plain - 1) * 100:.0f}%)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--give-up", type=float, default=150.0, help="seconds to wait at most")
    args = parser.parse_args()
    print(f"python {platform.python_version()}, {os.cpu_count()} cores, {platform.platform()}")
    print(f"load average at start: {os.getloadavg()[0]:.1f}")
    one = ["127.0.0.2"]
    many = [f"127.0.1.{n}" for n in range(1, HALF_OPEN + 1)]
    for profile, env in (("shipped bounds", {}), ("waitress defaults", WAITRESS_DEFAULTS)):
        with tempfile.TemporaryDirectory() as root, daemon(Path(root), env) as port:
            for label, sources in (("one address", one), ("150 addresses", many)):
                answered, closed = attack(port, sources, args.give_up)
                print(
                    f"{profile}, {HALF_OPEN} half-open from {label}: /healthz {answered}, "
                    f"all closed after {closed}"
                )
    print("per request:")
    per_request_costs()


if __name__ == "__main__":
    main()
