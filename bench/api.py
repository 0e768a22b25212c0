"""How fast Headwater is where users meet it: through a running `headwater up` and its API.

`bench/engine.py` measures the engine alone, in one process. This script starts
`headwater up` as users do (SQLite, default settings, a local flows repository made
here), and measures through HTTP, from another process:

1. `POST /api/v1/executions/{ns}/{flow}` (a two-task flow), one request after another on
   one keep-alive connection: p50 and p99 (goal 3 ms / 15 ms);
2. `GET /api/v1/executions/{id}` of an execution with 40 task runs: p50 (goal 3 ms);
3. 50 two-task executions started at once (threads), then polled until all ended:
   executions finished per second (goal at least 150);
4. an open loop at 100 two-task executions a second for 60 s: request to SUCCESS seen
   by the client, p50 and p99 (goal p99 at most 250 ms);
5. 40 sequential `core.log.Log` tasks, created to SUCCESS as the store records it
   (goal at most 100 ms, and at most 1.2x `bench/engine.py`'s figure);
6. 40 sequential shell `true` tasks, the same (goal at most 250 ms);
7. a ForEach over 10,000 items with a Log each, created to SUCCESS, and the daemon's
   peak memory (goal 15 s, 300 MiB);
8. a Parallel of 2,000 Log tasks, created to SUCCESS (goal 10 s);
9. `headwater up` on the demo repository, start to `/readyz` 200 (goal 1.5 s), and its
   memory once idle (goal 120 MiB).

    python bench/api.py [--only N ...] [--quick]

The load average is printed before and after: on a 2-core machine other work moves
every figure.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

READY_TIMEOUT = 120.0
POLL_SECONDS = 0.01  # how often a waiting client asks whether an execution ended
SLOW_POLL_SECONDS = 0.05  # ... when the store's own times are what is measured
BIG_POLL_SECONDS = 1.0  # ... an execution of thousands of task runs, as a watcher would: each
# answer carries every task run (20,000 for figure 7), and reading it 20 times a second
# would measure the reads, not the run
TERMINAL = {"SUCCESS", "WARNING", "FAILED", "KILLED", "CANCELLED"}
NAMESPACE = "bench"

TWO_TASKS = """\
id: two
namespace: bench
tasks:
  - id: first
    type: io.kestra.plugin.core.log.Log
    message: hello
  - id: second
    type: io.kestra.plugin.core.debug.Return
    format: "{{ execution.id }}"
"""


def sequential(task: str, count: int = 40) -> str:
    return "".join(f"  - id: t{n}\n{task}" for n in range(count))


LOG_TASK = "    type: io.kestra.plugin.core.log.Log\n    message: step\n"
SHELL_TASK = "    type: io.kestra.plugin.scripts.shell.Commands\n    commands: ['true']\n"
FLOWS = {
    "two": TWO_TASKS,
    "logs40": f"id: logs40\nnamespace: bench\ntasks:\n{sequential(LOG_TASK)}",
    "shell40": f"id: shell40\nnamespace: bench\ntasks:\n{sequential(SHELL_TASK)}",
    "foreach": """\
id: foreach
namespace: bench
inputs:
  - id: items
    type: INT
    defaults: 10000
tasks:
  - id: each
    type: io.kestra.plugin.core.flow.ForEach
    values: "{{ range(1, inputs.items) }}"
    tasks:
      - id: say
        type: io.kestra.plugin.core.log.Log
        message: "item {{ taskrun.value }}"
""",
    "parallel": "id: parallel\nnamespace: bench\ntasks:\n  - id: all\n"
    "    type: io.kestra.plugin.core.flow.Parallel\n    tasks:\n"
    + "".join(
        f"      - id: p{n}\n        type: io.kestra.plugin.core.log.Log\n        message: hi\n"
        for n in range(2000)
    ),
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_repository(root: Path) -> Path:
    repo = root / "flows-repo"
    folder = repo / "flows" / NAMESPACE
    folder.mkdir(parents=True)
    for name, text in FLOWS.items():
        (folder / f"{name}.yaml").write_text(text)
    env = {**os.environ, "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.com"}
    env |= {"GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.com"}
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "flows"]):
        subprocess.run(["git", "-C", str(repo), *args], check=True, env=env)
    return repo


@dataclass
class Daemon:
    process: subprocess.Popen[bytes]
    port: int
    data_dir: Path

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)

    def memory_mib(self, key: str = "VmRSS") -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
        raise KeyError(key)


@contextmanager
def running_daemon(root: Path, repo: Path | None) -> Iterator[tuple[Daemon, float]]:
    """`headwater up` on `repo` (None: the demo repository); (daemon, start to ready)."""
    port = free_port()
    command = [sys.executable, "-m", "headwater.daemon.cli", "up", "--port", str(port)]
    command += ["--data-dir", str(root / "data"), "--poll-interval", "0"]
    command += ["--repo", str(repo)] if repo else []
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEADWATER_")}
    started = time.monotonic()
    process = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)
    daemon = Daemon(process, port, root / "data")
    try:
        ready = wait_ready(daemon, started)
        yield daemon, ready
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def wait_ready(daemon: Daemon, started: float) -> float:
    deadline = started + READY_TIMEOUT
    while time.monotonic() < deadline:
        if daemon.process.poll() is not None:
            sys.exit(f"headwater up exited with {daemon.process.returncode}")
        try:
            status, _ = call(daemon.connection(), "GET", "/readyz")
            if status == 200:
                return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.01)
    sys.exit("headwater up did not become ready")


def call(
    connection: http.client.HTTPConnection, method: str, path: str, body: Any = None
) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"} if data is not None else {}
    connection.request(method, path, body=data, headers=headers)
    response = connection.getresponse()
    payload = response.read()
    return response.status, json.loads(payload) if payload else None


def start(connection: http.client.HTTPConnection, flow: str, inputs: Any = None) -> str:
    status, body = call(connection, "POST", f"/api/v1/executions/{NAMESPACE}/{flow}", inputs)
    if status != 200:
        sys.exit(f"starting {flow}: {status} {body}")
    return str(body["id"])


def execution(connection: http.client.HTTPConnection, execution_id: str) -> dict[str, Any]:
    status, body = call(connection, "GET", f"/api/v1/executions/{execution_id}")
    if status != 200:
        sys.exit(f"reading {execution_id}: {status} {body}")
    return dict(body)


def wait_ended(
    connection: http.client.HTTPConnection,
    execution_id: str,
    timeout: float = 600.0,
    poll: float = POLL_SECONDS,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        row = execution(connection, execution_id)
        if row["state"]["current"] in TERMINAL:
            return row
        if time.monotonic() > deadline:
            sys.exit(f"{execution_id} still {row['state']['current']} after {timeout} s")
        time.sleep(poll)


def store_duration(row: dict[str, Any]) -> float:
    """created to ended, as the store recorded it (RFC 3339 in the API)."""
    histories = row["state"]["histories"]
    first = datetime.fromisoformat(histories[0]["date"])
    last = datetime.fromisoformat(histories[-1]["date"])
    return (last - first).total_seconds()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


# -- the figures -----------------------------------------------------------------------------


def create_latency(daemon: Daemon, quick: bool) -> None:
    connection = daemon.connection()
    for _ in range(20):
        start(connection, "two")
    times = []
    for _ in range(50 if quick else 500):
        began = time.perf_counter()
        start(connection, "two")
        times.append(time.perf_counter() - began)
    print("1. POST create execution (two-task flow), sequential client")
    print(f"   p50 {ms(percentile(times, 0.5))}, p99 {ms(percentile(times, 0.99))}")
    print("   goal: p50 <= 3 ms, p99 <= 15 ms")


def read_latency(daemon: Daemon, quick: bool) -> None:
    connection = daemon.connection()
    execution_id = start(connection, "logs40")
    row = wait_ended(connection, execution_id)
    assert len(row["taskRunList"]) == 40, len(row["taskRunList"])
    times = []
    for _ in range(50 if quick else 500):
        began = time.perf_counter()
        execution(connection, execution_id)
        times.append(time.perf_counter() - began)
    print("2. GET an execution with 40 task runs")
    print(f"   p50 {ms(percentile(times, 0.5))}, p99 {ms(percentile(times, 0.99))}")
    print("   goal: p50 <= 3 ms")


def burst(daemon: Daemon, quick: bool) -> None:
    count = 50
    ids: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(count)

    def one() -> None:
        connection = daemon.connection()
        barrier.wait()
        found = start(connection, "two")
        with lock:
            ids.append(found)

    began = time.perf_counter()
    threads = [threading.Thread(target=one) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    connection = daemon.connection()
    for execution_id in ids:
        wait_ended(connection, execution_id)
    took = time.perf_counter() - began
    print("3. 50 two-task executions started at once, polled until all ended")
    print(f"   {took:.2f} s: {count / took:.0f} finished per second (goal >= 150)")


def open_loop(daemon: Daemon, quick: bool) -> None:
    """Requests at a fixed rate, whatever the answers take (an open loop: a slow answer
    does not delay the next request). Each execution's latency runs from the moment its
    request was due to its end as the store records it (the same machine's clock), so
    nothing polls while the load runs: polling each execution would be load of its own."""
    rate, seconds = 100, 10 if quick else 60
    due_at: dict[str, float] = {}  # execution id -> wall time its request was due
    refused: list[str] = []
    lock = threading.Lock()
    local = threading.local()

    def one(due: float) -> None:
        if not hasattr(local, "connection"):
            local.connection = daemon.connection()
        status, body = call(local.connection, "POST", f"/api/v1/executions/{NAMESPACE}/two")
        with lock:
            if status == 200:
                due_at[str(body["id"])] = due
            else:
                refused.append(f"{status} {body}")

    began = time.time()
    with ThreadPoolExecutor(max_workers=16) as senders:
        for n in range(rate * seconds):
            due = began + n / rate
            time.sleep(max(0.0, due - time.time()))
            senders.submit(one, due)
    connection = daemon.connection()
    latencies, failed = [], 0
    for execution_id, due in due_at.items():
        row = wait_ended(connection, execution_id, poll=SLOW_POLL_SECONDS)
        failed += row["state"]["current"] != "SUCCESS"
        ended = datetime.fromisoformat(row["state"]["histories"][-1]["date"]).timestamp()
        latencies.append(ended - due)
    print(f"4. open loop, {rate} two-task executions a second for {seconds} s")
    print(
        f"   request due to SUCCESS in the store: p50 {ms(percentile(latencies, 0.5))}, "
        f"p99 {ms(percentile(latencies, 0.99))}, max {ms(max(latencies))} "
        f"(goal p99 <= 250 ms); {failed} not SUCCESS, {len(refused)} refused"
    )
    for reason in sorted(set(refused))[:3]:
        print(f"   refused: {reason}")


def sequential_tasks(flow: str, goal: str) -> Callable[[Daemon, bool], None]:
    def measure(daemon: Daemon, quick: bool) -> None:
        connection = daemon.connection()
        durations = []
        for n in range(3 + (5 if quick else 20)):
            row = wait_ended(connection, start(connection, flow), poll=SLOW_POLL_SECONDS)
            if n >= 3:  # warm-up runs not counted
                durations.append(store_duration(row))
        print(f"{'5' if flow == 'logs40' else '6'}. 40 sequential tasks ({flow}), created to end")
        print(
            f"   median {ms(statistics.median(durations))}, min {ms(min(durations))} "
            f"({len(durations)} runs; {goal})"
        )

    return measure


def foreach(daemon: Daemon, quick: bool) -> None:
    connection = daemon.connection()
    items = 1000 if quick else 10_000
    began = time.perf_counter()
    execution_id = start(connection, "foreach", {"items": items})
    row = wait_ended(connection, execution_id, timeout=1800, poll=BIG_POLL_SECONDS)
    took = time.perf_counter() - began
    print(f"7. ForEach over {items} items, a Log each: {row['state']['current']}")
    print(
        f"   {took:.1f} s request to end seen ({store_duration(row):.1f} s in the store); "
        f"peak memory {daemon.memory_mib('VmHWM'):.0f} MiB (goal 15 s, 300 MiB)"
    )


def parallel(daemon: Daemon, quick: bool) -> None:
    connection = daemon.connection()
    began = time.perf_counter()
    row = wait_ended(connection, start(connection, "parallel"), timeout=1800, poll=BIG_POLL_SECONDS)
    took = time.perf_counter() - began
    print(f"8. Parallel of 2,000 Log tasks: {row['state']['current']}")
    print(f"   {took:.1f} s request to end seen ({store_duration(row):.1f} s in the store)")
    print("   goal: 10 s")


def startup(quick: bool) -> None:
    times, memory = [], []
    for _ in range(1 if quick else 3):
        with (
            tempfile.TemporaryDirectory(prefix="hw-api-") as tmp,
            running_daemon(Path(tmp), None) as (daemon, ready),
        ):
            times.append(ready)
            time.sleep(5)  # the first sync's collection, the first polls
            memory.append(daemon.memory_mib())
    print("9. headwater up on the demo repository")
    print(f"   start to ready: median {statistics.median(times):.2f} s (goal 1.5 s)")
    print(f"   idle memory: {statistics.median(memory):.0f} MiB (goal 120 MiB)")


FIGURES: dict[int, Callable[[Daemon, bool], None]] = {
    1: create_latency,
    2: read_latency,
    3: burst,
    4: open_loop,
    5: sequential_tasks("logs40", "goal 100 ms"),
    6: sequential_tasks("shell40", "goal 250 ms"),
    7: foreach,
    8: parallel,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", type=int, action="append", choices=range(1, 10))
    parser.add_argument("--quick", action="store_true", help="short runs: a smoke test")
    args = parser.parse_args()
    wanted = args.only or list(range(1, 10))
    print(f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores; python {platform.python_version()}"
    )
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="hw-api-") as tmp:
        root = Path(tmp)
        repo = make_repository(root)
        measured = [n for n in wanted if n in FIGURES]
        if measured:
            with running_daemon(root, repo) as (daemon, _ready):
                for number in measured:
                    FIGURES[number](daemon, args.quick)
    if 9 in wanted:
        startup(args.quick)
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
