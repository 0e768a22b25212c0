"""Headwater beside Airflow and Prefect: the three workloads on each, one system at a time.

    .venv/bin/python bench/peers/run_all.py [--only headwater airflow prefect]
                                            [--postgres] [--out DIR]

Runs headwater.py, airflow.py and prefect.py (in this directory) one after the other,
never two at once, each in a process of its own, and prints one table: W1 and W2 in
seconds (median of 3), W3 in runs per second (median of 3), and Headwater's ratio against
each peer (how many times faster; more is better for Headwater), then each system's
version and settings, the date, the machine and the load average before and after each
system. Installing and starting a system is not counted.

Headwater is measured at the commit HEAD points to, exported and installed on its own
(other work in the working tree does not count); `--working-tree` measures the tree as it
is. `--postgres` adds Airflow and Prefect on PostgreSQL (scripts/services.d/postgres) after
their default SQLite runs. With `--working-tree`, run it with the repository's .venv
(headwater.py then starts the `headwater` this Python imports). About half an hour, an
hour with `--postgres` (on 2 cores); the peers' W3 bursts take most of it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common

HERE = Path(__file__).resolve().parent
SYSTEMS = {
    "headwater": ["headwater.py"],
    "airflow": ["airflow.py"],
    "prefect": ["prefect.py"],
}


def run(script: list[str], out: Path) -> dict:
    """One system's script; its figures as written to --json (or its failure)."""
    words = [Path(script[0]).stem, *(a.strip("-")[:12] for a in script[1:])]
    target = out / ("_".join(words) + ".json")
    before = common.load()
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(HERE / script[0]), *script[1:], "--json", str(target)],
        cwd=HERE.parents[1],
        check=False,
    )
    took = time.monotonic() - began
    if target.exists():
        figures = json.loads(target.read_text())
    else:
        figures = {"system": script[0], "error": f"exited {done.returncode}, wrote nothing"}
    figures["load"] = f"{before} before, {common.load()} after"
    figures["wall"] = f"{took / 60:.1f} min in all"
    return figures


def median(figures: dict, name: str) -> float | None:
    values = figures.get(name) or []
    return statistics.median(values) if values else None


def shown(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def ratio(mine: float | None, theirs: float | None, higher_is_better: bool) -> str:
    if not mine or not theirs:
        return "-"
    times = mine / theirs if higher_is_better else theirs / mine
    return f"{times:,.0f}x" if times >= 10 else f"{times:,.1f}x"


def table(results: list[dict]) -> str:
    lines = [
        "| system | version | W1 s | W2 s | W3 runs/s |",
        "|---|---|---|---|---|",
    ]
    for figures in results:
        lines.append(
            f"| {figures['system']} | {figures.get('version', '')} "
            f"| {shown(median(figures, 'w1'), 2)} | {shown(median(figures, 'w2'), 2)} "
            f"| {shown(median(figures, 'w3'), 2)} |"
        )
    ours = next((f for f in results if f["system"] == "Headwater"), None)
    if ours:
        lines += ["", "| Headwater faster than | W1 | W2 | W3 |", "|---|---|---|---|"]
        for figures in results:
            if figures is ours:
                continue
            cells = [
                ratio(median(ours, "w1"), median(figures, "w1"), False),
                ratio(median(ours, "w2"), median(figures, "w2"), False),
                ratio(median(ours, "w3"), median(figures, "w3"), True),
            ]
            lines.append(f"| {figures['system']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", nargs="+", choices=sorted(SYSTEMS), default=list(SYSTEMS))
    parser.add_argument("--postgres", action="store_true", help="peers on PostgreSQL too")
    parser.add_argument("--out", help="keep each system's JSON here (default: a temp dir)")
    parser.add_argument(
        "--working-tree",
        action="store_true",
        help="measure Headwater's working tree as it is (default: HEAD, exported on its own)",
    )
    args = parser.parse_args()
    if not args.working_tree:
        head = subprocess.run(
            ["git", "-C", str(HERE), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        SYSTEMS["headwater"] = ["headwater.py", "--commit", head]
    out = Path(args.out or tempfile.mkdtemp(prefix="hw-peers-"))
    out.mkdir(parents=True, exist_ok=True)
    scripts = [SYSTEMS[name] for name in args.only]
    if args.postgres:
        scripts += [[f"{name}.py", "--db", "postgres"] for name in ("airflow", "prefect")]
        scripts = [s for s in scripts if Path(s[0]).stem in args.only]
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    results = []
    for script in scripts:
        common.say(f"--- {' '.join(script)}")
        results.append(run(script, out))

    print()
    print(f"Headwater beside Airflow and Prefect, {date}")
    for key, value in common.machine().items():
        print(f"{key}: {value}")
    print(
        f"workloads: W1 {common.TASKS} sequential shell `true` tasks; W2 {common.TASKS} "
        f"sequential tasks that log one line; W3 {common.W3_RUNS} two-task runs started at "
        f"once; {common.WARMUPS} warm-up then median of {common.RUNS}"
    )
    print()
    print(table(results))
    for figures in results:
        print()
        print(f"{figures['system']} {figures.get('version', '')}")
        for key, value in (figures.get("settings") or {}).items():
            print(f"  {key}: {value}")
        print(f"  load average (1, 5, 15 min): {figures['load']}; {figures['wall']}")
        for name in ("w1", "w2", "w3"):
            values = figures.get(name) or []
            if values:
                print(f"  {name.upper()} runs: " + ", ".join(f"{v:.3f}" for v in values))
        if figures.get("error"):
            print(f"  NOT MEASURED: {figures['error']}")
        for failure in figures.get("failures") or []:
            print(f"  FAILED: {failure}")
    print(f"\n(each system's figures as JSON in {out})")


if __name__ == "__main__":
    main()
