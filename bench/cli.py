"""How long a `headwater` command takes from a fresh process (issue 12).

Runs each command as a new process, the way a user or CI runs it, through the
installed console script and through `python -m headwater.daemon.cli`, and prints the
median and the best wall time of each, the median CPU time (what it costs without the
waiting a busy machine adds), and the machine's load average before and after. Rounds
are interleaved (every command once per round) so that a change in the machine's load
falls on every command alike. `python -c pass` is timed beside them: what any Python
command costs before it does anything.

    python bench/cli.py [--rounds 20] [--warmup 2]

Targets (issue 12): `headwater --help` at most 0.25 s, `headwater validate` of one
file at most 0.5 s. The code measured is the `headwater` package Python imports, so
`PYTHONPATH=DIR python bench/cli.py` measures another copy (for before/after figures).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "flows-repo-template"
ONE_FILE = TEMPLATE / "flows" / "tutorial" / "hello.yaml"
DEFAULT_ROUNDS = 20  # measured runs of each command and way
DEFAULT_WARMUP = 2  # unmeasured rounds first: the page cache and .pyc files settle
RUN_TIMEOUT = 120.0  # seconds one command may take before the benchmark gives up

# (label, arguments after `headwater`, goal in seconds or None)
COMMANDS: list[tuple[str, list[str], float | None]] = [
    ("--help", ["--help"], 0.25),
    ("validate one file", ["validate", str(ONE_FILE.relative_to(ROOT))], 0.5),
    ("validate the template repository", ["validate", str(TEMPLATE.relative_to(ROOT))], None),
    ("schema", ["schema"], None),
]


def console_script() -> str:
    """The `headwater` script installed beside this Python, else the one on PATH."""
    beside = Path(sys.executable).parent / "headwater"
    found = str(beside) if beside.exists() else shutil.which("headwater")
    if found is None:
        raise SystemExit("no `headwater` console script: pip install -e . first")
    return found


def ways() -> dict[str, list[str]]:
    return {
        "script": [console_script()],
        "-m": [sys.executable, "-m", "headwater.daemon.cli"],
    }


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(argv: list[str]) -> tuple[float, float]:
    """Wall and CPU time of one run; a failing command stops the benchmark.

    On a busy machine the wall time includes waiting for a core; the CPU time (user and
    system, of the process and its children) does not.
    """
    cpu, started = children_cpu(), time.perf_counter()
    result = subprocess.run(
        argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=RUN_TIMEOUT
    )
    elapsed, cpu = time.perf_counter() - started, children_cpu() - cpu
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {result.returncode}:\n{result.stderr.decode()}")
    return elapsed, cpu


def runs() -> list[tuple[str, str, list[str]]]:
    """(command label, way, argv) of everything one round runs."""
    found = [("python -c pass", "", [sys.executable, "-c", "pass"])]
    for label, args, _ in COMMANDS:
        found += [(label, way, [*prefix, *args]) for way, prefix in ways().items()]
    return found


Times = dict[tuple[str, str], list[tuple[float, float]]]


def measure(rounds: int, warmup: int) -> Times:
    plan = runs()
    times: Times = {(label, way): [] for label, way, _ in plan}
    for round_number in range(warmup + rounds):
        # Rotate the order each round: no command always runs right after another.
        shift = round_number % len(plan)
        for label, way, argv in plan[shift:] + plan[:shift]:
            measured = timed(argv)
            if round_number >= warmup:
                times[(label, way)].append(measured)
    return times


def commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()

    dirty = " + uncommitted changes" if git("status", "--porcelain", "--", ".") else ""
    return (git("rev-parse", "--short", "HEAD") or "unknown") + dirty


def report(times: Times, loads: list[tuple[float, ...]]) -> None:
    goals = {label: goal for label, _, goal in COMMANDS}
    print(f"{'command':<34} {'way':<7} {'median':>8} {'best':>8} {'CPU':>8}  goal (median)")
    for (label, way), values in times.items():
        walls = [wall for wall, _ in values]
        median, best = statistics.median(walls), min(walls)
        cpu = statistics.median(cpu for _, cpu in values)
        goal = goals.get(label)
        verdict = "" if goal is None else f"{goal:.2f} s {'met' if median <= goal else 'MISSED'}"
        print(f"{label:<34} {way:<7} {median:>7.3f}s {best:>7.3f}s {cpu:>7.3f}s  {verdict}")
    shown = ", ".join(" / ".join(f"{x:.2f}" for x in load) for load in loads)
    print(f"load average (1 / 5 / 15 min) before, after: {shown}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS)
    parser.add_argument("--warmup", type=int, default=DEFAULT_WARMUP)
    args = parser.parse_args()
    import headwater.daemon.cli as measured

    print(f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    code = Path(measured.__file__).resolve().parents[1]
    where = f"commit {commit()}" if code == ROOT else "a copy outside this repository"
    print(f"code: {code}, {where}")
    print(f"{args.rounds} runs of each (after {args.warmup} unmeasured), interleaved")
    loads = [os.getloadavg()]
    times = measure(args.rounds, args.warmup)
    loads.append(os.getloadavg())
    report(times, loads)


if __name__ == "__main__":
    main()
