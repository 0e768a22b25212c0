"""What the process runner costs per run over a bare fork and exec.

Runs `true` N times (default 200) three ways, interleaved so drift hits all alike:
bare `subprocess.run(["true"])`; the same with what every run needs anyway (pipes
for stdout and stderr, a new session, a scrubbed environment), read to the end with
`communicate()`; and `ProcessRunner.run`. Prints the mean and median of each and the
runner's overhead over both. Then times the runner's look for leftovers after a run
(`Leftovers.find`, which every run does once) with 30 idle threads in the process, as
in a daemon, and runs of `true` while another run (a `sleep`) is in flight, whose
pipes must not hold them (tests/integration/test_process_runner.py checks that they
do not; this says how long they take).

    python bench/runner.py [--runs 200]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from headwater.runners.base import RunSpec, Stream
from headwater.runners.leftovers import Leftovers, new_marker
from headwater.runners.process import ProcessRunner, child_environment


def bare(workdir: Path) -> None:
    subprocess.run(["true"], cwd=workdir, check=True)


def piped(workdir: Path) -> None:
    proc = subprocess.Popen(
        ["true"],
        cwd=workdir,
        env=child_environment({}),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    proc.communicate()


def runner(workdir: Path) -> None:
    result = ProcessRunner().run(RunSpec(["true"], workdir), _ignore, threading.Event())
    assert result.succeeded, result


def _ignore(stream: Stream, line: str) -> None:
    pass


def measure(runs: int, workdir: Path) -> dict[str, list[float]]:
    ways: dict[str, Callable[[Path], None]] = {"bare": bare, "piped": piped, "runner": runner}
    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(runs):
        for name, way in ways.items():
            started = time.perf_counter()
            way(workdir)
            times[name].append(time.perf_counter() - started)
    return times


DAEMON_THREADS = 30  # about what `headwater up` runs: workers, HTTP, sync, scheduler …


def print_sweep(runs: int) -> None:
    """The median time of one look for a run's leftovers (none to find)."""
    stop = threading.Event()
    threads = [threading.Thread(target=stop.wait) for _ in range(DAEMON_THREADS)]
    for thread in threads:
        thread.start()
    try:
        values = []
        for _ in range(runs):
            leftovers = Leftovers(new_marker(), 2**22 + 1)  # no such group
            started = time.perf_counter()
            leftovers.find()
            values.append(time.perf_counter() - started)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    print(
        f"  sweep: median {statistics.median(values) * 1e3:.3f} ms "
        f"(look for leftovers, {DAEMON_THREADS} threads)"
    )


def print_beside(runs: int, workdir: Path) -> None:
    """The median run of `true` while another run is in flight."""
    cancel = threading.Event()
    slow = threading.Thread(
        target=ProcessRunner().run,
        args=(RunSpec(["sleep", "600"], workdir), _ignore, cancel),
    )
    slow.start()
    try:
        values = [_timed(runner, workdir) for _ in range(runs)]
        assert slow.is_alive(), "the runs waited for the sleep"
    finally:
        cancel.set()
        slow.join()
    print(
        f"  beside a run in flight: median {statistics.median(values) * 1e3:.3f} ms, "
        f"{runs} runs {sum(values) * 1e3:.1f} ms in all"
    )


def _timed(way: Callable[[Path], None], workdir: Path) -> float:
    started = time.perf_counter()
    way(workdir)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        measure(20, Path(folder))  # warm up imports and caches
        times = measure(args.runs, Path(folder))
    for name, values in times.items():
        print(
            f"{name:>7}: mean {statistics.fmean(values) * 1e3:.3f} ms, "
            f"median {statistics.median(values) * 1e3:.3f} ms"
        )
    print_sweep(args.runs * 10)
    with tempfile.TemporaryDirectory() as folder:
        print_beside(args.runs, Path(folder))
    for base in ("bare", "piped"):
        mean = statistics.fmean(times["runner"]) - statistics.fmean(times[base])
        median = statistics.median(times["runner"]) - statistics.median(times[base])
        print(
            f"runner overhead over {base}: mean {mean * 1e3:+.3f} ms, median {median * 1e3:+.3f} ms"
        )


if __name__ == "__main__":
    main()
