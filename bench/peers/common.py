"""What the three peer benches share: the workloads' sizes, HTTP on loopback, the clock.

Each system's script (headwater.py, airflow.py, prefect.py) sets its system up, then hands
this module two functions per workload: `start()`, which starts one run through the
system's API and returns the run's id, and `state(id)`, which reads that run's state
through the API and says whether it is still going, succeeded or failed. The clock is the
same for all three:

- W1, W2: one run at a time. The clock starts just before the request that starts the run
  and stops when a read of the run's state first shows it finished. The state is read one
  request at a time; between the end of one read and the next the bench sleeps
  POLL_SECONDS (10 ms), or 1 % of the time the run has taken so far when that is longer.
  So the clock overshoots by at most about 1 % (plus one read), and a run of a minute is
  not read a hundred times a second: at 10 ms throughout, the reads alone kept Airflow's
  API server (which its tasks report to as well) at 60 % of a core.
- W3: W3_RUNS runs started at once (one thread each, released together by a barrier).
  When every start has answered, one thread reads the state of each unfinished run in
  turn, sleeping as above after each round. runs/s = W3_RUNS / (time from the first
  start request to the moment the last run is seen finished).

Every workload runs WARMUPS times unmeasured, then RUNS times measured; the figure is the
median of the measured runs. A run that does not succeed fails the bench (with its id
and state), as does one that takes longer than RUN_TIMEOUT.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

TASKS = 40  # W1 and W2: tasks in the one flow, run one after another
W3_RUNS = 50  # W3: two-task runs started at once
RUNS = 3  # measured runs of each workload; the figure is their median
WARMUPS = 1  # unmeasured runs of each workload first
POLL_SECONDS = 0.010  # between two reads of a run's state, at least
POLL_FRACTION = 0.01  # and at most this share of the time the run has taken so far
RUN_TIMEOUT = 900.0  # seconds one run (or the whole of W3) may take before the bench gives up
HTTP_TIMEOUT = 60.0  # seconds one request may take

# Where the peers' virtual environments and their homes live: outside the repository.
CACHE = Path(os.environ.get("HEADWATER_PEERS_CACHE", Path.home() / ".cache" / "headwater-peers"))

RUNNING, SUCCEEDED, FAILED = "running", "succeeded", "failed"


class BenchError(RuntimeError):
    """The system could not be installed, started or measured; the message says why."""


# -- HTTP -------------------------------------------------------------------------------------
def http(
    method: str,
    url: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = HTTP_TIMEOUT,
) -> tuple[int, Any]:
    """One request; answers (status, the JSON body or the text when it is not JSON)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Accept", "application/json")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            status, raw = answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


def expect(status: int, body: Any, *wanted: int, what: str) -> Any:
    if status not in wanted:
        raise BenchError(f"{what}: HTTP {status}: {str(body)[:500]}")
    return body


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    check: Callable[[], bool],
    what: str,
    timeout: float,
    processes: list[subprocess.Popen[bytes]] | None = None,
    interval: float = 0.2,
) -> float:
    """Call `check` until it answers True; seconds it took. Fails if a process exits."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        for process in processes or []:
            if process.poll() is not None:
                raise BenchError(f"{what}: {process.args!r} exited with {process.returncode}")
        try:
            if check():
                return time.monotonic() - started
        except (OSError, ValueError):
            pass
        time.sleep(interval)
    raise BenchError(f"{what}: not after {timeout:.0f} s")


def stop(processes: list[subprocess.Popen[bytes]], grace: float = 30.0) -> None:
    """SIGTERM to each process group we started, then SIGKILL to what is left."""
    for process in processes:
        if process.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, 15)
    deadline = time.monotonic() + grace
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, 9)
            process.wait()


def spawn(command: list[str], env: dict[str, str], log: Path, cwd: Path) -> subprocess.Popen[bytes]:
    """Start a long-running process in a process group of its own, output to `log`."""
    with log.open("ab") as out:
        return subprocess.Popen(
            command,
            env=env,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


# -- the clock --------------------------------------------------------------------------------
Start = Callable[[], str]
State = Callable[[str], str]  # RUNNING, SUCCEEDED or FAILED (with the system's word after ':')


def pause(began: float) -> None:
    """Sleep between two reads: POLL_SECONDS, or POLL_FRACTION of the time so far."""
    time.sleep(max(POLL_SECONDS, POLL_FRACTION * (time.perf_counter() - began)))


def one_run(start: Start, state: State) -> float:
    """Seconds from the start request to the first read that shows the run finished."""
    began = time.perf_counter()
    run = start()
    while True:
        seen = state(run)
        if not seen.startswith(RUNNING):
            break
        if time.perf_counter() - began > RUN_TIMEOUT:
            raise BenchError(f"run {run} still {seen} after {RUN_TIMEOUT:.0f} s")
        pause(began)
    elapsed = time.perf_counter() - began
    if not seen.startswith(SUCCEEDED):
        raise BenchError(f"run {run} ended {seen}")
    return elapsed


def burst(start: Start, state: State, count: int = W3_RUNS) -> float:
    """Runs per second: `count` runs started at once, until the last is seen finished."""
    barrier = threading.Barrier(count + 1)
    ids: list[str | None] = [None] * count
    sent: list[float] = [0.0] * count
    errors: list[BaseException] = []

    def one(index: int) -> None:
        barrier.wait()
        sent[index] = time.perf_counter()
        try:
            ids[index] = start()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    barrier.wait()
    for thread in threads:
        thread.join(RUN_TIMEOUT)
    began = min(sent)
    unfinished = [run for run in ids if run is not None]
    failed: list[str] = []
    while unfinished:
        for run in list(unfinished):
            seen = state(run)
            if not seen.startswith(RUNNING):
                unfinished.remove(run)
                if not seen.startswith(SUCCEEDED):
                    failed.append(f"{run} {seen}")
        if unfinished:
            if time.perf_counter() - began > RUN_TIMEOUT:
                raise BenchError(f"{len(unfinished)} of {count} runs unfinished after timeout")
            pause(began)
    elapsed = time.perf_counter() - began
    if errors:  # the runs that did start were waited for, so the next burst starts clean
        kinds = Counter(f"{type(e).__name__}: {str(e)[:160]}" for e in errors)
        shown = "; ".join(f"{n} x {kind}" for kind, n in kinds.most_common(3))
        raise BenchError(
            f"{len(errors)} of {count} starts failed: {shown}; the {count - len(errors)} "
            f"started ended {elapsed:.1f} s after the first start"
        )
    if failed:
        raise BenchError(f"{len(failed)} of {count} runs did not succeed: {failed[:3]}")
    return count / elapsed


# -- results ----------------------------------------------------------------------------------
@dataclass
class Result:
    """What one system's script measured, and under what."""

    system: str
    version: str = ""
    settings: dict[str, str] = field(default_factory=dict)
    w1: list[float] = field(default_factory=list)  # seconds per run
    w2: list[float] = field(default_factory=list)  # seconds per run
    w3: list[float] = field(default_factory=list)  # runs per second
    error: str = ""  # why it could not be measured, when it could not
    failures: list[str] = field(default_factory=list)  # runs that failed, each with why
    setup_seconds: float = 0.0  # install and start-up, not counted in any figure

    def median(self, name: str) -> float | None:
        values = getattr(self, name)
        return statistics.median(values) if values else None


def measure(result: Result, workloads: dict[str, tuple[Start, State]], log: Callable) -> None:
    """Warm-up and measured runs of W1, W2 (one run at a time) and W3 (a burst)."""
    for name, (start, state) in workloads.items():
        for attempt in range(WARMUPS + RUNS):
            measured = attempt >= WARMUPS
            which = f"{name.upper()} {'run' if measured else 'warm-up'}"
            try:
                if name == "w3":
                    value = burst(start, state)
                    shown = f"{value:.2f} runs/s"
                else:
                    value = one_run(start, state)
                    shown = f"{value:.3f} s"
            except BenchError as exc:  # one failed run is a finding, not the end of the bench
                result.failures.append(f"{which}: {exc}")
                log(f"{result.system} {which} FAILED: {exc}")
                continue
            if measured:
                getattr(result, name).append(value)
            log(f"{result.system} {which}: {shown}")


def machine() -> dict[str, str]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = "?"
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f"{kib / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores ({cpu}), {memory}",
        "os": platform.platform(),
        "python": platform.python_version(),
    }


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def report(result: Result, json_path: str | None = None) -> None:
    """Print one system's figures; write them as JSON to `json_path` too."""
    print(f"{result.system} {result.version}")
    for key, value in result.settings.items():
        print(f"  {key}: {value}")
    if result.error:
        print(f"  NOT MEASURED: {result.error}")
    for failure in result.failures:
        print(f"  FAILED: {failure}")
    for name, unit in (("w1", "s"), ("w2", "s"), ("w3", "runs/s")):
        values = getattr(result, name)
        if values:
            shown = ", ".join(f"{v:.3f}" for v in values)
            print(f"  {name.upper()}: median {result.median(name):.3f} {unit} ({shown})")
    print(f"  set-up (install, start; not counted): {result.setup_seconds:.0f} s")
    if json_path:
        Path(json_path).write_text(json.dumps(asdict(result), indent=2))


Workloads = dict[str, tuple[Start, State]]
System = Callable[[Result, argparse.Namespace], AbstractContextManager[Workloads]]


def main(
    name: str,
    system: System,
    doc: str,
    options: Callable[[argparse.ArgumentParser], None] | None = None,
) -> int:
    """The command line of one system's script: set up, measure, report, tear down."""
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", help="also write the figures to this file as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the run's home directory")
    parser.add_argument(
        "--only", nargs="+", choices=("w1", "w2", "w3"), help="measure these workloads only"
    )
    if options:
        options(parser)
    args = parser.parse_args()
    result = Result(system=name)
    began = time.monotonic()
    try:
        with system(result, args) as workloads:
            result.setup_seconds = time.monotonic() - began
            wanted = {k: v for k, v in workloads.items() if k in (args.only or workloads)}
            measure(result, wanted, say)
    except BenchError as exc:
        result.error = str(exc)
        say(f"{name}: {exc}")
    report(result, args.json)
    return 1 if result.error else 0


POLL_NOTE = "reads every 10 ms, or every 1 % of the run's time so far when longer"


def isolated_env(**extra: str) -> dict[str, str]:
    """This process's environment less other tools' settings that would change a peer."""
    prefixes = ("HEADWATER_", "AIRFLOW", "PREFECT_", "PYTHON", "VIRTUAL_ENV")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env.update(extra)
    return env
