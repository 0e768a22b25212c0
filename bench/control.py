"""What concurrency limits and execution control cost: figures for docs/executions.md.

Builds an embedded engine (`Engine(EngineSettings(data_dir))`, default worker threads,
SQLite in a temporary data directory) and prints:

1. executions created a second for a flow without a limit and for one with
   `concurrency: {limit: 1}` (all but the first wait QUEUED: the slot check runs in
   every creation's transaction);
2. how long a queued execution waits after the running one ends (slot freed to the
   next one RUNNING), median of 50;
3. kill latency: from `control.kill` of a running `sleep 60` shell task to the
   execution KILLED with its process group gone, median of 20;
4. restart and replay: the time of the call itself on an execution of 40 tasks.

    python bench/control.py [--quick]
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from headwater.daemon.engine.engine import Engine, EngineSettings
from headwater.daemon.engine.executor import ExecutionRequest
from headwater.runners.process import process_group_alive

NAMESPACE = "bench"


def deploy(engine: Engine, flow_id: str, body: str) -> None:
    engine.deploy_source(f"id: {flow_id}\nnamespace: {NAMESPACE}\n{body}", f"{flow_id}.yaml")


def start(engine: Engine, flow_id: str) -> str:
    return str(engine.start_execution(ExecutionRequest(NAMESPACE, flow_id))["id"])


def state_of(engine: Engine, execution_id: str) -> str:
    row = engine.execution(execution_id)
    return str(row["state"]) if row else "missing"


def wait_for(condition: Callable[[], object], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the benchmark waited too long")
        time.sleep(0.001)


def creation_rate(engine: Engine, flow_id: str, count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        start(engine, flow_id)
    return count / (time.perf_counter() - started)


def slot_handover(engine: Engine, rounds: int) -> float:
    deploy(
        engine, "gate", "concurrency: {limit: 1}\ntasks:\n  - {id: hold, type: core.flow.Pause}\n"
    )
    ids = [start(engine, "gate") for _ in range(rounds + 1)]
    waits = []
    for current, following in itertools.pairwise(ids):
        wait_for(lambda i=current: state_of(engine, i) == "PAUSED")
        begun = time.perf_counter()
        engine.control.resume(current)
        wait_for(lambda i=following: state_of(engine, i) == "PAUSED")
        waits.append(time.perf_counter() - begun)
    engine.control.kill(ids[-1])
    return statistics.median(waits)


def kill_latency(engine: Engine, rounds: int) -> float:
    deploy(
        engine,
        "slow",
        "tasks:\n  - {id: nap, type: scripts.shell.Commands, commands: ['sleep 60']}\n",
    )
    times = []
    for _ in range(rounds):
        execution_id = start(engine, "slow")
        wait_for(lambda i=execution_id: any(r["pgid"] for r in engine.task_runs(i)))
        pgid = next(r["pgid"] for r in engine.task_runs(execution_id) if r["pgid"])
        begun = time.perf_counter()
        engine.control.kill(execution_id)
        wait_for(lambda i=execution_id: state_of(engine, i) == "KILLED")
        wait_for(lambda g=pgid: not process_group_alive(g))
        times.append(time.perf_counter() - begun)
    return statistics.median(times)


def restart_and_replay(engine: Engine) -> tuple[float, float]:
    tasks = "".join(f"  - {{id: t{i}, type: core.log.Log, message: '{i}'}}\n" for i in range(39))
    deploy(engine, "long", f"tasks:\n{tasks}  - {{id: last, type: core.execution.Fail}}\n")
    execution_id = start(engine, "long")
    wait_for(lambda: state_of(engine, execution_id) == "FAILED")
    begun = time.perf_counter()
    engine.control.restart(execution_id)
    restart = time.perf_counter() - begun
    wait_for(lambda: state_of(engine, execution_id) == "FAILED")
    last = next(r for r in engine.task_runs(execution_id) if r["task_id"] == "last")
    begun = time.perf_counter()
    engine.control.replay(execution_id, last["id"])
    return restart, time.perf_counter() - begun


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke test)")
    quick = parser.parse_args().quick
    count, rounds = (50, 5) if quick else (500, 50)
    with tempfile.TemporaryDirectory() as folder:
        engine = Engine(EngineSettings(data_dir=Path(folder)))
        engine.start()
        try:
            print(f"cpus: {os.cpu_count()}, threads: {threading.active_count()}")
            deploy(engine, "free", "tasks:\n  - {id: hold, type: core.flow.Pause}\n")
            deploy(
                engine,
                "limited",
                "concurrency: {limit: 1}\ntasks:\n  - {id: hold, type: core.flow.Pause}\n",
            )
            free = creation_rate(engine, "free", count)
            limited = creation_rate(engine, "limited", count)
            print(f"1. executions created a second: no limit {free:.0f}, limit 1 {limited:.0f}")
            handover = slot_handover(engine, rounds)
            print(f"2. slot freed to next queued RUNNING: median {handover * 1000:.1f} ms")
            kill = kill_latency(engine, max(rounds // 2, 3))
            print(f"3. kill to KILLED and process group gone: median {kill * 1000:.1f} ms")
            restart, replay = restart_and_replay(engine)
            print(f"4. restart call {restart * 1000:.1f} ms, replay call {replay * 1000:.1f} ms")
        finally:
            for flow_id in ("free", "limited", "gate", "slow"):
                for row in engine.unfinished(NAMESPACE, flow_id):
                    engine.kill(row["id"])
            engine.stop(grace=5)


if __name__ == "__main__":
    main()
