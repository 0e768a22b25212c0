"""Headwater's side of the peers bench: W1, W2, W3 against a real `headwater up`.

    python bench/peers/headwater.py [--commit REV] [--json FILE] [--keep]

Makes a git repository in a temporary directory with three flows in namespace `bench`,
starts `python -m headwater.daemon.cli up --repo <it> --data-dir <tmp> --port <free>` on
its defaults (SQLite in the data directory, 4 worker threads, the process runner), waits
for /readyz and for the flows to be deployed, then starts runs with
`POST /api/v1/executions/bench/{flow}` and reads `GET /api/v1/executions/{id}` until the
state is final (common.py says how the clock runs). No token: the daemon listens on
loopback only.

- w1: 40 `io.kestra.plugin.scripts.shell.Commands` tasks, `commands: ["true"]`, in order
  (the default runner, a process);
- w2: 40 `io.kestra.plugin.core.log.Log` tasks, each logging one line (no process);
- w3: `core.log.Log` then `core.debug.Return`, 50 runs started at once.

These are the flows of `bench/api.py` (its figures 3, 5 and 6), which measures the same
daemon through the same API; this script measures them as the peers are measured.

It runs the `headwater` that this Python imports (run it with the repository's .venv), so
the working tree with whatever is uncommitted in it; `--commit REV` measures a commit
instead: `git archive` of it, installed (`pip install`, not editable) into a virtual
environment of its own under CACHE/headwater/ (see common.py), once per commit.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import common

NAMESPACE = "bench"
FINAL = {"SUCCESS", "WARNING", "FAILED", "KILLED", "CANCELLED", "SKIPPED"}
READY_TIMEOUT = 120.0


def flow(flow_id: str, tasks: list[str]) -> str:
    lines = [f"id: {flow_id}", f"namespace: {NAMESPACE}", "tasks:"]
    lines += [f"  {task}" for task in tasks]
    return "\n".join(lines) + "\n"


def flows() -> dict[str, str]:
    shell = [
        f'- {{id: t{i:02d}, type: io.kestra.plugin.scripts.shell.Commands, commands: ["true"]}}'
        for i in range(common.TASKS)
    ]
    logs = [
        f"- {{id: t{i:02d}, type: io.kestra.plugin.core.log.Log, message: step}}"
        for i in range(common.TASKS)
    ]
    pair = [
        "- {id: first, type: io.kestra.plugin.core.log.Log, message: hello}",
        "- {id: second, type: io.kestra.plugin.core.debug.Return, format: ok}",
    ]
    return {"w1": flow("w1", shell), "w2": flow("w2", logs), "w3": flow("w3", pair)}


def make_repo(path: Path) -> None:
    folder = path / "flows" / NAMESPACE
    folder.mkdir(parents=True)
    for flow_id, source in flows().items():
        (folder / f"{flow_id}.yaml").write_text(source)
    git = ["git", "-C", str(path), "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "peers bench flows"], check=True)


ROOT = Path(__file__).resolve().parents[2]


def install_commit(rev: str) -> tuple[str, str]:
    """A Python with Headwater at commit `rev` installed, and the commit's short sha."""
    sha = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", f"{rev}^{{commit}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    venv = common.CACHE / "headwater" / sha
    python = venv / "bin" / "python"
    if not (venv / "installed").exists():
        common.say(f"installing Headwater at {sha} into {venv}")
        source = venv / "source"
        subprocess.run(["rm", "-rf", str(venv)], check=True)
        source.mkdir(parents=True)
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", sha], capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(source)], input=archive, check=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        done = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", str(source)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise common.BenchError(f"pip install of {sha} failed: {done.stderr[-1000:]}")
        (venv / "installed").write_text(sha + "\n")
    return str(python), sha


def commit_of_source() -> str:
    """The commit of the Headwater source tree being measured (with '+' if it has changes)."""
    root = ROOT
    try:
        sha = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "daemon", "runners", "web"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"
    return sha + (" + uncommitted changes in daemon/ runners/ web/" if dirty else "")


@contextlib.contextmanager
def headwater(result: common.Result, args: argparse.Namespace) -> Iterator[common.Workloads]:
    python, commit = sys.executable, commit_of_source()
    if args.commit:
        python, commit = install_commit(args.commit)
        commit += " (git archive, installed on its own)"
    result.version = subprocess.run(
        [python, "-c", "import importlib.metadata as m; print(m.version('headwater'))"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tempfile.gettempdir(),
    ).stdout.strip()
    home = Path(tempfile.mkdtemp(prefix="hw-peers-"))
    port = common.free_port()
    base = f"http://127.0.0.1:{port}"
    make_repo(home / "repo")
    command = [python, "-m", "headwater.daemon.cli", "up", "--repo", str(home / "repo")]
    command += ["--data-dir", str(home / "data"), "--port", str(port)]
    result.settings = {
        "commit": commit,
        "command": "headwater up --repo <tmp git repo> --data-dir <tmp> --port <free>",
        "store": "SQLite in the data directory (the default)",
        "workers": "4 threads (the default); runner: process (the default)",
        "W2 task": "io.kestra.plugin.core.log.Log (one line)",
        "poll": common.POLL_NOTE,
    }
    # cwd: not bench/peers, where this file would shadow the headwater package
    daemon = common.spawn(command, common.isolated_env(), home / "daemon.log", home)
    try:
        common.wait_until(
            lambda: common.http("GET", f"{base}/readyz", timeout=5)[0] == 200,
            "headwater up: /readyz",
            READY_TIMEOUT,
            [daemon],
        )
        for flow_id in flows():
            common.wait_until(
                lambda f=flow_id: (
                    common.http("GET", f"{base}/api/v1/flows/{NAMESPACE}/{f}")[0] == 200
                ),
                f"flow {NAMESPACE}.{flow_id} deployed",
                READY_TIMEOUT,
                [daemon],
            )
        yield {name: workload(base, name) for name in ("w1", "w2", "w3")}
    finally:
        common.stop([daemon])
        if args.keep:
            common.say(f"kept {home}")
        else:
            subprocess.run(["rm", "-rf", str(home)], check=False)


def workload(base: str, flow_id: str) -> tuple[common.Start, common.State]:
    def start() -> str:
        status, body = common.http("POST", f"{base}/api/v1/executions/{NAMESPACE}/{flow_id}", {})
        return str(common.expect(status, body, 200, 201, what=f"start {flow_id}")["id"])

    def state(execution: str) -> str:
        status, body = common.http("GET", f"{base}/api/v1/executions/{execution}")
        current = common.expect(status, body, 200, what=f"read {execution}")["state"]["current"]
        if current not in FINAL:
            return common.RUNNING
        ok = current in {"SUCCESS", "WARNING"}
        return f"{common.SUCCEEDED if ok else common.FAILED}:{current}"

    return start, state


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--commit", help="measure this commit (default: the working tree)")


if __name__ == "__main__":
    sys.exit(common.main("Headwater", headwater, __doc__ or "", options))
