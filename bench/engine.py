"""How fast the engine runs executions: latency, throughput and SQL per task run.

Builds an embedded engine the way `headwater run` does (`Engine(EngineSettings(data_dir))`,
default worker threads, SQLite in a temporary data directory) and prints:

1. 40 sequential `core.log.Log` tasks in one execution, request to SUCCESS;
2. 40 sequential `scripts.shell.Commands` tasks running `true` (process runner);
3. two-task executions (Log then Return) started open loop at fixed arrival rates: the
   highest rate the default worker pool sustains for a minute, and p50/p99 latency at
   50 executions a second for a minute;
4. SQL statements per task run (counted with an SQLAlchemy `before_cursor_execute`
   hook) and the statements an idle engine issues per second.

Latency is measured from the moment the execution is requested (just before
`start_execution`, or its scheduled arrival time in the open-loop runs) to the
in-process end callback (`engine.executor.ended`, called right after the commit that
ends the execution). The store's own `end_date - created_at` is printed beside it.

    python bench/engine.py [--quick] [--db URL]

`--quick` shortens every run (a smoke test); the figures in docs/benchmarks.md come from
a run without it. `--db postgresql+psycopg://…` runs the engine on that database instead
of SQLite (what `headwater up --db` does); the bench drops Headwater's tables in it
before each engine, so give it a database of its own.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import re
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy
from sqlalchemy import event

from headwater.daemon.engine.engine import Engine, EngineSettings
from headwater.daemon.engine.executor import ExecutionRequest
from headwater.daemon.store.tables import metadata

NAMESPACE = "bench"
SEQUENTIAL_TASKS = 40
LOG_TARGET_MS = 100.0
SHELL_TARGET_MS = 400.0
RATE_TARGET = 100.0  # executions a second
FIXED_RATE = 50.0  # executions a second, for the latency figure
P99_TARGET_MS = 250.0
STATEMENTS_TARGET = 6.0
# Published figures for 40 tiny sequential tasks (other machines, not rerun here).
PUBLISHED = (
    ("Hatchet", 1.2),
    ("Temporal", 3.0),
    ("Windmill", 4.4),
    ("Prefect", 4.9),
    ("Kestra", 6.0),
    ("Airflow", 116.0),
)
# An arrival rate is sustained when, over the window, completions keep within this
# fraction of arrivals, p99 latency stays under the bound and the driver keeps its
# schedule (creating an execution is synchronous, so a slow create shows as lag).
KEEP_UP_FRACTION = 0.95
P99_BOUND_SECONDS = 1.0
DRIVER_LAG_BOUND_SECONDS = 0.5
SEARCH_RATES = (25.0, 50.0, 75.0, 100.0, 125.0, 150.0, 200.0, 250.0, 300.0, 400.0)
TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")


@dataclass
class Durations:
    """How long each part runs: full length by default, short with --quick."""

    warmup_runs: int = 3
    runs: int = 20
    search_seconds: float = 10.0
    sustain_seconds: float = 60.0
    fixed_rate_seconds: float = 60.0
    idle_seconds: float = 10.0
    count_runs: int = 10

    @classmethod
    def quick(cls) -> Durations:
        return cls(1, 3, 2.0, 4.0, 4.0, 2.0, 2)


# -- flows --------------------------------------------------------------------------------
def log_flow(flow_id: str, tasks: int) -> str:
    body = "".join(
        f"  - id: t{i}\n    type: io.kestra.plugin.core.log.Log\n    message: step {i}\n"
        for i in range(tasks)
    )
    return f"id: {flow_id}\nnamespace: {NAMESPACE}\ntasks:\n{body}"


def shell_flow(flow_id: str, tasks: int) -> str:
    body = "".join(
        f"  - id: t{i}\n"
        "    type: io.kestra.plugin.scripts.shell.Commands\n"
        "    taskRunner:\n"
        "      type: io.kestra.plugin.core.runner.Process\n"
        "    commands:\n"
        "      - 'true'\n"
        for i in range(tasks)
    )
    return f"id: {flow_id}\nnamespace: {NAMESPACE}\ntasks:\n{body}"


def two_task_flow(flow_id: str) -> str:
    return (
        f"id: {flow_id}\nnamespace: {NAMESPACE}\ntasks:\n"
        "  - id: say\n    type: io.kestra.plugin.core.log.Log\n    message: hello\n"
        "  - id: give\n    type: io.kestra.plugin.core.debug.Return\n    format: done\n"
    )


# -- an engine with end times -------------------------------------------------------------
DATABASE: list[str] = []
"""The --db URL, when given (set once by main; every engine of the run uses it)."""


class Bench:
    """An engine in a temporary data directory that notes when each execution ends."""

    def __init__(self, folder: Path) -> None:
        if DATABASE:
            empty_database(DATABASE[0])
        self.engine = Engine(EngineSettings(data_dir=folder, db_url=next(iter(DATABASE), None)))
        self.ended_at: dict[str, float] = {}
        # only what the figures need: keeping whole rows would grow the heap the garbage
        # collector walks, and its pauses are part of what is measured
        self.ended_state: dict[str, str] = {}
        self.stored_latency: dict[str, float] = {}
        self._done = threading.Condition()
        self.engine.executor.ended.append(self._on_ended)

    def _on_ended(self, execution: dict[str, Any]) -> None:
        now = time.perf_counter()
        with self._done:
            self.ended_at[execution["id"]] = now
            self.ended_state[execution["id"]] = execution["state"]
            self.stored_latency[execution["id"]] = execution["end_date"] - execution["created_at"]
            self._done.notify_all()

    def deploy(self, source: str) -> None:
        self.engine.deploy_source(source, "x.yaml")

    def request(self, flow_id: str) -> str:
        return str(self.engine.start_execution(ExecutionRequest(NAMESPACE, flow_id))["id"])

    def wait_ended(self, execution_id: str, timeout: float = 60.0) -> float:
        deadline = time.monotonic() + timeout
        with self._done:
            while execution_id not in self.ended_at:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"execution {execution_id} did not end in {timeout}s")
                self._done.wait(left)
            return self.ended_at[execution_id]

    def completed(self) -> int:
        with self._done:
            return len(self.ended_at)

    def store_latency(self, execution_id: str) -> float:
        return float(self.stored_latency[execution_id])


def empty_database(url: str) -> None:
    """Drop Headwater's tables, so each engine starts on an empty schema like SQLite's."""
    engine = sqlalchemy.create_engine(url)
    with engine.begin() as connection:
        metadata.drop_all(connection)
        connection.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
    engine.dispose()


@contextmanager
def bench_engine(started: bool = True) -> Iterator[Bench]:
    with tempfile.TemporaryDirectory(prefix="headwater-bench-") as folder:
        bench = Bench(Path(folder))
        try:
            if started:
                bench.engine.start()
            yield bench
        finally:
            bench.engine.stop(grace=5)


# -- the machine and the settings -----------------------------------------------------------
def describe_setup() -> None:
    if DATABASE:
        describe_postgres()
        return
    with bench_engine(started=False) as bench:
        with bench.engine.db.connect() as connection:
            journal = connection.exec_driver_sql("PRAGMA journal_mode").scalar()
            synchronous = int(connection.exec_driver_sql("PRAGMA synchronous").scalar() or 0)
            busy = connection.exec_driver_sql("PRAGMA busy_timeout").scalar()
        workers = len(bench.engine.workers)
    sync_names = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count() or 0
    print(f"date:            {time.strftime('%Y-%m-%d %H:%M %Z')}")
    print(f"machine:         {platform.machine()}, {os.cpu_count()} cores ({usable} usable)")
    print(f"python:          {sys.version.split()[0]}, SQLAlchemy {sqlalchemy.__version__}")
    print(f"sqlite:          {sqlite3.sqlite_version}, embedded, temporary data directory")
    print(
        f"sqlite pragmas:  journal_mode={journal}, "
        f"synchronous={sync_names.get(synchronous, synchronous)} ({synchronous}), "
        f"busy_timeout={busy} ms (read from a live connection)"
    )
    print(f"worker threads:  {workers} (EngineSettings default), one executor thread")
    print_load("load average:   ")


def describe_postgres() -> None:
    with bench_engine(started=False) as bench:
        with bench.engine.db.connect() as connection:
            version = connection.exec_driver_sql("SHOW server_version").scalar()
            settings = {
                name: connection.exec_driver_sql(f"SHOW {name}").scalar()
                for name in ("fsync", "synchronous_commit", "shared_buffers")
            }
        workers = len(bench.engine.workers)
    url = sqlalchemy.engine.make_url(DATABASE[0])
    print(f"date:            {time.strftime('%Y-%m-%d %H:%M %Z')}")
    print(f"machine:         {platform.machine()}, {os.cpu_count()} cores")
    print(f"python:          {sys.version.split()[0]}, SQLAlchemy {sqlalchemy.__version__}")
    print(f"postgresql:      {version} at {url.host}:{url.port} ({url.drivername})")
    print("server settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()))
    print(f"worker threads:  {workers} (EngineSettings default), one executor thread")
    print_load("load average:   ")


def print_load(label: str) -> None:
    """Other processes share these cores; their load is part of the conditions."""
    one, five, fifteen = os.getloadavg()
    print(f"{label} {one:.2f} {five:.2f} {fifteen:.2f} (1, 5, 15 min)")


# -- 1 and 2: one long sequential execution -------------------------------------------------
def sequential(title: str, source: str, durations: Durations, target_ms: float) -> None:
    with bench_engine() as bench:
        bench.deploy(source)
        for _ in range(durations.warmup_runs):
            bench.wait_ended(bench.request("seq"))
        wall: list[float] = []
        stored: list[float] = []
        for _ in range(durations.runs):
            started = time.perf_counter()
            execution_id = bench.request("seq")
            ended = bench.wait_ended(execution_id)
            wall.append(ended - started)
            stored.append(bench.store_latency(execution_id))
            state = bench.ended_state[execution_id]
            if state != "SUCCESS":
                raise RuntimeError(f"{title}: execution ended {state}")
    median = statistics.median(wall) * 1e3
    verdict = "met" if median < target_ms else "MISSED"
    print(f"\n{title}")
    print(
        f"  request to end callback: median {median:.1f} ms, min {min(wall) * 1e3:.1f} ms, "
        f"max {max(wall) * 1e3:.1f} ms ({durations.runs} runs after "
        f"{durations.warmup_runs} warm-up)"
    )
    print(
        f"  store end_date - created_at: median {statistics.median(stored) * 1e3:.1f} ms, "
        f"min {min(stored) * 1e3:.1f} ms"
    )
    print(f"  per task run: {median / SEQUENTIAL_TASKS:.2f} ms (median / {SEQUENTIAL_TASKS})")
    print(f"  target: median under {target_ms:.0f} ms: {verdict}")


def print_published() -> None:
    print("  published, 40 tiny sequential tasks (other hardware, not rerun here):")
    for name, seconds in PUBLISHED:
        print(f"    {name:<9} {seconds:7.1f} s")


# -- 3: open-loop arrivals -------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1); infinity when there is nothing to rank."""
    if not values:
        return math.inf
    ranked = sorted(values)
    return ranked[max(1, math.ceil(q * len(ranked))) - 1]


@dataclass
class Step:
    rate: float
    seconds: float
    arrivals: int = 0
    completed_in_window: int = 0
    unfinished: int = 0
    latencies: list[float] = field(default_factory=list)
    store_latencies: list[float] = field(default_factory=list)
    late: list[float] = field(default_factory=list)
    driver_lag: float = 0.0
    max_backlog: int = 0
    end_backlog: int = 0
    failed: int = 0

    def percentile(self, q: float) -> float:
        """Of latencies from arrival; an unfinished execution counts as infinitely slow."""
        return percentile(self.latencies + [math.inf] * self.unfinished, q)

    def late_p99(self) -> float:
        """p99 of the last fifth of arrivals: a growing backlog shows here first."""
        return percentile(self.late, 0.99)

    @property
    def sustained(self) -> bool:
        return (
            self.arrivals > 0
            and self.completed_in_window >= KEEP_UP_FRACTION * self.arrivals
            and self.percentile(0.99) <= P99_BOUND_SECONDS
            and self.late_p99() <= P99_BOUND_SECONDS
            and self.driver_lag <= DRIVER_LAG_BOUND_SECONDS
            and self.failed == 0
        )

    def line(self) -> str:
        kept = self.completed_in_window / self.arrivals if self.arrivals else 0.0
        return (
            f"{self.rate:6.0f}/s for {self.seconds:.0f} s: {self.arrivals} arrivals, "
            f"{kept:6.1%} completed in the window, backlog max {self.max_backlog} "
            f"end {self.end_backlog}, p50 {self.percentile(0.5) * 1e3:.0f} ms "
            f"p99 {self.percentile(0.99) * 1e3:.0f} ms (last fifth "
            f"{self.late_p99() * 1e3:.0f} ms), driver lag "
            f"{self.driver_lag * 1e3:.0f} ms: {'sustained' if self.sustained else 'NOT sustained'}"
        )


def open_loop(rate: float, seconds: float, drain: float = 10.0) -> Step:
    """Start executions at `rate` a second for `seconds` from a driver thread."""
    step = Step(rate, seconds)
    with bench_engine() as bench:
        bench.deploy(two_task_flow("pair"))
        for _ in range(5):  # warm up caches and connections
            bench.wait_ended(bench.request("pair"))
        warm = bench.completed()
        scheduled: dict[str, float] = {}
        total = int(rate * seconds)
        start = time.perf_counter() + 0.05
        errors: list[BaseException] = []

        def drive() -> None:
            for i in range(total):
                due = start + i / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                try:
                    scheduled[bench.request("pair")] = due
                except BaseException as exc:  # reported below, not hidden
                    errors.append(exc)
                step.driver_lag = max(step.driver_lag, time.perf_counter() - due)

        driver = threading.Thread(target=drive, name="driver", daemon=True)
        driver.start()
        window_end = start + seconds
        while time.perf_counter() < window_end:
            time.sleep(min(0.25, max(0.0, window_end - time.perf_counter())))
            arrived = min(total, int((time.perf_counter() - start) * rate) + 1)
            step.max_backlog = max(step.max_backlog, arrived - (bench.completed() - warm))
        step.completed_in_window = bench.completed() - warm
        step.end_backlog = total - step.completed_in_window
        driver.join(timeout=seconds + drain)
        step.arrivals = total
        step.failed = len(errors)
        deadline = time.perf_counter() + drain
        while bench.completed() - warm < total - len(errors) and time.perf_counter() < deadline:
            time.sleep(0.05)
        late_from = start + 0.8 * seconds
        for execution_id, due in list(scheduled.items()):
            ended = bench.ended_at.get(execution_id)
            latency = math.inf if ended is None else ended - due
            if due >= late_from:
                step.late.append(latency)
            if ended is None:
                step.unfinished += 1
                continue
            step.latencies.append(latency)
            step.store_latencies.append(bench.store_latency(execution_id))
            if bench.ended_state[execution_id] != "SUCCESS":
                step.failed += 1
    return step


def highest_sustained_rate(durations: Durations) -> Step | None:
    print("\n3a. Two-task executions (Log then Return), open-loop arrivals")
    print(
        "  a driver thread starts executions on a fixed schedule without waiting for them;\n"
        "  latency = scheduled arrival to the in-process end callback (engine.executor.ended)"
    )
    print(
        f"  sustained = completions within the window >= {KEEP_UP_FRACTION:.0%} of arrivals, "
        f"p99 (overall and of the last fifth of arrivals) <= {P99_BOUND_SECONDS * 1e3:.0f} ms,\n"
        f"  driver lag <= {DRIVER_LAG_BOUND_SECONDS * 1e3:.0f} ms, no failed execution; "
        "a fresh engine and data directory per step"
    )
    print(f"  search, {durations.search_seconds:.0f} s a step:")
    passed: list[float] = []
    failed_at: float | None = None
    for rate in SEARCH_RATES:
        step = open_loop(rate, durations.search_seconds)
        print("    " + step.line())
        if not step.sustained:
            failed_at = rate
            break
        passed.append(rate)
    candidates = list(reversed(passed))
    if passed and failed_at is not None:
        candidates.insert(0, (passed[-1] + failed_at) / 2)
    print(f"  confirmation, {durations.sustain_seconds:.0f} s a run:")
    for rate in candidates:
        step = open_loop(rate, durations.sustain_seconds)
        print("    " + step.line())
        if step.sustained:
            verdict = "met" if rate >= RATE_TARGET else "MISSED"
            print(
                f"  highest sustained arrival rate: {rate:.0f} executions/s over "
                f"{durations.sustain_seconds:.0f} s (target >= {RATE_TARGET:.0f}/s: {verdict})"
            )
            return step
    print(f"  no rate was sustained (target >= {RATE_TARGET:.0f}/s: MISSED)")
    return None


def fixed_rate_latency(durations: Durations) -> None:
    print(f"\n3b. Two-task executions at a fixed {FIXED_RATE:.0f}/s")
    step = open_loop(FIXED_RATE, durations.fixed_rate_seconds)
    p99 = step.percentile(0.99) * 1e3
    verdict = "met" if p99 < P99_TARGET_MS else "MISSED"
    print("  " + step.line())
    print(
        f"  scheduled arrival to end callback: p50 {step.percentile(0.5) * 1e3:.1f} ms, "
        f"p99 {p99:.1f} ms, max {max(step.latencies, default=0) * 1e3:.1f} ms "
        f"({len(step.latencies)} executions, {step.unfinished} unfinished)"
    )
    stored = step.store_latencies
    print(
        f"  store end_date - created_at: p50 {percentile(stored, 0.5) * 1e3:.1f} ms, "
        f"p99 {percentile(stored, 0.99) * 1e3:.1f} ms"
    )
    print(f"  target: p99 under {P99_TARGET_MS:.0f} ms: {verdict}")


# -- 4: statements ------------------------------------------------------------------------
KINDS: tuple[tuple[str, str], ...] = (
    (r"^INSERT INTO logs\b", "insert log lines (excluded)"),
    (r"^UPDATE task_runs SET state=.*RETURNING", "claim task run (UPDATE ... RETURNING)"),
    (r"^UPDATE task_runs SET .* task_runs\.attempt = ", "finish attempt (compare-and-set)"),
    (r"^UPDATE task_runs SET lease_expires", "renew leases (heartbeat)"),
    (r"^UPDATE task_runs\b", "update task run"),
    (r"^INSERT INTO task_runs\b", "insert task runs"),
    (r"^SELECT .* FROM task_runs WHERE task_runs\.execution_id = ", "read task runs"),
    (r"^SELECT min\(task_runs\.not_before\)", "next claimable (worker poll)"),
    (r"^SELECT .* FROM task_runs WHERE task_runs\.state IN .*lease_expires <", "expired leases"),
    (r"^SELECT .* FROM task_runs JOIN executions", "kill requested (heartbeat)"),
    (r"^SELECT task_runs\.id FROM task_runs", "leases still held (heartbeat)"),
    (r"^SELECT .* FROM task_runs\b", "read task run"),
    (r"^INSERT INTO executions\b", "insert execution"),
    (r"^UPDATE executions\b", "update execution"),
    (r"^SELECT executions\.id FROM executions WHERE .*dirty", "executions to advance"),
    (r"^SELECT min\(executions\.wake_at\)", "next wake"),
    (r"^SELECT .* FROM executions WHERE executions\.id = ", "read execution"),
    (r"^SELECT .* FROM flow_revisions\b", "read flow revision"),
)
_KIND_PATTERNS = [(re.compile(pattern, re.S), name) for pattern, name in KINDS]


def statement_kind(statement: str) -> str:
    text = " ".join(statement.split())
    first = text.split(" ", 1)[0].upper()
    if first in TRANSACTION_CONTROL:
        return "transaction control (excluded)"
    if first == "PRAGMA":
        return "pragma on connect (excluded)"
    for pattern, name in _KIND_PATTERNS:
        if pattern.search(text):
            return name
    return text[:60]


def excluded(kind: str) -> bool:
    return kind.endswith("(excluded)")


class StatementLog:
    """Statements run while `on`, by kind and by thread."""

    def __init__(self, engine: Engine) -> None:
        self.on = False
        self.kinds: Counter[str] = Counter()
        self.threads: Counter[str] = Counter()
        self._lock = threading.Lock()
        event.listen(engine.db, "before_cursor_execute", self._seen)

    def _seen(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if not self.on:
            return
        kind = statement_kind(statement)
        thread = re.sub(r"^\d+-w\d+$", "worker", threading.current_thread().name)
        with self._lock:
            self.kinds[kind] += 1
            if not excluded(kind):
                self.threads[thread] += 1

    def reset(self) -> None:
        with self._lock:
            self.kinds.clear()
            self.threads.clear()

    def counted(self) -> int:
        return sum(n for kind, n in self.kinds.items() if not excluded(kind))


def print_kinds(log: StatementLog, task_runs: int) -> None:
    for kind, count in sorted(log.kinds.items(), key=lambda item: (excluded(item[0]), -item[1])):
        print(f"      {count / task_runs:6.3f}  {kind}")


def statements(durations: Durations) -> None:
    print("\n4. SQL statements per task run")
    print(
        "  counted: every statement the SQLAlchemy engine sends (before_cursor_execute);\n"
        "  excluded: log-line inserts, BEGIN / BEGIN IMMEDIATE / COMMIT / ROLLBACK, and\n"
        "  connect-time PRAGMAs. (COMMIT is the driver's commit() call, not a statement,\n"
        "  so it never reaches the hook.)"
    )
    idle = idle_polling(durations.idle_seconds)
    per_run = {}
    for title, source, tasks, runs in (
        (
            f"{SEQUENTIAL_TASKS}-task Log execution",
            log_flow("seq", SEQUENTIAL_TASKS),
            SEQUENTIAL_TASKS,
            durations.count_runs,
        ),
        ("two-task execution (Log, Return)", two_task_flow("seq"), 2, durations.count_runs * 20),
    ):
        print(f"  {title}, {runs} executions:")
        stepped_statements(source, tasks, runs)
        per_run[tasks] = live_statements(source, tasks, runs, idle)
    verdict = "met" if per_run[SEQUENTIAL_TASKS] <= STATEMENTS_TARGET else "MISSED"
    print(
        f"  target: at most {STATEMENTS_TARGET:.0f} per task run: {verdict} for the "
        f"{SEQUENTIAL_TASKS}-task execution ({per_run[SEQUENTIAL_TASKS]:.2f}); "
        f"two-task execution: {per_run[2]:.2f}"
    )


def idle_polling(seconds: float) -> float:
    """Statements a second of an engine with nothing to do."""
    with bench_engine() as bench:
        counter = StatementLog(bench.engine)
        time.sleep(1.5)  # let the start-up ticks pass
        counter.on = True
        time.sleep(seconds)
        counter.on = False
    idle = counter.counted() / seconds
    print(f"  idle engine, {seconds:.0f} s with nothing to do: {idle:.1f} statements a second:")
    for thread, count in counter.threads.most_common():
        print(f"      {count / seconds:6.2f}/s  {thread} thread")
    for kind, count in counter.kinds.most_common():
        print(f"      {count / seconds:6.2f}/s  {kind}")
    return idle


def stepped_statements(source: str, tasks: int, runs: int) -> None:
    """No threads: start_execution, then one worker's run_once() until it finds nothing."""
    with bench_engine(started=False) as bench:
        bench.deploy(source)
        counter = StatementLog(bench.engine)
        worker = bench.engine.workers[0]
        stepped(bench, worker)  # warm up the flow cache and connections
        counter.on = True
        for _ in range(runs):
            stepped(bench, worker)
        counter.on = False
    counter.kinds["claim task run (UPDATE ... RETURNING)"] -= runs  # the empty claims
    task_runs = runs * tasks
    print(
        "    a) stepped, no threads: start_execution(), then one worker's run_once() until\n"
        "       it finds nothing (that last, empty claim is an idle poll, not counted):\n"
        f"       {counter.counted() / task_runs:.2f} statements per task run; by kind:"
    )
    print_kinds(counter, task_runs)


def live_statements(source: str, tasks: int, runs: int, idle: float) -> float:
    """Engine started; executions one after another, counted from request to end."""
    with bench_engine() as bench:
        bench.deploy(source)
        counter = StatementLog(bench.engine)
        bench.wait_ended(bench.request("seq"))  # warm up
        busy = 0.0
        for _ in range(runs):
            counter.on = True
            started = time.perf_counter()
            bench.wait_ended(bench.request("seq"))
            busy += time.perf_counter() - started
            counter.on = False
    task_runs = runs * tasks
    net = (counter.counted() - idle * busy) / task_runs
    print(
        f"    b) live engine, counted from request to end callback: {counter.counted()} "
        f"statements in {busy:.2f} s,\n"
        f"       minus idle polling ({idle:.1f}/s x {busy:.2f} s = {idle * busy:.1f}): "
        f"{net:.2f} statements per task run; by kind:"
    )
    print_kinds(counter, task_runs)
    threads = ", ".join(f"{t} {n / task_runs:.2f}" for t, n in counter.threads.most_common())
    print(f"       by thread, per task run: {threads}")
    return net


def stepped(bench: Bench, worker: Any) -> None:
    bench.request("seq")
    while worker.run_once():
        pass
    bench.engine.logs.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs: a smoke test")
    parser.add_argument(
        "--only",
        choices=("1", "2", "3", "4"),
        action="append",
        help="run only these figures (repeatable)",
    )
    parser.add_argument("--db", help="database URL (default: SQLite in a temporary directory)")
    args = parser.parse_args()
    if args.db:
        DATABASE.append(args.db)
    durations = Durations.quick() if args.quick else Durations()
    only = set(args.only or ("1", "2", "3", "4"))
    describe_setup()
    if args.quick:
        print("mode:            --quick (smoke run; not the published figures)")
    parts: dict[str, Callable[[], None]] = {
        "1": lambda: log_sequence(durations),
        "2": lambda: shell_sequence(durations),
        "3": lambda: arrivals(durations),
        "4": lambda: statements(durations),
    }
    for key in sorted(only):
        parts[key]()
        sys.stdout.flush()
    print()
    print_load("load average at the end:")


def log_sequence(durations: Durations) -> None:
    sequential(
        f"1. {SEQUENTIAL_TASKS} sequential core.log.Log tasks, one execution",
        log_flow("seq", SEQUENTIAL_TASKS),
        durations,
        LOG_TARGET_MS,
    )
    print_published()


def shell_sequence(durations: Durations) -> None:
    sequential(
        f"2. {SEQUENTIAL_TASKS} sequential scripts.shell.Commands tasks running `true` "
        "(process runner), one execution",
        shell_flow("seq", SEQUENTIAL_TASKS),
        durations,
        SHELL_TARGET_MS,
    )


def arrivals(durations: Durations) -> None:
    highest_sustained_rate(durations)
    fixed_rate_latency(durations)


if __name__ == "__main__":
    main()
