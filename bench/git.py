"""How fast the git mirror answers what every sync asks (prints figures; not a test).

Makes a bare remote with N flow files (default 10,000, in 50 namespaces, with
`git fast-import`), fetches it into a `Mirror`, then times, each R times (default 20):

1. `remote_head()` when nothing is new (the `git ls-remote` every poll starts with);
2. `tree()` of the whole commit (what a first sync lists);
3. `read_blobs()` of every file (what a first sync reads, through the one
   `cat-file --batch` process).

Prints the median and the slowest of each. tests/integration/test_git.py checks what
these calls answer; how long they take is measured here.

    python bench/git.py [--flows 10000] [--repeats 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests")]

from gitrepos import WorkingClone, make_remote  # noqa: E402

from headwater.daemon.git import Mirror  # noqa: E402

NAMESPACES = 50


def timed(repeats: int, call: Callable[[], object]) -> list[float]:
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - started)
    return seconds


def report(what: str, seconds: list[float]) -> None:
    print(
        f"{what:>34}: median {statistics.median(seconds) * 1e3:8.2f} ms, "
        f"slowest {max(seconds) * 1e3:8.2f} ms ({len(seconds)} runs)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flows", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        remote = make_remote(root / "remote.git")
        work = WorkingClone.create(root / "work", remote)
        files = {
            f"flows/ns{i % NAMESPACES}/flow{i}.yaml": f"id: flow{i}\n".encode()
            for i in range(args.flows)
        }
        sha = work.bulk_commit(files, "many flows")
        work.push()
        with Mirror(root / "mirror", str(remote), "main") as mirror:
            assert mirror.fetch() == sha
            entries = mirror.tree(sha)
            assert len(entries) == args.flows
            print(f"{args.flows} files in {NAMESPACES} namespaces, commit {sha[:12]}")
            report("remote_head, nothing new", timed(args.repeats, mirror.remote_head))
            report(f"tree of {args.flows} files", timed(args.repeats, lambda: mirror.tree(sha)))
            report(
                f"read_blobs of {args.flows} files",
                timed(args.repeats, lambda: mirror.read_blobs(e.blob for e in entries)),
            )


if __name__ == "__main__":
    main()
