"""How fast `headwater validate` reads a large flows folder.

Generates a repository of N flows (default 10,000) of about ten tasks each, about
3 KB a file with a few expressions, spread over 100 namespaces, then validates it as
one flows folder in this process, on one core. Prints flows per second, peak memory
and whether libyaml was used.

    python bench/validate.py [--flows 10000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

from headwater.daemon import yamlsource
from headwater.daemon.flow.repository import scan

TASKS = [
    """  - id: extract_{i}
    type: io.kestra.plugin.scripts.shell.Commands
    description: Pull the day's partition of {table}
    commands:
      - ./extract.sh --table {table} --day "{{{{ trigger.date ?? execution.startDate }}}}"
    env:
      TARGET: "{{{{ vars.bucket }}}}/{table}"
    timeout: PT30M
    retry:
      type: exponential
      interval: PT10S
      maxInterval: PT5M
      maxAttempts: 4
""",
    """  - id: check_{i}
    type: core.flow.If
    condition: "{{{{ outputs.extract_{previous}.vars.rows > 0 }}}}"
    then:
      - id: load_{i}
        type: io.kestra.plugin.scripts.python.Script
        script: |
          import os
          print("loading", os.environ.get("TABLE"), "{table}")
        env:
          TABLE: {table}
    else:
      - id: empty_{i}
        type: core.log.Log
        level: WARN
        message: "No rows for {table} on {{{{ execution.startDate | date('yyyy-MM-dd') }}}}"
""",
    """  - id: partitions_{i}
    type: core.flow.ForEach
    values: ["eu", "us", "apac"]
    concurrencyLimit: 2
    tasks:
      - id: report_{i}
        type: core.log.Log
        message: "{table} {{{{ taskrun.value | upper }}}} done"
""",
    """  - id: notify_{i}
    type: core.debug.Return
    format: "{{{{ flow.namespace }}}}.{{{{ flow.id }}}} loaded {table}"
""",
]


def flow_text(n: int, namespace: str) -> str:
    tasks = "".join(
        TASKS[i % len(TASKS)].format(i=i, previous=i - 1, table=f"table_{n}_{i}") for i in range(7)
    )
    return f"""id: flow_{n}
namespace: {namespace}
description: |
  Loads the tables of source {n} into the warehouse every night, one partition
  at a time, and reports what it loaded. Generated for the validation benchmark.
labels:
  team: data
  source: source_{n}
inputs:
  - id: day
    type: DATE
    required: false
variables:
  bucket: s3://warehouse/raw/{n}
tasks:
{tasks}triggers:
  - id: nightly
    type: io.kestra.plugin.core.trigger.Schedule
    cron: "{n % 60} 2 * * *"
    timezone: Europe/Paris
"""


def generate(root: Path, count: int, namespaces: int = 100) -> int:
    total = 0
    for n in range(count):
        namespace = f"company.team{n % namespaces}"
        folder = root / "flows" / namespace.replace(".", "/")
        folder.mkdir(parents=True, exist_ok=True)
        text = flow_text(n, namespace)
        (folder / f"flow_{n}.yaml").write_text(text, encoding="utf-8")
        total += len(text.encode())
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=10_000)
    parser.add_argument("--keep", type=Path, help="generate into this folder and keep it")
    parser.add_argument("--jobs", type=int, default=1, help="processes (1: the one-core figure)")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="hw-bench-"))
    try:
        size = generate(root, args.flows)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started, cpu_started = time.perf_counter(), time.process_time()
        tree = scan(root, jobs=args.jobs)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    if not tree.valid:
        for diagnostic in tree.all_diagnostics[:10]:
            print(diagnostic, file=sys.stderr)
        raise SystemExit("the generated flows should be valid")
    per_file = size / len(tree.flows)
    print(f"flows:            {len(tree.flows)} in 100 namespaces, {per_file:.0f} bytes a file")
    print(f"libyaml:          {'yes' if yamlsource.LIBYAML else 'NO (pure-Python PyYAML)'}")
    cores = "one core" if args.jobs == 1 else f"{args.jobs} processes"
    print(f"wall time:        {elapsed:.2f} s ({cpu:.2f} s CPU in this process, {cores})")
    print(f"flows per second: {len(tree.flows) / elapsed:.0f} (wall time)")
    if args.jobs == 1:  # on a busy machine the wall time includes waiting for the CPU
        print(f"flows per CPU-second: {len(tree.flows) / cpu:.0f}")
    before, after = rss_before / 1024, rss_after / 1024
    print(f"peak memory:      {after:.0f} MiB (max RSS; {before:.0f} MiB before validating)")


if __name__ == "__main__":
    main()
