"""Fixtures of the engine's tests: a real engine on a temporary data directory (SQLite,
worker threads, real processes), a helper that deploys a flow and runs it to its end,
and a tiny HTTP server on 127.0.0.1.

The integration and security tiers' conftest.py files import these, so tests of both
tiers get the same fixtures (`make_engine`, `engine`, `flows`, `http_server`)."""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import textwrap
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import select

from headwater.daemon.engine.engine import Engine, EngineSettings
from headwater.daemon.engine.executor import ExecutionRequest
from headwater.daemon.engine.flows import parse_flow
from headwater.daemon.engine.worker import NamespaceFiles
from headwater.daemon.flow.model import Flow
from headwater.daemon.store.store import EXECUTIONS

Row = dict[str, Any]
T = TypeVar("T")

LEASE_SECONDS = 5.0  # short enough that a lost lease shows within a test
HEARTBEAT_SECONDS = 0.2  # a lease is at least ten heartbeats long (DESIGN)
RUN_TIMEOUT = 15.0  # no test flow takes this long; a hang fails instead of blocking
TERMINAL = ("SUCCESS", "WARNING", "FAILED", "KILLED", "CANCELLED")


@dataclass
class Finished:
    """An execution that ended, with its task runs and logs, read once."""

    execution: Row
    runs: list[Row]
    logs: list[Row]

    @property
    def state(self) -> str:
        return str(self.execution["state"])

    @property
    def error(self) -> str | None:
        return self.execution.get("error")

    @property
    def outputs(self) -> dict[str, Any]:
        return self.execution.get("outputs") or {}

    def runs_of(self, task_id: str) -> list[Row]:
        return [r for r in self.runs if r["task_id"] == task_id]

    def run(self, task_id: str, value: str | None = None) -> Row:
        """The one task run of `task_id` (for `value` inside a loop)."""
        found = [r for r in self.runs_of(task_id) if value is None or r["value"] == value]
        assert len(found) == 1, f"{len(found)} task runs of {task_id} {value or ''}: {found}"
        return found[0]

    def states(self) -> dict[str, str]:
        """State by task id (`id[value]` inside loops), in order of creation."""
        return {_label(r): r["state"] for r in self.runs}

    def order(self, key: str = "start_date") -> list[str]:
        """Task runs that ran, ordered by `key` (start_date or end_date)."""
        ran = [r for r in self.runs if r[key] is not None and r["state"] != "SKIPPED"]
        return [_label(r) for r in sorted(ran, key=lambda r: (r[key], r["seq"]))]

    def messages(self, task_id: str | None = None, level: str | None = None) -> list[str]:
        ids = {r["id"] for r in self.runs_of(task_id)} if task_id else None
        return [
            row["message"]
            for row in self.logs
            if (ids is None or row["task_run_id"] in ids)
            and (level is None or row["level"] == level)
        ]

    def summary(self) -> str:
        """What a failing assertion prints: states, errors and logs."""
        lines = [f"execution {self.state}: {self.error}"]
        lines += [
            f"  {_label(r)} {r['state']} {r['start_date']}..{r['end_date']} {r.get('error') or ''}"
            for r in self.runs
        ]
        lines += [f"  log {r['level']} {r['message']}" for r in self.logs]
        return "\n".join(lines)


def _label(run: Row) -> str:
    return run["task_id"] + (f"[{run['value']}]" if run["value"] is not None else "")


class Flows:
    """Deploys flow texts into an engine and runs them to their end."""

    _ids = itertools.count(1)

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def deploy(self, text: str) -> Flow:
        """Deploy `text`; without an `id:` line it gets a fresh id in namespace `tests`."""
        text = textwrap.dedent(text).strip() + "\n"
        if not re.search(r"(?m)^id:", text):
            text = f"id: flow{next(self._ids)}\nnamespace: tests\n{text}"
        flow = parse_flow(text, "test.yaml")
        self.engine.deploy_source(text, f"{flow.namespace}/{flow.id}.yaml")
        return flow

    def start(self, text: str, inputs: Mapping[str, Any] | None = None) -> str:
        flow = self.deploy(text)
        request = ExecutionRequest(flow.namespace, flow.id, inputs=dict(inputs or {}))
        return str(self.engine.start_execution(request)["id"])

    def finish(self, execution_id: str, timeout: float = RUN_TIMEOUT) -> Finished:
        row = self.engine.wait(execution_id, timeout=timeout, poll=0.05)
        assert row["state"] in TERMINAL, f"execution still {row['state']} after {timeout} s"
        return self.read(execution_id)

    def read(self, execution_id: str) -> Finished:
        self.engine.logs.flush()
        row = self.engine.execution(execution_id)
        assert row is not None
        return Finished(row, self.engine.task_runs(execution_id), self.engine.store.logs(row["id"]))

    def run(
        self, text: str, inputs: Mapping[str, Any] | None = None, timeout: float = RUN_TIMEOUT
    ) -> Finished:
        return self.finish(self.start(text, inputs), timeout)

    def state_of(self, execution_id: str) -> str:
        row = self.engine.execution(execution_id)
        assert row is not None
        return str(row["state"])

    def task_run(self, execution_id: str, task_id: str) -> Row | None:
        found = [r for r in self.engine.task_runs(execution_id) if r["task_id"] == task_id]
        return found[0] if found else None


EngineFactory = Callable[..., Engine]


@pytest.fixture
def make_engine(tmp_path: Path, db_url: str | None) -> Iterator[EngineFactory]:
    """Engines on `tmp_path/data`, started, on the test's database (`db_url`: SQLite in
    the data directory unless the test is marked `postgres`); all stopped at the end."""
    started: list[Engine] = []

    def make(
        environ: Mapping[str, str] | None = None,
        namespace_files: NamespaceFiles | None = None,
        data_dir: Path | None = None,
        **settings: Any,
    ) -> Engine:
        options: dict[str, Any] = {
            "db_url": db_url,
            "workers": 4,
            "lease_seconds": LEASE_SECONDS,
            "heartbeat_seconds": HEARTBEAT_SECONDS,
            **settings,
        }
        engine = Engine(
            EngineSettings(data_dir=data_dir or tmp_path / "data", **options),
            environ=dict(environ or {}),
            namespace_files=namespace_files,
        )
        engine.start()
        started.append(engine)
        return engine

    yield make
    for engine in started:
        stop_engine(engine)


def stop_engine(engine: Engine) -> None:
    """Stop an engine, killing first what a failed test left running: no process of a
    test outlives it."""
    try:
        with engine.store.read() as tx:
            unfinished = list(
                tx.connection.execute(
                    select(EXECUTIONS.c.id).where(EXECUTIONS.c.state.not_in(TERMINAL))
                ).scalars()
            )
        for execution_id in unfinished:
            engine.kill(execution_id)
    finally:
        engine.stop(grace=10)


@pytest.fixture
def engine(make_engine: EngineFactory) -> Engine:
    return make_engine()


@pytest.fixture
def flows(engine: Engine) -> Flows:
    return Flows(engine)


# -- a tiny HTTP server ------------------------------------------------------------------


@dataclass
class Served:
    url: str
    requests: list[dict[str, Any]]


class _Handler(BaseHTTPRequestHandler):
    """GET /status/<code> answers that code; any other GET answers JSON; POST echoes."""

    requests: list[dict[str, Any]]

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep the test output quiet

    def do_GET(self) -> None:
        self._record(b"")
        match = re.fullmatch(r"/status/(\d{3})", self.path)
        if match:
            self._answer(int(match[1]), b"status page", "text/plain")
        else:
            self._answer(
                200, json.dumps({"path": self.path, "ok": True}).encode(), "application/json"
            )

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self._record(body)
        self._answer(200, json.dumps({"received": body.decode()}).encode(), "application/json")

    def _record(self, body: bytes) -> None:
        self.requests.append(
            {
                "method": self.command,
                "path": self.path,
                "body": body.decode(),
                "headers": dict(self.headers),
            }
        )

    def _answer(self, code: int, body: bytes, kind: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


PROXY_VARIABLES = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy")


@contextlib.contextmanager
def serve_http() -> Iterator[Served]:
    """A server on 127.0.0.1 (requests to it bypass any proxy) for as long as the block."""
    requests: list[dict[str, Any]] = []
    handler = type("Handler", (_Handler,), {"requests": requests})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    with pytest.MonkeyPatch.context() as patch:
        for name in PROXY_VARIABLES:
            patch.delenv(name, raising=False)
        try:
            yield Served(f"http://127.0.0.1:{server.server_address[1]}", requests)
        finally:
            server.shutdown()
            server.server_close()


@pytest.fixture
def http_server() -> Iterator[Served]:
    with serve_http() as served:
        yield served
