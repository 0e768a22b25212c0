"""How fast the status page and the API answer on a large store, with the daemon idle.

Starts `headwater up` on a local flows repository (20 flows in 4 namespaces, deployed by
a real sync), then fills its SQLite store with bulk inserts: 100,000 executions over the
last 30 days with 3 task runs each, and 1,000,000 log lines, of which one execution has
10,000. Then it times, over real HTTP on one keep-alive connection, one request after
another, the pages (overview, executions list first and 50th page, a flow page, the
execution page of the execution with 10,000 log lines) and the API routes behind them,
and prints p50, p95 and the largest time of each. Target: p95 under 100 ms.

    python bench/web.py [--quick] [--requests N]

`--quick` builds a store a tenth the size (a smoke test); the figures in
docs/benchmarks.md and docs/web.md come from a run without it.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

TOKEN = "bench-token"
NAMESPACES = ("acme.sales", "acme.finance", "acme.ops", "data")
FLOWS_PER_NAMESPACE = 5
EXECUTIONS = 100_000
LOG_LINES = 1_000_000
BIG_LOG = 10_000  # log lines of the one execution whose page is timed
TASKS = ("extract", "transform", "load")
DAYS = 30  # executions are spread over this many days before now
BATCH = 20_000  # rows per executemany
WARMUP = 3
REQUESTS = 100
PAGE_SIZE = 25
TARGET_MS = 100.0
STATES = ("SUCCESS",) * 90 + ("FAILED",) * 6 + ("WARNING",) * 3 + ("KILLED",)
LEVELS = ("INFO",) * 8 + ("DEBUG", "WARN")
START_TIMEOUT = 120.0


def flow_text(namespace: str, flow_id: str) -> str:
    tasks = "".join(
        f"  - id: {task}\n"
        "    type: io.kestra.plugin.core.log.Log\n"
        f'    message: "{task} {{{{ inputs.day }}}}"\n'
        for task in TASKS
    )
    return (
        f"id: {flow_id}\nnamespace: {namespace}\n"
        f"description: Nightly {flow_id} of <b>{namespace}</b>\n"
        "labels:\n  team: data\n  tier: gold\n"
        "inputs:\n  - id: day\n    type: STRING\n    defaults: today\n"
        "triggers:\n  - id: nightly\n    type: io.kestra.plugin.core.trigger.Schedule\n"
        '    cron: "0 2 * * *"\n'
        f"tasks:\n{tasks}"
    )


def make_repository(root: Path) -> Path:
    repo = root / "flows-repo"
    for namespace in NAMESPACES:
        folder = repo / "flows" / namespace.replace(".", "/")
        folder.mkdir(parents=True)
        for n in range(FLOWS_PER_NAMESPACE):
            (folder / f"flow{n}.yaml").write_text(flow_text(namespace, f"flow{n}"))
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    for args in (
        ["init", "--quiet", "--initial-branch=main"],
        ["add", "."],
        ["-c", "user.name=Bench", "-c", "user.email=bench@example.com", "commit", "-qm", "flows"],
    ):
        subprocess.run(["git", *args], cwd=repo, env=env, check=True)
    return repo


# -- the daemon ----------------------------------------------------------------------------
class DaemonProcess:
    """`headwater up` in a session of its own, its log in a file."""

    def __init__(self, repo: Path, data_dir: Path) -> None:
        self.log = data_dir.with_suffix(".log")
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("HEADWATER_", "GIT_")) and "proxy" not in k.lower()
        }
        env.update(HEADWATER_TOKEN=TOKEN, HEADWATER_WATCH="false")
        args = ["up", "--repo", str(repo), "--data-dir", str(data_dir), "--port", "0"]
        args += ["--poll-interval", "0"]
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "headwater.daemon.cli", *args],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.port = self._wait_port()

    def _wait_port(self) -> int:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            match = re.search(r"serving on http://[^:\s]+:(\d+)", self.log.read_text())
            if match:
                return int(match[1])
            if self.proc.poll() is not None:
                raise SystemExit(f"the daemon exited:\n{self.log.read_text()}")
            time.sleep(0.01)
        raise SystemExit("the daemon did not listen in time")

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            with suppress(OSError):
                connection = self.connection()
                connection.request("GET", "/readyz")
                if connection.getresponse().status == 200:
                    return
            time.sleep(0.05)
        raise SystemExit(f"the daemon was not ready in time:\n{self.log.read_text()}")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        finally:
            with suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)


# -- filling the store ---------------------------------------------------------------------
@dataclass
class Filled:
    big_execution: str
    flow: tuple[str, str]
    seconds: float
    database_mib: float


def _insert(db: sqlite3.Connection, table: str, rows: list[dict[str, object]]) -> None:
    columns = list(rows[0])
    marks = ", ".join(f":{c}" for c in columns)
    db.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)


def _batches(rows: Iterator[dict[str, object]]) -> Iterator[list[dict[str, object]]]:
    batch: list[dict[str, object]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def fill(data_dir: Path, executions: int, log_lines: int) -> Filled:
    """Bulk-insert executions, task runs and log lines, as a long history would leave them."""
    started = time.monotonic()
    random.seed(7)
    path = data_dir / "headwater.db"
    db = sqlite3.connect(path, timeout=60, isolation_level=None)
    db.execute("PRAGMA busy_timeout=60000")
    flows = db.execute("SELECT namespace, flow_id, revision FROM flows").fetchall()
    commits = dict(db.execute("SELECT namespace || '.' || flow_id, commit_sha FROM flow_revisions"))
    now = time.time()
    ids = [uuid.uuid4().hex[:22] for _ in range(executions)]
    big = ids[-1]  # the newest: the first row of the list, the one people open
    spacing = DAYS * 86_400 / executions

    def execution_rows() -> Iterator[dict[str, object]]:
        for i, execution_id in enumerate(ids):
            namespace, flow_id, revision = flows[i % len(flows)]
            created = now - DAYS * 86_400 + i * spacing
            state = random.choice(STATES)
            end = created + 1.0 + random.random() * 30
            yield {
                "id": execution_id,
                "namespace": namespace,
                "flow_id": flow_id,
                "flow_revision": revision,
                "commit_sha": commits[f"{namespace}.{flow_id}"],
                "state": state,
                "created_at": created,
                "start_date": created + 0.01,
                "end_date": end,
                "inputs": json.dumps({"day": f"2026-11-{i % 28 + 1:02d}"}),
                "outputs": json.dumps({}),
                "labels": json.dumps([{"key": "team", "value": "data"}]),
                "trigger": json.dumps({"id": "nightly", "type": "Schedule"}),
                "histories": json.dumps(
                    [
                        {"state": "CREATED", "date": created},
                        {"state": "RUNNING", "date": created + 0.01},
                        {"state": state, "date": end},
                    ]
                ),
                "dirty": 0,
                "kill_requested": 0,
                "depth": 0,
            }

    run_ids: dict[str, list[str]] = {}

    def task_run_rows() -> Iterator[dict[str, object]]:
        for i, execution_id in enumerate(ids):
            created = now - DAYS * 86_400 + i * spacing
            run_ids[execution_id] = []
            for seq, task in enumerate(TASKS):
                run_id = uuid.uuid4().hex[:22]
                if execution_id == big or i % 10 == 0:
                    run_ids[execution_id].append(run_id)
                begin = created + 0.02 + seq
                yield {
                    "id": run_id,
                    "execution_id": execution_id,
                    "task_id": task,
                    "branch": "tasks",
                    "runnable": 1,
                    "state": "SUCCESS",
                    "attempt": 1,
                    "attempts": json.dumps(
                        [{"state": "SUCCESS", "startDate": begin, "endDate": begin + 0.5}]
                    ),
                    "outputs": json.dumps({}),
                    "created_at": begin,
                    "start_date": begin,
                    "end_date": begin + 0.5,
                    "not_before": 0.0,
                    "seq": seq,
                }

    def log_rows() -> Iterator[dict[str, object]]:
        others = log_lines - BIG_LOG
        for n in range(others):
            execution_id = ids[(n * 10) % (executions - 1)] if executions > 1 else big
            yield _log(execution_id, run_ids.get(execution_id), n, now)
        for n in range(BIG_LOG):
            yield _log(big, run_ids[big], n, now)

    for table, rows in (
        ("executions", execution_rows()),
        ("task_runs", task_run_rows()),
        ("logs", log_rows()),
    ):
        for batch in _batches(rows):
            db.execute("BEGIN IMMEDIATE")
            _insert(db, table, batch)
            db.execute("COMMIT")
    db.close()
    size = (path.stat().st_size + path.with_suffix(".db-wal").stat().st_size) / 2**20
    namespace, flow_id, _ = flows[(executions - 1) % len(flows)]
    return Filled(big, (namespace, flow_id), time.monotonic() - started, size)


def _log(execution_id: str, runs: list[str] | None, n: int, now: float) -> dict[str, object]:
    return {
        "execution_id": execution_id,
        "task_run_id": runs[n % len(runs)] if runs else None,
        "attempt": 1,
        "timestamp": now - 1000 + n * 0.001,
        "level": LEVELS[n % len(LEVELS)],
        "message": f"row {n}: processed batch {n % 977} of <orders> in {n % 300} ms",
    }


# -- timing --------------------------------------------------------------------------------
@dataclass
class Timing:
    name: str
    path: str
    status: int
    size: int
    times: list[float]

    def percentile(self, q: float) -> float:
        ordered = sorted(self.times)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000


def time_route(daemon: DaemonProcess, name: str, path: str, requests: int) -> Timing:
    """Time GET `path` on one keep-alive connection; a broken answer ends the route."""
    connection = daemon.connection()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    times: list[float] = []
    status, size = 0, 0
    for n in range(WARMUP + requests):
        began = time.perf_counter()
        try:
            connection.request("GET", path, headers=headers)
            response = connection.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException) as exc:
            print(f"{name}: {type(exc).__name__}: {exc}", file=sys.stderr)
            return Timing(name, path, 0, 0, times or [0.0])
        took = time.perf_counter() - began
        status, size = response.status, len(body)
        if n >= WARMUP:
            times.append(took)
    connection.close()
    return Timing(name, path, status, size, times)


def routes(filled: Filled, executions: int) -> list[tuple[str, str]]:
    namespace, flow_id = filled.flow
    big = filled.big_execution
    last_page = min(50, max(1, executions // PAGE_SIZE))
    return [
        ("overview page", "/"),
        ("executions page 1", "/executions"),
        (f"executions page {last_page}", f"/executions?page={last_page}"),
        ("flow page", f"/flows/{namespace}/{flow_id}"),
        (f"execution page ({BIG_LOG:,} log lines)", f"/executions/{big}"),
        ("API executions/search page 1", f"/api/v1/executions/search?size={PAGE_SIZE}"),
        (
            f"API executions/search page {last_page}",
            f"/api/v1/executions/search?size={PAGE_SIZE}&page={last_page}",
        ),
        ("API flows/{ns}/{id}", f"/api/v1/flows/{namespace}/{flow_id}"),
        ("API executions/{id}", f"/api/v1/executions/{big}"),
        ("API logs/{id} (first 1,000)", f"/api/v1/logs/{big}"),
        ("API logs/{id} (all 10,000; no target)", f"/api/v1/logs/{big}?limit=10000"),
        ("metrics", "/metrics"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the store")
    parser.add_argument("--requests", type=int, default=REQUESTS, help="timed requests per route")
    parser.add_argument(
        "--keep", action="store_true", help="keep the data directory (to study query plans)"
    )
    args = parser.parse_args()
    executions = EXECUTIONS // 10 if args.quick else EXECUTIONS
    log_lines = LOG_LINES // 10 if args.quick else LOG_LINES
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}"
    )
    with tempfile.TemporaryDirectory(prefix="headwater-bench-web-") as tmp:
        root = Path(tempfile.mkdtemp(prefix="headwater-bench-web-")) if args.keep else Path(tmp)
        repo = make_repository(root)
        daemon = DaemonProcess(repo, root / "data")
        try:
            daemon.wait_ready()
            filled = fill(root / "data", executions, log_lines)
            print(
                f"store: {executions:,} executions, {executions * len(TASKS):,} task runs, "
                f"{log_lines:,} log lines; filled in {filled.seconds:.1f} s, "
                f"{filled.database_mib:,.0f} MiB"
            )
            results = [
                time_route(daemon, name, path, args.requests)
                for name, path in routes(filled, executions)
            ]
        finally:
            daemon.stop()
    report(results, args.requests)
    print(f"load average during the run: {os.getloadavg()[0]:.2f} (1 min)")
    if args.keep:
        print(f"\nthe data directory is kept: {root / 'data'}")


def report(results: list[Timing], requests: int) -> None:
    print(f"\n{requests} sequential requests each, after {WARMUP} unmeasured; milliseconds")
    print(f"{'route':<40} {'status':>6} {'KiB':>7} {'p50':>7} {'p95':>7} {'max':>7}  target")
    for t in results:
        verdict = "ok" if t.percentile(0.95) < TARGET_MS else "SLOW"
        if "no target" in t.name:
            verdict = ""
        if t.status != 200:
            verdict = "not served"
        print(
            f"{t.name:<40} {t.status:>6} {t.size / 1024:>7.1f} {t.percentile(0.5):>7.1f} "
            f"{t.percentile(0.95):>7.1f} {max(t.times) * 1000:>7.1f}  {verdict}"
        )
    print(f"\nmedian of medians: {statistics.median(t.percentile(0.5) for t in results):.1f} ms")


if __name__ == "__main__":
    main()
