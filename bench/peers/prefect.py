"""Prefect's side of the peers bench: W1, W2, W3 on a local Prefect 3 server.

    python bench/peers/prefect.py [--db sqlite|postgres] [--json FILE] [--keep]

Installs `prefect==3.*` into a virtual environment of its own (CACHE/prefect, see
common.py; once), then, with PREFECT_HOME in a fresh directory under CACHE/runs:

- `prefect server start` on a free loopback port: the API, the UI and the server's
  services, on the default database (SQLite in PREFECT_HOME), or with `--db postgres` on
  a fresh database of the PostgreSQL of scripts/services.d/postgres (asyncpg);
- one process that serves the three flows' deployments with `prefect.serve(...)`, as
  Prefect documents for running deployments in local processes: it polls the server for
  scheduled runs and runs each flow run in a subprocess of its own;
- runs started with `POST /api/deployments/{id}/create_flow_run`, and read with
  `GET /api/flow_runs/{id}` until the state type is final (common.py says how the clock
  runs).

The flows (written to PREFECT_HOME/bench_flows.py):

- w1: 40 tasks called one after another, each `subprocess.run(["true"], check=True)`;
- w2: 40 tasks called one after another, each logging one line with the run logger;
- w3: two such tasks; 50 runs started at once.

Every Prefect setting is its default (the runner polls every 10 s, no limit on the runs a
`serve` process runs at once), except that analytics are off: this machine reaches no
network but package registries.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import common

VENV = common.CACHE / "prefect"
REQUIREMENT = "prefect==3.*"
FINAL_OK = {"COMPLETED"}
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
START_TIMEOUT = 180.0
POSTGRES = "postgresql+asyncpg://headwater@127.0.0.1:54329/{name}"
PG_ADMIN = "postgresql://headwater@127.0.0.1:54329/headwater_test"
CLIENT_MAX_RETRIES = 5  # PREFECT_CLIENT_MAX_RETRIES default
RETRY_CODES = {429, 502, 503}  # what Prefect's client retries

FLOWS = '''\
"""The peers bench's flows, served by this process (written by bench/peers/prefect.py)."""
import subprocess

from prefect import flow, get_run_logger, serve, task


@task
def run_true():
    subprocess.run(["true"], check=True)


@task
def step():
    get_run_logger().info("step")


@flow
def w1():
    for _ in range({tasks}):
        run_true()


@flow
def w2():
    for _ in range({tasks}):
        step()


@flow
def w3():
    step()
    step()


if __name__ == "__main__":
    serve(w1.to_deployment("w1"), w2.to_deployment("w2"), w3.to_deployment("w3"))
'''


def install() -> str:
    """The installed Prefect's version; installs it first if needed."""
    python = VENV / "bin" / "python"
    if not (VENV / "bin" / "prefect").exists():
        common.say(f"installing {REQUIREMENT} into {VENV}")
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        done = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", REQUIREMENT],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            tail = "\n".join(done.stderr.splitlines()[-5:])
            raise common.BenchError(f"pip install {REQUIREMENT} failed:\n{tail}")
    done = subprocess.run(
        [str(python), "-c", "import prefect; print(prefect.__version__)"],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise common.BenchError(f"prefect does not import: {done.stderr[-500:]}")
    return done.stdout.strip()


@contextlib.contextmanager
def prefect(result: common.Result, args: argparse.Namespace) -> Iterator[common.Workloads]:
    result.version = install()
    (common.CACHE / "runs").mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="prefect-", dir=common.CACHE / "runs"))
    port = common.free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = common.isolated_env(
        PREFECT_HOME=str(home),
        PREFECT_API_URL=api,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_API_LOG_RETRYABLE_ERRORS="true",  # only logs why an answer was a 503
        PYTHONUNBUFFERED="1",
    )
    database = "SQLite in PREFECT_HOME (the default)"
    if args.db == "postgres":
        result.system = "Prefect (PostgreSQL)"
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = POSTGRES.format(name=postgres_database())
        database = "PostgreSQL 15 on 127.0.0.1 (scripts/services.d/postgres), asyncpg"
    result.settings = {
        "server": "prefect server start (one API worker, its services on)",
        "database": database,
        "runs": "prefect.serve(w1, w2, w3 deployments): each flow run in a subprocess",
        "runner poll": "10 s (PREFECT_RUNNER_POLL_FREQUENCY default); no limit on runs",
        "W2 task": "a @task that logs one line with get_run_logger()",
        "changed": "PREFECT_SERVER_ANALYTICS_ENABLED=false (no network here)",
        "poll": common.POLL_NOTE,
    }
    (home / "bench_flows.py").write_text(FLOWS.format(tasks=common.TASKS))
    prefect_bin = str(VENV / "bin" / "prefect")
    processes: list[subprocess.Popen[bytes]] = []
    try:
        server = [prefect_bin, "server", "start", "--host", "127.0.0.1", "--port", str(port)]
        processes.append(common.spawn(server, env, home / "server.log", home))
        common.wait_until(
            lambda: common.http("GET", f"{api}/health", timeout=5)[0] == 200,
            "prefect server: /api/health",
            START_TIMEOUT,
            processes,
        )
        python = str(VENV / "bin" / "python")
        processes.append(common.spawn([python, "bench_flows.py"], env, home / "serve.log", home))
        deployments = {}
        for name in ("w1", "w2", "w3"):

            def found(name: str = name) -> bool:
                status, body = common.http("GET", f"{api}/deployments/name/{name}/{name}")
                if status == 200:
                    deployments[name] = body["id"]
                return status == 200

            common.wait_until(found, f"deployment {name}/{name}", START_TIMEOUT, processes)
        yield {name: workload(api, deployments[name], name) for name in ("w1", "w2", "w3")}
        if RETRIED:
            result.settings["retried answers"] = f"{len(RETRIED)}: {sorted(set(RETRIED))[:5]}"
    finally:
        common.stop(list(reversed(processes)))
        if args.keep:
            common.say(f"kept {home}")
        else:
            subprocess.run(["rm", "-rf", str(home)], check=False)


def postgres_database() -> str:
    """A fresh database on the local PostgreSQL test server (started if needed)."""
    root = Path(__file__).resolve().parents[2]
    subprocess.run([str(root / "scripts" / "services.d" / "postgres")], check=True)
    name = f"prefect_bench_{uuid.uuid4().hex[:8]}"
    subprocess.run(["psql", PG_ADMIN, "-qc", f"CREATE DATABASE {name}"], check=True)
    return name


RETRIED: list[str] = []  # every answer that was retried, as Prefect's client retries it


def call(method: str, url: str, body: object = None) -> tuple[int, object]:
    """A request retried as Prefect's own client retries it: on 429, 502 and 503, up to
    PREFECT_CLIENT_MAX_RETRIES (5) times, after Retry-After or 2**n seconds."""
    for attempt in range(1, CLIENT_MAX_RETRIES + 2):
        status, answer = common.http(method, url, body)
        if status not in RETRY_CODES or attempt > CLIENT_MAX_RETRIES:
            return status, answer
        RETRIED.append(f"{method} {url.rsplit('/api', 1)[-1]}: {status}")
        common.say(f"Prefect answered {status} to {method} {url}; retrying as its client does")
        time.sleep(2**attempt)
    raise AssertionError("unreachable")


def workload(api: str, deployment: str, name: str) -> tuple[common.Start, common.State]:
    def start() -> str:
        status, body = call("POST", f"{api}/deployments/{deployment}/create_flow_run", {})
        return str(common.expect(status, body, 200, 201, what=f"start {name}")["id"])

    def state(run: str) -> str:
        status, body = call("GET", f"{api}/flow_runs/{run}")
        kind = (common.expect(status, body, 200, what=f"read {run}")["state"] or {}).get("type")
        if kind not in FINAL:
            return common.RUNNING
        return f"{common.SUCCEEDED if kind in FINAL_OK else common.FAILED}:{kind}"

    return start, state


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")


if __name__ == "__main__":
    sys.exit(common.main("Prefect", prefect, __doc__ or "", options))
