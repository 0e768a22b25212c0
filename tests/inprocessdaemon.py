"""A real daemon in the test's own process, and a small client of its HTTP API.

`serving(repo, root, **settings)` starts `Daemon` on a bare repository (SQLite, workers,
its embedded WSGI server on 127.0.0.1, port chosen by the system), waits until
`/readyz` answers 200, and stops it at the end. Tests that need the daemon as a process
of its own use tests/e2e/test_daemon.py's `RunningDaemon` instead.
"""

from __future__ import annotations

import contextlib
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from headwater.daemon.daemon import Daemon
from headwater.daemon.settings import Settings

TERMINAL = ("SUCCESS", "WARNING", "FAILED", "KILLED", "CANCELLED")
READY_TIMEOUT = 30.0  # seconds for the first sync to finish
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class Answer:
    status: int
    body: Any


class Http:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.url = f"http://127.0.0.1:{daemon.port}"

    def call(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        request = urllib.request.Request(self.url + path, data=body, method=method)
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with _NO_PROXY.open(request, timeout=30) as response:
                status, data = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, data = error.code, error.read()
        return Answer(status, json.loads(data) if data else None)

    def finished(self, execution_id: str, timeout: float = 15.0) -> dict[str, Any]:
        """The execution's JSON once it has ended (fails the test after `timeout`)."""
        deadline = time.monotonic() + timeout
        while True:
            row = self.call("GET", f"/api/v1/executions/{execution_id}").body
            if row["state"]["current"] in TERMINAL:
                return dict(row)
            assert time.monotonic() < deadline, f"execution still {row['state']['current']}"
            time.sleep(0.05)

    def messages(self, execution_id: str) -> list[str]:
        return [line["message"] for line in self.call("GET", f"/api/v1/logs/{execution_id}").body]


@contextlib.contextmanager
def serving(repo: Path, root: Path, **settings: Any) -> Iterator[Daemon]:
    """A started daemon on `repo` with its data in `root/data`, ready; stopped at the end."""
    daemon = Daemon(
        Settings(
            repo=str(repo), data_dir=root / "data", port=0, poll_interval=0, watch=False,
            workers=2, **settings,
        )
    )  # fmt: skip
    daemon.start()
    try:
        client = Http(daemon)
        deadline = time.monotonic() + READY_TIMEOUT
        while client.call("GET", "/readyz").status != 200:
            assert time.monotonic() < deadline, "the daemon never became ready"
            time.sleep(0.05)
        yield daemon
    finally:
        daemon.stop(grace=5)
