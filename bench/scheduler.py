"""How the scheduler copes with many schedules: start-up time and fire lateness.

Builds an engine the way `headwater up` does (SQLite in a temporary data directory),
deploys 10,000 flows that each have a `* * * * *` Schedule, and measures the scheduler
alone: the engine is not started (no workers, no executor), because 10,000 executions
a minute are more than the workers can run, and the figure wanted is the scheduler's.

1. Start-up: a new `Scheduler`'s first tick, which reads every deployed Schedule and
   builds its heap; cold (no trigger states yet: it writes 10,000) and warm (a restart:
   the states are there). Taken at 2,500, 5,000 and 10,000 flows to show it is linear.
2. Fire lateness over three minutes with the scheduler's own thread and the real clock:
   from each due time to the commit of the transaction that wrote its execution row
   (the scheduler's `fired` callback), p50, p99 and max; the executions created in
   each minute; and the wall and CPU time of each tick that fired (CPU time shows what
   the scheduler costs apart from the machine's load).

    python bench/scheduler.py [--flows 10000] [--minutes 3] [--quick]

`--quick` uses 1,000 flows and one minute (a smoke test); the figures in
docs/benchmarks.md come from a run without it.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import sqlalchemy
from sqlalchemy import func, select

from headwater.daemon.engine.engine import Engine, EngineSettings
from headwater.daemon.store.store import EXECUTIONS
from headwater.daemon.triggers.scheduler import Fire, Scheduler

NAMESPACE = "bench"
STARTUP_TARGET_S = 5.0
P99_TARGET_S = 1.0
SOURCE = """\
id: f{i}
namespace: bench
tasks:
  - id: say
    type: core.log.Log
    message: "minute {{{{ trigger.date }}}}"
triggers:
  - id: every_minute
    type: core.trigger.Schedule
    cron: "* * * * *"
"""


def deploy(engine: Engine, count: int) -> None:
    """`count` flows, revision 1 each, written as one deploy writes new flows."""
    now = time.time()
    rows = [
        {
            "namespace": NAMESPACE,
            "flow_id": f"f{i}",
            "revision": 1,
            "source": SOURCE.format(i=i),
            "created_at": now,
            "commit_sha": "0" * 40,
        }
        for i in range(count)
    ]
    with engine.store.write() as tx:
        tx.insert_new_flows(rows, [])


def quiet_instant() -> float:
    """Ten seconds into the current minute: a tick at this time finds nothing due (every
    schedule is due at a minute), so a start-up tick measures only the start-up."""
    now = time.time()
    return now - now % 60 + 10


def startup(count: int, root: Path) -> tuple[float, float]:
    """(cold, warm) seconds of a first tick with `count` schedules deployed."""
    engine = Engine(EngineSettings(data_dir=root / f"startup-{count}", workers=0))
    try:
        deploy(engine, count)
        times = []
        for _ in range(2):
            scheduler = Scheduler(engine.store, engine.executor)
            now = quiet_instant()
            started = time.perf_counter()
            scheduler.tick(now)
            times.append(time.perf_counter() - started)
        return times[0], times[1]
    finally:
        engine.stop(grace=0)


def lateness(count: int, minutes: int, root: Path) -> None:
    engine = Engine(EngineSettings(data_dir=root / "lateness", workers=0))
    late: list[float] = []
    ticks: list[tuple[float, float, int]] = []  # (wall s, CPU s of the thread, fired) per tick
    lock = threading.Lock()

    def fired(fires: list[Fire], committed: float) -> None:
        with lock:
            late.extend(committed - fire.date for fire in fires)

    try:
        deploy(engine, count)
        scheduler = Scheduler(engine.store, engine.executor)
        scheduler.fired.append(fired)
        scheduler.tick(quiet_instant())  # the start-up, measured above
        tick = scheduler.tick

        def measured_tick(now: float | None = None) -> float | None:
            before, cpu, count = time.perf_counter(), time.thread_time(), len(late)
            wake = tick(now)
            ticks.append(
                (time.perf_counter() - before, time.thread_time() - cpu, len(late) - count)
            )
            return wake

        scheduler.tick = measured_tick  # type: ignore[method-assign]
        first = (time.time() // 60 + 1) * 60
        last = first + 60 * (minutes - 1)
        print(f"  firing {count} schedules at {minutes} minute boundaries from {_hms(first)}")
        scheduler.start()
        deadline = last + 60
        while time.time() < deadline:
            with lock:
                if len(late) >= count * minutes:
                    break
            time.sleep(0.5)
        scheduler.stop()
        per_minute = _per_minute(engine, first, last)
    finally:
        engine.stop(grace=0)
    done = sorted(late)
    for wall, cpu, count in (t for t in ticks if t[2]):
        print(f"    a tick that wrote {count} executions: {wall:.2f} s, {cpu:.2f} s of CPU")
    print(f"  executions written: {len(done)} (expected {count * minutes})")
    for minute, written in per_minute:
        print(f"    minute {_hms(minute)}: {written} executions")
    if done:
        p50 = statistics.median(done)
        p99 = done[min(len(done) - 1, int(len(done) * 0.99))]
        print(
            f"  lateness, due time to execution row committed: p50 {p50 * 1000:.0f} ms, "
            f"p99 {p99 * 1000:.0f} ms, max {done[-1] * 1000:.0f} ms "
            f"(target p99 under {P99_TARGET_S:.0f} s: {'met' if p99 < P99_TARGET_S else 'missed'})"
        )


def _per_minute(engine: Engine, first: float, last: float) -> list[tuple[float, int]]:
    with engine.store.read() as tx:
        dates = list(
            tx.connection.execute(
                select(EXECUTIONS.c.trigger_key).where(EXECUTIONS.c.namespace == NAMESPACE)
            ).scalars()
        )
        total = tx.connection.execute(select(func.count()).select_from(EXECUTIONS)).scalar_one()
    minutes = Counter(key.rsplit("@", 1)[1] for key in dates)
    assert total == len(dates)
    found = []
    moment = first
    while moment <= last:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(moment))
        found.append((moment, minutes.get(stamp, 0)))
        moment += 60
    return found


def _hms(moment: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(moment))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--flows", type=int, default=10_000)
    parser.add_argument("--minutes", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    flows, minutes = (1_000, 1) if args.quick else (args.flows, args.minutes)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, SQLAlchemy {sqlalchemy.__version__}, "
        f"SQLite {__import__('sqlite3').sqlite_version}; load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    with tempfile.TemporaryDirectory(prefix="hw-bench-scheduler-") as tmp:
        root = Path(tmp)
        print("1. start-up (first tick of a new scheduler)")
        sizes = [flows // 4, flows // 2, flows]
        for size in sizes:
            cold, warm = startup(size, root)
            print(
                f"  {size:>6} schedules: cold {cold:.2f} s (writes their states), "
                f"warm {warm:.2f} s (a restart)"
            )
        verdict = "met" if max(cold, warm) < STARTUP_TARGET_S else "missed"
        print(f"  target under {STARTUP_TARGET_S:.0f} s at {flows}: {verdict}")
        print(f"2. fire lateness, {flows} schedules, {minutes} minute(s), workers paused")
        lateness(flows, minutes, root)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
