"""Airflow's side of the peers bench: W1, W2, W3 on a local Apache Airflow 3.

    python bench/peers/airflow.py [--db sqlite|postgres] [--constraints FILE_OR_URL]
                                  [--json FILE] [--keep]

Installs `apache-airflow==3.*` into a virtual environment of its own (CACHE/airflow, see
common.py; once). Airflow's install guide asks for its constraints file, which is not on
PyPI and not reachable from the machine these figures come from: pass it with
`--constraints FILE_OR_URL` where you can; without it pip resolves the versions. Then,
with AIRFLOW_HOME in a fresh directory under CACHE/runs:

- `airflow db migrate`, then the three components Airflow 3 needs to run DAGs: the
  `scheduler` (its executor, the default LocalExecutor, runs each task in a process of
  its own), the `dag-processor` (parses the DAG files) and the `api-server` (the public
  REST API, and the execution API the tasks report to), on a free loopback port;
- the default database, SQLite in AIRFLOW_HOME (Airflow 3 runs LocalExecutor on it), or
  with `--db postgres` a fresh database on the PostgreSQL of scripts/services.d/postgres
  (the `postgres` extra installed for it);
- a token from `POST /auth/token` with the password the simple auth manager (the
  default) generated for its default user `admin`;
- each DAG unpaused with `PATCH /api/v2/dags/{dag_id}`, runs started with
  `POST /api/v2/dags/{dag_id}/dagRuns` and read with
  `GET /api/v2/dags/{dag_id}/dagRuns/{run_id}` until the state is final (common.py says
  how the clock runs).

The DAGs (written to AIRFLOW_HOME/dags/bench_dags.py):

- w1: 40 BashOperator tasks `true`, in a chain;
- w2: 40 TaskFlow `@task` tasks in a chain, each logging one line (not EmptyOperator:
  the scheduler marks those successful without running anything);
- w3: two such tasks; 50 runs started at once.

Every Airflow setting is its default (scheduler loop, parallelism 32, 16 active runs and
16 active tasks a DAG, one API worker), except `load_examples = False`: the example DAGs
would have the dag-processor parse some 80 more files on this 2-core machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import common

VENV = common.CACHE / "airflow"
REQUIREMENT = "apache-airflow==3.*"
FINAL = {"success", "failed"}
START_TIMEOUT = 300.0
POSTGRES = "postgresql+psycopg2://headwater@127.0.0.1:54329/{name}"
PG_ADMIN = "postgresql://headwater@127.0.0.1:54329/headwater_test"

DAGS = '''\
"""The peers bench's DAGs (written by bench/peers/airflow.py)."""
import logging

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, chain, task

log = logging.getLogger(__name__)


@task
def step():
    log.info("step")


with DAG("w1", schedule=None, catchup=False):
    chain(*[BashOperator(task_id=f"t{{i:02d}}", bash_command="true") for i in range({tasks})])

with DAG("w2", schedule=None, catchup=False):
    chain(*[step.override(task_id=f"t{{i:02d}}")() for i in range({tasks})])

with DAG("w3", schedule=None, catchup=False):
    step.override(task_id="first")() >> step.override(task_id="second")()
'''


def install(notes: dict[str, str], postgres: bool, constraints: str | None) -> str:
    """The installed Airflow's version; installs it first if needed."""
    python = VENV / "bin" / "python"
    if not (VENV / "bin" / "airflow").exists():
        common.say(f"installing {REQUIREMENT} into {VENV}")
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        pip = [str(python), "-m", "pip", "install", "-q"]
        pip += ["--constraint", constraints] if constraints else []
        done = subprocess.run([*pip, REQUIREMENT], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            tail = "\n".join(done.stderr.splitlines()[-5:])
            raise common.BenchError(f"pip install {REQUIREMENT} failed:\n{tail}")
        how = f"pip install {REQUIREMENT}" + (
            f" --constraint {constraints}" if constraints else " without a constraints file"
        )
        (VENV / "installed-with.txt").write_text(how + "\n")
    if (VENV / "installed-with.txt").exists():
        notes["install"] = (VENV / "installed-with.txt").read_text().strip()
    if postgres and subprocess.run([str(python), "-c", "import asyncpg"], check=False).returncode:
        # the `postgres` extra, as Airflow documents for PostgreSQL: psycopg2 and asyncpg
        version = subprocess.run(
            [str(python), "-c", "import airflow; print(airflow.__version__)"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        pip = [str(python), "-m", "pip", "install", "-q", f"apache-airflow[postgres]=={version}"]
        subprocess.run(pip, check=True)
    done = subprocess.run(
        [str(python), "-c", "import airflow; print(airflow.__version__)"],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise common.BenchError(f"airflow does not import: {done.stderr[-500:]}")
    return done.stdout.strip()


def postgres_database() -> str:
    """A fresh database on the local PostgreSQL test server (started if needed)."""
    root = Path(__file__).resolve().parents[2]
    subprocess.run([str(root / "scripts" / "services.d" / "postgres")], check=True)
    name = f"airflow_bench_{uuid.uuid4().hex[:8]}"
    subprocess.run(["psql", PG_ADMIN, "-qc", f"CREATE DATABASE {name}"], check=True)
    return name


@contextlib.contextmanager
def airflow(result: common.Result, args: argparse.Namespace) -> Iterator[common.Workloads]:
    postgres = args.db == "postgres"
    notes: dict[str, str] = {}
    result.version = install(notes, postgres, args.constraints)
    if postgres:
        result.system = "Airflow (PostgreSQL)"
    (common.CACHE / "runs").mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="airflow-", dir=common.CACHE / "runs"))
    (home / "dags").mkdir()
    (home / "dags" / "bench_dags.py").write_text(DAGS.format(tasks=common.TASKS))
    port = common.free_port()
    base = f"http://127.0.0.1:{port}"
    env = common.isolated_env(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__API__HOST="127.0.0.1",
        AIRFLOW__API__PORT=str(port),
        AIRFLOW__API__BASE_URL=base,
    )
    database = "SQLite in AIRFLOW_HOME (the default)"
    if postgres:
        name = postgres_database()
        env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = POSTGRES.format(name=name)
        database = (
            "PostgreSQL 15 on 127.0.0.1 (scripts/services.d/postgres), apache-airflow[postgres]"
        )
    result.settings = {
        **notes,
        "executor": "LocalExecutor (the default): a process per task",
        "database": database,
        "processes": "scheduler, dag-processor, api-server (1 worker)",
        "W2 task": "a TaskFlow @task that logs one line",
        "changed": "load_examples = False",
        "poll": common.POLL_NOTE,
    }
    binary = str(VENV / "bin" / "airflow")
    migrate = subprocess.run(
        [binary, "db", "migrate"], env=env, cwd=home, capture_output=True, text=True, check=False
    )
    if migrate.returncode != 0:
        raise common.BenchError(f"airflow db migrate failed: {migrate.stderr[-1000:]}")
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for component in ("api-server", "scheduler", "dag-processor"):
            processes.append(
                common.spawn([binary, component], env, home / f"{component}.log", home)
            )
        common.wait_until(
            lambda: common.http("GET", f"{base}/api/v2/monitor/health", timeout=5)[0] == 200,
            "airflow api-server: /api/v2/monitor/health",
            START_TIMEOUT,
            processes,
        )
        headers = {"Authorization": f"Bearer {token(base, home)}"}
        for dag in ("w1", "w2", "w3"):
            common.wait_until(
                lambda d=dag: (
                    common.http("GET", f"{base}/api/v2/dags/{d}", None, headers)[0] == 200
                ),
                f"DAG {dag} parsed",
                START_TIMEOUT,
                processes,
            )
            status, body = common.http(
                "PATCH", f"{base}/api/v2/dags/{dag}", {"is_paused": False}, headers
            )
            common.expect(status, body, 200, what=f"unpause {dag}")
        yield {dag: workload(base, headers, dag) for dag in ("w1", "w2", "w3")}
    finally:
        common.stop(list(reversed(processes)))
        if args.keep:
            common.say(f"kept {home}")
        else:
            subprocess.run(["rm", "-rf", str(home)], check=False)


def token(base: str, home: Path) -> str:
    """A JWT for the default user, with the password the simple auth manager generated."""
    passwords = home / "simple_auth_manager_passwords.json.generated"
    common.wait_until(passwords.exists, "the simple auth manager's passwords", START_TIMEOUT)
    password = json.loads(passwords.read_text())["admin"]
    status, body = common.http(
        "POST", f"{base}/auth/token", {"username": "admin", "password": password}
    )
    return str(common.expect(status, body, 200, 201, what="POST /auth/token")["access_token"])


def workload(base: str, headers: dict[str, str], dag: str) -> tuple[common.Start, common.State]:
    def start() -> str:
        body = {"dag_run_id": f"bench-{uuid.uuid4().hex}", "logical_date": None}
        status, answer = common.http("POST", f"{base}/api/v2/dags/{dag}/dagRuns", body, headers)
        return str(common.expect(status, answer, 200, what=f"trigger {dag}")["dag_run_id"])

    def state(run: str) -> str:
        status, body = common.http("GET", f"{base}/api/v2/dags/{dag}/dagRuns/{run}", None, headers)
        current = common.expect(status, body, 200, what=f"read {dag} {run}")["state"]
        if current not in FINAL:
            return common.RUNNING
        return f"{common.SUCCEEDED if current == 'success' else common.FAILED}:{current}"

    return start, state


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--constraints", help="Airflow's constraints file for the install")


if __name__ == "__main__":
    sys.exit(common.main("Airflow", airflow, __doc__ or "", options))
